import ArgumentParser
import CustomerArchive
import Foundation

/// `outpost settings`: company-wide settings written at headquarters.
struct SettingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settings",
        abstract: "Show or change company-wide settings (changed at headquarters only).",
        discussion: """
            Settings are written at headquarters and reach the branches with its change sets.

            Example:
              outpost settings approval-threshold
            """,
        subcommands: [ApprovalThreshold.self])

    struct ApprovalThreshold: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "approval-threshold",
            abstract: "Show or set the amount above which only headquarters approves claims.",
            discussion: """
                Without an amount, prints the threshold in force at this site (5000.00 yuan until \
                headquarters sets another). With an amount, sets it: only at headquarters; the new \
                value reaches the branches with headquarters' next change set.

                Examples:
                  outpost settings approval-threshold
                  outpost settings approval-threshold 8000.00
                """)

        @Argument(help: ArgumentHelp("The new threshold in yuan, e.g. 8000.00.", valueName: "yuan"))
        var amount: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let fen = try amount.map { try Parse.amount($0, option: "amount") }
            let archive = try storage.openArchive()
            if let fen { try archive.setApprovalThreshold(fen: fen) }
            let current = try archive.approvalThreshold()
            if output.json {
                Output.json(.object(["approval_threshold_fen": .int(current)]))
            } else {
                Output.fields([("approval threshold", Money.format(current))])
            }
        }
    }
}

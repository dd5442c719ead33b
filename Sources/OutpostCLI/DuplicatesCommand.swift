import ArgumentParser
import CustomerArchive
import Foundation

/// `outpost duplicates`: probable duplicate customers across branches.
struct DuplicatesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "duplicates",
        abstract: "Find probable duplicate customers registered at different branches.",
        discussion: """
            Customers with the same phone number, or companies with the same name (letters and \
            digits; spaces, punctuation and case ignored) in the same city. Run it at \
            headquarters, which holds every branch's customers; by default only groups that \
            span branches are shown (--all adds those within one branch). Each group suggests \
            keeping the oldest customer file.

            Examples:
              outpost duplicates
              outpost duplicates --all --json
              outpost customer merge SH01-C-000017 BJ01-C-000342
            """)

    @Flag(help: "Also groups whose customers are all at one branch.")
    var all = false

    @OptionGroup var storage: DataDirOptions
    @OptionGroup var output: JSONOption

    func run() throws {
        let archive = try storage.openArchive()
        let groups = try archive.duplicates(sameBranch: all)
        if output.json {
            return Output.json(
                .array(
                    groups.map { g in
                        .object([
                            "reason": .string(g.reason.rawValue), "branches": .array(g.branches.map(JSON.string)),
                            "customers": .array(g.customers.map(\.json)),
                        ])
                    }))
        }
        if groups.isEmpty { return Output.write("no probable duplicates\n") }
        for (i, g) in groups.enumerated() {
            let why = g.reason == .phone ? "same phone" : "same company name and city"
            Output.write("\(i + 1). \(why), branches \(g.branches.joined(separator: ", "))\n")
            Output.table(
                ["   NUMBER", "NAME", "BRANCH", "CITY", "PHONE"],
                g.customers.map { r in
                    [
                        "   " + CustomerOutput.label(r), Output.truncated(Output.text(r["name"]) ?? "-", 40), Output.text(r["home_branch"]) ?? "-",
                        Output.text(r["city"]) ?? "-", Output.text(r["phone"]) ?? "-",
                    ]
                })
            let keep = CustomerOutput.label(g.customers[0])
            for other in g.customers.dropFirst() {
                Output.write("   outpost customer merge \(keep) \(CustomerOutput.label(other))\n")
            }
        }
    }
}

import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost conflicts …`: the journal of concurrent edits that lost.
struct ConflictsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts",
        abstract: "Review and restore concurrent edits that lost.",
        discussion: """
            When two sites change the same field before exchanging changes, the later write wins \
            everywhere and the other is kept in this site's conflict journal. Restoring an entry \
            writes the lost value again as a new change that wins and replicates.

            Example:
              outpost conflicts list --open
              outpost conflicts restore 7
            """,
        subcommands: [List.self, Restore.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the conflict journal, oldest first.",
            discussion: """
                The text listing names the record, field and the sites and times of both writes; \
                --values adds the values themselves (customer data), and --json always includes them.

                Examples:
                  outpost conflicts list --open
                  outpost conflicts list --open --values
                  outpost conflicts list --json
                """)

        @Flag(help: "Only entries not restored yet.")
        var open = false

        @Flag(help: "Show the winning and the lost values.")
        var values = false

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            let entries = try archive.conflicts(includeRestored: !open)
            if output.json { return Output.json(.array(entries.map(\.json))) }
            if entries.isEmpty { return Output.write(open ? "no open conflicts\n" : "no conflicts\n") }
            var headers = ["ID", "TABLE", "RECORD", "FIELD", "WINNER", "LOSER", "RESTORED"]
            if values { headers += ["WINNING VALUE", "LOST VALUE"] }
            Output.table(
                headers,
                entries.map { e in
                    var row = [
                        String(e.id), e.table, e.record.description, e.field,
                        "\(e.winnerStamp.site) \(Output.time(milliseconds: Int64(e.winnerStamp.time.milliseconds)))",
                        "\(e.loserStamp.site) \(Output.time(milliseconds: Int64(e.loserStamp.time.milliseconds)))",
                        e.restored ? "yes" : "no",
                    ]
                    if values {
                        row += [Output.truncated(Output.text(e.winner) ?? "(empty)", 30), Output.truncated(Output.text(e.loser) ?? "(empty)", 30)]
                    }
                    return row
                })
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a lost value again so that it wins.",
            discussion: """
                The restored value is a new change of this site: it replaces the current value \
                here and at every site that applies this site's changes.

                Example:
                  outpost conflicts restore 7
                """)

        @Argument(help: ArgumentHelp("The id from 'outpost conflicts list'.", valueName: "id"))
        var id: String

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let id = try Parse.id(id, what: "conflict")
            let archive = try storage.openArchive()
            try archive.restoreConflict(id: id)
            Output.write("restored conflict \(id): the lost value is current again and travels with this site's next change set\n")
        }
    }
}

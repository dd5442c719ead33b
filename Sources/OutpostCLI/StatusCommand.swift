import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost status`: who this site is and what its archive holds.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show this site, its record counts and its replication cursors.",
        discussion: """
            Prints the site code, role and headquarters, how many records each table holds, the \
            last sequence of this site's change log (the number to give 'changes export --since' \
            next time), open conflicts, quarantined changes, and for every peer the change-log \
            sequence received from it and acknowledged by it.

            Examples:
              outpost status
              outpost status --json
            """)

    @OptionGroup var storage: DataDirOptions
    @OptionGroup var output: JSONOption

    func run() throws {
        let archive = try storage.openArchive()
        let counts = try archive.counts()
        let last = try archive.lastSequence()
        let cursors = try archive.cursors()
        if output.json {
            Output.json(
                .object([
                    "site": .string(archive.site.code),
                    "role": .string(archive.role.rawValue),
                    "headquarters": .string(archive.headquarters.code),
                    "archive": .string(archive.path),
                    "last_sequence": .int(Int64(last)),
                    "counts": .object(counts.mapValues { .int(Int64($0)) }),
                    "cursors": .array(
                        cursors.map {
                            .object([
                                "peer": .string($0.peer),
                                "received_through": .int(Int64($0.receivedThrough)),
                                "sent_through": .int(Int64($0.sentThrough)),
                            ])
                        }),
                ]))
            return
        }
        Output.fields([
            ("site", archive.site.code),
            ("role", archive.role.rawValue),
            ("headquarters", archive.headquarters.code),
            ("archive", archive.path),
            ("last sequence", String(last)),
        ])
        Output.write("\nrecords:\n")
        let order = [
            "customers", "contacts", "complaints", "complaint_notes", "complaint_transitions",
            "claims", "claim_transitions", "claim_payments", "settings", "changelog", "conflicts", "quarantine",
        ]
        let names = order.filter { counts[$0] != nil } + counts.keys.filter { !order.contains($0) }.sorted()
        Output.fields(names.map { ($0, String(counts[$0]!)) }, indent: 2)
        Output.write("\ncursors:\n")
        if cursors.isEmpty {
            Output.write("  none: no change set applied here yet\n")
        } else {
            Output.table(
                ["  PEER", "RECEIVED THROUGH", "SENT THROUGH"],
                cursors.map { ["  " + $0.peer, String($0.receivedThrough), String($0.sentThrough)] })
        }
    }
}

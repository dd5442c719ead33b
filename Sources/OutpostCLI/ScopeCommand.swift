import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost scope …`: which customers each branch holds, and why (decided at headquarters).
struct ScopeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scope",
        abstract: "Show which customers each branch holds and why.",
        discussion: """
            Headquarters holds every customer. A branch holds its scope: the customers homed \
            at it, those it served (any contact, complaint, claim or edit it recorded for them, \
            for the served window after the last one reached headquarters, and while a \
            complaint or claim filed there is open), duplicates merged into one of those, \
            everything hanging off them, and every settings and SLA record. Headquarters \
            decides scope from its own records, never from what a branch says; a customer that \
            leaves a branch's scope is evicted there (a local purge, scrubbed like an erasure) \
            once headquarters holds everything the branch wrote about it.

            Examples, at headquarters:
              outpost scope list --site BJ01
              outpost scope window --served-days 30
              outpost dump --canonical --scope BJ01 > bj01-expected.json
            """,
        subcommands: [List.self, Window.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List each branch's customers with their reasons (at headquarters).",
            discussion: """
                Prints site, customer number, customer id and reasons: homed, served, open \
                complaint, open claim, merged. At a branch it says how many customers the branch \
                holds and how many evictions wait for headquarters to acknowledge this site's \
                changes to them.

                Examples:
                  outpost scope list
                  outpost scope list --site SH01 --json
                """)

        @Option(help: ArgumentHelp("Only this branch's scope.", valueName: "code"))
        var site: String?

        @Option(help: "List at most this many entries.")
        var limit = 10_000

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            guard archive.role == .hq else {
                let held = try archive.counts()["customers"] ?? 0
                let waiting = try archive.pendingEvictions()
                if output.json {
                    return Output.json(
                        .object(["site": .string(archive.site.code), "customers": .int(Int64(held)), "pending_evictions": .int(Int64(waiting))]))
                }
                return Output.write(
                    "\(archive.site) holds \(held) customers; \(waiting) evictions wait for headquarters to acknowledge this site's changes\n"
                        + "headquarters decides the scope: 'outpost scope list' there shows why\n")
            }
            let filter = try site.map { try Parse.site($0, option: "--site") }
            let entries = try archive.scope(of: filter, limit: max(1, limit))
            if output.json {
                return Output.json(
                    .array(
                        entries.map {
                            .object([
                                "site": .string($0.site), "customer": .string($0.customer), "number": $0.number.map(JSON.string) ?? .null,
                                "reasons": .array($0.reasons.map(JSON.string)),
                            ])
                        }))
            }
            if entries.isEmpty { return Output.write(filter.map { "\($0) holds no customers\n" } ?? "no branch holds a customer\n") }
            Output.table(
                ["SITE", "NUMBER", "CUSTOMER", "REASONS"],
                entries.map { [$0.site, Output.oneLine($0.number ?? "-"), $0.customer, $0.reasons.joined(separator: ", ")] })
        }
    }

    struct Window: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show or set how long a branch keeps a customer it served (at headquarters).",
            discussion: """
                A branch keeps a customer it served for this many days after its last change for \
                the customer reached headquarters (default 90). Setting it retires what lapsed \
                under the new window at once; after that headquarters' daemon retires lapsed \
                reasons hourly. A branch then evicts the customer unless it holds it for another \
                reason. 0 keeps a served customer only until the next retirement.

                Examples:
                  outpost scope window
                  outpost scope window --served-days 30
                """)

        @Option(help: ArgumentHelp("Days, 0 to 3650.", valueName: "days"))
        var servedDays: Int?

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let archive = try storage.openArchive()
            if let servedDays {
                try archive.setServedDays(servedDays)
                // A shorter window applies now: what lapsed under it leaves the branches.
                let lapsed = try archive.expireScope()
                Output.write(
                    "a branch keeps a customer it served for \(servedDays) days after its last change for it; \(lapsed) lapsed reasons retired now\n")
            } else {
                Output.write("a branch keeps a customer it served for \(try archive.servedDays()) days after its last change for it\n")
            }
        }
    }
}

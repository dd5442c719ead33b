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
            at it, those headquarters assigned to it (one customer, another branch's customers \
            or a region's), those it served (any contact, complaint, claim or edit it recorded for them, \
            for the served window after the last one reached headquarters, and while a \
            complaint or claim filed there is open), duplicates merged into one of those, \
            everything hanging off them, and every settings and SLA record. Headquarters \
            decides scope from its own records, never from what a branch says; a customer that \
            leaves a branch's scope is evicted there (a local purge, scrubbed like an erasure) \
            once headquarters holds everything the branch wrote about it.

            Examples, at headquarters:
              outpost scope list --site BJ01
              outpost scope assign --site BJ01 --branch BJ02
              outpost scope assignments
              outpost scope window --served-days 30
              outpost dump --canonical --scope BJ01 > bj01-expected.json
            """,
        subcommands: [List.self, Assign.self, Unassign.self, Assignments.self, Window.self])

    /// What `assign` and `unassign` name: exactly one of a customer, a branch or a region.
    struct TargetOptions: ParsableArguments {
        @Option(help: ArgumentHelp("The branch that is to hold what is assigned.", valueName: "code"))
        var site: String

        @Option(help: ArgumentHelp("One customer, by number or id.", valueName: "number"))
        var customer: String?

        @Option(help: ArgumentHelp("Every customer homed at this branch (a branch covering for another).", valueName: "code"))
        var branch: String?

        @Option(help: ArgumentHelp("Every customer of this region.", valueName: "region"))
        var region: String?

        func target() throws -> (AssignmentTarget, SiteID) {
            let site = try Parse.site(self.site, option: "--site")
            let given = [
                customer.map { AssignmentTarget.customer($0) }, try branch.map { .branch(try Parse.site($0, option: "--branch")) }, region.map { .region($0) },
            ]
            .compactMap { $0 }
            guard given.count == 1 else { throw ValidationError("give exactly one of --customer, --branch and --region") }
            return (given[0], site)
        }
    }

    struct Assign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Assign a customer, a branch's customers or a region to a branch (at headquarters).",
            discussion: """
                The branch holds what is assigned to it, whatever else happens, and its reports \
                count those customers as its own (headquarters' report on the branch too), until \
                the assignment is withdrawn with 'outpost scope unassign'. Assignments are \
                replicated to every site; the customers move in with their next pull.

                Examples:
                  outpost scope assign --site BJ01 --customer HQ-C-000042
                  outpost scope assign --site BJ01 --branch BJ02
                  outpost scope assign --site SH01 --region 华东
                """)

        @OptionGroup var what: TargetOptions
        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let (target, site) = try what.target()
            let archive = try storage.openArchive()
            let written = try archive.assign(target, to: site)
            if output.json { return Output.json(Assignments.json(written)) }
            Output.write("assigned to \(written.site): \(written.kind) \(Output.oneLine(written.target)) (\(written.customers) customers now)\n")
        }
    }

    struct Unassign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Withdraw an assignment (at headquarters).",
            discussion: """
                Its customers leave the branch with its next pull unless it holds them for \
                another reason (homed, served, an open case); what the branch wrote about them \
                and headquarters has not acknowledged stays until it has.

                Examples:
                  outpost scope unassign --site BJ01 --branch BJ02
                """)

        @OptionGroup var what: TargetOptions
        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let (target, site) = try what.target()
            try storage.openArchive().unassign(target, from: site)
            Output.write("withdrawn from \(site)\n")
        }
    }

    struct Assignments: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the assignments in force (at any site: they are replicated).",
            discussion: """
                Examples:
                  outpost scope assignments
                  outpost scope assignments --site BJ01 --json
                """)

        @Option(help: ArgumentHelp("Only this branch's assignments.", valueName: "code"))
        var site: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        static func json(_ a: Assignment) -> JSON {
            .object(["id": .string(a.id), "site": .string(a.site), "kind": .string(a.kind), "target": .string(a.target), "customers": .int(Int64(a.customers))])
        }

        func run() throws {
            let filter = try site.map { try Parse.site($0, option: "--site") }
            let all = try storage.openArchive().assignments(of: filter)
            if output.json { return Output.json(.array(all.map(Self.json))) }
            if all.isEmpty { return Output.write("no assignments\n") }
            Output.table(
                ["SITE", "KIND", "TARGET", "CUSTOMERS HERE"], all.map { [$0.site, $0.kind, Output.oneLine($0.target), String($0.customers)] })
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List each branch's customers with their reasons (at headquarters).",
            discussion: """
                Prints site, customer number, customer id and reasons: homed, assigned, served, \
                open complaint, open claim, merged. At a branch it says how many customers the branch \
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
            abstract: "Show or set how long a branch keeps a customer it served or fetched (at headquarters).",
            discussion: """
                A branch keeps a customer it served for this many days after its last change for \
                the customer reached headquarters (default 90). Setting it retires what lapsed \
                under the new window at once; after that headquarters' daemon retires lapsed \
                reasons hourly. A branch then evicts the customer unless it holds it for another \
                reason. 0 keeps a served customer only until the next retirement. A customer \
                a clerk fetched ('outpost customer fetch') stays for the fetched window after \
                the last fetch (default 7 days).

                Examples:
                  outpost scope window
                  outpost scope window --served-days 30
                  outpost scope window --fetched-days 1
                """)

        @Option(help: ArgumentHelp("Days, 0 to 3650.", valueName: "days"))
        var servedDays: Int?

        @Option(help: ArgumentHelp("Days a fetched customer stays, 0 to 3650.", valueName: "days"))
        var fetchedDays: Int?

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let archive = try storage.openArchive()
            if let servedDays { try archive.setServedDays(servedDays) }
            if let fetchedDays { try archive.setFetchedDays(fetchedDays) }
            // A shorter window applies now: what lapsed under it leaves the branches.
            let lapsed = servedDays != nil || fetchedDays != nil ? try archive.expireScope() : nil
            Output.write(
                "a branch keeps a customer it served for \(try archive.servedDays()) days after its last change for it, "
                    + "and one it fetched for \(try archive.fetchedDays()) days after the last fetch"
                    + (lapsed.map { "; \($0) lapsed reasons retired now" } ?? "") + "\n")
        }
    }
}

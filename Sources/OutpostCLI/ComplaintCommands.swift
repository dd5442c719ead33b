import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost complaint …`: complaints and their workflow.
struct ComplaintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "complaint",
        abstract: "Open complaints and move them through their workflow.",
        discussion: """
            A complaint moves forward through received → acknowledged → investigating → resolved → \
            closed, and may be reopened once resolved or closed. A complaint is referred to (REF) \
            by its number, e.g. SH01-2026-000001, or its id.

            Example:
              outpost complaint open --customer SH01-C-000001 --category late --waybill SF1234567890
              outpost complaint advance SH01-2026-000001
              outpost complaint list --overdue
              outpost complaint visit SH01-2026-000001 --satisfaction 4

            Deadlines (SLA) to acknowledge and to resolve depend on the category and severity \
            ('outpost settings sla' shows them). A complaint past a deadline is escalated: a \
            missed acknowledgement to the branch manager, a missed resolution to headquarters.
            """,
        subcommands: [Open.self, Note.self, Advance.self, Reopen.self, Visit.self, Show.self, List.self])

    struct Open: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open a complaint for a customer.",
            discussion: """
                Categories: late, lost, damaged, attitude, price, other. Severities: low, normal \
                (default), high, critical. The complaint is numbered SITE-YEAR-NNNNNN and starts \
                in stage received.

                Example:
                  outpost complaint open --customer SH01-C-000001 --category damaged \\
                    --waybill SF1234567890 --severity high --description "carton crushed" --assignee 张伟
                """)

        @Option(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var customer: String

        @Option(help: ArgumentHelp("late, lost, damaged, attitude, price or other.", valueName: "category"))
        var category: String

        @Option(help: ArgumentHelp("The waybill the complaint is about.", valueName: "waybill"))
        var waybill: String?

        @Option(help: ArgumentHelp("low, normal, high or critical.", valueName: "severity"))
        var severity: String = "normal"

        @Option(help: ArgumentHelp("What happened.", valueName: "text"))
        var description: String?

        @Option(help: ArgumentHelp("Who handles it.", valueName: "name"))
        var assignee: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let category = try Parse.category(category)
            let severity = try Parse.severity(severity)
            let archive = try storage.openArchive()
            let view = try archive.openComplaint(
                customer: customer, category: category, waybill: waybill, severity: severity,
                description: description, assignee: assignee)
            ComplaintOutput.show(view, archive: archive, json: output.json)
        }
    }

    struct Note: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a note to a complaint's timeline.",
            discussion: """
                Notes are never changed once written.

                Example:
                  outpost complaint note SH01-2026-000001 "called the customer back" --author 张伟
                """)

        @Argument(help: ArgumentHelp("The complaint's number or id.", valueName: "ref"))
        var ref: String

        @Argument(help: ArgumentHelp("The note.", valueName: "text"))
        var text: String

        @Option(help: ArgumentHelp("Who wrote it.", valueName: "name"))
        var author: String?

        @OptionGroup var storage: DataDirOptions

        func run() throws {
            let archive = try storage.openArchive()
            try archive.noteComplaint(ref, text: text, author: author)
            let view = try archive.complaint(ref)
            Output.write("noted on complaint \(ComplaintOutput.label(view.record)) (\(Output.pluralize(view.notes.count, "note")))\n")
        }
    }

    struct Advance: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a complaint to its next stage, or forward to --to STAGE.",
            discussion: """
                Stages: received, acknowledged, investigating, resolved, closed. A complaint never \
                moves backwards; 'complaint reopen' starts a resolved or closed one again.

                Examples:
                  outpost complaint advance SH01-2026-000001
                  outpost complaint advance SH01-2026-000001 --to resolved
                """)

        @Argument(help: ArgumentHelp("The complaint's number or id.", valueName: "ref"))
        var ref: String

        @Option(help: ArgumentHelp("The stage to move to (default: the next one).", valueName: "stage"))
        var to: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let stage = try to.map { try Parse.stage($0, option: "--to") }
            let archive = try storage.openArchive()
            ComplaintOutput.show(try archive.advanceComplaint(ref, to: stage), archive: archive, json: output.json)
        }
    }

    struct Reopen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Reopen a resolved or closed complaint.",
            discussion: """
                The complaint starts again at received, in a new round (epoch) of its timeline.

                Example:
                  outpost complaint reopen SH01-2026-000001
                """)

        @Argument(help: ArgumentHelp("The complaint's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            ComplaintOutput.show(try archive.reopenComplaint(ref), archive: archive, json: output.json)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a complaint with its timeline and notes.",
            discussion: """
                Example:
                  outpost complaint show SH01-2026-000001
                """)

        @Argument(help: ArgumentHelp("The complaint's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            ComplaintOutput.show(try archive.complaint(ref), archive: archive, json: output.json)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List complaints, newest first.",
            discussion: """
                --overdue lists the complaints with a step still open past its deadline, most \
                overdue first, with the escalation each needs. At a branch it shows the \
                complaints opened there; at headquarters all of them, or one branch's.

                Examples:
                  outpost complaint list
                  outpost complaint list --status investigating
                  outpost complaint list --overdue
                """)

        @Option(help: ArgumentHelp("Only complaints in this stage: received, acknowledged, investigating, resolved or closed.", valueName: "stage"))
        var status: String?

        @Flag(help: "Only complaints past a deadline (acknowledge or resolve), most overdue first.")
        var overdue = false

        @Option(help: ArgumentHelp("Only complaints opened at this branch (default with --overdue at a branch: this one).", valueName: "code"))
        var branch: String?

        @Option(help: ArgumentHelp("The most complaints to list.", valueName: "n"))
        var limit: Int = 100

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let stage = try status.map { try Parse.stage($0, option: "--status") }
            guard limit > 0 else { throw CLIError("--limit must be at least 1") }
            let branch = try branch.map { try Parse.site($0, option: "--branch").code }
            let archive = try storage.openArchive()
            let scope = branch ?? (overdue && archive.role == .branch ? archive.site.code : nil)
            let views = try archive.complaints(stage: stage, overdue: overdue, branch: scope, limit: limit)
            if output.json { return Output.json(.array(views.map(\.json))) }
            if views.isEmpty { return Output.write(overdue ? "no overdue complaints\n" : "no complaints\n") }
            if overdue {
                Output.table(
                    ["NUMBER", "STATUS", "CATEGORY", "SEVERITY", "MISSED", "DUE", "ESCALATE TO"],
                    views.map { v in
                        let r = v.sla.current
                        let (step, due) = r.acknowledgedAt == nil ? ("acknowledge", r.acknowledgeBy) : ("resolve", r.resolveBy)
                        return [
                            ComplaintOutput.label(v.record), v.stage.name, Output.text(v.record["category"]) ?? "-",
                            Output.text(v.record["severity"]) ?? "-", step, Output.time(milliseconds: due), ComplaintOutput.escalation(v.sla),
                        ]
                    })
                return
            }
            Output.table(
                ["NUMBER", "STATUS", "CATEGORY", "SEVERITY", "WAYBILL", "OPENED", "SLA"],
                views.map { v in
                    [
                        ComplaintOutput.label(v.record), v.stage.name, Output.text(v.record["category"]) ?? "-",
                        Output.text(v.record["severity"]) ?? "-", Output.text(v.record["waybill"]) ?? "-",
                        Output.time(v.record["opened_at"]) ?? "-", v.sla.breached ? "breached" : "ok",
                    ]
                })
        }
    }
}

extension ComplaintCommand {
    struct Visit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a return visit (回访) after a complaint was resolved.",
            discussion: """
                The customer's satisfaction, 1 (very unhappy) to 5 (very happy), counts in the \
                complaints report and in the customer's loyalty score.

                Example:
                  outpost complaint visit SH01-2026-000001 --satisfaction 4 --staff 李娜
                """)

        @Argument(help: ArgumentHelp("The complaint's number or id.", valueName: "ref"))
        var ref: String

        @Option(help: ArgumentHelp("1 (very unhappy) to 5 (very happy).", valueName: "1-5"))
        var satisfaction: Int

        @Option(help: ArgumentHelp("What the customer said.", valueName: "text"))
        var summary: String?

        @Option(help: ArgumentHelp("Who made the visit.", valueName: "name"))
        var staff: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            guard (1...5).contains(satisfaction) else { throw CLIError("--satisfaction is 1 (very unhappy) to 5 (very happy)") }
            let archive = try storage.openArchive()
            let key = try archive.returnVisit(complaint: ref, satisfaction: satisfaction, summary: summary, staff: staff)
            if output.json { return Output.json(.object(["id": .string(key.description), "satisfaction": .int(Int64(satisfaction))])) }
            Output.write("recorded return visit \(key) (satisfaction \(satisfaction))\n")
        }
    }
}

/// How complaints print.
enum ComplaintOutput {
    static func escalation(_ sla: ComplaintSLA) -> String {
        switch sla.escalation {
        case .none: "-"
        case .branch: "branch manager"
        case .headquarters: "headquarters"
        }
    }

    static func label(_ record: Record) -> String {
        record["number"].textValue ?? record.id.description
    }

    /// The number of the customer a record refers to, or its id.
    static func customerLabel(_ value: Value, archive: Archive) -> String? {
        guard let id = Output.text(value) else { return nil }
        return (try? archive.customer(id)).map(CustomerOutput.label) ?? id
    }

    /// Transitions in workflow order: by round, then time, then stage (two steps in the same
    /// millisecond still print in order).
    static func timeline(_ transitions: [Record]) -> [Record] {
        transitions.sorted { a, b in
            let x = [a["epoch"].integerValue ?? 0, a["at"].integerValue ?? 0, a["stage"].integerValue ?? 0]
            let y = [b["epoch"].integerValue ?? 0, b["at"].integerValue ?? 0, b["stage"].integerValue ?? 0]
            return x.lexicographicallyPrecedes(y)
        }
    }

    static func deadline(_ due: Int64, done: Int64?, breached: Bool) -> String {
        let when = Output.time(milliseconds: due)
        switch (done, breached) {
        case (.some(let at), false): return "\(when) (met at \(Output.time(milliseconds: at)))"
        case (.some(let at), true): return "\(when) (MISSED: done at \(Output.time(milliseconds: at)))"
        case (nil, true): return "\(when) (MISSED)"
        case (nil, false): return when
        }
    }

    static func show(_ view: ComplaintView, archive: Archive, json: Bool) {
        if json { return Output.json(view.json) }
        let r = view.record
        Output.fields([
            ("number", Output.text(r["number"])),
            ("id", r.id.description),
            ("status", view.position.epoch > 0 ? "\(view.stage.name) (reopened \(Output.pluralize(view.position.epoch, "time")))" : view.stage.name),
            ("customer", customerLabel(r["customer_id"], archive: archive)),
            ("category", Output.text(r["category"])),
            ("severity", Output.text(r["severity"])),
            ("waybill", Output.text(r["waybill"])),
            ("assignee", Output.text(r["assignee"])),
            ("description", Output.text(r["description"])),
            ("opened", Output.time(r["opened_at"])),
            ("branch", Output.text(r["branch"])),
            ("acknowledge by", deadline(view.sla.current.acknowledgeBy, done: view.sla.current.acknowledgedAt, breached: view.sla.current.acknowledgeBreached)),
            ("resolve by", deadline(view.sla.current.resolveBy, done: view.sla.current.resolvedAt, breached: view.sla.current.resolveBreached)),
            ("escalated to", view.sla.escalation == .none ? nil : escalation(view.sla)),
        ])
        if !view.transitions.isEmpty {
            Output.write("timeline:\n")
            Output.table(
                ["  WHEN", "STAGE", "ROUND", "SITE"],
                timeline(view.transitions).map { t in
                    let stage = t["stage"].integerValue.flatMap { ComplaintStage(rawValue: Int($0)) }?.name ?? "?"
                    return ["  " + (Output.time(t["at"]) ?? "-"), stage, Output.text(t["epoch"]) ?? "0", Output.text(t["site"]) ?? "-"]
                })
        }
        if !view.notes.isEmpty {
            Output.write("notes:\n")
            for n in view.notes {
                let author = Output.text(n["author"]).map { " \($0)" } ?? ""
                Output.write("  \(Output.time(n["at"]) ?? "-")\(Output.oneLine(author)): \(Output.oneLine(Output.text(n["text"]) ?? ""))\n")
            }
        }
    }
}

import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost claim …`: compensation claims and their money.
struct ClaimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "claim",
        abstract: "File, assess, approve, pay and close compensation claims.",
        discussion: """
            A claim goes filed → assessing → approved or rejected → paid → closed. Amounts are \
            yuan with up to two decimals, e.g. 1234.50. A branch approves up to the approval \
            threshold ('outpost settings approval-threshold'); above it only headquarters \
            approves. A claim is referred to (REF) by its number, e.g. SH01-2026-CL000001, or its id.

            Example:
              outpost claim file --customer SH01-C-000001 --waybill SF1234567890 --amount 800.00
              outpost claim approve SH01-2026-CL000001 --amount 650.00
              outpost claim pay SH01-2026-CL000001 --amount 650.00 --reference TX-2291
            """,
        subcommands: [File.self, Assess.self, Approve.self, Reject.self, Pay.self, Close.self, Show.self, List.self])

    struct File: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "File a claim for a customer.",
            discussion: """
                The claim is numbered SITE-YEAR-CLNNNNNN. Link it to a complaint with --complaint.

                Example:
                  outpost claim file --customer SH01-C-000001 --complaint SH01-2026-000001 \\
                    --waybill SF1234567890 --amount 800.00 --evidence "photos in folder 2291"
                """)

        @Option(help: ArgumentHelp("The customer's number or id.", valueName: "ref"))
        var customer: String

        @Option(help: ArgumentHelp("The complaint this claim belongs to.", valueName: "ref"))
        var complaint: String?

        @Option(help: ArgumentHelp("The waybill of the shipment.", valueName: "waybill"))
        var waybill: String?

        @Option(parsing: .unconditional, help: ArgumentHelp("The amount claimed, in yuan.", valueName: "yuan"))
        var amount: String

        @Option(help: ArgumentHelp("What supports the claim.", valueName: "text"))
        var evidence: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let fen = try Parse.amount(amount, option: "--amount")
            let archive = try storage.openArchive()
            let view = try archive.fileClaim(customer: customer, complaint: complaint, waybill: waybill, claimedFen: fen, evidence: evidence)
            ClaimOutput.show(view, archive: archive, json: output.json)
        }
    }

    struct Assess: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record the assessed loss of a claim.",
            discussion: """
                Example:
                  outpost claim assess SH01-2026-CL000001 --amount 700.00
                """)

        @Argument(help: ArgumentHelp("The claim's number or id.", valueName: "ref"))
        var ref: String

        @Option(parsing: .unconditional, help: ArgumentHelp("The assessed amount, in yuan.", valueName: "yuan"))
        var amount: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let fen = try Parse.amount(amount, option: "--amount")
            let archive = try storage.openArchive()
            ClaimOutput.show(try archive.assessClaim(ref, assessedFen: fen), archive: archive, json: output.json)
        }
    }

    struct Approve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Approve a claim for an amount.",
            discussion: """
                The amount may not exceed the amount claimed. A branch approves up to the approval \
                threshold (5000.00 yuan unless headquarters set another); above it, headquarters \
                approves.

                Example:
                  outpost claim approve SH01-2026-CL000001 --amount 650.00
                """)

        @Argument(help: ArgumentHelp("The claim's number or id.", valueName: "ref"))
        var ref: String

        @Option(parsing: .unconditional, help: ArgumentHelp("The approved amount, in yuan.", valueName: "yuan"))
        var amount: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let fen = try Parse.amount(amount, option: "--amount")
            let archive = try storage.openArchive()
            ClaimOutput.show(try archive.approveClaim(ref, amountFen: fen), archive: archive, json: output.json)
        }
    }

    struct Reject: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Reject a claim.",
            discussion: """
                A claim with payments cannot be rejected.

                Example:
                  outpost claim reject SH01-2026-CL000001
                """)

        @Argument(help: ArgumentHelp("The claim's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            ClaimOutput.show(try archive.rejectClaim(ref), archive: archive, json: output.json)
        }
    }

    struct Pay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a payment on an approved claim (negative: a reversal).",
            discussion: """
                Payments may add up to the approved amount, never more; a negative amount reverses \
                part of what was paid. The claim becomes paid when the payments reach the approved \
                amount.

                Examples:
                  outpost claim pay SH01-2026-CL000001 --amount 650.00 --reference TX-2291
                  outpost claim pay SH01-2026-CL000001 --amount -50.00 --reference TX-2291-R
                """)

        @Argument(help: ArgumentHelp("The claim's number or id.", valueName: "ref"))
        var ref: String

        @Option(parsing: .unconditional, help: ArgumentHelp("The amount paid, in yuan; negative for a reversal.", valueName: "yuan"))
        var amount: String

        @Option(help: ArgumentHelp("The bank or cash reference of the payment.", valueName: "text"))
        var reference: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let fen = try Parse.amount(amount, option: "--amount", allowNegative: true)
            let archive = try storage.openArchive()
            ClaimOutput.show(try archive.payClaim(ref, amountFen: fen, reference: reference), archive: archive, json: output.json)
        }
    }

    struct Close: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Close a paid, rejected or approved claim.",
            discussion: """
                Example:
                  outpost claim close SH01-2026-CL000001
                """)

        @Argument(help: ArgumentHelp("The claim's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            ClaimOutput.show(try archive.closeClaim(ref), archive: archive, json: output.json)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a claim with its timeline and payments.",
            discussion: """
                Example:
                  outpost claim show SH01-2026-CL000001 --json
                """)

        @Argument(help: ArgumentHelp("The claim's number or id.", valueName: "ref"))
        var ref: String

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            ClaimOutput.show(try archive.claim(ref), archive: archive, json: output.json)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List claims, newest first.",
            discussion: """
                Example:
                  outpost claim list --limit 20
                """)

        @Option(help: ArgumentHelp("The most claims to list.", valueName: "n"))
        var limit: Int = 100

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            guard limit > 0 else { throw CLIError("--limit must be at least 1") }
            let archive = try storage.openArchive()
            let views = try archive.claims(limit: limit)
            if output.json { return Output.json(.array(views.map(\.json))) }
            if views.isEmpty { return Output.write("no claims\n") }
            Output.table(
                ["NUMBER", "STATUS", "CLAIMED", "APPROVED", "PAID", "WAYBILL"],
                views.map { v in
                    [
                        ClaimOutput.label(v.record), v.stage.name + (v.overpaidFen > 0 ? " (overpaid)" : ""),
                        Output.money(v.record["claimed_fen"]) ?? "-", v.approvedFen.map(Money.format) ?? "-",
                        Money.format(v.paidFen), Output.text(v.record["waybill"]) ?? "-",
                    ]
                })
        }
    }
}

/// How claims print.
enum ClaimOutput {
    static func label(_ record: Record) -> String {
        record["number"].textValue ?? record.id.description
    }

    static func show(_ view: ClaimView, archive: Archive, json: Bool) {
        if json { return Output.json(view.json) }
        let r = view.record
        let complaint = Output.text(r["complaint_id"]).map { id in (try? archive.complaint(id)).map { ComplaintOutput.label($0.record) } ?? id }
        Output.fields([
            ("number", Output.text(r["number"])),
            ("id", r.id.description),
            ("status", view.stage.name),
            ("customer", ComplaintOutput.customerLabel(r["customer_id"], archive: archive)),
            ("complaint", complaint),
            ("waybill", Output.text(r["waybill"])),
            ("claimed", Output.money(r["claimed_fen"])),
            ("assessed", Output.money(r["assessed_fen"])),
            ("approved", view.approvedFen.map(Money.format)),
            ("paid", Money.format(view.paidFen)),
            ("overpaid", view.overpaidFen > 0 ? "\(Money.format(view.overpaidFen)) (payments at two sites crossed; recover it with a reversal)" : nil),
            ("currency", Output.text(r["currency"])),
            ("evidence", Output.text(r["evidence"])),
            ("filed", Output.time(r["filed_at"])),
            ("branch", Output.text(r["branch"])),
        ])
        if !view.transitions.isEmpty {
            Output.write("timeline:\n")
            Output.table(
                ["  WHEN", "STAGE", "AMOUNT", "SITE"],
                view.transitions.sorted { a, b in
                    [a["at"].integerValue ?? 0, a["stage"].integerValue ?? 0].lexicographicallyPrecedes([
                        b["at"].integerValue ?? 0, b["stage"].integerValue ?? 0,
                    ])
                }.map { t in
                    let stage = t["stage"].integerValue.flatMap { ClaimStage(rawValue: Int($0)) }?.name ?? "?"
                    return ["  " + (Output.time(t["at"]) ?? "-"), stage, Output.money(t["amount_fen"]) ?? "", Output.text(t["site"]) ?? "-"]
                })
        }
        if !view.payments.isEmpty {
            Output.write("payments:\n")
            Output.table(
                ["  WHEN", "AMOUNT", "REFERENCE", "SITE"],
                view.payments.map { p in
                    [
                        "  " + (Output.time(p["at"]) ?? "-"), Output.money(p["amount_fen"]) ?? "-", Output.text(p["reference"]) ?? "-",
                        Output.text(p["site"]) ?? "-",
                    ]
                })
        }
    }
}

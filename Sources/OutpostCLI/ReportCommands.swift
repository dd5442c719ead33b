import ArgumentParser
import CustomerArchive
import Foundation
import Replication

/// `outpost report …`: customer value, complaints and claims.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Report on customer value, complaints and claims.",
        discussion: """
            At a branch, reports cover the customers (complaints, claims) of that branch. At \
            headquarters they cover the whole country, with a row per branch, or one branch \
            with --branch. Every report prints aligned text, or --json, or --csv for a \
            spreadsheet.

            Customer value is computed from the archive, never typed in: monthly business \
            figures ('outpost customer figures'), the customer file, complaints, praise and \
            return visits. The rules (ABC cut-offs, class D, quadrant cut-offs, index \
            weights) are set at headquarters: 'outpost settings value'.

            Examples:
              outpost report abc
              outpost report quadrants --branch SH01 --csv > sh01-quadrants.csv
              outpost report value --from 2025-01 --to 2025-12 --json
              outpost report complaints --from 2026-01-01 --to 2026-03-31
              outpost report claims
            """,
        subcommands: [ABC.self, Quadrants.self, Value.self, Complaints.self, Claims.self])

    struct ABC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "abc",
            abstract: "ABC(D) classes: the few customers that bring most of the profit.",
            discussion: """
                Customers are ranked by profit (or revenue, as headquarters set) over the period. \
                A: those that together bring the first 80% of the total (the customer crossing \
                80% is still A); B: up to 95%; C: the rest. D, whatever the share: credit rating C \
                or D, 3 or more overdue payments, or 3 or more complaints with a loyalty score \
                below 40. (Defaults; 'outpost settings value' shows the rules in force.)

                Examples:
                  outpost report abc
                  outpost report abc --branch SH01 --from 2025-01 --to 2025-12 --csv
                """)

        @OptionGroup var options: ValueReportOptions

        func run() throws {
            let report = try options.report()
            try options.print(report, order: .basis) {
                ReportOutput.abcSummary(report)
            }
        }
    }

    struct Quadrants: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "quadrants",
            abstract: "Lifetime-value quadrants: historical value × future potential.",
            discussion: """
                Historical value: the customer's profit (or revenue) over the period; high from \
                the median of the customers reported on, unless headquarters set an amount. \
                Future potential (0-100): the mean of the growth score and the share of wallet \
                still open (100 - share); high above 50 (a flat customer of unknown share \
                scores 50: no sign of potential).

                  retain     high history, high potential   more value-added services
                  cultivate  low history, high potential    grow them into mature customers
                  maintain   high history, low potential    keep terms, find what limits growth
                  convert    low history, low potential     price and credit; else let go

                Example:
                  outpost report quadrants --json
                """)

        @OptionGroup var options: ValueReportOptions

        func run() throws {
            let report = try options.report()
            try options.print(report, order: .quadrant) {
                ReportOutput.quadrantSummary(report)
            }
        }
    }

    struct Value: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "value",
            abstract: "The customer value index over six dimensions, highest first.",
            discussion: """
                Each dimension scores 0-100 from indicators in the customer file and its \
                history; the index is their weighted mean.

                  attractiveness  key account; scale (revenue vs the largest in scope)
                  profitability   margin (full at 30%); profit vs the largest in scope
                  relationship    years as a customer (full at 5); praise minus complaints
                  credit          credit rating; overdue payments
                  loyalty         share of wallet; months with shipments; return-visit satisfaction
                  growth          shipments in the later vs the earlier half of the period

                Default weights: profitability 25, loyalty 20, credit 15, relationship 15, \
                growth 15, attractiveness 10 ('outpost settings value' explains and changes them).

                Example:
                  outpost report value --limit 50
                """)

        @OptionGroup var options: ValueReportOptions

        func run() throws {
            let report = try options.report()
            try options.print(report, order: .index) {
                ReportOutput.indexSummary(report)
            }
        }
    }

    struct Complaints: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "complaints",
            abstract: "Complaints by category: handling times, SLA breaches, satisfaction.",
            discussion: """
                For complaints opened in the period (all time by default): how many, the median \
                time to acknowledge and to resolve (first handling), the share that missed a \
                deadline in any round, and the return visits' mean satisfaction. At headquarters, \
                rows per branch, then the country.

                Example:
                  outpost report complaints --from 2026-10-01 --to 2026-10-31 --csv
                """)

        @OptionGroup var scope: ReportScopeOptions
        @OptionGroup var format: ReportFormatOptions

        func run() throws {
            let (from, to) = try scope.dates()
            let archive = try scope.storage.openArchive()
            let rows = try archive.complaintReport(branch: try scope.branchCode(), from: from, to: to)
            ReportOutput.complaints(rows, format: format)
        }
    }

    struct Claims: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "claims",
            abstract: "Claims by branch and category: open claims, amounts claimed, approved, paid.",
            discussion: """
                For claims filed in the period (all time by default), grouped by the category of \
                the complaint each follows ("none" when filed without one). Overpaid claims \
                (two offline sites paid together above the approval) are counted for review.

                Example:
                  outpost report claims --branch SH01
                """)

        @OptionGroup var scope: ReportScopeOptions
        @OptionGroup var format: ReportFormatOptions

        func run() throws {
            let (from, to) = try scope.dates()
            let archive = try scope.storage.openArchive()
            let rows = try archive.claimReport(branch: try scope.branchCode(), from: from, to: to)
            ReportOutput.claims(rows, format: format)
        }
    }
}

/// `--json` / `--csv`.
struct ReportFormatOptions: ParsableArguments {
    @Flag(help: "Print JSON (pretty, keys sorted).")
    var json = false

    @Flag(help: "Print CSV (UTF-8, a header row first), for spreadsheets.")
    var csv = false

    func validate() throws {
        if json && csv { throw ValidationError("choose one of --json and --csv") }
    }
}

/// `--branch`, `--from`, `--to` for the complaint and claim reports (dates).
struct ReportScopeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("One branch (at headquarters; a branch reports on itself).", valueName: "code"))
    var branch: String?

    @Option(help: ArgumentHelp("The first day, YYYY-MM-DD (or a month, YYYY-MM), company time.", valueName: "date"))
    var from: String?

    @Option(help: ArgumentHelp("The last day, included (or a month).", valueName: "date"))
    var to: String?

    @OptionGroup var storage: DataDirOptions

    func branchCode() throws -> String? {
        try branch.map { try Parse.site($0, option: "--branch").code }
    }

    func dates() throws -> (CivilDate?, CivilDate?) {
        func parse(_ text: String, option: String, end: Bool) throws -> CivilDate {
            if let d = CivilDate(text) { return d }
            if let m = Month(text) { return end ? m.last : m.first }
            throw CLIError("\(option): '\(text.prefix(24))' is not a date YYYY-MM-DD or a month YYYY-MM")
        }
        let f = try from.map { try parse($0, option: "--from", end: false) }
        let t = try to.map { try parse($0, option: "--to", end: true) }
        if let f, let t, t < f { throw CLIError("--to (\(t)) is before --from (\(f))") }
        return (f, t)
    }
}

/// Options of the three value reports.
struct ValueReportOptions: ParsableArguments {
    @Option(help: ArgumentHelp("One branch (at headquarters; a branch reports on itself).", valueName: "code"))
    var branch: String?

    @Option(help: ArgumentHelp("The first month, YYYY-MM (default: twelve months before --to).", valueName: "month"))
    var from: String?

    @Option(help: ArgumentHelp("The last month, included (default: the last complete month).", valueName: "month"))
    var to: String?

    @Option(help: ArgumentHelp("Customers to list in the text output (all with --json or --csv).", valueName: "n"))
    var limit: Int = 20

    @OptionGroup var format: ReportFormatOptions
    @OptionGroup var storage: DataDirOptions

    enum Order { case basis, quadrant, index }

    func report() throws -> ValueReport {
        func month(_ text: String?, _ option: String) throws -> Month? {
            try text.map { t in
                guard let m = Month(t) else { throw CLIError("\(option): '\(t.prefix(24))' is not a month YYYY-MM") }
                return m
            }
        }
        let from = try month(from, "--from")
        let to = try month(to, "--to")
        if let from, let to, to < from { throw CLIError("--to (\(to)) is before --from (\(from))") }
        guard limit >= 0 else { throw CLIError("--limit must not be negative") }
        let branch = try branch.map { try Parse.site($0, option: "--branch").code }
        return try storage.openArchive().valueReport(branch: branch, from: from, to: to)
    }

    func print(_ report: ValueReport, order: Order, summary: () -> Void) throws {
        let sorted = ReportOutput.sorted(report.valuations, order)
        if format.json { return Output.json(ReportOutput.json(report, sorted)) }
        if format.csv { return Output.write(ReportOutput.csv(report, sorted)) }
        let scope = report.branch.map { "branch \($0)" } ?? "all branches"
        Output.write("\(report.valuations.count) customers, \(scope), \(report.from) to \(report.to); basis: \(report.rules.basis.rawValue)\n")
        if !report.hasFigures {
            Output.write(
                "note: no monthly figures are recorded for this period, so every customer counts 0 ('outpost customer figures' records them)\n")
        }
        guard !report.valuations.isEmpty else { return }
        Output.write("\n")
        summary()
        if limit > 0 {
            Output.write("\n")
            ReportOutput.customers(Array(sorted.prefix(limit)), order: order)
            if sorted.count > limit {
                Output.write("… \(sorted.count - limit) more (--limit, --csv or --json for all)\n")
            }
        }
    }
}

/// How reports print.
enum ReportOutput {
    static func percent(_ x: Double) -> String { String(format: "%.1f%%", x) }
    static func score(_ x: Double) -> String { String(format: "%.1f", x) }

    static func sorted(_ v: [CustomerValuation], _ order: ValueReportOptions.Order) -> [CustomerValuation] {
        switch order {
        case .basis:
            v.sorted { $0.basisFen != $1.basisFen ? $0.basisFen > $1.basisFen : $0.facts.number < $1.facts.number }
        case .index:
            v.sorted { $0.index != $1.index ? $0.index > $1.index : $0.facts.number < $1.facts.number }
        case .quadrant:
            v.sorted { a, b in
                let (x, y) = (Quadrant.allCases.firstIndex(of: a.quadrant)!, Quadrant.allCases.firstIndex(of: b.quadrant)!)
                return x != y ? x < y : a.basisFen != b.basisFen ? a.basisFen > b.basisFen : a.facts.number < b.facts.number
            }
        }
    }

    static func abcSummary(_ report: ValueReport) {
        let total = report.valuations.reduce(Int64(0)) { $0 + max(0, $1.basisFen) }
        Output.table(
            ["CLASS", "CUSTOMERS", report.rules.basis.rawValue.uppercased(), "SHARE", "WHAT TO DO"],
            ValueClass.allCases.map { c in
                let members = report.valuations.filter { $0.valueClass == c }
                let sum = members.reduce(Int64(0)) { $0 + $1.basisFen }
                return [
                    c.rawValue, String(members.count), Money.format(sum), total > 0 ? percent(Double(max(0, sum)) * 100 / Double(total)) : "-", c.action,
                ]
            })
        byBranch(report, ValueClass.allCases.map(\.rawValue)) { $0.valueClass.rawValue }
    }

    static func quadrantSummary(_ report: ValueReport) {
        Output.write("history high from \(Money.format(report.historyCutFen)); potential high above \(report.rules.quadrantPotentialScore)\n")
        Output.table(
            ["QUADRANT", "CUSTOMERS", "WHAT TO DO"],
            Quadrant.allCases.map { q in [q.rawValue, String(report.valuations.filter { $0.quadrant == q }.count), q.action] })
        byBranch(report, Quadrant.allCases.map(\.rawValue)) { $0.quadrant.rawValue }
    }

    static func indexSummary(_ report: ValueReport) {
        let n = Double(report.valuations.count)
        Output.table(
            ["DIMENSION", "WEIGHT", "MEAN SCORE"],
            ValueDimension.allCases.map { d in
                [d.rawValue, String(report.rules.weights[d] ?? 0), score(report.valuations.reduce(0) { $0 + $1.dimensions[d]! } / n)]
            } + [["index", "", score(report.valuations.reduce(0) { $0 + $1.index } / n)]])
    }

    /// At headquarters for the whole country: one row per branch with the count per group.
    static func byBranch(_ report: ValueReport, _ groups: [String], _ group: (CustomerValuation) -> String) {
        guard report.branch == nil else { return }
        var counts: [String: [String: Int]] = [:]
        for v in report.valuations { counts[v.facts.homeBranch, default: [:]][group(v), default: 0] += 1 }
        Output.write("\nby branch:\n")
        Output.table(
            ["BRANCH"] + groups.map { $0.uppercased() } + ["CUSTOMERS"],
            counts.keys.sorted().map { b in
                [b.isEmpty ? "-" : b] + groups.map { String(counts[b]![$0] ?? 0) } + [String(counts[b]!.values.reduce(0, +))]
            })
    }

    static func customers(_ rows: [CustomerValuation], order: ValueReportOptions.Order) {
        switch order {
        case .basis:
            Output.table(
                ["NUMBER", "BRANCH", "CLASS", "AMOUNT", "SHARE", "CUMULATIVE", "WHY D"],
                rows.map { v in
                    [
                        v.facts.number, v.facts.homeBranch, v.valueClass.rawValue, Money.format(v.basisFen), percent(v.sharePct),
                        percent(v.cumulativePct), v.dReason ?? "",
                    ]
                })
        case .quadrant:
            Output.table(
                ["NUMBER", "BRANCH", "QUADRANT", "HISTORY", "POTENTIAL"],
                rows.map { v in [v.facts.number, v.facts.homeBranch, v.quadrant.rawValue, Money.format(v.basisFen), score(v.potential)] })
        case .index:
            Output.table(
                ["NUMBER", "BRANCH", "INDEX"] + ValueDimension.allCases.map { String($0.rawValue.prefix(7)).uppercased() },
                rows.map { v in
                    [v.facts.number, v.facts.homeBranch, score(v.index)] + ValueDimension.allCases.map { score(v.dimensions[$0]!) }
                })
        }
    }

    static let csvHeader =
        ["number", "id", "home_branch", "class", "d_reason", "basis", "amount", "share_pct", "cumulative_pct", "quadrant", "potential", "index"]
        + ValueDimension.allCases.map(\.rawValue)

    static func csv(_ report: ValueReport, _ rows: [CustomerValuation]) -> String {
        var out = CSV.line(csvHeader)
        for v in rows {
            out += CSV.line(
                [
                    v.facts.number, v.facts.id.description, v.facts.homeBranch, v.valueClass.rawValue, v.dReason ?? "", report.rules.basis.rawValue,
                    Money.format(v.basisFen), String(format: "%.2f", v.sharePct), String(format: "%.2f", v.cumulativePct), v.quadrant.rawValue,
                    score(v.potential), score(v.index),
                ] + ValueDimension.allCases.map { score(v.dimensions[$0]!) })
        }
        return out
    }

    static func json(_ report: ValueReport, _ rows: [CustomerValuation]) -> JSON {
        func rounded(_ x: Double) -> JSON { .double((x * 100).rounded() / 100) }
        var weights: [String: JSON] = [:]
        for d in ValueDimension.allCases { weights[d.rawValue] = .int(Int64(report.rules.weights[d] ?? 0)) }
        return .object([
            "from": .string(report.from.description), "to": .string(report.to.description),
            "branch": report.branch.map(JSON.string) ?? .null, "has_figures": .bool(report.hasFigures),
            "rules": .object([
                "basis": .string(report.rules.basis.rawValue), "a_cumulative_pct": .int(Int64(report.rules.aCumulativePct)),
                "b_cumulative_pct": .int(Int64(report.rules.bCumulativePct)), "history_cut_fen": .int(report.historyCutFen),
                "potential_cut": .int(Int64(report.rules.quadrantPotentialScore)), "weights": .object(weights),
            ]),
            "customers": .array(
                rows.map { v in
                    var dims: [String: JSON] = [:]
                    for d in ValueDimension.allCases { dims[d.rawValue] = rounded(v.dimensions[d]!) }
                    return .object([
                        "number": .string(v.facts.number), "id": .string(v.facts.id.description), "home_branch": .string(v.facts.homeBranch),
                        "class": .string(v.valueClass.rawValue), "d_reason": v.dReason.map(JSON.string) ?? .null,
                        "amount_fen": .int(v.basisFen), "share_pct": rounded(v.sharePct), "cumulative_pct": rounded(v.cumulativePct),
                        "quadrant": .string(v.quadrant.rawValue), "potential": rounded(v.potential), "index": rounded(v.index),
                        "dimensions": .object(dims),
                    ])
                }),
        ])
    }

    // MARK: Complaints and claims

    static func minutes(_ m: Double?) -> String {
        guard let m else { return "-" }
        if m < 120 { return String(format: "%.0f min", m) }
        if m < 48 * 60 { return String(format: "%.1f h", m / 60) }
        return String(format: "%.1f d", m / 1440)
    }

    static func complaints(_ rows: [ComplaintReportRow], format: ReportFormatOptions) {
        let header = [
            "branch", "category", "complaints", "acknowledged", "median_acknowledge_minutes", "resolved", "median_resolve_minutes", "breached",
            "breach_rate_pct", "return_visits", "satisfaction",
        ]
        func cells(_ r: ComplaintReportRow) -> [String] {
            let s = r.statistics
            return [
                r.branch ?? "all", r.category?.rawValue ?? "all", String(s.complaints), String(s.acknowledged),
                s.medianAcknowledgeMinutes.map { String(format: "%.1f", $0) } ?? "", String(s.resolved),
                s.medianResolveMinutes.map { String(format: "%.1f", $0) } ?? "", String(s.breached), String(format: "%.1f", s.breachRatePct),
                String(s.returnVisits), s.satisfaction.map { String(format: "%.2f", $0) } ?? "",
            ]
        }
        if format.csv { return Output.write(CSV.line(header) + rows.map { CSV.line(cells($0)) }.joined()) }
        if format.json {
            return Output.json(
                .array(
                    rows.map { r in
                        let s = r.statistics
                        return .object([
                            "branch": r.branch.map(JSON.string) ?? .null, "category": r.category.map { .string($0.rawValue) } ?? .null,
                            "complaints": .int(Int64(s.complaints)), "acknowledged": .int(Int64(s.acknowledged)), "resolved": .int(Int64(s.resolved)),
                            "median_acknowledge_minutes": s.medianAcknowledgeMinutes.map(JSON.double) ?? .null,
                            "median_resolve_minutes": s.medianResolveMinutes.map(JSON.double) ?? .null,
                            "breached": .int(Int64(s.breached)), "breach_rate_pct": .double((s.breachRatePct * 10).rounded() / 10),
                            "return_visits": .int(Int64(s.returnVisits)), "satisfaction": s.satisfaction.map(JSON.double) ?? .null,
                        ])
                    }))
        }
        Output.table(
            ["BRANCH", "CATEGORY", "COMPLAINTS", "MEDIAN ACK", "MEDIAN RESOLVE", "BREACHED", "VISITS", "SATISFACTION"],
            rows.map { r in
                let s = r.statistics
                return [
                    r.branch ?? "all", r.category?.rawValue ?? "all", String(s.complaints), minutes(s.medianAcknowledgeMinutes),
                    minutes(s.medianResolveMinutes), "\(s.breached) (\(percent(s.breachRatePct)))", String(s.returnVisits),
                    s.satisfaction.map { String(format: "%.2f", $0) } ?? "-",
                ]
            })
    }

    static func claims(_ rows: [ClaimReportRow], format: ReportFormatOptions) {
        let header = ["branch", "category", "claims", "open", "claimed", "approved", "paid", "overpaid_claims", "overpaid"]
        func cells(_ r: ClaimReportRow) -> [String] {
            let s = r.statistics
            return [
                r.branch ?? "all", r.category ?? "all", String(s.claims), String(s.open), Money.format(s.claimedFen), Money.format(s.approvedFen),
                Money.format(s.paidFen), String(s.overpaid), Money.format(s.overpaidFen),
            ]
        }
        if format.csv { return Output.write(CSV.line(header) + rows.map { CSV.line(cells($0)) }.joined()) }
        if format.json {
            return Output.json(
                .array(
                    rows.map { r in
                        let s = r.statistics
                        return .object([
                            "branch": r.branch.map(JSON.string) ?? .null, "category": r.category.map(JSON.string) ?? .null,
                            "claims": .int(Int64(s.claims)), "open": .int(Int64(s.open)), "claimed_fen": .int(s.claimedFen),
                            "approved_fen": .int(s.approvedFen), "paid_fen": .int(s.paidFen), "overpaid_claims": .int(Int64(s.overpaid)),
                            "overpaid_fen": .int(s.overpaidFen),
                        ])
                    }))
        }
        Output.table(header.map { $0.replacingOccurrences(of: "_", with: " ").uppercased() }, rows.map(cells))
    }
}

/// CSV as spreadsheets read it (RFC 4180): fields with a comma, quote or line break quoted.
enum CSV {
    static func field(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func line(_ fields: [String]) -> String {
        fields.map(field).joined(separator: ",") + "\r\n"
    }
}

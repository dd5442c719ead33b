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

            Examples:
              outpost settings approval-threshold
              outpost settings value
              outpost settings sla
            """,
        subcommands: [ApprovalThreshold.self, ValueSettings.self, SLASettings.self])

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

extension SettingsCommand {
    struct ValueSettings: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "value",
            abstract: "Show or change how customers are valued (ABC, class D, quadrants, index weights).",
            discussion: """
                Without options, prints the rules in force. With options, changes them (only at \
                headquarters; they reach the branches with its change sets, so every site \
                classifies alike). Options not given keep their values.

                Defaults and why:
                  basis profit; A to 80%, B to 95% (cumulative): the Pareto rule, A = the few
                    customers that bring most of the profit
                  D: credit rating C/D, or 3+ overdue payments, or 3+ complaints in the period
                    with loyalty below 40 (low credit, or low loyalty and demanding)
                  quadrants: history high from the median, potential high above 50
                  weights: profitability 25 (the first measure of a customer's value), loyalty 20
                    (a loyal customer's lifetime value is the largest), credit 15 and
                    relationship 15 (bad debt eats the good customers' profit; a long relationship
                    lets the rest last), growth 15 (strategic value), attractiveness 10 (the
                    softest indicators)

                Examples:
                  outpost settings value --a-pct 70 --b-pct 90
                  outpost settings value --weight loyalty=30 --weight growth=5
                  outpost settings value --history-cut 50000.00
                """)

        @Option(help: ArgumentHelp("Rank by profit or revenue.", valueName: "basis"))
        var basis: String?

        @Option(name: .customLong("a-pct"), help: ArgumentHelp("Class A: the customers making up this cumulative percentage.", valueName: "pct"))
        var aPct: Int?

        @Option(name: .customLong("b-pct"), help: ArgumentHelp("Class B: up to this cumulative percentage.", valueName: "pct"))
        var bPct: Int?

        @Option(name: .customLong("d-overdue"), help: ArgumentHelp("Class D from this many overdue payments.", valueName: "n"))
        var dOverdue: Int?

        @Option(name: .customLong("d-complaints"), help: ArgumentHelp("Class D from this many complaints in the period…", valueName: "n"))
        var dComplaints: Int?

        @Option(name: .customLong("d-loyalty-below"), help: ArgumentHelp("…with a loyalty score below this (0-100).", valueName: "score"))
        var dLoyaltyBelow: Int?

        @Option(
            name: .customLong("history-cut"),
            help: ArgumentHelp("Historical value counts high from this amount (yuan), or 'median'.", valueName: "yuan|median"))
        var historyCut: String?

        @Option(name: .customLong("potential-cut"), help: ArgumentHelp("Future potential counts high from this score (0-100).", valueName: "score"))
        var potentialCut: Int?

        @Option(
            help: ArgumentHelp(
                "A dimension's weight, e.g. loyalty=30 (attractiveness, profitability, relationship, credit, loyalty, growth). Repeatable.",
                valueName: "dimension=n"))
        var weight: [String] = []

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            var rules = try archive.rules().value
            let changing =
                basis != nil || aPct != nil || bPct != nil || dOverdue != nil || dComplaints != nil || dLoyaltyBelow != nil || historyCut != nil
                || potentialCut != nil || !weight.isEmpty
            if let basis { rules.basis = try Parse.choice(basis, option: "--basis", ValueRules.Basis.allCases.map { ($0.rawValue, $0) }) }
            if let aPct { rules.aCumulativePct = aPct }
            if let bPct { rules.bCumulativePct = bPct }
            if let dOverdue { rules.dOverduePayments = dOverdue }
            if let dComplaints { rules.dComplaints = dComplaints }
            if let dLoyaltyBelow { rules.dLoyaltyBelow = dLoyaltyBelow }
            if let historyCut {
                rules.quadrantHistoryFen = historyCut.lowercased() == "median" ? nil : try Parse.amount(historyCut, option: "--history-cut")
            }
            if let potentialCut { rules.quadrantPotentialScore = potentialCut }
            for w in weight {
                let parts = w.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let n = Int(parts[1]) else { throw CLIError("--weight: write DIMENSION=N, e.g. loyalty=30") }
                let d = try Parse.choice(parts[0], option: "--weight", ValueDimension.allCases.map { ($0.rawValue, $0) })
                rules.weights[d] = n
            }
            if changing {
                try archive.setValueRules(rules)
                rules = try archive.rules().value
            }
            var weights: [String: JSON] = [:]
            for d in ValueDimension.allCases { weights[d.rawValue] = .int(Int64(rules.weights[d] ?? 0)) }
            if output.json {
                return Output.json(
                    .object([
                        "basis": .string(rules.basis.rawValue), "a_cumulative_pct": .int(Int64(rules.aCumulativePct)),
                        "b_cumulative_pct": .int(Int64(rules.bCumulativePct)), "d_overdue_payments": .int(Int64(rules.dOverduePayments)),
                        "d_complaints": .int(Int64(rules.dComplaints)), "d_loyalty_below": .int(Int64(rules.dLoyaltyBelow)),
                        "history_cut_fen": rules.quadrantHistoryFen.map(JSON.int) ?? .string("median"),
                        "potential_cut": .int(Int64(rules.quadrantPotentialScore)), "weights": .object(weights),
                    ]))
            }
            let total = max(1, rules.weights.values.reduce(0, +))
            Output.fields([
                ("basis", rules.basis.rawValue),
                ("class A", "up to \(rules.aCumulativePct)% of the total (cumulative)"),
                ("class B", "up to \(rules.bCumulativePct)%"),
                (
                    "class D",
                    "credit C/D, or \(rules.dOverduePayments)+ overdue payments, or \(rules.dComplaints)+ complaints with loyalty below \(rules.dLoyaltyBelow)"
                ),
                ("history high from", rules.quadrantHistoryFen.map(Money.format) ?? "the median"),
                ("potential high above", String(rules.quadrantPotentialScore)),
            ])
            Output.table(
                ["WEIGHT", "", "SHARE"],
                ValueDimension.allCases.map { d in
                    let w = rules.weights[d] ?? 0
                    return [d.rawValue, String(w), String(format: "%.0f%%", Double(w) * 100 / Double(total))]
                })
        }
    }

    struct SLASettings: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sla",
            abstract: "Show or change complaint deadlines per category and severity.",
            discussion: """
                Without options, prints the deadlines in force for every category and severity. \
                With --category, --severity and one or both deadlines, changes that pair (only \
                at headquarters; replicated). Durations: 30m, 4h, 3d, or minutes.

                Defaults: critical — acknowledge 30m, resolve 1d; high — 2h, 2d; normal — 4h, 3d; \
                low — 1d, 7d. Lost and damaged items take twice as long to resolve (an \
                investigation, evidence, often a claim). Deadlines count from the opening, or \
                from a reopening; a step taken exactly at its deadline is on time.

                Example:
                  outpost settings sla --category late --severity high --acknowledge 1h --resolve 1d
                """)

        @Option(help: ArgumentHelp("late, lost, damaged, attitude, price or other.", valueName: "category"))
        var category: String?

        @Option(help: ArgumentHelp("low, normal, high or critical.", valueName: "severity"))
        var severity: String?

        @Option(help: ArgumentHelp("Time to acknowledge, e.g. 2h.", valueName: "duration"))
        var acknowledge: String?

        @Option(help: ArgumentHelp("Time to resolve, e.g. 3d.", valueName: "duration"))
        var resolve: String?

        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() throws {
            let archive = try storage.openArchive()
            if category != nil || severity != nil || acknowledge != nil || resolve != nil {
                guard let category, let severity, acknowledge != nil || resolve != nil else {
                    throw CLIError("to change a deadline give --category, --severity and --acknowledge and/or --resolve")
                }
                let c = try Parse.category(category)
                let v = try Parse.choice(severity, option: "--severity", ComplaintSeverity.allCases.map { ($0.rawValue, $0) })
                var rule = try archive.rules().sla(c, v)
                if let acknowledge { rule.acknowledgeMinutes = try Parse.minutes(acknowledge, option: "--acknowledge") }
                if let resolve { rule.resolveMinutes = try Parse.minutes(resolve, option: "--resolve") }
                try archive.setSLA(rule)
            }
            let rules = try archive.rules()
            let all = ComplaintCategory.allCases.flatMap { c in ComplaintSeverity.allCases.map { rules.sla(c, $0) } }
            if output.json {
                return Output.json(
                    .array(
                        all.map {
                            .object([
                                "category": .string($0.category.rawValue), "severity": .string($0.severity.rawValue),
                                "acknowledge_minutes": .int(Int64($0.acknowledgeMinutes)), "resolve_minutes": .int(Int64($0.resolveMinutes)),
                            ])
                        }))
            }
            Output.table(
                ["CATEGORY", "SEVERITY", "ACKNOWLEDGE", "RESOLVE"],
                all.map { [$0.category.rawValue, $0.severity.rawValue, Parse.duration($0.acknowledgeMinutes), Parse.duration($0.resolveMinutes)] })
        }
    }
}

extension Parse {
    /// A duration as `30m`, `4h`, `3d` or plain minutes, in minutes.
    static func minutes(_ text: String, option: String) throws -> Int {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let unit: Int
        var digits = Substring(t)
        switch t.last {
        case "m": unit = 1; digits = digits.dropLast()
        case "h": unit = 60; digits = digits.dropLast()
        case "d": unit = 1440; digits = digits.dropLast()
        default: unit = 1
        }
        guard let n = Int(digits), n > 0, n <= 366 * 1440 / unit else {
            throw CLIError("\(option): '\(text.prefix(24))' is not a duration: write 30m, 4h, 3d or minutes (at most a year)")
        }
        return n * unit
    }

    /// Minutes as the shortest of `d`, `h`, `m` that is exact.
    static func duration(_ minutes: Int) -> String {
        if minutes % 1440 == 0 { return "\(minutes / 1440)d" }
        if minutes % 60 == 0 { return "\(minutes / 60)h" }
        return "\(minutes)m"
    }
}

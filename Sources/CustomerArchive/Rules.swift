import GRDB
import Replication

/// The six dimensions of the customer value index (客户价值评价指标体系).
public enum ValueDimension: String, CaseIterable, Sendable, Codable {
    case attractiveness, profitability, relationship, credit, loyalty, growth

    /// The settings column holding this dimension's weight.
    var settingsColumn: String { "w_\(rawValue)" }
}

/// How customers are valued: ABC cut-offs, class D, quadrant cut-offs and the index weights.
///
/// Written at headquarters (`outpost settings value …`) and replicated like data, so every
/// site classifies alike. Every field has a documented default, used until headquarters sets
/// it.
public struct ValueRules: Sendable, Hashable, Codable {
    /// What the Pareto ranking adds up.
    public enum Basis: String, CaseIterable, Sendable, Codable {
        case profit, revenue
    }

    /// Profit by default: class A is "the few customers giving most of the profit".
    public var basis: Basis = .profit
    /// Class A: the customers that together make the first 80% of the total (the customer
    /// that crosses 80% is still A).
    public var aCumulativePct = 80
    /// Class B: those that bring the running total from A's share up to 95%; C: the rest.
    public var bCumulativePct = 95
    /// Class D (low credit): this many overdue payments, or credit rating C or D.
    public var dOverduePayments = 3
    /// Class D (low loyalty and demanding): this many complaints in the period while the
    /// loyalty score is below ``dLoyaltyBelow``.
    public var dComplaints = 3
    public var dLoyaltyBelow = 40
    /// The historical value (basis over the period, in fen) from which a customer counts as
    /// high; `nil`: the median of the customers being reported on.
    public var quadrantHistoryFen: Int64? = nil
    /// The future-potential score (0–100) above which a customer counts as high (a flat
    /// customer of unknown share of wallet scores exactly 50: no sign of potential).
    public var quadrantPotentialScore = 50
    /// Index weights (relative; they need not add up to 100). The defaults, and why:
    /// profitability 25 (the profit a customer brings is the firm's first measure of value),
    /// loyalty 20 (a loyal customer's lifetime value is the largest, and keeping one costs a
    /// fifth of winning one), credit 15 and relationship 15 (bad debts eat the profit of good
    /// customers; a long, well-fed relationship is what lets the others last), growth 15 (the
    /// strategic value of the customer's future), attractiveness 10 (the softest indicators,
    /// measured here by key-account status and scale).
    public var weights: [ValueDimension: Int] = [
        .attractiveness: 10, .profitability: 25, .relationship: 15, .credit: 15, .loyalty: 20, .growth: 15,
    ]

    public init() {}
}

/// Complaint deadlines for one category and severity.
public struct SLARule: Sendable, Hashable, Codable {
    public var category: ComplaintCategory
    public var severity: ComplaintSeverity
    /// Minutes from the complaint's start (or reopening) to acknowledgement.
    public var acknowledgeMinutes: Int
    /// Minutes from the complaint's start (or reopening) to resolution.
    public var resolveMinutes: Int

    public init(category: ComplaintCategory, severity: ComplaintSeverity, acknowledgeMinutes: Int, resolveMinutes: Int) {
        self.category = category
        self.severity = severity
        self.acknowledgeMinutes = acknowledgeMinutes
        self.resolveMinutes = resolveMinutes
    }

    /// The default deadlines, used until headquarters sets a rule for the pair.
    ///
    /// By severity: critical — acknowledge in 30 minutes, resolve in 1 day; high — 2 hours,
    /// 2 days; normal — 4 hours, 3 days; low — 1 day, 7 days. Lost and damaged items take
    /// twice as long to resolve (they need an investigation and evidence, often a claim).
    public static func standard(_ category: ComplaintCategory, _ severity: ComplaintSeverity) -> SLARule {
        let (ack, resolve): (Int, Int) =
            switch severity {
            case .critical: (30, 24 * 60)
            case .high: (2 * 60, 2 * 24 * 60)
            case .normal: (4 * 60, 3 * 24 * 60)
            case .low: (24 * 60, 7 * 24 * 60)
            }
        let slow = category == .lost || category == .damaged
        return SLARule(category: category, severity: severity, acknowledgeMinutes: ack, resolveMinutes: slow ? resolve * 2 : resolve)
    }
}

/// Complaint severities.
public enum ComplaintSeverity: String, CaseIterable, Sendable, Codable {
    case low, normal, high, critical
}

/// The company-wide rules a site judges by: replicated settings plus defaults.
public struct CompanyRules: Sendable, Hashable {
    public var approvalThresholdFen: Int64 = Settings.defaultApprovalThresholdFen
    public var value = ValueRules()
    /// Rules headquarters has set; pairs not here use ``SLARule/standard(_:_:)``.
    public var sla: [String: SLARule] = [:]

    public init() {}

    public func sla(_ category: ComplaintCategory, _ severity: ComplaintSeverity) -> SLARule {
        sla["\(category.rawValue)/\(severity.rawValue)"] ?? .standard(category, severity)
    }

    /// A complaint's deadlines: those pinned in it when it was opened, else (a complaint from
    /// before deadlines were pinned) the rules in force.
    func sla(_ category: ComplaintCategory, _ severity: ComplaintSeverity, pinnedAcknowledge: Int64?, pinnedResolve: Int64?) -> SLARule {
        var rule = sla(category, severity)
        let t = Schema.complaints
        if let a = Archive.inDomain(pinnedAcknowledge, t, "acknowledge_minutes"), let r = Archive.inDomain(pinnedResolve, t, "resolve_minutes") {
            rule.acknowledgeMinutes = Int(a)
            rule.resolveMinutes = Int(r)
        }
        return rule
    }
}

extension Archive {
    /// The rules in force at this site.
    public func rules() throws -> CompanyRules {
        try read { db in try Self.rules(db) }
    }

    static func rules(_ db: Database) throws -> CompanyRules {
        var rules = CompanyRules()
        let s = Schema.settings
        let names = s.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
        if let row = try Row.fetchOne(db, sql: "SELECT \(names) FROM settings WHERE id = ?", arguments: [Schema.settingsKey.data]) {
            // A stored setting outside its domain (relayed before domains existed, or by a
            // newer headquarters) counts as not set: every site then judges by the default.
            func int(_ name: String) -> Int64? { Self.inDomain(row[s.column(name)], s, name) }
            if let v = int("approval_threshold_fen") { rules.approvalThresholdFen = v }
            var value = ValueRules()
            if let b: String = row[s.column("abc_basis")], let basis = ValueRules.Basis(rawValue: b) { value.basis = basis }
            if let v = int("abc_a_pct") { value.aCumulativePct = Int(v) }
            if let v = int("abc_b_pct") { value.bCumulativePct = Int(v) }
            if let v = int("d_overdue_payments") { value.dOverduePayments = Int(v) }
            if let v = int("d_complaints") { value.dComplaints = Int(v) }
            if let v = int("d_loyalty_below") { value.dLoyaltyBelow = Int(v) }
            if let v = int("quadrant_history_fen") { value.quadrantHistoryFen = v < 0 ? nil : v }
            if let v = int("quadrant_potential_score") { value.quadrantPotentialScore = Int(v) }
            for d in ValueDimension.allCases {
                if let v = int(d.settingsColumn) { value.weights[d] = Int(v) }
            }
            rules.value = value
        }
        for row in try Row.fetchAll(db, sql: "SELECT category, severity, acknowledge_minutes, resolve_minutes FROM sla_rules WHERE cl % 2 = 1") {
            guard let c = ComplaintCategory(rawValue: row[0] ?? ""), let v = ComplaintSeverity(rawValue: row[1] ?? "") else { continue }
            var rule = SLARule.standard(c, v)
            let t = Schema.slaRules
            if let a = Self.inDomain(row[2], t, "acknowledge_minutes") { rule.acknowledgeMinutes = Int(a) }
            if let r = Self.inDomain(row[3], t, "resolve_minutes") { rule.resolveMinutes = Int(r) }
            rules.sla["\(c.rawValue)/\(v.rawValue)"] = rule
        }
        return rules
    }

    /// A stored integer, or nil when it is outside its column's domain.
    static func inDomain(_ value: Int64?, _ table: TableSchema, _ column: String) -> Int64? {
        guard let value, table.columns[table.column(column)].domain.problem(.integer(value)) == nil else { return nil }
        return value
    }

    /// Changes the value rules (headquarters only; replicated to every site).
    /// - Throws: `.invalidInput` for cut-offs out of order or weights that are all zero.
    public func setValueRules(_ rules: ValueRules) throws {
        guard (1...100).contains(rules.aCumulativePct), (rules.aCumulativePct...100).contains(rules.bCumulativePct) else {
            throw ArchiveError(.invalidInput, "ABC cut-offs must satisfy 0 < A ≤ B ≤ 100 (cumulative percentages)")
        }
        guard rules.weights.values.allSatisfy({ $0 >= 0 }), rules.weights.values.reduce(0, +) > 0 else {
            throw ArchiveError(.invalidInput, "index weights must not be negative, and at least one must be above 0")
        }
        guard (0...100).contains(rules.quadrantPotentialScore), (0...100).contains(rules.dLoyaltyBelow) else {
            throw ArchiveError(.invalidInput, "the potential cut-off and the D loyalty bound are scores 0-100")
        }
        guard rules.dOverduePayments > 0, rules.dComplaints > 0 else {
            throw ArchiveError(.invalidInput, "the class D counts must be at least 1")
        }
        var fields: [String: Value] = [
            "abc_basis": .text(rules.basis.rawValue), "abc_a_pct": .integer(Int64(rules.aCumulativePct)),
            "abc_b_pct": .integer(Int64(rules.bCumulativePct)), "d_overdue_payments": .integer(Int64(rules.dOverduePayments)),
            "d_complaints": .integer(Int64(rules.dComplaints)), "d_loyalty_below": .integer(Int64(rules.dLoyaltyBelow)),
            "quadrant_history_fen": .integer(rules.quadrantHistoryFen ?? -1),
            "quadrant_potential_score": .integer(Int64(rules.quadrantPotentialScore)),
        ]
        for d in ValueDimension.allCases { fields[d.settingsColumn] = .integer(Int64(rules.weights[d] ?? 0)) }
        try transaction { s in
            for (name, value) in fields.sorted(by: { $0.key < $1.key }) { try s.writeSetting(name, value) }
        }
    }

    /// Sets the deadlines for one complaint category and severity (headquarters only).
    public func setSLA(_ rule: SLARule) throws {
        guard rule.acknowledgeMinutes > 0, rule.resolveMinutes >= rule.acknowledgeMinutes else {
            throw ArchiveError(.invalidInput, "deadlines must be above 0, and resolving cannot be due before acknowledging")
        }
        try transaction { s in
            guard core.site == core.headquarters else {
                throw ArchiveError(.refused, "SLA rules are written at headquarters (\(core.headquarters)) and replicated; this site is \(core.site)")
            }
            let key = RecordKey.derived("sla", rule.category.rawValue, rule.severity.rawValue)
            let fields: [String: Value] = [
                "category": .text(rule.category.rawValue), "severity": .text(rule.severity.rawValue),
                "acknowledge_minutes": .integer(Int64(rule.acknowledgeMinutes)), "resolve_minutes": .integer(Int64(rule.resolveMinutes)),
            ]
            if try s.load(Schema.slaRules, key) == nil {
                try s.create(Schema.slaRules, key: key, fields)
            } else {
                try s.update(Schema.slaRules, key, fields)
            }
        }
    }
}

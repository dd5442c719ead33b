import Foundation
import GRDB
import Replication

/// The customers a report covers and the period it looks at.
public struct ValueReport: Sendable {
    public var from: Month
    public var to: Month
    /// The branch reported on; `nil`: the whole country (at headquarters).
    public var branch: String?
    public var rules: ValueRules
    /// The median historical value used as the quadrant cut-off (or the configured one).
    public var historyCutFen: Int64
    public var valuations: [CustomerValuation]
    /// Whether any monthly figures were recorded in the period (without them every customer
    /// contributes 0, and the report says so).
    public var hasFigures: Bool
}

/// Complaint handling over a period, for one group (a category, a branch, or all).
public struct ComplaintStatistics: Sendable, Hashable {
    public var complaints = 0
    public var acknowledged = 0
    public var resolved = 0
    /// Median minutes from opening to the first acknowledgement / resolution (first round).
    public var medianAcknowledgeMinutes: Double?
    public var medianResolveMinutes: Double?
    /// Complaints that missed a deadline in any round, and that share in percent.
    public var breached = 0
    public var breachRatePct: Double { complaints > 0 ? Double(breached) * 100 / Double(complaints) : 0 }
    public var returnVisits = 0
    /// Mean satisfaction (1–5) of the return visits; `nil` without any.
    public var satisfaction: Double?

    public init() {}
}

/// One row of the complaints report: a branch (`nil` for all) and a category (`nil` for all).
public struct ComplaintReportRow: Sendable, Hashable {
    public var branch: String?
    public var category: ComplaintCategory?
    public var statistics: ComplaintStatistics
}

/// Claims money for one group.
public struct ClaimStatistics: Sendable, Hashable {
    public var claims = 0
    /// Claims not yet closed or rejected.
    public var open = 0
    public var claimedFen: Int64 = 0
    public var approvedFen: Int64 = 0
    public var paidFen: Int64 = 0
    /// Claims paid above their approved amount (offline sites together), and by how much.
    public var overpaid = 0
    public var overpaidFen: Int64 = 0

    public init() {}
}

public struct ClaimReportRow: Sendable, Hashable {
    public var branch: String?
    /// The category of the complaint the claim follows; `nil` for all, "none" when unlinked.
    public var category: String?
    public var statistics: ClaimStatistics
}

extension Archive {
    // MARK: Scope

    /// The branch a report covers: at a branch, its own customers (the only choice); at
    /// headquarters, the one asked for or the whole country.
    func reportScope(_ branch: String?) throws -> String? {
        guard core.site != core.headquarters else { return branch }
        if let branch, branch != core.site.code {
            throw ArchiveError(
                .refused, "a branch reports on its own customers (\(core.site)); reports on branch \(branch.prefix(12)) run at headquarters")
        }
        return core.site.code
    }

    /// The last twelve complete months before today (company time).
    public func defaultPeriod() -> (from: Month, to: Month) {
        let to = Month(CompanyTime.date(ofMilliseconds: Int64(core.environment.now()))).adding(months: -1)
        return (to.adding(months: -11), to)
    }

    // MARK: Customer value

    /// Values the customers in scope over a period (default: the last twelve complete months).
    public func valueReport(branch: String? = nil, from: Month? = nil, to: Month? = nil) throws -> ValueReport {
        let scope = try reportScope(branch)
        // Twelve months unless told: ending at `to`, starting at `from`, or the last complete ones.
        let period = defaultPeriod()
        let from = from ?? to?.adding(months: -11) ?? period.from
        let to = to ?? (from == period.from ? period.to : from.adding(months: 11))
        guard from <= to else { throw ArchiveError(.invalidInput, "the period starts (\(from)) after it ends (\(to))") }
        return try read { db in
            let rules = try Self.rules(db).value
            let (facts, hasFigures) = try customerFacts(db, branch: scope, from: from, to: to)
            let valuations = ValueModel.evaluate(facts, rules: rules)
            let basis: (CustomerFacts) -> Int64 = rules.basis == .profit ? { $0.profitFen } : { $0.revenueFen }
            return ValueReport(
                from: from, to: to, branch: scope, rules: rules,
                historyCutFen: rules.quadrantHistoryFen ?? ValueModel.median(facts.map(basis)),
                valuations: valuations, hasFigures: hasFigures)
        }
    }

    /// Where each customer's data counts: itself, or the customer it was merged into (followed
    /// to the end of the chain). A chain that loops (it cannot be written, but a damaged file
    /// could hold one) leaves each of its customers on its own.
    static func roots(_ mergedInto: [RecordKey: RecordKey]) -> [RecordKey: RecordKey] {
        var roots: [RecordKey: RecordKey] = [:]
        for start in mergedInto.keys {
            var seen: Set<RecordKey> = [start]
            var current = start
            var looped = false
            while let next = mergedInto[current] {
                if seen.contains(next) {
                    looped = true
                    break
                }
                seen.insert(next)
                current = next
            }
            roots[start] = looped ? start : current
        }
        return roots
    }

    /// Gathers the facts of every active customer homed at or assigned to the branch, or of
    /// the country (merged ones counted in the customer they were merged into).
    func customerFacts(_ db: Database, branch: String?, from: Month, to: Month) throws -> ([CustomerFacts], Bool) {
        let periodStart = CompanyTime.start(of: from.first)
        let periodEnd = CompanyTime.start(of: to.next.first)
        let months = from.count(through: to)
        let half = months / 2
        let earlierEnd = from.adding(months: half - 1)
        let laterStart = to.adding(months: -(half - 1))

        var facts: [RecordKey: CustomerFacts] = [:]
        var merged: [RecordKey: RecordKey] = [:]
        let endDays = CompanyTime.date(ofMilliseconds: periodEnd - 1).daysSinceEpoch
        let rows = try Row.fetchCursor(
            db,
            sql: """
                SELECT id, number, home_branch, key_account, credit_rating, overdue_payments, wallet_share_pct, customer_since,
                       merged_into, coalesce(archived, 0), erased
                FROM customers WHERE cl % 2 = 1
                """)
        // A branch's report covers the customers homed at it and those assigned to it.
        let assigned: Set<Data> =
            try branch.map {
                Set(try Data.fetchAll(db, sql: "SELECT customer FROM scope_reasons WHERE site = ? AND reason = 'assigned'", arguments: [$0]))
            } ?? []
        while let row = try rows.next() {
            let id = RecordKey(data: row[0])
            if let into: Data = row[8] {
                merged[id] = RecordKey(data: into)
                continue
            }
            let archived: Int64 = row[9]
            let erased: Int64 = row[10]
            let home: String = row[2] ?? ""
            guard archived == 0, erased == 0, branch == nil || home == branch || assigned.contains(row[0]) else { continue }
            var f = CustomerFacts(id: id, number: row[1] ?? "", homeBranch: home)
            f.keyAccount = (row[3] as Int64? ?? 0) != 0
            f.creditRating = row[4]
            f.overduePayments = Int(row[5] as Int64? ?? 0)
            f.walletSharePct = (row[6] as Int64?).map(Int.init)
            if let since: String = row[7], let date = CivilDate(since) {
                f.relationshipYears = max(0, Double(endDays - date.daysSinceEpoch) / 365.25)
            }
            f.periodMonths = months
            facts[id] = f
        }
        let roots = Self.roots(merged)
        func owner(_ key: RecordKey) -> RecordKey? {
            let root = roots[key] ?? key
            return facts[root] != nil ? root : nil
        }

        var activeMonths: [RecordKey: Set<String>] = [:]
        var hasFigures = false
        for row in try Row.fetchAll(
            db, sql: "SELECT customer_id, month, shipments, revenue_fen, profit_fen FROM figures WHERE cl % 2 = 1 AND month BETWEEN ? AND ?",
            arguments: [from.description, to.description])
        {
            hasFigures = true
            guard let key = (row[0] as Data?).map(RecordKey.init(data:)), let id = owner(key), let month = Month(row[1] ?? "") else { continue }
            let shipments: Int64 = row[2] ?? 0
            facts[id]!.revenueFen += row[3] ?? 0
            facts[id]!.profitFen += row[4] ?? 0
            if month <= earlierEnd { facts[id]!.earlierShipments += shipments }
            if month >= laterStart { facts[id]!.laterShipments += shipments }
            if shipments > 0 { activeMonths[id, default: []].insert(month.description) }
        }
        for (id, set) in activeMonths { facts[id]!.activeMonths = set.count }
        for row in try Row.fetchAll(
            db, sql: "SELECT customer_id, count(*) FROM complaints WHERE cl % 2 = 1 AND opened_at >= ? AND opened_at < ? GROUP BY customer_id",
            arguments: [periodStart, periodEnd])
        {
            guard let key = (row[0] as Data?).map(RecordKey.init(data:)), let id = owner(key) else { continue }
            facts[id]!.complaints += Int(row[1] as Int64)
        }
        var visits: [RecordKey: (sum: Double, count: Int64)] = [:]
        for row in try Row.fetchAll(
            db,
            sql: """
                SELECT customer_id, kind, count(*), total(satisfaction) FROM contacts
                WHERE at >= ? AND at < ? AND kind IN ('praise', 'return_visit') GROUP BY customer_id, kind
                """,
            arguments: [periodStart, periodEnd])
        {
            guard let key = (row[0] as Data?).map(RecordKey.init(data:)), let id = owner(key) else { continue }
            let kind: String = row[1]
            let count: Int64 = row[2]
            if kind == "praise" {
                facts[id]!.praises += Int(count)
            } else if let sum: Double = row[3] {
                visits[id, default: (0, 0)].sum += sum
                visits[id, default: (0, 0)].count += count
            }
        }
        for (id, v) in visits where v.count > 0 { facts[id]!.satisfaction = v.sum / Double(v.count) }
        return (facts.values.sorted { $0.number < $1.number }, hasFigures)
    }

    // MARK: Monthly figures

    /// Records a customer's business in one month (replacing what was recorded for it).
    public func recordFigures(customer reference: String, month: Month, shipments: Int64, revenueFen: Int64, profitFen: Int64) throws {
        guard shipments >= 0, revenueFen >= 0 else { throw ArchiveError(.invalidInput, "shipments and revenue must not be negative") }
        try transaction { s in
            let customer = try resolve(Schema.customers, reference, s.db)
            try Self.requireWritable(customer)
            let key = RecordKey.derived("figures", customer.id.description, month.description)
            let fields: [String: Value] = [
                "customer_id": customer.id.value, "month": .text(month.description), "shipments": .integer(shipments),
                "revenue_fen": .integer(revenueFen), "profit_fen": .integer(profitFen),
            ]
            if try s.load(Schema.figures, key) == nil {
                try s.create(Schema.figures, key: key, fields)
            } else {
                try s.update(Schema.figures, key, fields)
            }
        }
    }

    /// A customer's recorded months, oldest first.
    public func figures(customer reference: String) throws -> [Record] {
        try read { db in
            let customer = try resolve(Schema.customers, reference, db)
            return try fetchRecords(Schema.figures, db, where: "customer_id = ? AND cl % 2 = 1", arguments: [customer.id.data], suffix: "ORDER BY month")
        }
    }

    // MARK: Return visits

    /// Records a return visit (回访) after a complaint was resolved, with the customer's
    /// satisfaction 1–5; it counts in the customer's loyalty and the complaints report.
    @discardableResult
    public func returnVisit(complaint reference: String, satisfaction: Int, summary: String? = nil, staff: String? = nil) throws -> RecordKey {
        guard (1...5).contains(satisfaction) else { throw ArchiveError(.invalidInput, "satisfaction is 1 (very unhappy) to 5 (very happy)") }
        return try transaction { s in
            let view = try complaintView(try resolve(Schema.complaints, reference, s.db), s.db)
            guard view.stage.rawValue >= ComplaintStage.resolved.rawValue else {
                throw ArchiveError(
                    .invalidState,
                    "complaint \(view.record["number"].textValue ?? "") is \(view.stage.name); a return visit follows its resolution")
            }
            guard let customer = view.record["customer_id"].keyValue else {
                throw ArchiveError(.invalidState, "complaint \(view.record.id) has no customer")
            }
            return try s.append(
                Schema.contacts,
                [
                    "customer_id": customer.value, "complaint_id": view.record.id.value, "kind": .text(ContactKind.returnVisit.rawValue),
                    "at": .integer(Int64(s.wall)), "satisfaction": .integer(Int64(satisfaction)),
                    "summary": summary.map(Value.text) ?? .null, "staff": staff.map(Value.text) ?? .null,
                ])
        }
    }

    // MARK: Complaints report

    /// Complaint handling by category: per branch and in total at headquarters, for this
    /// branch at a branch. `from`/`to` bound the opening date (company time, both included).
    public func complaintReport(branch: String? = nil, from: CivilDate? = nil, to: CivilDate? = nil) throws -> [ComplaintReportRow] {
        let scope = try reportScope(branch)
        let start = from.map(CompanyTime.start(of:)) ?? Int64.min
        let end = to.map { CompanyTime.start(of: $0.adding(days: 1)) } ?? Int64.max
        return try read { db in
            let rules = try Self.rules(db)
            let now = Int64(core.environment.now())
            struct Item {
                var branch: String
                var category: ComplaintCategory
                var rule: SLARule
                var openedAt: Int64
                var steps: [ComplaintSLA.Step] = []
                var visits: [Int64] = []
            }
            var items: [Data: Item] = [:]
            var clause = "cl % 2 = 1 AND opened_at >= ? AND opened_at < ?"
            var args: StatementArguments = [start, end]
            if let scope {
                clause += " AND branch = ?"
                args += [scope]
            }
            for row in try Row.fetchAll(
                db, sql: "SELECT id, branch, category, severity, opened_at, acknowledge_minutes, resolve_minutes FROM complaints WHERE \(clause)",
                arguments: args)
            {
                let category = ComplaintCategory(rawValue: row[2] ?? "") ?? .other
                let severity = ComplaintSeverity(rawValue: row[3] ?? "") ?? .normal
                items[row[0]] = Item(
                    branch: row[1] ?? "", category: category,
                    rule: rules.sla(category, severity, pinnedAcknowledge: row[5], pinnedResolve: row[6]), openedAt: row[4] ?? 0)
            }
            for row in try Row.fetchAll(db, sql: "SELECT complaint_id, epoch, stage, at FROM complaint_transitions") {
                guard let id: Data = row[0], items[id] != nil else { continue }
                items[id]!.steps.append(
                    ComplaintSLA.Step(
                        epoch: Int(row[1] as Int64? ?? 0), stage: ComplaintStage(rawValue: Int(row[2] as Int64? ?? 0)) ?? .received, at: row[3] ?? 0))
            }
            for row in try Row.fetchAll(
                db, sql: "SELECT complaint_id, satisfaction FROM contacts WHERE complaint_id IS NOT NULL AND kind = 'return_visit'")
            {
                guard let id: Data = row[0], items[id] != nil, let s: Int64 = row[1] else { continue }
                items[id]!.visits.append(s)
            }
            struct Accumulator {
                var complaints = 0, breached = 0
                var ack: [Int64] = [], resolve: [Int64] = [], visits: [Int64] = []
                var statistics: ComplaintStatistics {
                    var s = ComplaintStatistics()
                    s.complaints = complaints
                    s.acknowledged = ack.count
                    s.resolved = resolve.count
                    s.medianAcknowledgeMinutes = Archive.medianMinutes(ack)
                    s.medianResolveMinutes = Archive.medianMinutes(resolve)
                    s.breached = breached
                    s.returnVisits = visits.count
                    s.satisfaction = visits.isEmpty ? nil : Double(visits.reduce(0, +)) / Double(visits.count)
                    return s
                }
            }
            var groups: [String: Accumulator] = [:]
            func key(_ branch: String?, _ category: ComplaintCategory?) -> String { "\(branch ?? "*")|\(category?.rawValue ?? "*")" }
            for item in items.values {
                let sla = ComplaintSLA.evaluate(openedAt: item.openedAt, timeline: item.steps, rule: item.rule, now: now)
                let first = sla.rounds[0]
                for k in [key(item.branch, item.category), key(item.branch, nil), key(nil, item.category), key(nil, nil)] {
                    groups[k, default: Accumulator()].complaints += 1
                    if sla.breached { groups[k]!.breached += 1 }
                    if let a = first.acknowledgedAt { groups[k]!.ack.append(a - first.start) }
                    if let r = first.resolvedAt { groups[k]!.resolve.append(r - first.start) }
                    groups[k]!.visits += item.visits
                }
            }
            var rows: [ComplaintReportRow] = []
            let branches = Set(items.values.map(\.branch)).sorted()
            // A branch's own report has one branch: its per-branch rows would repeat the totals.
            for branch in (scope == nil ? branches.map(Optional.some) : []) + [nil] {
                for category in ComplaintCategory.allCases.map(Optional.some) + [nil] {
                    if let acc = groups[key(branch, category)] {
                        rows.append(ComplaintReportRow(branch: branch ?? scope, category: category, statistics: acc.statistics))
                    } else if category == nil {
                        rows.append(ComplaintReportRow(branch: branch ?? scope, category: nil, statistics: ComplaintStatistics()))
                    }
                }
            }
            return rows
        }
    }

    static func medianMinutes(_ milliseconds: [Int64]) -> Double? {
        guard !milliseconds.isEmpty else { return nil }
        let s = milliseconds.sorted()
        let n = s.count
        let m = n % 2 == 1 ? Double(s[n / 2]) : (Double(s[n / 2 - 1]) + Double(s[n / 2])) / 2
        return m / 60_000
    }

    // MARK: Claims report

    /// Claims money by branch and by the category of the complaint each follows.
    public func claimReport(branch: String? = nil, from: CivilDate? = nil, to: CivilDate? = nil) throws -> [ClaimReportRow] {
        let scope = try reportScope(branch)
        let start = from.map(CompanyTime.start(of:)) ?? Int64.min
        let end = to.map { CompanyTime.start(of: $0.adding(days: 1)) } ?? Int64.max
        return try read { db in
            var clause = "c.cl % 2 = 1 AND c.filed_at >= ? AND c.filed_at < ?"
            var args: StatementArguments = [start, end]
            if let scope {
                clause += " AND c.branch = ?"
                args += [scope]
            }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT c.branch, coalesce(p.category, 'none'), coalesce(c.claimed_fen, 0),
                        (SELECT max(stage) FROM claim_transitions t WHERE t.claim_id = c.id),
                        (SELECT amount_fen FROM claim_transitions t WHERE t.claim_id = c.id AND t.stage = ?
                            ORDER BY hlc DESC, origin DESC LIMIT 1),
                        (SELECT total(amount_fen) FROM claim_payments m WHERE m.claim_id = c.id)
                    FROM claims c LEFT JOIN complaints p ON p.id = c.complaint_id
                    WHERE \(clause)
                    """, arguments: [ClaimStage.approved.rawValue] + args)
            var groups: [String: ClaimStatistics] = [:]
            var branches: Set<String> = []
            var categories: Set<String> = []
            func key(_ b: String?, _ c: String?) -> String { "\(b ?? "*")|\(c ?? "*")" }
            for row in rows {
                let branch: String = row[0] ?? ""
                let category: String = row[1]
                branches.insert(branch)
                categories.insert(category)
                let stage = ClaimStage(rawValue: Int(row[3] as Int64? ?? 0)) ?? .filed
                let approved: Int64? = row[4]
                // total(), not sum(): a sum of stored values past Int64 is an SQL error.
                let paid = Int64(saturating: row[5] as Double)
                let claimed: Int64 = row[2] ?? 0
                for k in [key(branch, category), key(branch, nil), key(nil, category), key(nil, nil)] {
                    var s = groups[k] ?? ClaimStatistics()
                    s.claims += 1
                    if stage != .closed && stage != .rejected { s.open += 1 }
                    s.claimedFen = s.claimedFen.adding(saturating: claimed)
                    // A rejected claim's earlier approval is no longer money owed.
                    if stage != .rejected { s.approvedFen = s.approvedFen.adding(saturating: approved ?? 0) }
                    s.paidFen = s.paidFen.adding(saturating: paid)
                    if paid > (approved ?? 0) {
                        s.overpaid += 1
                        s.overpaidFen = s.overpaidFen.adding(saturating: paid.subtracting(saturating: approved ?? 0))
                    }
                    groups[k] = s
                }
            }
            var out: [ClaimReportRow] = []
            for b in (scope == nil ? branches.sorted().map(Optional.some) : []) + [nil] {
                for c in categories.sorted().map(Optional.some) + [nil] {
                    if let s = groups[key(b, c)] {
                        out.append(ClaimReportRow(branch: b ?? scope, category: c, statistics: s))
                    } else if c == nil {
                        out.append(ClaimReportRow(branch: b ?? scope, category: nil, statistics: ClaimStatistics()))
                    }
                }
            }
            return out
        }
    }
}

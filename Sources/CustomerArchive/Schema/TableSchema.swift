import Replication

/// The SQL type and meaning of a replicated column.
package enum ColumnType: Sendable, Hashable {
    case text
    case integer
    /// A reference to another record: a 16-byte key, printed as a UUID.
    case key
}

/// A replicated column. Its position in ``TableSchema/columns`` is its id on the wire, so the
/// list is append-only: never reorder or remove a column, only add at the end.
package struct ColumnSchema: Sendable, Hashable {
    package var name: String
    package var type: ColumnType
    /// Personal data: scrubbed by erasure, never written to logs.
    package var personal: Bool
    /// The values a write may store (null is always allowed: it clears the field).
    package var domain: Domain

    package init(_ name: String, _ type: ColumnType, personal: Bool = false, _ domain: Domain? = nil) {
        self.name = name
        self.type = type
        self.personal = personal
        self.domain =
            domain
            ?? {
                switch type {
                case .text: .text(maxBytes: Domain.shortText)
                case .integer: .integer(0...Domain.maximumCount)
                case .key: .key
                }
            }()
    }
}

/// The values a replicated column takes, beyond its SQL type: judged where a change is
/// written and at headquarters' door (line and files alike), versioned with the schema.
///
/// Readers never rely on a domain: a value stored before a domain existed, or relayed by a
/// newer headquarters, is read with checked arithmetic and printed escaped.
package enum Domain: Sendable, Hashable {
    /// UTF-8 text of at most this many bytes.
    case text(maxBytes: Int)
    /// One of these exact strings.
    case oneOf([String])
    /// An integer in this range.
    case integer(ClosedRange<Int64>)
    /// A site code (CHANGESET.md §2.6).
    case site
    /// A 16-byte record key.
    case key

    /// Names, numbers, phones, people: one line's worth.
    static let shortText = 256
    /// Free text: notes, descriptions, evidence, summaries.
    static let longText = 16_384
    /// Counts (shipments, overdue payments, epochs): far above any real one, far below overflow.
    static let maximumCount: Int64 = 1_000_000_000_000
    /// Money in fen: 10^13 yuan, what `Money.parse` accepts. A sum over a million customers
    /// can still pass Int64, so readers add with saturation.
    static let money: ClosedRange<Int64> = -999_999_999_999_999...999_999_999_999_999
    static let nonNegativeMoney: ClosedRange<Int64> = 0...999_999_999_999_999
    /// Instants in Unix milliseconds, 1970 to the end of year 9999.
    static let instant: ClosedRange<Int64> = 0...253_402_300_799_999
    /// Deadlines in minutes: up to ten years.
    static let minutes: ClosedRange<Int64> = 1...5_256_000
    static let percent: ClosedRange<Int64> = 0...100
    static let flag: ClosedRange<Int64> = 0...1

    /// Why `value` is outside this domain, in words that never repeat the value (it may be
    /// personal data); nil when it is inside. Null is always inside.
    package func problem(_ value: Value) -> String? {
        switch (self, value) {
        case (_, .null): return nil
        case (.text(let max), .text(let s)):
            return s.utf8.count <= max ? nil : "is \(s.utf8.count) bytes long; at most \(max) are allowed"
        case (.oneOf(let allowed), .text(let s)):
            return allowed.contains(s) ? nil : "is not one of \(allowed.joined(separator: ", "))"
        case (.site, .text(let s)):
            return (try? SiteID(s)) != nil ? nil : "is not a site code"
        case (.integer(let range), .integer(let i)):
            return range.contains(i) ? nil : "is outside \(range.lowerBound)...\(range.upperBound)"
        case (.key, .blob(let b)):
            return b.count == 16 ? nil : "is not a 16-byte key"
        default:
            return "has the wrong type"
        }
    }
}

/// A replicated table: its wire id, its SQL name, how it merges, and its columns.
///
/// Immutable and held by reference: the merge and snapshot paths pass a table along with every
/// record, and a copy is then one reference instead of a dozen (names, columns, rules, SQL).
package struct TableSchema: Sendable, Hashable {
    private final class Storage: Sendable {
        let id: UInt8
        let name: String
        let kind: TableRules.Kind
        let columns: [ColumnSchema]
        let rules: TableRules
        let columnIndex: [String: Int]
        let sql: SQL

        init(id: UInt8, name: String, kind: TableRules.Kind, columns: [ColumnSchema], rules: TableRules, columnIndex: [String: Int], sql: SQL) {
            self.id = id
            self.name = name
            self.kind = kind
            self.columns = columns
            self.rules = rules
            self.columnIndex = columnIndex
            self.sql = sql
        }
    }
    private let storage: Storage

    package var id: UInt8 { storage.id }
    package var name: String { storage.name }
    package var kind: TableRules.Kind { storage.kind }
    package var columns: [ColumnSchema] { storage.columns }
    package var rules: TableRules { storage.rules }
    var columnIndex: [String: Int] { storage.columnIndex }
    /// Statement texts, built once: the merge path runs them for every record.
    var sql: SQL { storage.sql }

    package static func == (lhs: TableSchema, rhs: TableSchema) -> Bool {
        lhs.storage === rhs.storage || (lhs.id == rhs.id && lhs.name == rhs.name && lhs.kind == rhs.kind && lhs.columns == rhs.columns)
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(name)
        hasher.combine(columns.count)
    }

    struct SQL: Sendable, Hashable {
        var select = ""
        var insert = ""
        var update = ""
        var append = ""
    }

    package init(id: UInt8, name: String, kind: TableRules.Kind, columns: [ColumnSchema]) {
        let rules = TableRules(
            id: id, kind: kind, columnCount: columns.count,
            personalColumns: Set(columns.indices.filter { columns[$0].personal }))
        var index: [String: Int] = [:]
        for (i, c) in columns.enumerated() { index[c.name] = i }
        let quoted = columns.map { "\"\($0.name)\"" }
        var sql = SQL()
        switch kind {
        case .registers:
            let all = ["cl", "erased", "clocks"] + quoted
            sql.select = "SELECT \(all.joined(separator: ", ")) FROM \(name) WHERE id = ?"
            sql.update = "UPDATE \(name) SET \(all.map { "\($0) = ?" }.joined(separator: ", ")) WHERE id = ?"
            sql.insert =
                "INSERT INTO \(name)(\((all + ["id"]).joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: all.count + 1).joined(separator: ", ")))"
        case .appendOnly:
            let all = ["hlc", "origin"] + quoted
            sql.select = "SELECT \(all.joined(separator: ", ")) FROM \(name) WHERE id = ?"
            // Keys are random, so two different rows under one key means a forged change: keep the
            // one with the larger stamp, the same choice on every site.
            sql.append = """
                INSERT INTO \(name)(\((["id"] + all).joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: all.count + 1).joined(separator: ", ")))
                ON CONFLICT(id) DO UPDATE SET \(all.map { "\($0) = excluded.\($0)" }.joined(separator: ", "))
                WHERE excluded.hlc > hlc OR (excluded.hlc = hlc AND excluded.origin > origin)
                """
        }
        storage = Storage(id: id, name: name, kind: kind, columns: columns, rules: rules, columnIndex: index, sql: sql)
    }

    /// Why a value is outside a column's domain (naming table, column and record, never the
    /// value); nil when it is inside.
    package func domainProblem(_ value: Value, column: Int, record: RecordKey) -> String? {
        guard column >= 0 && column < columns.count else { return "\(name) has no column \(column)" }
        return columns[column].domain.problem(value).map { "\(name).\(columns[column].name) of record \(record) \($0)" }
    }

    package func column(_ name: String) -> Int {
        guard let i = columnIndex[name] else { preconditionFailure("no column \(name) in \(self.name)") }
        return i
    }

    /// Checks that a value fits a column's type; structural, so a mismatch rejects the set.
    package func accepts(_ value: Value, column: Int) -> Bool {
        guard column >= 0 && column < columns.count else { return false }
        switch (value, columns[column].type) {
        case (.null, _), (.text, .text), (.integer, .integer): return true
        case (.blob(let b), .key): return b.count == 16
        default: return false
        }
    }
}

/// Every replicated table of the archive, by wire id.
///
/// Wire ids and column positions are public API (they travel in change sets): add, never change.
package enum Schema {
    /// The version of the replicated schema. A change set from a newer version is refused.
    ///
    /// Version 2 added customers' `city` and `merged_into`, contacts' `complaint_id`,
    /// complaints' deadlines, the value settings, SLA rules and monthly business figures.
    /// Version 3 added assignments.
    package static let version = 3

    package static let customers = TableSchema(
        id: 1, name: "customers", kind: .registers,
        columns: [
            .init("number", .text),
            .init("kind", .text, .oneOf(["person", "company"])),
            .init("name", .text, personal: true),
            .init("contact_person", .text, personal: true),
            .init("phone", .text, personal: true, .text(maxBytes: 64)),
            .init("email", .text, personal: true),
            .init("address", .text, personal: true, .text(maxBytes: 1_024)),
            .init("region", .text),
            .init("industry", .text),
            .init("home_branch", .text, .site),
            .init("account_manager", .text),
            .init("key_account", .integer, .integer(Domain.flag)),
            .init("shipments", .integer),
            .init("revenue_fen", .integer, .integer(Domain.money)),
            .init("profit_fen", .integer, .integer(Domain.money)),
            .init("wallet_share_pct", .integer, .integer(Domain.percent)),
            .init("credit_rating", .text, .oneOf(["AAA", "AA", "A", "B", "C", "D"])),
            .init("overdue_payments", .integer),
            .init("customer_since", .text, .text(maxBytes: 10)),
            .init("referral_source", .text),
            .init("notes", .text, personal: true, .text(maxBytes: Domain.longText)),
            .init("archived", .integer, .integer(Domain.flag)),
            .init("currency", .text, .text(maxBytes: 3)),
            // Schema 2.
            .init("city", .text),
            // The customer this one was merged into (a duplicate); written at headquarters only.
            .init("merged_into", .key),
        ])

    /// The columns of a customer's file only its home branch or headquarters may write (with
    /// its existence and its erasure): what identifies the customer, and where it is homed.
    /// Any branch holding the customer may write the others, and add what hangs off it
    /// (contacts, complaints, claims, figures). Judged at headquarters' door at the change's
    /// stamp (protocols/README.md §5.6).
    package static let homeOnlyCustomerColumns: Set<Int> = Set(
        ["number", "kind", "name", "contact_person", "phone", "email", "address", "home_branch"].map { customers.column($0) })

    package static let contacts = TableSchema(
        id: 2, name: "contacts", kind: .appendOnly,
        columns: [
            .init("customer_id", .key),
            .init("kind", .text, .oneOf(ContactKind.allCases.map(\.rawValue))),
            .init("at", .integer, .integer(Domain.instant)),
            .init("satisfaction", .integer, .integer(1...5)),
            .init("staff", .text),
            .init("summary", .text, personal: true, .text(maxBytes: Domain.longText)),
            // Schema 2: the complaint a return visit follows up.
            .init("complaint_id", .key),
        ])

    package static let complaints = TableSchema(
        id: 3, name: "complaints", kind: .registers,
        columns: [
            .init("number", .text),
            .init("customer_id", .key),
            .init("waybill", .text),
            .init("category", .text, .oneOf(ComplaintCategory.allCases.map(\.rawValue))),
            .init("severity", .text, .oneOf(ComplaintSeverity.allCases.map(\.rawValue))),
            .init("assignee", .text),
            .init("description", .text, personal: true, .text(maxBytes: Domain.longText)),
            .init("opened_at", .integer, .integer(Domain.instant)),
            .init("branch", .text, .site),
            // Schema 2: the deadlines in force where and when it was opened, so a later change
            // of the rules does not move them.
            .init("acknowledge_minutes", .integer, .integer(Domain.minutes)),
            .init("resolve_minutes", .integer, .integer(Domain.minutes)),
        ])

    package static let complaintNotes = TableSchema(
        id: 4, name: "complaint_notes", kind: .appendOnly,
        columns: [
            .init("complaint_id", .key),
            .init("at", .integer, .integer(Domain.instant)),
            .init("author", .text),
            .init("text", .text, personal: true, .text(maxBytes: Domain.longText)),
        ])

    package static let complaintTransitions = TableSchema(
        id: 5, name: "complaint_transitions", kind: .appendOnly,
        columns: [
            .init("complaint_id", .key),
            .init("epoch", .integer, .integer(0...1_000_000)),
            .init("stage", .integer, .integer(0...Int64(ComplaintStage.closed.rawValue))),
            .init("at", .integer, .integer(Domain.instant)),
            .init("site", .text, .site),
        ])

    package static let claims = TableSchema(
        id: 6, name: "claims", kind: .registers,
        columns: [
            .init("number", .text),
            .init("customer_id", .key),
            .init("complaint_id", .key),
            .init("waybill", .text),
            .init("currency", .text, .text(maxBytes: 3)),
            .init("claimed_fen", .integer, .integer(Domain.nonNegativeMoney)),
            .init("assessed_fen", .integer, .integer(Domain.nonNegativeMoney)),
            .init("evidence", .text, personal: true, .text(maxBytes: Domain.longText)),
            .init("filed_at", .integer, .integer(Domain.instant)),
            .init("branch", .text, .site),
        ])

    package static let claimTransitions = TableSchema(
        id: 7, name: "claim_transitions", kind: .appendOnly,
        columns: [
            .init("claim_id", .key),
            .init("stage", .integer, .integer(0...Int64(ClaimStage.closed.rawValue))),
            .init("amount_fen", .integer, .integer(Domain.nonNegativeMoney)),
            .init("at", .integer, .integer(Domain.instant)),
            .init("site", .text, .site),
        ])

    package static let claimPayments = TableSchema(
        id: 8, name: "claim_payments", kind: .appendOnly,
        columns: [
            .init("claim_id", .key),
            .init("amount_fen", .integer, .integer(Domain.money)),
            .init("currency", .text, .text(maxBytes: 3)),
            .init("at", .integer, .integer(Domain.instant)),
            .init("reference", .text),
            .init("site", .text, .site),
        ])

    /// Company-wide rules written at HQ and replicated like data: one record, ``settingsKey``.
    package static let settings = TableSchema(
        id: 9, name: "settings", kind: .registers,
        columns: [
            .init("approval_threshold_fen", .integer, .integer(Domain.nonNegativeMoney)),
            // Schema 2: customer value (see ``ValueRules``).
            .init("abc_basis", .text, .oneOf(ValueRules.Basis.allCases.map(\.rawValue))),
            .init("abc_a_pct", .integer, .integer(1...100)),
            .init("abc_b_pct", .integer, .integer(1...100)),
            .init("d_overdue_payments", .integer, .integer(1...1_000_000)),
            .init("d_complaints", .integer, .integer(1...1_000_000)),
            .init("d_loyalty_below", .integer, .integer(Domain.percent)),
            // -1: the median of the customers reported on.
            .init("quadrant_history_fen", .integer, .integer(-1...Domain.nonNegativeMoney.upperBound)),
            .init("quadrant_potential_score", .integer, .integer(Domain.percent)),
            .init("w_attractiveness", .integer, .integer(0...1_000)),
            .init("w_profitability", .integer, .integer(0...1_000)),
            .init("w_relationship", .integer, .integer(0...1_000)),
            .init("w_credit", .integer, .integer(0...1_000)),
            .init("w_loyalty", .integer, .integer(0...1_000)),
            .init("w_growth", .integer, .integer(0...1_000)),
        ])

    package static let settingsKey = RecordKey.wellKnown(1)

    /// Complaint deadlines per category and severity, written at headquarters; one record per
    /// pair, keyed by ``RecordKey/derived(_:)`` of the pair so every site names it alike.
    package static let slaRules = TableSchema(
        id: 10, name: "sla_rules", kind: .registers,
        columns: [
            .init("category", .text, .oneOf(ComplaintCategory.allCases.map(\.rawValue))),
            .init("severity", .text, .oneOf(ComplaintSeverity.allCases.map(\.rawValue))),
            .init("acknowledge_minutes", .integer, .integer(Domain.minutes)),
            .init("resolve_minutes", .integer, .integer(Domain.minutes)),
        ])

    /// A customer's business in one month (shipments, revenue, profit): one record per customer
    /// and month, keyed by the pair, so entering a month again corrects it instead of adding.
    package static let figures = TableSchema(
        id: 11, name: "figures", kind: .registers,
        columns: [
            .init("customer_id", .key),
            .init("month", .text, .text(maxBytes: 7)),
            .init("shipments", .integer),
            .init("revenue_fen", .integer, .integer(Domain.money)),
            .init("profit_fen", .integer, .integer(Domain.money)),
        ])

    /// Customers headquarters assigns to a branch beyond those homed there (`outpost scope
    /// assign`): one customer, every customer homed at another branch, or every customer of a
    /// region; exactly one of the three is set. Written at headquarters only and replicated to
    /// every site like the settings, so a branch counts its assigned customers in its reports as
    /// headquarters does. One record per branch and target, keyed by ``RecordKey/derived(_:)`` of
    /// `"assignment"`, the branch, the kind and the target; withdrawn by deleting it.
    package static let assignments = TableSchema(
        id: 12, name: "assignments", kind: .registers,
        columns: [
            .init("site", .text, .site),
            .init("customer_id", .key),
            .init("home_branch", .text, .site),
            .init("region", .text),
        ])

    package static let tables: [TableSchema] = [
        customers, contacts, complaints, complaintNotes, complaintTransitions,
        claims, claimTransitions, claimPayments, settings, slaRules, figures, assignments,
    ]

    static let byID: [UInt8: TableSchema] = Dictionary(uniqueKeysWithValues: tables.map { ($0.id, $0) })

    package static func table(_ id: UInt8) -> TableSchema? { byID[id] }

    /// Every column's domain as the Markdown table in protocols/CHANGESET.md §10.3 (a test
    /// keeps the two the same).
    package static var domainsMarkdown: String {
        var lines = ["| Table | Col | Name | Domain (null is always allowed) |", "|---|---|---|---|"]
        for table in tables {
            for (i, column) in table.columns.enumerated() {
                let domain: String =
                    switch column.domain {
                    case .text(let max): "text, at most \(max) bytes of UTF-8"
                    case .oneOf(let values): "one of " + values.map { "`\($0)`" }.joined(separator: ", ")
                    case .integer(let range): "integer \(range.lowerBound) … \(range.upperBound)"
                    case .site: "a site code (§2.6)"
                    case .key: "a 16-byte key"
                    }
                lines.append("| \(table.id) `\(table.name)` | \(i) | `\(column.name)` | \(domain) |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

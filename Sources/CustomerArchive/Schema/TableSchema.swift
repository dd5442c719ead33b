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

    package init(_ name: String, _ type: ColumnType, personal: Bool = false) {
        self.name = name
        self.type = type
        self.personal = personal
    }
}

/// A replicated table: its wire id, its SQL name, how it merges, and its columns.
package struct TableSchema: Sendable, Hashable {
    package var id: UInt8
    package var name: String
    package var kind: TableRules.Kind
    package var columns: [ColumnSchema]
    package let rules: TableRules
    let columnIndex: [String: Int]
    /// Statement texts, built once: the merge path runs them for every record.
    let sql: SQL

    struct SQL: Sendable, Hashable {
        var select = ""
        var insert = ""
        var update = ""
        var append = ""
    }

    package init(id: UInt8, name: String, kind: TableRules.Kind, columns: [ColumnSchema]) {
        self.id = id
        self.name = name
        self.kind = kind
        self.columns = columns
        self.rules = TableRules(
            id: id, kind: kind, columnCount: columns.count,
            personalColumns: Set(columns.indices.filter { columns[$0].personal }))
        var index: [String: Int] = [:]
        for (i, c) in columns.enumerated() { index[c.name] = i }
        self.columnIndex = index
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
            // Keys are random, so two different rows under one key means a forged change: keep the
            // one with the larger stamp, the same choice on every site.
            sql.append = """
                INSERT INTO \(name)(\((["id"] + all).joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: all.count + 1).joined(separator: ", ")))
                ON CONFLICT(id) DO UPDATE SET \(all.map { "\($0) = excluded.\($0)" }.joined(separator: ", "))
                WHERE excluded.hlc > hlc OR (excluded.hlc = hlc AND excluded.origin > origin)
                """
        }
        self.sql = sql
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
    package static let version = 2

    package static let customers = TableSchema(
        id: 1, name: "customers", kind: .registers,
        columns: [
            .init("number", .text),
            .init("kind", .text),  // person | company
            .init("name", .text, personal: true),
            .init("contact_person", .text, personal: true),
            .init("phone", .text, personal: true),
            .init("email", .text, personal: true),
            .init("address", .text, personal: true),
            .init("region", .text),
            .init("industry", .text),
            .init("home_branch", .text),
            .init("account_manager", .text),
            .init("key_account", .integer),
            .init("shipments", .integer),
            .init("revenue_fen", .integer),
            .init("profit_fen", .integer),
            .init("wallet_share_pct", .integer),
            .init("credit_rating", .text),
            .init("overdue_payments", .integer),
            .init("customer_since", .text),
            .init("referral_source", .text),
            .init("notes", .text, personal: true),
            .init("archived", .integer),
            .init("currency", .text),
            // Schema 2.
            .init("city", .text),
            // The customer this one was merged into (a duplicate); written at headquarters only.
            .init("merged_into", .key),
        ])

    package static let contacts = TableSchema(
        id: 2, name: "contacts", kind: .appendOnly,
        columns: [
            .init("customer_id", .key),
            .init("kind", .text),  // call | visit | return_visit | praise | suggestion
            .init("at", .integer),
            .init("satisfaction", .integer),
            .init("staff", .text),
            .init("summary", .text, personal: true),
            // Schema 2: the complaint a return visit follows up.
            .init("complaint_id", .key),
        ])

    package static let complaints = TableSchema(
        id: 3, name: "complaints", kind: .registers,
        columns: [
            .init("number", .text),
            .init("customer_id", .key),
            .init("waybill", .text),
            .init("category", .text),
            .init("severity", .text),
            .init("assignee", .text),
            .init("description", .text, personal: true),
            .init("opened_at", .integer),
            .init("branch", .text),
            // Schema 2: the deadlines in force where and when it was opened, so a later change
            // of the rules does not move them.
            .init("acknowledge_minutes", .integer),
            .init("resolve_minutes", .integer),
        ])

    package static let complaintNotes = TableSchema(
        id: 4, name: "complaint_notes", kind: .appendOnly,
        columns: [
            .init("complaint_id", .key),
            .init("at", .integer),
            .init("author", .text),
            .init("text", .text, personal: true),
        ])

    package static let complaintTransitions = TableSchema(
        id: 5, name: "complaint_transitions", kind: .appendOnly,
        columns: [
            .init("complaint_id", .key),
            .init("epoch", .integer),
            .init("stage", .integer),
            .init("at", .integer),
            .init("site", .text),
        ])

    package static let claims = TableSchema(
        id: 6, name: "claims", kind: .registers,
        columns: [
            .init("number", .text),
            .init("customer_id", .key),
            .init("complaint_id", .key),
            .init("waybill", .text),
            .init("currency", .text),
            .init("claimed_fen", .integer),
            .init("assessed_fen", .integer),
            .init("evidence", .text, personal: true),
            .init("filed_at", .integer),
            .init("branch", .text),
        ])

    package static let claimTransitions = TableSchema(
        id: 7, name: "claim_transitions", kind: .appendOnly,
        columns: [
            .init("claim_id", .key),
            .init("stage", .integer),
            .init("amount_fen", .integer),
            .init("at", .integer),
            .init("site", .text),
        ])

    package static let claimPayments = TableSchema(
        id: 8, name: "claim_payments", kind: .appendOnly,
        columns: [
            .init("claim_id", .key),
            .init("amount_fen", .integer),
            .init("currency", .text),
            .init("at", .integer),
            .init("reference", .text),
            .init("site", .text),
        ])

    /// Company-wide rules written at HQ and replicated like data: one record, ``settingsKey``.
    package static let settings = TableSchema(
        id: 9, name: "settings", kind: .registers,
        columns: [
            .init("approval_threshold_fen", .integer),
            // Schema 2: customer value (see ``ValueRules``).
            .init("abc_basis", .text),
            .init("abc_a_pct", .integer),
            .init("abc_b_pct", .integer),
            .init("d_overdue_payments", .integer),
            .init("d_complaints", .integer),
            .init("d_loyalty_below", .integer),
            .init("quadrant_history_fen", .integer),
            .init("quadrant_potential_score", .integer),
            .init("w_attractiveness", .integer),
            .init("w_profitability", .integer),
            .init("w_relationship", .integer),
            .init("w_credit", .integer),
            .init("w_loyalty", .integer),
            .init("w_growth", .integer),
        ])

    package static let settingsKey = RecordKey.wellKnown(1)

    /// Complaint deadlines per category and severity, written at headquarters; one record per
    /// pair, keyed by ``RecordKey/derived(_:)`` of the pair so every site names it alike.
    package static let slaRules = TableSchema(
        id: 10, name: "sla_rules", kind: .registers,
        columns: [
            .init("category", .text),
            .init("severity", .text),
            .init("acknowledge_minutes", .integer),
            .init("resolve_minutes", .integer),
        ])

    /// A customer's business in one month (shipments, revenue, profit): one record per customer
    /// and month, keyed by the pair, so entering a month again corrects it instead of adding.
    package static let figures = TableSchema(
        id: 11, name: "figures", kind: .registers,
        columns: [
            .init("customer_id", .key),
            .init("month", .text),
            .init("shipments", .integer),
            .init("revenue_fen", .integer),
            .init("profit_fen", .integer),
        ])

    package static let tables: [TableSchema] = [
        customers, contacts, complaints, complaintNotes, complaintTransitions,
        claims, claimTransitions, claimPayments, settings, slaRules, figures,
    ]

    static let byID: [UInt8: TableSchema] = Dictionary(uniqueKeysWithValues: tables.map { ($0.id, $0) })

    package static func table(_ id: UInt8) -> TableSchema? { byID[id] }
}

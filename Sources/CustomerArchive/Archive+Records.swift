import Foundation
import GRDB
import Replication

/// A replicated record as read back: its fields by name, and whether it is alive or erased.
public struct Record: Sendable, Hashable {
    public var table: String
    public var id: RecordKey
    public var fields: [String: Value]
    public var alive: Bool
    public var erased: Bool

    public subscript(_ name: String) -> Value { fields[name] ?? .null }

    public var json: JSON {
        var out: [String: JSON] = ["id": .string(id.description)]
        for (k, v) in fields { out[k] = JSON(v) }
        if !alive { out["deleted"] = .bool(true) }
        if erased { out["erased"] = .bool(true) }
        return .object(out)
    }
}

extension JSON {
    init(_ value: Value) {
        switch value {
        case .null: self = .null
        case .integer(let i): self = .int(i)
        case .text(let s): self = .string(s)
        case .blob(let b): self = (try? RecordKey(bytes: b)).map { .string($0.description) } ?? .string(b.map { String(format: "%02x", $0) }.joined())
        }
    }
}

/// Customer files: the operations behind `outpost customer …`.
extension Archive {
    // MARK: Reading

    func fetchRecords(_ table: TableSchema, _ db: Database, where clause: String = "1", arguments: StatementArguments = [], suffix: String = "") throws
        -> [Record]
    {
        let cols = table.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
        let head = table.kind == .registers ? "id, cl, erased" : "id, 1, 0"
        return try Row.fetchAll(db, sql: "SELECT \(head), \(cols) FROM \(table.name) WHERE \(clause) \(suffix)", arguments: arguments).map { row in
            var fields: [String: Value] = [:]
            for (i, c) in table.columns.enumerated() { fields[c.name] = Value(row[3 + i] as DatabaseValue) }
            return Record(
                table: table.name, id: RecordKey(data: row[0]), fields: fields,
                alive: (row[1] as Int64) % 2 == 1, erased: (row[2] as Int64) != 0)
        }
    }

    /// Finds a record by its UUID or its human number.
    /// - Throws: `.notFound` naming the reference and how to list records.
    func resolve(_ table: TableSchema, _ reference: String, _ db: Database) throws -> Record {
        let found: [Record]
        if let key = RecordKey(reference) {
            found = try fetchRecords(table, db, where: "id = ?", arguments: [key.data])
        } else {
            found = try fetchRecords(table, db, where: "number = ?", arguments: [reference.uppercased()])
        }
        guard let record = found.first else {
            throw ArchiveError(
                .notFound, "no \(Self.noun(table)) '\(reference.prefix(40))': give its id or number ('outpost \(Self.noun(table)) list' shows them)")
        }
        return record
    }

    static func noun(_ table: TableSchema) -> String {
        switch table.id {
        case Schema.customers.id: "customer"
        case Schema.complaints.id: "complaint"
        case Schema.claims.id: "claim"
        default: table.name
        }
    }

    public func customer(_ reference: String) throws -> Record {
        try read { db in try resolve(Schema.customers, reference, db) }
    }

    /// Customers, newest first; archived and erased ones only when asked, deleted ones never.
    public func customers(includeArchived: Bool = false, branch: String? = nil, limit: Int = 100) throws -> [Record] {
        try read { db in
            var clause = "cl % 2 = 1"
            var args: [any DatabaseValueConvertible] = []
            // Erased people are kept (de-identified) for accounting; they are not customers to list.
            if !includeArchived { clause += " AND coalesce(archived, 0) = 0 AND erased = 0" }
            if let branch {
                clause += " AND home_branch = ?"
                args.append(branch)
            }
            return try fetchRecords(Schema.customers, db, where: clause, arguments: StatementArguments(args), suffix: "ORDER BY id DESC LIMIT \(max(0, limit))")
        }
    }

    /// Finds customers by a fragment of name or contact person (any two or more characters,
    /// Chinese included, or one character), by three or more digits of the phone, by the start
    /// of their number, or by the exact waybill of one of their complaints or claims: waybill
    /// and number matches first, then
    /// the customers this site indexed most recently (so the order, and which customers fill
    /// `limit`, can differ between sites; the set of all matches does not).
    ///
    /// Fragments go through the bigram index (``SearchIndex``), so a search costs the same on a
    /// million customers as on a thousand unless the fragment is very common, and then the
    /// first `limit` matches end it. Deleted and erased customers are never found; merged ones are, and
    /// say into which customer they were merged.
    public func searchCustomers(_ text: String, limit: Int = 50) throws -> [Record] {
        let needle = text.trimmingWhitespace()
        guard !needle.isEmpty else { throw ArchiveError(.invalidInput, "give some text to search for") }
        guard limit > 0 else { return [] }
        // Every committed write is found: index what is still queued first.
        try catchUpSearchIndex()
        var queries: [String] = []
        if let names = SearchIndex.query(needle, column: "names") { queries.append(names) }
        let phone = Phones.digits(needle)
        if phone.count >= 3, let digits = SearchIndex.query(phone, column: "phone") { queries.append(digits) }
        return try read { db in
            var found: [Record] = []
            var seen: Set<RecordKey> = []
            func take(_ records: [Record]) {
                for r in records where found.count < limit && r.alive && !r.erased && seen.insert(r.id).inserted { found.append(r) }
            }
            // A waybill names one shipment: its customers come first; then customer numbers
            // starting with the text (SH01-C-0001…).
            take(
                try fetchRecords(
                    Schema.customers, db,
                    where: "id IN (SELECT customer_id FROM complaints WHERE waybill = ?1 UNION SELECT customer_id FROM claims WHERE waybill = ?1)",
                    arguments: [needle], suffix: "ORDER BY id DESC"))
            let prefix = needle.uppercased()
            take(
                try fetchRecords(
                    Schema.customers, db, where: "number >= ?1 AND number < ?1 || x'F4'", arguments: [prefix],
                    suffix: "ORDER BY number DESC LIMIT \(limit)"))
            guard !queries.isEmpty, found.count < limit else { return found }
            let rows = try Int64.fetchCursor(
                db, sql: "SELECT rowid FROM search_text WHERE search_text MATCH ? ORDER BY rowid DESC", arguments: [queries.joined(separator: " OR ")])
            var batch: [Int64] = []
            func flush() throws {
                guard !batch.isEmpty else { return }
                let marks = Array(repeating: "?", count: batch.count).joined(separator: ", ")
                let records = try fetchRecords(
                    Schema.customers, db, where: "id IN (SELECT id FROM search_rows WHERE n IN (\(marks)))", arguments: StatementArguments(batch))
                let order = Dictionary(
                    uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT id, n FROM search_rows WHERE n IN (\(marks))", arguments: StatementArguments(batch))
                        .map { (RecordKey(data: $0[0]), $0[1] as Int64) })
                take(records.sorted { (order[$0.id] ?? 0) > (order[$1.id] ?? 0) })
                batch.removeAll(keepingCapacity: true)
            }
            while found.count < limit, let n = try rows.next() {
                batch.append(n)
                if batch.count >= max(16, limit - found.count) { try flush() }
            }
            try flush()
            return found
        }
    }

    /// Indexes the customers written since the search index last caught up, in transactions of
    /// `batch` (so writers wait at most one batch); returns how many it indexed. Searches call
    /// it first, the daemon continuously, an import at its end.
    @discardableResult
    public func catchUpSearchIndex(batch: Int = 20_000, progress: ((Int) -> Void)? = nil) throws -> Int {
        var total = 0
        while try searchBacklog(limit: 1) > 0 {
            let n = try writer.write { db in try SearchIndex.drain(db, limit: batch) }
            total += n
            progress?(total)
            if n < batch { break }
        }
        return total
    }

    /// Customers waiting for the search index (counted up to `limit`).
    public func searchBacklog(limit: Int = Int.max) throws -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM (SELECT 1 FROM search_pending LIMIT ?)", arguments: [limit]) ?? 0 }
    }

    /// Calls `body` for every live customer (not deleted, erased or merged), oldest first,
    /// streaming: a million customers never sit in memory at once.
    public func forEachCustomer(branch: String? = nil, includeArchived: Bool = false, _ body: (Record) throws -> Void) throws {
        try read { db in
            var clause = "cl % 2 = 1 AND erased = 0 AND merged_into IS NULL"
            var args: StatementArguments = []
            if !includeArchived { clause += " AND coalesce(archived, 0) = 0" }
            if let branch {
                clause += " AND home_branch = ?"
                args += [branch]
            }
            let t = Schema.customers
            let cols = t.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
            let rows = try Row.fetchCursor(db, sql: "SELECT id, \(cols) FROM customers WHERE \(clause) ORDER BY id", arguments: args)
            while let row = try rows.next() {
                var fields: [String: Value] = [:]
                for (i, c) in t.columns.enumerated() { fields[c.name] = Value(row[1 + i] as DatabaseValue) }
                try body(Record(table: t.name, id: RecordKey(data: row[0]), fields: fields, alive: true, erased: false))
            }
        }
    }

    // MARK: Writing

    /// Fields a person may set on a customer file (everything except the number).
    /// (The merge pointer is written only by ``mergeCustomers(keep:duplicate:)``.)
    public static let customerFields: [String] = Schema.customers.columns.map(\.name).filter { $0 != "number" && $0 != "merged_into" }

    /// Adds a customer file, numbered `SITE-C-000001`, homed at this site unless told.
    public func addCustomer(_ fields: [String: Value]) throws -> Record {
        let checked = try Self.checkedCustomerFields(fields)
        var stored: [String: Value] = [:]
        let key = try transaction { s in try insertCustomer(&s, checked, stored: &stored) }
        // A new record holds exactly what was written: no need to read it back.
        var all: [String: Value] = [:]
        for c in Schema.customers.columns { all[c.name] = stored[c.name] ?? .null }
        return Record(table: Schema.customers.name, id: key, fields: all, alive: true, erased: false)
    }

    /// Writes a new customer from checked fields, with the defaults and the next number.
    func insertCustomer(_ s: inout Session, _ checked: [String: Value]) throws -> RecordKey {
        var stored: [String: Value] = [:]
        return try insertCustomer(&s, checked, stored: &stored)
    }

    private func insertCustomer(_ s: inout Session, _ checked: [String: Value], stored fields: inout [String: Value]) throws -> RecordKey {
        fields = checked
        guard case .text(let name)? = fields["name"], !name.isEmpty else {
            throw ArchiveError(.invalidInput, "a customer needs a name (--name)")
        }
        if fields["kind"] == nil { fields["kind"] = .text("company") }
        if fields["home_branch"] == nil { fields["home_branch"] = .text(site.code) }
        if fields["currency"] == nil { fields["currency"] = .text("CNY") }
        if fields["archived"] == nil { fields["archived"] = .integer(0) }
        let n = try s.nextNumber("customer")
        fields["number"] = .text(String(format: "%@-C-%06lld", site.code, n))
        return try s.create(Schema.customers, fields)
    }

    /// Changes fields of a customer file.
    public func updateCustomer(_ reference: String, _ fields: [String: Value]) throws -> Record {
        let fields = try Self.checkedCustomerFields(fields)
        guard !fields.isEmpty else { throw ArchiveError(.invalidInput, "nothing to change: give at least one field") }
        let key = try transaction { s in
            let record = try resolve(Schema.customers, reference, s.db)
            try Self.requireWritable(record)
            if fields.keys.contains(where: { Schema.homeOnlyCustomerColumns.contains(Schema.customers.column($0)) }) {
                try requireHome(record, "change its number, kind, name, contact person, phone, e-mail, address or home branch")
            }
            try s.update(Schema.customers, record.id, fields)
            return record.id
        }
        return try customer(key.description)
    }

    public func archiveCustomer(_ reference: String, archived: Bool = true) throws -> Record {
        try updateCustomer(reference, ["archived": .integer(archived ? 1 : 0)])
    }

    /// Deletes a customer entered by mistake (normal customers are archived instead).
    public func deleteCustomer(_ reference: String) throws {
        try transaction { s in
            let record = try resolve(Schema.customers, reference, s.db)
            try requireHome(record, "delete it")
            try s.setAlive(Schema.customers, record.id, false)
        }
    }

    /// Brings back a deleted customer.
    public func restoreCustomer(_ reference: String) throws {
        try transaction { s in
            let record = try resolve(Schema.customers, reference, s.db)
            try requireHome(record, "restore it")
            try s.setAlive(Schema.customers, record.id, true)
        }
    }

    /// Erases a person's identifying data everywhere, permanently (a personal-data request).
    public func eraseCustomer(_ reference: String) throws -> RecordKey {
        try transaction { s in
            let record = try resolve(Schema.customers, reference, s.db)
            guard !record.erased else { throw ArchiveError(.invalidState, "customer \(record.id) is already erased") }
            try requireHome(record, "erase it")
            try s.erase(customer: record.id)
            return record.id
        }
    }

    /// Write authority at the counter: a customer's identifying fields, home branch,
    /// existence and erasure are written by its home branch or headquarters (headquarters
    /// judges it again at its door, by the home at the change's stamp).
    func requireHome(_ record: Record, _ what: String) throws {
        guard site != headquarters else { return }
        let home = record.fields["home_branch"]?.textValue
        guard home != site.code else { return }
        let number = record.fields["number"]?.textValue.map { String($0.prefix(64)) } ?? record.id.description
        let where_ = home.flatMap { try? SiteID($0) }.map { "homed at \($0)" } ?? "not homed at a branch"
        throw ArchiveError(
            .refused,
            "customer \(number) is \(where_): only its home branch or headquarters may \(what); "
                + "this branch (\(site)) may record contacts, complaints and claims for it and change its other fields")
    }

    static func requireWritable(_ record: Record) throws {
        if record.erased { throw ArchiveError(.invalidState, "customer \(record.id) was erased; its personal data can never be written again") }
        if !record.alive { throw ArchiveError(.invalidState, "customer \(record.id) is deleted; 'outpost customer restore' brings it back") }
    }

    static func checkedCustomerFields(_ input: [String: Value]) throws -> [String: Value] {
        var out: [String: Value] = [:]
        for (name, value) in input {
            guard customerFields.contains(name) else { throw ArchiveError(.invalidInput, "customers have no field '\(name)'") }
            switch (name, value) {
            case ("phone", .text(let p)):
                out[name] = .text(try Phones.normalize(p))
            case ("email", .text(let e)):
                guard Self.isEmail(e) else { throw ArchiveError(.invalidInput, "the e-mail address is not valid") }
                out[name] = value
            case ("kind", .text(let k)):
                guard ["person", "company"].contains(k) else { throw ArchiveError(.invalidInput, "customer kind must be person or company") }
                out[name] = value
            case ("wallet_share_pct", .integer(let p)):
                guard (0...100).contains(p) else { throw ArchiveError(.invalidInput, "share of wallet is a percentage 0-100") }
                out[name] = value
            case ("credit_rating", .text(let r)):
                guard ["AAA", "AA", "A", "B", "C", "D"].contains(r.uppercased()) else {
                    throw ArchiveError(.invalidInput, "credit rating must be one of AAA, AA, A, B, C, D")
                }
                out[name] = .text(r.uppercased())
            case ("customer_since", .text(let d)):
                guard CivilDate(d) != nil else { throw ArchiveError(.invalidInput, "customer_since must be a date YYYY-MM-DD") }
                out[name] = value
            case ("shipments", .integer(let n)), ("overdue_payments", .integer(let n)):
                guard n >= 0 else { throw ArchiveError(.invalidInput, "\(name) must not be negative") }
                out[name] = value
            case ("key_account", .integer(let b)), ("archived", .integer(let b)):
                guard b == 0 || b == 1 else { throw ArchiveError(.invalidInput, "\(name) is 0 or 1") }
                out[name] = value
            default:
                out[name] = value
            }
        }
        return out
    }

    static func isEmail(_ s: String) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && !parts[1].hasPrefix(".") && !parts[1].hasSuffix(".")
            && !s.contains(" ")
    }

    // MARK: Contacts

    /// Records a contact with a customer (append-only). A return visit carries satisfaction 1-5.
    @discardableResult
    public func addContact(customer reference: String, kind: ContactKind, satisfaction: Int? = nil, summary: String? = nil, staff: String? = nil) throws
        -> RecordKey
    {
        if let satisfaction, !(1...5).contains(satisfaction) {
            throw ArchiveError(.invalidInput, "satisfaction is 1 (very unhappy) to 5 (very happy)")
        }
        if kind == .returnVisit && satisfaction == nil {
            throw ArchiveError(.invalidInput, "a return visit records the customer's satisfaction (--satisfaction 1-5)")
        }
        return try transaction { s in
            let customer = try resolveCustomerForWrite(reference, s.db)
            return try s.append(
                Schema.contacts,
                [
                    "customer_id": customer.id.value, "kind": .text(kind.rawValue), "at": .integer(Int64(s.wall)),
                    "satisfaction": satisfaction.map { .integer(Int64($0)) } ?? .null,
                    "summary": summary.map(Value.text) ?? .null, "staff": staff.map(Value.text) ?? .null,
                ])
        }
    }

    /// A customer's contacts, with those of the customers merged into it.
    public func contacts(customer reference: String) throws -> [Record] {
        try read { db in
            let customer = try resolve(Schema.customers, reference, db)
            let ids = [customer.id] + (try mergedMembers(of: customer.id, db))
            let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
            return try fetchRecords(
                Schema.contacts, db, where: "customer_id IN (\(marks))", arguments: StatementArguments(ids.map(\.data)), suffix: "ORDER BY hlc, origin, id")
        }
    }
}

/// Phone numbers as typed at a Chinese counter: full-width digits, spaces, dashes, +86.
public enum Phones {
    /// The ASCII digits of a phone number (full-width digits converted, separators dropped).
    public static func digits(_ text: String) -> String {
        var out = ""
        for u in text.unicodeScalars {
            switch u.value {
            case 0x30...0x39: out.unicodeScalars.append(u)
            case 0xFF10...0xFF19: out.unicodeScalars.append(Unicode.Scalar(u.value - 0xFF10 + 0x30)!)
            default: continue
            }
        }
        return out
    }

    /// Normalizes a phone number to its national digits (drops +86 / 0086).
    /// - Throws: `.invalidInput` when it has letters or too few or too many digits.
    public static func normalize(_ text: String) throws -> String {
        let allowed = Set("0123456789０１２３４５６７８９ -()（）+＋".unicodeScalars)
        guard text.unicodeScalars.allSatisfy({ allowed.contains($0) }) else {
            throw ArchiveError(.invalidInput, "the phone number has characters other than digits, spaces, '-', '(' , ')' and '+'")
        }
        var d = digits(text)
        let international = text.trimmingWhitespace().hasPrefix("+") || text.trimmingWhitespace().hasPrefix("＋")
        if international && d.hasPrefix("86") { d.removeFirst(2) } else if d.hasPrefix("0086") { d.removeFirst(4) }
        guard (5...15).contains(d.count) else {
            throw ArchiveError(.invalidInput, "the phone number has \(d.count) digits; expected 5 to 15")
        }
        return d
    }
}

import GRDB
import Replication

/// Local writes: each builds a change stamped by this site's clock and merges it through the
/// same path as remote changes, so capture cannot be skipped.
extension Session {
    func values(_ table: TableSchema, _ fields: [String: Value]) throws -> [(Int, Value)] {
        try fields.sorted { $0.key < $1.key }.map { name, value in
            guard let i = table.columnIndex[name] else {
                throw ArchiveError(.invalidInput, "\(table.name) has no field '\(name)'")
            }
            guard table.accepts(value, column: i) else {
                throw ArchiveError(.invalidInput, "field '\(name)' of \(table.name) does not take a value of that type")
            }
            if let problem = table.columns[i].domain.problem(value) {
                throw ArchiveError(.invalidInput, "the value of \(table.name).\(name) \(problem)")
            }
            return (i, value)
        }
    }

    /// Creates a register record, with a new key unless given one; alive from the start.
    @discardableResult
    mutating func create(_ table: TableSchema, key: RecordKey? = nil, _ fields: [String: Value]) throws -> RecordKey {
        let record = key ?? core.newKey()
        let stamp = try nextStamp()
        let writes = try values(table, fields).map { FieldWrite(column: $0.0, value: $0.1) }
        // The fields change alone creates the record (a field write implies causal length 1).
        try merge(Change(table: table.id, key: record, stamp: stamp, body: .fields(writes)), knownAbsent: key == nil)
        return record
    }

    /// Writes fields of an existing record; each write names the value it replaces as its base.
    mutating func update(_ table: TableSchema, _ key: RecordKey, _ fields: [String: Value]) throws {
        guard let state = try load(table, key) else {
            throw ArchiveError(.notFound, "no \(table.name) record \(key)")
        }
        let writes = try values(table, fields).compactMap { column, value -> FieldWrite? in
            let current = state.registers[column]
            if current?.value == value { return nil }
            return FieldWrite(column: column, value: value, base: current?.stamp)
        }
        guard !writes.isEmpty else { return }
        try merge(Change(table: table.id, key: key, stamp: try nextStamp(), body: .fields(writes)))
    }

    /// Deletes or re-creates a register record by moving its causal length to the next
    /// even (deleted) or odd (alive) number.
    mutating func setAlive(_ table: TableSchema, _ key: RecordKey, _ alive: Bool) throws {
        guard let state = try load(table, key) else { throw ArchiveError(.notFound, "no \(table.name) record \(key)") }
        guard state.isAlive != alive else { return }
        try merge(Change(table: table.id, key: key, stamp: try nextStamp(), body: .existence(causalLength: state.causalLength + 1)))
    }

    /// Appends an immutable row to a grow-only collection.
    @discardableResult
    mutating func append(_ table: TableSchema, _ fields: [String: Value]) throws -> RecordKey {
        let key = core.newKey()
        let body = Change.Body.append(try values(table, fields).filter { !$0.1.isNull }.map { ColumnValue(column: $0.0, value: $0.1) })
        let change = Change(table: table.id, key: key, stamp: try nextStamp(), body: body)
        if let reason = Archive.ruleViolation(change, headquarters: core.headquarters, approvalThreshold: try approvalThresholdHere()) {
            throw ArchiveError(.refused, reason)
        }
        try merge(change)
        return key
    }

    /// Erases a customer: a permanent tombstone.
    mutating func erase(customer key: RecordKey) throws {
        try merge(Change(table: Schema.customers.id, key: key, stamp: try nextStamp(), body: .erase))
    }

    /// Writes a settings field (headquarters only).
    mutating func writeSetting(_ name: String, _ value: Value) throws {
        guard core.site == core.headquarters else {
            throw ArchiveError(.refused, "settings are written at headquarters (\(core.headquarters)) and replicated; this site is \(core.site)")
        }
        let t = Schema.settings
        let column = t.column(name)
        let current = try load(t, Schema.settingsKey)?.registers[column]
        guard current?.value != value else { return }
        let write = FieldWrite(column: column, value: value, base: current?.stamp)
        try merge(Change(table: t.id, key: Schema.settingsKey, stamp: try nextStamp(), body: .fields([write])))
    }

    func approvalThresholdHere() throws -> Int64 {
        try Int64.fetchOne(try db.cachedStatement(sql: "SELECT approval_threshold_fen FROM settings WHERE id = ?"), arguments: [Schema.settingsKey.data])
            ?? Settings.defaultApprovalThresholdFen
    }

    /// The next human number for a kind of record, e.g. `SH01-2026-000123`. Counters are local
    /// to the site and the site code is in the number, so numbers never collide.
    ///
    /// Refused while the archive recovers from a restore: numbers handed out after the backup
    /// are not known here until headquarters has sent them back.
    mutating func nextNumber(_ counter: String) throws -> Int64 {
        if try Int64.fetchOne(try db.cachedStatement(sql: "SELECT value FROM meta WHERE key = 'recovering_since'")) != nil {
            throw ArchiveError(
                .invalidState,
                "this archive was restored from a backup and has not yet fetched back from headquarters what it wrote after the backup; new customers, complaints and claims get numbers once it has (start 'outpost serve' or run 'outpost sync --once'); other writes work now"
            )
        }
        var stmt = RawStatement(
            try db.cachedStatement(
                sql: "INSERT INTO counters(name, value) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"))
        stmt.bind(counter)
        // Reset right after reading: a write statement left unfinished would block the commit.
        defer { stmt.done() }
        guard try stmt.step(db) else { return 1 }
        return stmt.int64(0)
    }
}

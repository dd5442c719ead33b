import Foundation
import GRDB
import Logging
import Replication

/// What applying changes did: counts only, safe to print and log.
public struct ApplyReport: Hashable, Sendable {
    /// Changes that took effect (wholly or in part).
    public var applied = 0
    /// Changes this archive already held (or that lost every field).
    public var unchanged = 0
    /// Concurrent writes that lost and went to the conflict journal.
    public var conflicts = 0
    /// Changes refused by a rule (a branch writing what only HQ may, approval above the
    /// threshold) or for a value outside its domain.
    public var refused = 0
    /// Changes held back because their clock was too far ahead.
    public var quarantined = 0
    /// Whether the receive cursor for the producer advanced.
    public var cursorAdvanced = false
    /// The set did not continue from the receive cursor and was left alone
    /// (``ApplyOptions/continuationOnly``).
    public var outOfOrder = false
    /// Each refused or quarantined change, with why (ids and rules only, never field values).
    public var refusals: [ChangeRefusal] = []

    public init() {}

    public static func += (lhs: inout ApplyReport, rhs: ApplyReport) {
        lhs.applied += rhs.applied
        lhs.unchanged += rhs.unchanged
        lhs.conflicts += rhs.conflicts
        lhs.refused += rhs.refused
        lhs.quarantined += rhs.quarantined
        lhs.cursorAdvanced = lhs.cursorAdvanced || rhs.cursorAdvanced
        lhs.outOfOrder = lhs.outOfOrder || rhs.outOfOrder
        lhs.refusals += rhs.refusals
    }
}

/// A change an apply did not store, and why.
public struct ChangeRefusal: Hashable, Sendable {
    /// Why, in the one vocabulary of refusals: the raw value is the name used in logs, metrics
    /// (`outpost_refusals_total{reason}`), the protocol (`Reason`) and the CLI alike.
    public enum Kind: String, Sendable {
        /// A write only headquarters may make (settings, SLA rules, merges, a claim approval
        /// above the threshold); dropped.
        case hqOnly = "HQ_ONLY"
        /// Its clock is too far ahead of this site's; quarantined, releasable.
        case clockAhead = "CLOCK_AHEAD"
        /// A value outside its column's domain (judged at headquarters' door); dropped.
        case invalidValue = "INVALID_VALUE"
        /// A write to a customer's identifying fields, home branch, existence or erasure by a
        /// branch that was not its home at the change's stamp (judged at headquarters' door);
        /// dropped, and the origin's copy returns to headquarters' state.
        case notHome = "NOT_HOME"
    }
    public var record: RecordKey
    public var origin: SiteID
    public var kind: Kind
    public var message: String
    /// The refused change's clock reading (with its origin, it names the write).
    public var time: Timestamp = .zero
}

/// One write transaction: the clock, new site-table entries and the merge engine.
///
/// Every path that changes replicated data — a local write, a merged change set, a conflict
/// restore — goes through ``merge(_:log:)``, which writes the row, its change-log entry and
/// any conflict in the same transaction.
/// Statements by table id, for one session (one transaction or read).
final class StatementsByTable {
    private var statements: [Statement?] = Array(repeating: nil, count: 256)

    func statement(_ table: TableSchema, in db: Database) throws -> Statement {
        if let s = statements[Int(table.id)] { return s }
        let s = try db.cachedStatement(sql: table.sql.select)
        statements[Int(table.id)] = s
        return s
    }
}

struct Session {
    let db: Database
    let core: ArchiveCore
    var clock: HybridLogicalClock
    let startClock: HybridLogicalClock
    var pendingSites: [SiteID: Int64] = [:]
    var report = ApplyReport()
    var needsCheckpoint = false
    let wall: UInt64
    private var erasedCustomers: [RecordKey: Bool] = [:]
    /// Customers whose searchable values this transaction changed; ``finish()`` queues them for
    /// the search index.
    private var searchTouched: Set<RecordKey> = []
    /// An erasure happened: the search index catches up and is merged before commit, so no
    /// segment keeps the person's tokens.
    var searchPurge = false
    /// The change log's high-water mark, saved by ``finish()``. Sequences are never reused, even
    /// after erasure deletes the newest rows: peers hold cursors into them.
    var sequence: Int64
    private let startSequence: Int64
    /// At headquarters: what this transaction changed, by record and origin, so ``finish()``
    /// can bring every branch's scope up to date in the same transaction (Session+Scope.swift).
    var scopeTouched: [ScopeTouch] = []
    /// At headquarters: customers this transaction created, and the site whose change did.
    var scopeBorn: [RecordKey: SiteID] = [:]
    /// At a branch merging headquarters' set outside recovery: this site's own changes in it
    /// came from headquarters, which holds them, so they are not logged again.
    var ownChangesFromHeadquarters = false
    /// Each table's row-reading statement, looked up in GRDB's cache (which hashes the SQL
    /// text) once per session instead of once per record.
    private let selects = StatementsByTable()

    init(db: Database, core: ArchiveCore) throws {
        self.db = db
        self.core = core
        // The site's clock and log position live in one row, read once and written once per
        // transaction.
        var raw: Int64 = 0
        var sequence: Int64 = 0
        if let row = try Row.fetchOne(try db.cachedStatement(sql: "SELECT clock, sequence FROM state WHERE id = 1")) {
            raw = row[0]
            sequence = row[1]
        }
        self.sequence = sequence
        startSequence = sequence
        clock = HybridLogicalClock(last: Timestamp(rawValue: UInt64(bitPattern: raw)), maximumDrift: core.maximumDrift)
        startClock = clock
        wall = core.environment.now()
    }

    /// Saves the clock and the log position; call once at the end of the transaction.
    mutating func finish() throws {
        if !scopeTouched.isEmpty { try updateScope() }
        if !searchTouched.isEmpty {
            let queue = try db.cachedStatement(sql: "INSERT OR IGNORE INTO search_pending(id) VALUES (?)")
            for key in searchTouched.sorted() { try queue.execute(arguments: [key.data]) }
        }
        if searchPurge {
            try SearchIndex.drain(db)
            try SearchIndex.purgeDeleted(db)
        }
        guard sequence != startSequence || clock != startClock else { return }
        try db.cachedStatement(sql: "UPDATE state SET clock = ?, sequence = ? WHERE id = 1").execute(
            arguments: [Int64(bitPattern: clock.last.rawValue), sequence])
    }

    /// Counts and reports a change this apply does not store.
    mutating func refuse(_ change: Change, _ kind: ChangeRefusal.Kind, _ reason: String, logger: Logger) {
        report.refused += 1
        report.refusals.append(ChangeRefusal(record: change.key, origin: change.origin, kind: kind, message: reason, time: change.stamp.time))
        logger.warning("refused a change", metadata: ["record": "\(change.key)", "origin": "\(change.origin)", "reason": "\(kind.rawValue)"])
    }

    mutating func siteIndex(_ site: SiteID) throws -> Int64 {
        try core.sites.index(of: site, in: db, pending: &pendingSites)
    }

    func site(at index: Int64) throws -> SiteID {
        if let s = pendingSites.first(where: { $0.value == index })?.key { return s }
        return try core.sites.site(at: index, in: db)
    }

    /// A fresh stamp for a local change.
    ///
    /// Refused at a branch while it bootstraps from a snapshot: it compares what it stored
    /// with headquarters' checksum of each part, so nothing but headquarters' state may be in it.
    mutating func nextStamp() throws -> Stamp {
        if core.role == .branch, let progress = try Archive.snapshotProgress(db) {
            throw ArchiveError(
                .invalidState,
                "this branch is still receiving its customers from headquarters (\(progress.sent) of \(progress.total) so far); records can be written once that is done: 'outpost status' shows how far it is"
            )
        }
        return Stamp(time: clock.tick(wallMilliseconds: core.environment.now()), site: core.site)
    }

    // MARK: Rows

    func load(_ table: TableSchema, _ key: RecordKey) throws -> RecordState? {
        var stmt = RawStatement(try selects.statement(table, in: db))
        stmt.bind(key)
        guard try stmt.step(db) else { return nil }
        defer { stmt.done() }
        let registers = try PackedClocks.decode(
            stmt.bytes(2), columnCount: table.columns.count,
            value: { stmt.value(Int32(3 + $0)) },
            site: { try site(at: $0) })
        return RecordState(registers: registers, causalLength: UInt64(stmt.int64(0)), erased: stmt.int64(1) != 0)
    }

    /// Writes a row. `before` is the row as it was, when the caller has it (for the search
    /// index: a customer whose searchable values did not change is not queued again).
    mutating func store(_ table: TableSchema, _ key: RecordKey, _ state: RecordState, exists: Bool, before: RecordState? = nil) throws {
        if table.id == Schema.customers.id {
            let changed =
                !exists || before == nil || before!.erased != state.erased
                || SearchIndex.columnIndexes.contains { before!.registers[$0]?.value != state.registers[$0]?.value }
            if changed { searchTouched.insert(key) }
        }
        var pending = pendingSites
        let clocks = try PackedClocks.encode(state.registers) { try core.sites.index(of: $0, in: db, pending: &pending) }
        pendingSites = pending
        var stmt = RawStatement(try db.cachedStatement(sql: exists ? table.sql.update : table.sql.insert))
        stmt.bind(Int64(state.causalLength))
        stmt.bind(state.erased ? 1 : 0)
        stmt.bind(bytes: clocks)
        for r in state.registers { stmt.bind(r?.value ?? .null) }
        stmt.bind(key)
        try stmt.run(db)
    }

    // MARK: Merge

    /// Merges one change (already validated) and records its effect.
    /// - Parameters:
    ///   - log: append the part that took effect to the change log (always, except for
    ///     derived effects every site computes for itself).
    ///   - knownAbsent: the row cannot exist yet (a key just made here): skip the lookup.
    @discardableResult
    mutating func merge(_ change: Change, log: Bool = true, knownAbsent: Bool = false) throws -> Bool {
        try merge(CollectionOfOne(change), log: log, knownAbsent: knownAbsent)
    }

    /// Merges changes to one record (same table and key) with one read and one write of its row.
    /// - Parameter loaded: the record's row as the caller already read it in this transaction.
    @discardableResult
    mutating func merge(
        _ changes: some Collection<Change>, log: Bool = true, knownAbsent: Bool = false, loaded: RecordState?? = nil
    ) throws -> Bool {
        guard let first = changes.first, let table = Schema.table(first.table) else { return false }
        switch table.kind {
        case .appendOnly:
            var any = false
            for change in changes where try mergeAppend(change, table: table, log: log) { any = true }
            return any
        case .registers:
            return try mergeRegisters(changes, table: table, key: first.key, log: log, knownAbsent: knownAbsent, loaded: loaded)
        }
    }

    private mutating func mergeRegisters(
        _ changes: some Collection<Change>, table: TableSchema, key: RecordKey, log: Bool, knownAbsent: Bool, loaded: RecordState??
    ) throws -> Bool {
        let existing = knownAbsent ? nil : try loaded ?? load(table, key)
        if core.role == .hq && table.id == Schema.customers.id { try recordHomes(of: key, changes, existing: existing) }
        var state = existing ?? RecordState(columnCount: table.columns.count)
        var changed = false
        var erasedNow = false
        var conflicts: [Conflict] = []
        var applied: [Change] = []
        for change in changes {
            let outcome = state.merge(change, rules: table.rules)
            conflicts += outcome.conflicts
            if let body = outcome.applied {
                changed = true
                applied.append(Change(table: table.id, key: key, stamp: change.stamp, body: body))
                if core.role == .hq { scopeTouched.append(ScopeTouch(table: table.id, key: key, origin: change.stamp.site)) }
                if case .erase = body, table.id == Schema.customers.id { erasedNow = true }
                report.applied += 1
            } else {
                report.unchanged += 1
            }
        }
        var derivedErase = false
        if !state.erased, table.id == Schema.complaints.id || table.id == Schema.claims.id,
            let owner = state.registers[table.column("customer_id")]?.value.keyValue,
            try isCustomerErased(owner)
        {
            let stamp = changes.first!.stamp
            _ = state.merge(Change(table: table.id, key: key, stamp: stamp, body: .erase), rules: table.rules)
            derivedErase = true
        }
        if changed || derivedErase {
            try store(table, key, state, exists: existing != nil, before: existing)
            if existing == nil && table.id == Schema.customers.id && core.role == .hq, let first = applied.first {
                scopeBorn[key] = first.stamp.site
            }
        }
        if log {
            for change in applied { try appendLog(change) }
        }
        if !conflicts.isEmpty { try journal(conflicts, table: table, key: key) }
        report.conflicts += conflicts.count
        if erasedNow {
            erasedCustomers[key] = true
            try cascadeErasure(ofCustomer: key)
        }
        if derivedErase {
            try scrubDependents(ofRecord: key, table: table)
        }
        return changed
    }

    private mutating func mergeAppend(_ change: Change, table: TableSchema, log: Bool) throws -> Bool {
        guard case .append(let columnValues) = change.body else { return false }
        var values = [Value](repeating: .null, count: table.columns.count)
        for cv in columnValues where cv.column < values.count { values[cv.column] = cv.value }
        if try isOwnerErased(table: table, values: values) {
            for c in table.rules.personalColumns { values[c] = .null }
        }
        var stmt = RawStatement(try db.cachedStatement(sql: table.sql.append))
        stmt.bind(change.key)
        stmt.bind(Int64(bitPattern: change.stamp.time.rawValue))
        stmt.bind(change.stamp.site.code)
        for v in values { stmt.bind(v) }
        try stmt.run(db)
        guard db.changesCount > 0 else {
            report.unchanged += 1
            return false
        }
        if core.role == .hq { scopeTouched.append(ScopeTouch(table: table.id, key: change.key, origin: change.stamp.site)) }
        if log {
            let stored = values.enumerated().filter { !$0.element.isNull }.map { ColumnValue(column: $0.offset, value: $0.element) }
            try appendLog(Change(table: table.id, key: change.key, stamp: change.stamp, body: .append(stored)))
        }
        report.applied += 1
        return true
    }

    /// Appends a change that took effect to the change log.
    ///
    /// A branch logs only its own changes: it relays nothing (branches take sets from
    /// headquarters only and send it their own changes only), so what it merged from
    /// headquarters would only grow its log by the whole of its scope. Headquarters logs
    /// every change: its log is what it relays.
    ///
    /// A branch's own change that comes back from headquarters (in a customer's state when it
    /// moves back in) is logged again only while the branch recovers from a restore: then its
    /// log lost it; otherwise headquarters has it, and logging it would only push it again.
    mutating func appendLog(_ change: Change) throws {
        guard core.site == core.headquarters || (change.stamp.site == core.site && !ownChangesFromHeadquarters) else { return }
        let body = try encodeLogBody(change.body, time: change.stamp.time)
        let originIndex = try siteIndex(change.stamp.site)
        sequence += 1
        var stmt = RawStatement(try db.cachedStatement(sql: "INSERT INTO changelog(seq, tbl, key, kind, hlc, site, body) VALUES (?, ?, ?, ?, ?, ?, ?)"))
        stmt.bind(sequence)
        stmt.bind(Int64(change.table))
        stmt.bind(change.key)
        stmt.bind(Int64(change.body.kind.rawValue))
        stmt.bind(Int64(bitPattern: change.stamp.time.rawValue))
        stmt.bind(originIndex)
        stmt.bind(bytes: body)
        try stmt.run(db)
    }

    /// Journals the writes that lost in one merge: one row per (winner, loser) pair of writes,
    /// holding every field that pair decided.
    mutating func journal(_ conflicts: [Conflict], table: TableSchema, key: RecordKey) throws {
        var groups: [(winner: Stamp, loser: Stamp, fields: [JournalField])] = []
        for c in conflicts {
            let field = JournalField(column: c.column, winner: c.winner.value, loser: c.loser.value)
            if let g = groups.firstIndex(where: { $0.winner == c.winner.stamp && $0.loser == c.loser.stamp }) {
                groups[g].fields.append(field)
            } else {
                groups.append((c.winner.stamp, c.loser.stamp, [field]))
            }
        }
        for g in groups {
            var raw = RawStatement(
                try db.cachedStatement(
                    sql: """
                        INSERT INTO conflicts(tbl, key, winner_hlc, winner_site, loser_hlc, loser_site, fields, seen_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """))
            raw.bind(Int64(table.id))
            raw.bind(key)
            raw.bind(Int64(bitPattern: g.winner.time.rawValue))
            raw.bind(g.winner.site.code)
            raw.bind(Int64(bitPattern: g.loser.time.rawValue))
            raw.bind(g.loser.site.code)
            raw.bind(bytes: JournalField.encode(g.fields))
            raw.bind(Int64(bitPattern: wall))
            try raw.run(db)
        }
    }

    // MARK: Erasure

    mutating func isCustomerErased(_ key: RecordKey) throws -> Bool {
        if let known = erasedCustomers[key] { return known }
        let erased =
            try Int64.fetchOne(try db.cachedStatement(sql: "SELECT erased FROM customers WHERE id = ?"), arguments: [key.data]) ?? 0
        erasedCustomers[key] = erased != 0
        return erased != 0
    }

    /// Whether an append-only row belongs to an erased person (its personal columns are then
    /// stored empty, whichever arrives first: the row or the erasure).
    mutating func isOwnerErased(table: TableSchema, values: [Value]) throws -> Bool {
        guard !table.rules.personalColumns.isEmpty else { return false }
        switch table.id {
        case Schema.contacts.id:
            guard let owner = values[table.column("customer_id")].keyValue else { return false }
            return try isCustomerErased(owner)
        case Schema.complaintNotes.id:
            guard let complaint = values[table.column("complaint_id")].keyValue else { return false }
            return try (Int64.fetchOne(try db.cachedStatement(sql: "SELECT erased FROM complaints WHERE id = ?"), arguments: [complaint.data]) ?? 0) != 0
        default:
            return false
        }
    }

    /// Applies a customer's erasure to everything that hangs off it: contacts, complaints and
    /// their notes, claims; then purges the values from the change log and conflict journal.
    mutating func cascadeErasure(ofCustomer customer: RecordKey) throws {
        needsCheckpoint = true
        let contactKeys = try Data.fetchAll(db, sql: "SELECT id FROM contacts WHERE customer_id = ?", arguments: [customer.data])
        try db.execute(sql: "UPDATE contacts SET summary = NULL WHERE customer_id = ?", arguments: [customer.data])
        for k in contactKeys { try purgeLog(key: RecordKey(data: k), table: Schema.contacts) }
        for table in [Schema.complaints, Schema.claims] {
            let keys = try Data.fetchAll(db, sql: "SELECT id FROM \(table.name) WHERE customer_id = ? AND erased = 0", arguments: [customer.data])
            for k in keys.map(RecordKey.init(data:)) {
                guard var state = try load(table, k) else { continue }
                let stamp = Stamp(time: .zero, site: core.site)
                _ = state.merge(Change(table: table.id, key: k, stamp: stamp, body: .erase), rules: table.rules)
                try store(table, k, state, exists: true)
                try scrubDependents(ofRecord: k, table: table)
            }
        }
        try purgeLog(key: customer, table: Schema.customers)
        searchPurge = true
    }

    /// Scrubs what hangs off an erased complaint or claim, and its own history.
    mutating func scrubDependents(ofRecord key: RecordKey, table: TableSchema) throws {
        needsCheckpoint = true
        if table.id == Schema.complaints.id {
            let notes = try Data.fetchAll(db, sql: "SELECT id FROM complaint_notes WHERE complaint_id = ?", arguments: [key.data])
            try db.execute(sql: "UPDATE complaint_notes SET text = NULL WHERE complaint_id = ?", arguments: [key.data])
            for n in notes { try purgeLog(key: RecordKey(data: n), table: Schema.complaintNotes) }
        }
        try purgeLog(key: key, table: table)
    }

    /// Removes personal values of one record from the change log, the conflict journal and
    /// the quarantine.
    mutating func purgeLog(key: RecordKey, table: TableSchema) throws {
        let personal = table.rules.personalColumns
        guard !personal.isEmpty else { return }
        let rows = try Row.fetchAll(db, sql: "SELECT seq, kind, hlc, body FROM changelog WHERE key = ?", arguments: [key.data])
        for row in rows {
            let seq: Int64 = row[0]
            let time = Timestamp(rawValue: UInt64(bitPattern: row[2] as Int64))
            // A row this version cannot read cannot be scrubbed, so it goes whole: what it
            // held of the person must not outlive the erasure.
            guard let parts = try? decodeLogParts(kind: row[1], time: time, bytes: [UInt8](row[3] as Data)) else {
                try db.execute(sql: "DELETE FROM changelog WHERE seq = ?", arguments: [seq])
                continue
            }
            let stripped = parts.compactMap { part in Self.strip(part.body, personal: personal).map { LogBody.Part(time: part.time, body: $0) } }
            if stripped.isEmpty {
                try db.execute(sql: "DELETE FROM changelog WHERE seq = ?", arguments: [seq])
            } else if stripped != parts {
                let stored = try encodeLogParts(stripped)
                try db.execute(
                    sql: "UPDATE changelog SET kind = ?, hlc = ?, body = ? WHERE seq = ?",
                    arguments: [stored.kind, Int64(bitPattern: stored.time.rawValue), Data(stored.bytes), seq])
            }
        }
        for row in try Row.fetchAll(db, sql: "SELECT id, fields FROM conflicts WHERE key = ? AND tbl = ?", arguments: [key.data, Int64(table.id)]) {
            let id: Int64 = row[0]
            let fields = try JournalField.decode([UInt8](row[1] as Data))
            let kept = fields.filter { !personal.contains($0.column) }
            if kept.isEmpty {
                try db.execute(sql: "DELETE FROM conflicts WHERE id = ?", arguments: [id])
            } else if kept.count != fields.count {
                try db.execute(sql: "UPDATE conflicts SET fields = ? WHERE id = ?", arguments: [Data(JournalField.encode(kept)), id])
            }
        }
        let held = try Row.fetchAll(db, sql: "SELECT id, change FROM quarantine WHERE key = ?", arguments: [key.data])
        for row in held {
            let id: Int64 = row[0]
            var set = try ChangeSetCodec.decode([UInt8](row[1] as Data))
            set.changes = set.changes.compactMap { c in
                Self.strip(c.body, personal: personal).map { Change(table: c.table, key: c.key, stamp: c.stamp, body: $0) }
            }
            try db.execute(sql: "UPDATE quarantine SET change = ? WHERE id = ?", arguments: [Data(try ChangeSetCodec.encode(set)), id])
        }
    }

    /// A body without personal values; `nil` when nothing is left of it.
    static func strip(_ body: Change.Body, personal: Set<Int>) -> Change.Body? {
        switch body {
        case .fields(let writes):
            let kept = writes.filter { !personal.contains($0.column) }
            return kept.isEmpty ? nil : .fields(kept)
        case .append(let values):
            return .append(values.filter { !personal.contains($0.column) })
        case .existence, .erase:
            return body
        }
    }

    /// A stored row's stamped parts (``LogBody``); nil for a kind this version does not know.
    func decodeLogParts(kind: Int64, time: Timestamp, bytes: [UInt8]) throws -> [LogBody.Part]? {
        try LogBody.decode(kind: kind, time: time, bytes: bytes) { i throws(ReplicationError) in
            do { return try site(at: Int64(bitPattern: i)) } catch {
                throw ReplicationError(.malformedChangeSet, "change log refers to unknown site number \(i)")
            }
        }
    }

    /// A row for `parts` of one origin (``LogBody/encode(_:siteIndex:)``).
    mutating func encodeLogParts(_ parts: [LogBody.Part]) throws -> (kind: Int64, time: Timestamp, bytes: [UInt8]) {
        try withSiteIndexes { LogBody.encode(parts, siteIndex: $0) }
    }

    mutating func encodeLogBody(_ body: Change.Body, time: Timestamp) throws -> [UInt8] {
        try withSiteIndexes { siteIndex in
            var w = ByteWriter()
            ChangeBodyCodec.encode(body, time: time, into: &w, siteIndex: siteIndex)
            return w.bytes
        }
    }

    /// Runs an encoder that numbers sites, adding sites the table lacks to this transaction.
    private mutating func withSiteIndexes<T>(_ encode: ((SiteID) -> UInt64) -> T) throws -> T {
        var pending = pendingSites
        var failure: (any Error)?
        let result = encode { site in
            do { return UInt64(try core.sites.index(of: site, in: db, pending: &pending)) } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        pendingSites = pending
        return result
    }
}

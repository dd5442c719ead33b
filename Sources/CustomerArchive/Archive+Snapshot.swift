import Crypto
import Foundation
import GRDB
import Replication

/// One part of a snapshot of a branch's scope: headquarters' current state of every settings
/// record (first part only) and of some of the scope's customers with everything hanging off
/// them, in customer key order.
public struct SnapshotPart: Sendable, Hashable {
    /// Headquarters' log end when this part was read: its states are at least that new.
    public var cut: UInt64
    /// The customer the part continues after (nil: the first part, which carries settings).
    public var after: RecordKey?
    /// The customers the part covers, in key order.
    public var customers: [RecordKey]
    /// The records' states, as changes that carry each value's own stamp (producer HQ,
    /// range `(0, 0]`: a snapshot is no range of the log).
    public var set: ChangeSet
    /// Customers of the scope up to and including the part's last, and in the whole scope.
    public var sent: Int
    public var total: Int
    /// No customer of the scope follows this part.
    public var done: Bool
    /// SHA-256 of the uncompressed encoding of `set` (protocols/README.md §5.8): the branch
    /// rebuilds the same set from what it stored and compares, before it commits the part.
    public var digest: [UInt8]
    /// First part only: the branch's changes headquarters refused up to the cut, which the
    /// pull after the cut does not answer again; the branch journals them.
    public var refused: [RefusedWrite]

    public init(
        cut: UInt64, after: RecordKey?, customers: [RecordKey], set: ChangeSet, sent: Int, total: Int, done: Bool, digest: [UInt8],
        refused: [RefusedWrite] = []
    ) {
        self.refused = refused
        self.cut = cut
        self.after = after
        self.customers = customers
        self.set = set
        self.sent = sent
        self.total = total
        self.done = done
        self.digest = digest
    }
}

/// A branch's bootstrap from a snapshot, while it is under way.
public struct SnapshotProgress: Sendable, Hashable, Codable {
    /// Headquarters' log position of the first part: the branch follows the log from here.
    public var cut: UInt64
    /// The last customer applied (nil: none yet).
    public var after: String?
    public var sent: Int
    public var total: Int
}

/// Snapshot bootstrap (DESIGN: "A new branch bootstraps from a snapshot, not by replaying
/// history").
///
/// A new branch gets its scope as it is now, not as the history of the national log: work in
/// proportion to its scope, not to headquarters' log. Headquarters reads each part in one read
/// transaction: its log end (the part's *cut*), the scope's customers after the part's
/// starting point, and their states. The branch applies each part in one transaction that also
/// records how far it got, so a broken line resumes after the last customer applied; a resumed
/// part may be newer than the parts before it, which is harmless: the branch follows the log
/// from the **first** part's cut, so every change after it (to customers sent earlier, moves
/// out of the scope, settings) arrives again through the pull, and merging is idempotent.
///
/// Each part carries the SHA-256 of its states' encoding; the branch rebuilds that encoding
/// from what it stored and commits the part only when both agree. While a bootstrap is under
/// way the branch refuses local writes, so nothing but headquarters' state is in what it
/// compares.
extension Archive {
    // MARK: Headquarters

    /// The part of `site`'s scope after customer `after` (nil: the first part, with every
    /// settings record), holding at least one customer and about `maxChanges` changes or
    /// `maxBytes` bytes.
    public func snapshot(for site: SiteID, after: RecordKey?, maxChanges: Int = 5_000, maxBytes: Int = 1 << 20) throws -> SnapshotPart {
        guard self.site == headquarters else {
            throw ArchiveError(.refused, "a snapshot of a branch's scope comes from headquarters (\(headquarters)); this site is \(self.site)")
        }
        return try writer.read { db in
            let session = try Session(db: db, core: core)
            let cut = try Self.logEnd(db)
            // The customers the branch holds at this read: their last move in is "held"; the
            // same test its pull makes (exportChanges(for:after:)). One walk of the index on
            // (site, customer, seq, held) in customer order: SQLite takes a bare column from
            // the row that gives max(seq).
            let scope = """
                SELECT customer FROM (SELECT customer, held, max(seq) FROM scope_moves
                    WHERE site = ? AND customer > ? GROUP BY customer) WHERE held != 0
                """
            // One walk counts both: the whole scope, and what earlier parts covered.
            let counts = try Row.fetchOne(
                db, sql: "SELECT count(*), coalesce(sum(customer <= ?), 0) FROM (\(scope))", arguments: [after?.data ?? Data(), site.code, Data()])
            let total: Int = counts?[0] ?? 0
            let before: Int = counts?[1] ?? 0
            let next = try Row.fetchCursor(db, sql: scope, arguments: [site.code, after?.data ?? Data()])
            var customers: [RecordKey] = []
            var changes: [Change] = after == nil ? try settingsState(session) : []
            var bytes = changes.reduce(0) { $0 + Self.approximateSize($1) }
            // Read in chunks: what hangs off a chunk's customers comes in a statement per
            // table, and the part ends at the customer that fills it.
            var pending: [RecordKey] = []
            var exhausted = false
            fill: while true {
                if pending.isEmpty {
                    while pending.count < 256, let row = try next.next() { pending.append(RecordKey(data: row[0])) }
                    if pending.isEmpty {
                        exhausted = true
                        break
                    }
                }
                let holdings = try session.holding(ofCustomers: pending)
                var used = 0
                for customer in pending {
                    if !customers.isEmpty && (changes.count >= maxChanges || bytes >= maxBytes) { break fill }
                    let state = try currentState(ofCustomer: customer, session, holding: holdings[customer] ?? [])
                    customers.append(customer)
                    changes += state
                    bytes += state.reduce(0) { $0 + Self.approximateSize($1) }
                    used += 1
                }
                pending.removeFirst(used)
            }
            // Filled before the scope ran out: a customer read but not sent, or more to read.
            let done = exhausted && pending.isEmpty
            let set = ChangeSet(producer: core.site, schemaVersion: Schema.version, after: 0, through: 0, changes: changes)
            var refused: [RefusedWrite] = []
            if after == nil {
                let rows = try Row.fetchAll(
                    db,
                    sql: "SELECT customer, tbl, key, hlc, reason, message FROM scope_refusals WHERE site = ? AND seq <= ? ORDER BY seq LIMIT 10000",
                    arguments: [site.code, Int64(bitPattern: cut)])
                refused = rows.compactMap { Self.refusedWrite($0, from: 0) }
            }
            return SnapshotPart(
                cut: cut, after: after, customers: customers, set: set, sent: before + customers.count, total: total, done: done,
                digest: try Self.digest(set), refused: refused)
        }
    }

    /// SHA-256 of a set's uncompressed encoding.
    static func digest(_ set: ChangeSet) throws -> [UInt8] {
        Array(SHA256.hash(data: try ChangeSetCodec.encode(set, compress: false)))
    }

    /// Every settings, SLA rule and assignment record, in table and key order.
    func settingsState(_ session: Session) throws -> [Change] {
        var out: [Change] = []
        for table in Schema.tables where table.kind == .registers && table.id != Schema.customers.id && Session.ownerSQL[table.id] == nil {
            for key in try Data.fetchAll(session.db, sql: "SELECT id FROM \(table.name) ORDER BY id") {
                guard let state = try session.load(table, RecordKey(data: key)) else { continue }
                out += Self.changes(restoring: state, table: table, key: RecordKey(data: key))
            }
        }
        return out
    }

    // MARK: Branch

    /// Whether this branch should bootstrap from a snapshot before it pulls: it never held
    /// anything of headquarters' log (a new branch), or a bootstrap is under way. A branch
    /// recovering from a restore follows the log from its backup's cursor instead.
    public func needsSnapshot() throws -> Bool {
        guard site != headquarters else { return false }
        return try read { db in
            guard try Self.meta(db, "recovering_since") == nil else { return false }
            if try Self.meta(db, "snapshot_cut") != nil { return true }
            guard try Self.meta(db, "snapshot_done") == nil else { return false }
            let cursor = try Int64.fetchOne(db, sql: "SELECT received_through FROM cursors WHERE peer = ?", arguments: [headquarters.code]) ?? 0
            return cursor == 0
        }
    }

    /// The bootstrap under way, if any (`outpost status`).
    public func snapshotProgress() throws -> SnapshotProgress? {
        try read { db in try Self.snapshotProgress(db) }
    }

    static func snapshotProgress(_ db: Database) throws -> SnapshotProgress? {
        guard let cut = try meta(db, "snapshot_cut") else { return nil }
        let after = try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'snapshot_after'").flatMap { $0.count == 16 ? RecordKey(data: $0) : nil }
        return SnapshotProgress(
            cut: UInt64(bitPattern: cut), after: after?.description, sent: Int(clamping: try meta(db, "snapshot_sent") ?? 0),
            total: Int(clamping: try meta(db, "snapshot_total") ?? 0))
    }

    static func meta(_ db: Database, _ key: String) throws -> Int64? {
        try Int64.fetchOne(try db.cachedStatement(sql: "SELECT value FROM meta WHERE key = ?"), arguments: [key])
    }

    /// How much of this branch's log headquarters has acknowledged: read before asking for
    /// snapshot parts (``applySnapshot(_:acknowledgedBeforeRead:)``).
    public func acknowledgedByHeadquarters() throws -> UInt64 {
        try cursor(for: headquarters).sentThrough
    }

    /// Where the next part should start: after this customer (nil: from the start).
    public func snapshotResumePoint() throws -> RecordKey? {
        try read { db in
            try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'snapshot_after'").flatMap { $0.count == 16 ? RecordKey(data: $0) : nil }
        }
    }

    /// Applies one part of a snapshot from headquarters in one transaction, with how far the
    /// bootstrap got; the last part sets the receive cursor to the first part's cut and ends
    /// the bootstrap.
    /// - Parameter acknowledgedBeforeRead: how much of this branch's log headquarters had
    ///   acknowledged before it read the part (``acknowledgedByHeadquarters()`` read before the
    ///   part was asked for). A customer the part does not name is evicted only when
    ///   headquarters held all this branch wrote about it by then: a push acknowledged while the
    ///   part was on its way may bring a customer into the scope after the part's cut, with a
    ///   move that says the branch holds it already. What the branch logged above it is merged
    ///   again on top of the part's state, which does not hold what headquarters took later.
    /// - Throws: `.outOfOrder` when the part does not start where this branch's bootstrap
    ///   stands, `.malformedChangeSet` when its digest does not match what was stored or it
    ///   holds a record of a customer it does not name (nothing is written either way).
    @discardableResult
    public func applySnapshot(_ part: SnapshotPart, acknowledgedBeforeRead: UInt64) throws -> SnapshotProgress {
        guard site != headquarters else { throw ArchiveError(.refused, "headquarters takes no snapshot; branches do") }
        guard part.set.producer == headquarters else {
            throw ArchiveError(.forgedOrigin, "a snapshot comes from headquarters (\(headquarters)), not from \(part.set.producer)")
        }
        var progress = SnapshotProgress(cut: part.cut, after: nil, sent: part.sent, total: part.total)
        /// The records of the part's customers this branch held before (its own, from before
        /// its first contact): reset to headquarters' state, then what it wrote that
        /// headquarters has not acknowledged is merged again on top, once the digest matched.
        var removed: [Data] = []
        try apply(
            part.set, moves: ScopeMoves(), options: ApplyOptions(checkDrift: false, batchSize: .max, advanceCursor: false), progress: nil,
            judgeRules: false,
            firstly: { session in
                // Refusals first, as a pull answers them: journaled (a refused write is never
                // merged again below), and each refused customer's copy reset: to headquarters'
                // state when a part names it, else to what headquarters has not seen yet.
                // A refused customer this part does not name leaves as an eviction leaves:
                // what headquarters acknowledged of it goes from the log and journals too.
                let named = Set(part.customers)
                removed += try session.resetRefused(part.refused, leaving: Set(part.refused.map(\.customer)).subtracting(named))
                for (_, holding) in try session.holding(ofCustomers: part.customers) {
                    for (table, keys) in holding where !keys.isEmpty {
                        let delete = try session.db.cachedStatement(sql: "DELETE FROM \(table.name) WHERE id = ?")
                        for key in keys { try delete.execute(arguments: [key]) }
                        removed += keys
                    }
                }
            }
        ) { [self] session in
            let db = session.db
            let resume = try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'snapshot_after'").map(RecordKey.init(data:))
            let started = try Self.meta(db, "snapshot_cut")
            guard part.after == resume, (started == nil) == (part.after == nil) else {
                throw ArchiveError(
                    .outOfOrder,
                    "the snapshot part continues after \(part.after?.description ?? "the start"); this branch's bootstrap stands after \(resume?.description ?? "the start")"
                )
            }
            // Rebuilt from what this branch now holds: a record stored otherwise than
            // headquarters sent it, or one the part does not name, fails the comparison.
            var rebuilt: [Change] = part.after == nil ? try settingsState(session) : []
            let holdings = try session.holding(ofCustomers: part.customers)
            for customer in part.customers { rebuilt += try currentState(ofCustomer: customer, session, holding: holdings[customer] ?? []) }
            let mine = ChangeSet(producer: headquarters, schemaVersion: part.set.schemaVersion, after: 0, through: 0, changes: rebuilt)
            // Equal to the digest headquarters computed over its own state, the rebuilt state is
            // that state, whatever the line did to the set on the way: no need to digest the set.
            guard try Self.digest(mine) == part.digest else {
                throw ArchiveError(
                    .malformedChangeSet,
                    "the snapshot part after \(part.after?.description ?? "the start") does not match its checksum once stored (\(part.customers.count) customers); nothing of it was kept"
                )
            }
            // What this branch holds in the part's range of keys that the part does not name
            // (its own customers from before its first contact) left its scope before the cut
            // when headquarters has all the branch wrote about it (re-homed since): evicted.
            // One with changes headquarters has not acknowledged stays: once they arrive,
            // headquarters counts it as served (or born here) and its moves say the rest.
            // Parts cover the key space in order, the last one to its end.
            let named = Set(part.customers)
            let held = try Data.fetchAll(
                db, sql: "SELECT id FROM customers WHERE id > ? AND (? OR id <= ?) ORDER BY id",
                arguments: [part.after?.data ?? Data(), part.done, part.customers.last?.data ?? Data()])
            for key in held.map(RecordKey.init(data:)) where !named.contains(key) {
                try session.evict(key, waiting: false, acknowledged: acknowledgedBeforeRead)
            }
            var seen: Set<Data> = []
            try session.replayUnacknowledged(removed.filter { seen.insert($0).inserted }, acknowledged: acknowledgedBeforeRead)
            let cut = started ?? Int64(bitPattern: part.cut)
            progress.cut = UInt64(bitPattern: cut)
            progress.after = part.customers.last?.description ?? resume?.description
            let set = try db.cachedStatement(sql: "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            if part.done {
                for key in ["snapshot_cut", "snapshot_after", "snapshot_sent", "snapshot_total"] {
                    try db.execute(sql: "DELETE FROM meta WHERE key = ?", arguments: [key])
                }
                try set.execute(arguments: ["snapshot_done", Int64(clamping: core.environment.now())])
                try db.execute(
                    sql: """
                        INSERT INTO cursors(peer, received_through) VALUES (?, ?)
                        ON CONFLICT(peer) DO UPDATE SET received_through = max(received_through, excluded.received_through)
                        """,
                    arguments: [headquarters.code, cut])
            } else {
                try set.execute(arguments: ["snapshot_cut", cut])
                if let last = part.customers.last { try set.execute(arguments: ["snapshot_after", last.data]) }
                try set.execute(arguments: ["snapshot_sent", Int64(part.sent)])
                try set.execute(arguments: ["snapshot_total", Int64(part.total)])
            }
        }
        return progress
    }
}

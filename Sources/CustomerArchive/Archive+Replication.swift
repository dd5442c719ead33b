import Foundation
import GRDB
import Replication

/// How to apply a change set.
public struct ApplyOptions: Sendable {
    /// Refuse changes whose origin is the producer and whose clock is too far ahead (they go to
    /// quarantine). Relayed changes are taken as they are.
    public var checkDrift = true
    /// Changes per transaction: bounds how long local writes wait behind an apply.
    public var batchSize = 5_000
    /// Advance this archive's receive cursor for the producer when the set continues it.
    public var advanceCursor = true
    /// Refuse changes holding a value outside its column's domain (headquarters' door; a
    /// branch stores what headquarters relays).
    public var judgeDomains = false
    /// Take the set only when it continues exactly from the receive cursor (`after` equals
    /// it), and otherwise leave everything as it is (``ApplyReport/outOfOrder``). A set scoped
    /// to a branch holds only what the branch held at each change's sequence, so merged out of
    /// its place it could leave part of a customer that the moves around it would not evict.
    public var continuationOnly = false
    /// With `continuationOnly`, also take a set that overlaps the cursor (`after < cursor <
    /// through`): a file from headquarters exported from an older cursor. Its moves are net
    /// over the whole range, so it ends where the sets it overlaps would have.
    public var acceptOverlap = false
    /// At a branch: how much of its log headquarters had acknowledged before it read the set
    /// (a pull's start, a file's `received_through`). A refusal's reset merges again what the
    /// branch logged above it: a push acknowledged after the read is not in the state the set
    /// carries, and never comes back in a pull.
    public var acknowledgedBeforeRead: UInt64 = .max

    public init(
        checkDrift: Bool = true, batchSize: Int = 5_000, advanceCursor: Bool = true, judgeDomains: Bool = false, continuationOnly: Bool = false,
        acceptOverlap: Bool = false, acknowledgedBeforeRead: UInt64 = .max
    ) {
        self.acknowledgedBeforeRead = acknowledgedBeforeRead
        self.checkDrift = checkDrift
        self.batchSize = batchSize
        self.advanceCursor = advanceCursor
        self.judgeDomains = judgeDomains
        self.continuationOnly = continuationOnly
        self.acceptOverlap = acceptOverlap
    }
}

/// A peer's replication cursors as this site keeps them.
public struct PeerCursor: Hashable, Sendable, Codable {
    public var peer: String
    /// "I hold all of the peer's log up to here."
    public var receivedThrough: UInt64
    /// "The peer holds all of my log up to here."
    public var sentThrough: UInt64
    /// When the peer last delivered a change set here (Unix milliseconds).
    public var lastSeenMilliseconds: UInt64?

    public init(peer: String, receivedThrough: UInt64, sentThrough: UInt64, lastSeenMilliseconds: UInt64? = nil) {
        self.peer = peer
        self.receivedThrough = receivedThrough
        self.sentThrough = sentThrough
        self.lastSeenMilliseconds = lastSeenMilliseconds
    }
}

extension Archive {
    // MARK: Export

    /// The end of this site's log: its highest sequence, or the high-water mark when that is
    /// higher (a restore's new epoch, erased rows, headquarters' scope moves, which take
    /// sequences without a change-log row).
    static func logEnd(_ db: Database) throws -> UInt64 {
        UInt64(try Int64.fetchOne(db, sql: "SELECT max(coalesce((SELECT max(seq) FROM changelog), 0), sequence) FROM state") ?? 0)
    }

    /// The highest sequence in this site's change log, or the start of the current epoch
    /// when a restore began one and nothing was logged in it yet.
    public func lastSequence() throws -> UInt64 {
        try read { db in
            try Self.logEnd(db)
        }
    }

    /// Reads this site's change log after a cursor into a change set.
    /// - Parameters:
    ///   - after: the cursor: changes with a larger sequence are included.
    ///   - excluding: leave out changes that originate at this site (never echo a change
    ///     back to its origin); the set's range still covers them.
    ///   - origin: include only changes that originate at this site (a branch pushes only
    ///     its own changes), leaving out writes set aside after headquarters refused them
    ///     (``setAside(_:reason:message:)``); the range still covers the others.
    ///   - limit: the most changes to include; `through` then marks where to continue.
    ///   - maxBytes: stop once the encoded changes reach about this many bytes.
    public func exportChanges(
        after: UInt64 = 0, excluding: SiteID? = nil, origin: SiteID? = nil, limit: Int = .max, maxBytes: Int = .max
    ) throws -> ChangeSet {
        try writer.read { db in
            var changes: [Change] = []
            // Everything up to the log's end at this snapshot is considered, so a set whose
            // filtered rows end early still covers the whole range.
            var through = max(after, UInt64(try Int64.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) FROM changelog") ?? 0))
            var filter = ""
            var arguments: StatementArguments = [Int64(bitPattern: after)]
            if let excluding, let index = try core.sites.existingIndex(of: excluding, in: db) {
                filter = " AND site != ?"
                _ = arguments.append(contentsOf: [index])
            }
            if let origin {
                guard let index = try core.sites.existingIndex(of: origin, in: db) else {
                    return ChangeSet(producer: core.site, schemaVersion: Schema.version, after: after, through: through, changes: [])
                }
                filter += " AND site = ?" + (try setAsideFilter(db))
                _ = arguments.append(contentsOf: [index])
            }
            let rows = try Row.fetchCursor(
                db, sql: "SELECT seq, tbl, key, kind, hlc, site, body FROM changelog WHERE seq > ?\(filter) ORDER BY seq", arguments: arguments)
            var decoder = LogDecoder(core: core, db: db)
            var last: (key: Data, time: Int64)?
            var bytes = 0
            while let row = try rows.next() {
                let keyData: Data = row[2]
                let rawTime: Int64 = row[4]
                let body: Data = row[6]
                // Never cut between changes one write made together (a record's existence and
                // its fields share key and stamp): a receiver never holds half a creation.
                if changes.count >= limit || bytes >= maxBytes, !(last?.key == keyData && last?.time == rawTime) {
                    through =
                        changes.isEmpty
                        ? after
                        : UInt64(
                            try Int64.fetchOne(
                                db, sql: "SELECT coalesce(max(seq), 0) FROM changelog WHERE seq < ?", arguments: [row[0] as Int64]) ?? 0)
                    break
                }
                last = (keyData, rawTime)
                bytes += body.count + 32
                changes += try decoder.changes(row)
            }
            return ChangeSet(producer: core.site, schemaVersion: Schema.version, after: after, through: through, changes: changes)
        }
    }

    /// Turns `changelog` rows (`seq, tbl, key, kind, hlc, site, body`) back into changes,
    /// looking each site number up once.
    struct LogDecoder {
        let core: ArchiveCore
        let db: Database
        private var sites: [Int64: SiteID] = [:]

        init(core: ArchiveCore, db: Database) {
            self.core = core
            self.db = db
        }

        mutating func site(_ index: Int64) throws -> SiteID {
            if let s = sites[index] { return s }
            let s = try core.sites.site(at: index, in: db)
            sites[index] = s
            return s
        }

        /// The row's changes: one, or one per stamp of a packed row (``LogBody``); none for
        /// a kind this version does not know.
        mutating func changes(_ row: Row) throws -> [Change] {
            let time = Timestamp(rawValue: UInt64(bitPattern: row[4] as Int64))
            let parts = try LogBody.decode(kind: row[3], time: time, bytes: [UInt8](row[6] as Data)) { i throws(ReplicationError) in
                do { return try self.site(Int64(bitPattern: i)) } catch {
                    throw ReplicationError(.malformedChangeSet, "change log refers to unknown site number \(i)")
                }
            }
            guard let parts else { return [] }
            let origin = try site(row[5])
            let table = UInt8(clamping: row[1] as Int64)
            let key = RecordKey(data: row[2])
            return parts.map { Change(table: table, key: key, stamp: Stamp(time: $0.time, site: origin), body: $0.body) }
        }
    }

    /// How many changes in the log after `sequence` do not originate at `site`: what a peer
    /// whose cursor is `sequence` has yet to receive from here.
    public func countChanges(after sequence: UInt64, excluding site: SiteID) throws -> Int {
        try read { db in
            let index = try core.sites.existingIndex(of: site, in: db) ?? -1
            return try Int.fetchOne(
                db, sql: "SELECT count(*) FROM changelog WHERE seq > ? AND site != ?", arguments: [Int64(bitPattern: sequence), index]) ?? 0
        }
    }

    /// How many changes that originate here are in the log after `sequence`, leaving out the
    /// writes set aside after headquarters refused them.
    public func countOwnChanges(after sequence: UInt64) throws -> Int {
        try read { db in
            guard let index = try core.sites.existingIndex(of: core.site, in: db) else { return 0 }
            return try Int.fetchOne(
                db, sql: "SELECT count(*) FROM changelog WHERE seq > ? AND site = ?\(try setAsideFilter(db))",
                arguments: [Int64(bitPattern: sequence), index]) ?? 0
        }
    }

    // MARK: Apply

    /// Checks a change set's structure before anything is written.
    /// - Throws: `.schemaTooNew` or `.malformedChangeSet` naming the first bad change.
    public func validate(_ set: ChangeSet) throws {
        guard set.schemaVersion <= Schema.version else {
            throw ArchiveError(
                .schemaTooNew,
                "the change set from site \(set.producer) uses schema \(set.schemaVersion), newer than this archive's \(Schema.version); upgrade Outpost on this site first"
            )
        }
        for (i, change) in set.changes.enumerated() {
            if let problem = Self.structuralProblem(change) {
                throw ArchiveError(
                    .malformedChangeSet,
                    "change \(i + 1) of \(set.changes.count) from site \(set.producer) (record \(change.key)) is malformed: \(problem); nothing was applied")
            }
        }
    }

    static func structuralProblem(_ change: Change) -> String? {
        guard let table = Schema.table(change.table) else { return "unknown table \(change.table)" }
        switch (change.body, table.kind) {
        case (.fields(let writes), .registers):
            // Columns are below 64 (`accepts` checks the range), so a bit mask finds repeats.
            var seen: UInt64 = 0
            for w in writes {
                guard table.accepts(w.value, column: w.column) else { return "column \(w.column) of \(table.name) does not take that value" }
                guard seen & (1 << UInt64(w.column)) == 0 else { return "column \(w.column) written twice" }
                seen |= 1 << UInt64(w.column)
            }
        case (.existence(let length), .registers):
            if length == 0 { return "causal length 0" }
        case (.erase, .registers):
            if table.id != Schema.customers.id { return "erasure applies to customers only" }
        case (.append(let values), .appendOnly):
            var seen: UInt64 = 0
            for v in values {
                guard table.accepts(v.value, column: v.column) else { return "column \(v.column) of \(table.name) does not take that value" }
                guard seen & (1 << UInt64(v.column)) == 0 else { return "column \(v.column) given twice" }
                seen |= 1 << UInt64(v.column)
            }
        default:
            return "a \(change.body.kind) change does not apply to \(table.name)"
        }
        if change.stamp.time == .zero { return "zero clock" }
        return nil
    }

    /// Why a well-formed change breaks a rule, judged only from the change and replicated
    /// configuration, so every site drops it alike; `nil` when it is valid.
    static func ruleViolation(_ change: Change, headquarters: SiteID, approvalThreshold: Int64) -> String? {
        if change.table == Schema.settings.id && change.origin != headquarters {
            return "only headquarters may change settings"
        }
        if change.table == Schema.slaRules.id && change.origin != headquarters {
            return "only headquarters may change SLA rules"
        }
        if change.table == Schema.assignments.id && change.origin != headquarters {
            return "only headquarters may assign customers to branches"
        }
        if change.table == Schema.customers.id, change.origin != headquarters, case .fields(let writes) = change.body,
            writes.contains(where: { $0.column == Schema.customers.column("merged_into") })
        {
            return "only headquarters may merge customers"
        }
        if change.table == Schema.claimTransitions.id, case .append(let values) = change.body, change.origin != headquarters {
            let t = Schema.claimTransitions
            let stage = values.first { $0.column == t.column("stage") }?.value.integerValue
            let amount = values.first { $0.column == t.column("amount_fen") }?.value.integerValue ?? 0
            if stage == Int64(ClaimStage.approved.rawValue) && amount > approvalThreshold {
                return "a branch may approve claims up to \(Money.format(approvalThreshold)) only; headquarters approves above"
            }
        }
        return nil
    }

    /// Merges a change set into the archive: idempotent, in any order, any number of times.
    ///
    /// The set is validated whole first (a malformed set writes nothing), then applied in
    /// transactions of ``ApplyOptions/batchSize`` changes sorted by record, so a crash leaves
    /// a prefix applied and a re-apply completes it. The receive cursor for the producer
    /// advances in the last transaction, and only when the set continues from it.
    @discardableResult
    ///
    /// At a branch, `moves` are headquarters' scope moves that came with the set: applied in the
    /// last transaction, after its changes and with the cursor, so a crash never separates them;
    /// evictions that waited for headquarters' acknowledgement are retried there too.
    public func apply(
        _ set: ChangeSet, moves: ScopeMoves = ScopeMoves(), options: ApplyOptions = ApplyOptions(), progress: ((Int, Int) -> Void)? = nil
    ) throws -> ApplyReport {
        try apply(set, moves: moves, options: options, progress: progress, judgeRules: true, firstly: nil, lastly: nil)
    }

    /// ``apply(_:moves:options:progress:)``, with `firstly` run in the first transaction before
    /// anything merges and `lastly` in the last one after the changes merged (a snapshot part
    /// resets its customers first and checks its digest last), and the rules every site judges
    /// left out when `judgeRules` is false (headquarters' state in a snapshot, which its door
    /// judged when it was written).
    func apply(
        _ set: ChangeSet, moves: ScopeMoves, options: ApplyOptions, progress: ((Int, Int) -> Void)?, judgeRules: Bool,
        firstly: ((inout Session) throws -> Void)?, lastly: ((inout Session) throws -> Void)?
    ) throws -> ApplyReport {
        try validate(set)
        // Moves are net per customer over the set's range: a set carrying them is taken only in
        // its place, like any scoped set.
        let inPlace = options.continuationOnly || !moves.isEmpty
        if inPlace {
            let cursor = try cursor(for: set.producer).receivedThrough
            guard set.after == cursor || (options.acceptOverlap && Self.place(after: set.after, through: set.through, cursor: cursor) == .applies) else {
                var skipped = ApplyReport()
                skipped.outOfOrder = true
                return skipped
            }
        }
        // Sort small keys, not the changes themselves: a change is large to move around.
        let changes = set.changes
        let order = changes.indices.map { (table: changes[$0].table, key: changes[$0].key, offset: $0) }.sorted { x, y in
            if x.table != y.table { return x.table < y.table }
            if x.key != y.key { return x.key < y.key }
            return x.offset < y.offset
        }
        let ordered = order.map { changes[$0.offset] }
        var report = ApplyReport()
        // Headquarters' door (``admit(_:from:moves:maximumChanges:batchSize:progress:)``): write
        // authority is judged and every refusal is answered in the branch's stream.
        let atDoor = options.judgeDomains && core.site == core.headquarters && set.producer != core.headquarters
        var start = 0
        // Refusals reset customers to headquarters' state: removing their rows, merging that
        // state and replaying what waits to be pushed happen in one transaction.
        let resetting = !moves.refused.isEmpty && core.site != core.headquarters
        repeat {
            let end = resetting ? ordered.count : min(ordered.count, start + max(1, options.batchSize))
            let batch = ordered[start..<end]
            let isLast = end == ordered.count
            report += try transaction { session in
                if core.site != core.headquarters && set.producer == core.headquarters {
                    session.ownChangesFromHeadquarters =
                        try Int64.fetchOne(session.db, sql: "SELECT value FROM meta WHERE key = 'recovering_since'") == nil
                }
                if start == 0, let firstly { try firstly(&session) }
                let replay = resetting ? try session.resetRefused(moves.refused, leaving: Set(moves.evicted)) : []
                let threshold = try approvalThreshold(session.db)
                var accepted: [Change] = []
                accepted.reserveCapacity(batch.count)
                for change in batch {
                    if judgeRules, let reason = Self.ruleViolation(change, headquarters: core.headquarters, approvalThreshold: threshold) {
                        session.refuse(change, .hqOnly, reason, logger: logger)
                        if atDoor { try session.recordRefusal(change, .hqOnly, reason) }
                        continue
                    }
                    if options.judgeDomains, let reason = Self.domainViolation(change) {
                        session.refuse(change, .invalidValue, reason, logger: logger)
                        if atDoor { try session.recordRefusal(change, .invalidValue, reason) }
                        continue
                    }
                    if options.checkDrift && change.origin == set.producer {
                        do {
                            try session.clock.check(change.stamp.time, from: change.origin, wallMilliseconds: session.wall)
                        } catch {
                            try quarantine(change, producer: set.producer, reason: "\(error)", session: &session)
                            continue
                        }
                    }
                    if change.stamp.time.milliseconds <= session.wall + session.clock.maximumDrift {
                        session.clock.observe(change.stamp.time)
                    }
                    accepted.append(change)
                }
                // Changes to one record are adjacent after sorting: read and write its row once.
                var i = 0
                while i < accepted.count {
                    var j = i + 1
                    while j < accepted.count && accepted[j].table == accepted[i].table && accepted[j].key == accepted[i].key { j += 1 }
                    if atDoor && accepted[i].table == Schema.customers.id {
                        // Write authority needs headquarters' record as it is before these changes.
                        let state = try session.load(Schema.customers, accepted[i].key)
                        var allowed: [Change] = []
                        for change in accepted[i..<j] {
                            if let problem = try session.homeProblem(change, state: state) {
                                session.refuse(change, .notHome, problem, logger: logger)
                                try session.recordRefusal(change, .notHome, problem)
                            } else {
                                allowed.append(change)
                            }
                        }
                        try session.merge(allowed, loaded: .some(state))
                    } else {
                        try session.merge(accepted[i..<j])
                    }
                    i = j
                }
                if resetting { try session.replayUnacknowledged(replay, acknowledged: options.acknowledgedBeforeRead) }
                if isLast, let lastly { try lastly(&session) }
                if isLast && inPlace && core.site != core.headquarters { try applyMoves(moves, &session) }
                if isLast && options.advanceCursor {
                    session.report.cursorAdvanced = try advanceReceiveCursor(session.db, set: set)
                }
                return session.report
            }
            progress?(end, ordered.count)
            start = end
        } while start < ordered.count
        if report.refused > 0 || report.quarantined > 0 {
            logger.notice(
                "applied change set with refusals",
                metadata: ["producer": "\(set.producer)", "refused": "\(report.refused)", "quarantined": "\(report.quarantined)"])
        }
        return report
    }

    private func quarantine(_ change: Change, producer: SiteID, reason: String, session: inout Session) throws {
        let single = ChangeSet(producer: producer, schemaVersion: Schema.version, after: 0, through: 0, changes: [change])
        try session.db.execute(
            sql: "INSERT INTO quarantine(received_at, producer, tbl, key, reason, change) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [Int64(session.wall), producer.code, Int64(change.table), change.key.data, reason, Data(try ChangeSetCodec.encode(single))])
        session.report.quarantined += 1
        session.report.refusals.append(ChangeRefusal(record: change.key, origin: change.origin, kind: .clockAhead, message: reason))
        logger.warning(
            "quarantined a change: clock too far ahead",
            metadata: ["record": "\(change.key)", "origin": "\(change.origin)", "reason": "\(ChangeRefusal.Kind.clockAhead.rawValue)"])
    }

    func approvalThreshold(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT approval_threshold_fen FROM settings WHERE id = ?", arguments: [Schema.settingsKey.data])
            ?? Settings.defaultApprovalThresholdFen
    }

    /// Moves the receive cursor for the set's producer to its `through` when the set continues
    /// from it (`after ≤ cursor < through`).
    ///
    /// At headquarters, a branch's word about its own log is bounded (protocols/README.md §4.3):
    /// an empty set never moves the cursor (it carries nothing to acknowledge), and `through`
    /// never passes the end of the epoch after the cursor's (``Archive/cursorCeiling(after:)``),
    /// so a confused or hostile branch cannot push its cursor where no log of its can reach.
    /// The set's changes are merged either way.
    private func advanceReceiveCursor(_ db: Database, set: ChangeSet) throws -> Bool {
        let peer = set.producer
        let current = UInt64(try Int64.fetchOne(db, sql: "SELECT received_through FROM cursors WHERE peer = ?", arguments: [peer.code]) ?? 0)
        try db.execute(
            sql: "INSERT INTO cursors(peer, last_seen) VALUES (?, ?) ON CONFLICT(peer) DO UPDATE SET last_seen = excluded.last_seen",
            arguments: [peer.code, Int64(core.environment.now())])
        guard set.after <= current, set.through > current else { return false }
        if core.site == core.headquarters {
            // An empty set carries nothing to acknowledge (a file exported with nothing new).
            guard !set.changes.isEmpty else { return false }
            guard set.through <= Self.cursorCeiling(after: current) else {
                logger.warning(
                    "a branch's set claims a range past the next epoch of its log; its cursor stays",
                    metadata: ["producer": "\(peer)", "cursor": "\(current)", "through": "\(set.through)"])
                return false
            }
        }
        guard set.through <= UInt64(Int64.max) else { return false }
        try db.execute(sql: "UPDATE cursors SET received_through = ? WHERE peer = ?", arguments: [Int64(set.through), peer.code])
        return true
    }

    /// Records that a peer holds this site's log up to `through` (it acknowledged a set).
    public func acknowledgeSent(to peer: SiteID, through: UInt64) throws {
        try transaction { session in
            try session.db.execute(
                sql: """
                    INSERT INTO cursors(peer, sent_through) VALUES (?, ?)
                    ON CONFLICT(peer) DO UPDATE SET sent_through = max(sent_through, excluded.sent_through)
                    """,
                arguments: [peer.code, Int64(clamping: through)])
        }
    }

    /// This site's cursors for every peer it has exchanged with.
    public func cursors() throws -> [PeerCursor] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT peer, received_through, sent_through, last_seen FROM cursors ORDER BY peer").map {
                PeerCursor(
                    peer: $0[0], receivedThrough: UInt64(bitPattern: $0[1] as Int64), sentThrough: UInt64(bitPattern: $0[2] as Int64),
                    lastSeenMilliseconds: ($0[3] as Int64?).map { UInt64(clamping: $0) })
            }
        }
    }

    public func cursor(for peer: SiteID) throws -> PeerCursor {
        try cursors().first { $0.peer == peer.code } ?? PeerCursor(peer: peer.code, receivedThrough: 0, sentThrough: 0)
    }

    // MARK: Quarantine

    public struct QuarantinedChange: Sendable, Codable, Hashable {
        public var id: Int64
        public var producer: String
        public var record: String
        public var reason: String
        public var receivedAt: UInt64
    }

    public func quarantined() throws -> [QuarantinedChange] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, producer, key, reason, received_at FROM quarantine ORDER BY id").map {
                QuarantinedChange(id: $0[0], producer: $0[1], record: RecordKey(data: $0[2]).description, reason: $0[3], receivedAt: UInt64($0[4] as Int64))
            }
        }
    }

    /// Applies a quarantined change as it is (an operator decided its clock is acceptable).
    public func releaseQuarantined(id: Int64) throws -> ApplyReport {
        let bytes = try read { db in try Data.fetchOne(db, sql: "SELECT change FROM quarantine WHERE id = ?", arguments: [id]) }
        guard let bytes else { throw ArchiveError(.notFound, "no quarantined change with id \(id); 'outpost changes quarantine' lists them") }
        let set = try ChangeSetCodec.decode([UInt8](bytes))
        return try transaction { session in
            for change in set.changes { try session.merge(change) }
            try session.db.execute(sql: "DELETE FROM quarantine WHERE id = ?", arguments: [id])
            return session.report
        }
    }
}

extension Archive {
    /// The replicated state of one register record with its stamps (tests and diagnostics).
    package func recordState(table: UInt8, key: RecordKey) throws -> RecordState? {
        guard let schema = Schema.table(table), schema.kind == .registers else { return nil }
        return try read { db in try Session(db: db, core: core).load(schema, key) }
    }

    /// Checkpoints and truncates the WAL now (tests of erasure read the file's bytes after it).
    package func checkpointNow() throws { try erasureCheckpoint() }
}

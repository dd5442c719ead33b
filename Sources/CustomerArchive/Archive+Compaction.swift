import Foundation
import GRDB
import Replication

extension Archive {
    /// Drops from a branch's change log what no peer can ask for again, and returns how many
    /// changes it dropped.
    ///
    /// A branch relays nothing and logs only its own changes (older versions logged what they
    /// merged from headquarters too: those rows go at once). Its own changes go once
    /// headquarters has acknowledged them (`sent_through` for HQ) and they are older than
    /// `retentionMilliseconds` by their clock: inside that window a headquarters restored from a
    /// backup can still ask for them again (DESIGN, "Restores"). What headquarters has not
    /// acknowledged is never dropped. So a branch's log holds its unacknowledged changes plus
    /// the retention window's, whatever the size of the national base. The high-water mark
    /// stays: sequences are never reused.
    ///
    /// At headquarters the retention window does not apply: it drops superseded writes
    /// (``compactHeadquartersLog(chunk:)``), which no branch needs from any cursor, and
    /// returns how many log entries went whole.
    @discardableResult
    public func compactLog(retentionMilliseconds: UInt64) throws -> Int {
        guard site != headquarters else { return try compactHeadquartersLog().changesDropped }
        return try writer.write { db in
            let acknowledged =
                try Int64.fetchOne(db, sql: "SELECT sent_through FROM cursors WHERE peer = ?", arguments: [headquarters.code]) ?? 0
            let now = core.environment.now()
            let cutoff = now > retentionMilliseconds ? now - retentionMilliseconds : 0
            // A clock reading is (milliseconds << 16) | counter (CHANGESET.md §2.5). No window
            // at all drops every acknowledged change, whatever its clock says.
            let cutoffClock = retentionMilliseconds == 0 ? Int64.max : Int64(bitPattern: min(cutoff, UInt64(Int64.max) >> 16) << 16)
            var dropped = 0
            if let own = try core.sites.existingIndex(of: site, in: db) {
                try db.execute(sql: "DELETE FROM changelog WHERE site != ?", arguments: [own])
                dropped += db.changesCount
                try db.execute(
                    sql: "DELETE FROM changelog WHERE site = ? AND seq <= ? AND hlc < ?", arguments: [own, acknowledged, cutoffClock])
                dropped += db.changesCount
            } else {
                try db.execute(sql: "DELETE FROM changelog")
                dropped += db.changesCount
            }
            return dropped
        }
    }
}

/// What a compaction of headquarters' log removed.
public struct LogCompaction: Hashable, Sendable {
    /// Field writes dropped because a later write of the same field (a greater stamp) is in the log.
    public var writesDropped = 0
    /// Log entries that went whole: every write in them superseded, or an existence change a
    /// greater causal length supersedes.
    public var changesDropped = 0
    /// Moves of a customer into or out of a branch's scope that a later move of the same
    /// customer at the same branch supersedes.
    public var movesDropped = 0
    /// Records whose log entries were looked at.
    public var recordsExamined = 0
    /// Rows a record's surviving writes from one origin were packed into, each replacing two
    /// or more (the ones it replaced count in `changesDropped`).
    public var rowsPacked = 0
    /// Stretches of the log rewritten so their pages are full again (``Session/repackLog(window:)``).
    public var windowsRepacked = 0
    /// Rows removed per stretch of ``Session/logWindow`` sequences in this pass.
    var removed: [Int64: Int] = [:]

    public init() {}
}

extension Archive {
    /// Compacts headquarters' log without a retention horizon: per record and field it keeps
    /// the write with the greatest stamp in the log, and drops every other.
    ///
    /// The law it keeps (tested as such): for every cursor a branch may resume from, the state
    /// it holds at that cursor merged with the compacted log after it equals that state merged
    /// with the full log after it. A field is a last-writer-wins register, so the greatest
    /// write in the log dominates every write it supersedes whichever side of the cursor
    /// either sits: a branch behind the greatest write gets it; a branch past it already
    /// merged it, and so every write it supersedes. An existence change is superseded by a
    /// greater causal length in the same way. Erasures and append-only rows are kept. A
    /// customer's move into or out of a branch's scope is superseded by its next move at the
    /// same branch (a pull counts only the last move in its range). So no branch, however
    /// long offline, is stranded, and the log holds at most one write per field of each
    /// record plus its erasure: about the size of the live data, whatever the number of
    /// overwrites.
    ///
    /// Incremental: each pass looks only at the records written since the last pass
    /// (`meta.log_compacted_through`), in transactions of `chunk` log sequences, so writers
    /// wait at most one chunk. A stored body this version cannot decode is left as it is.
    @discardableResult
    public func compactHeadquartersLog(chunk: Int = 5_000) throws -> LogCompaction {
        guard site == headquarters else { return LogCompaction() }
        var total = LogCompaction()
        while true {
            let (part, more) = try transaction { session -> (LogCompaction, Bool) in
                let db = session.db
                let from = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'log_compacted_through'") ?? 0
                let end = Int64(bitPattern: try Self.logEnd(db))
                guard from < end else { return (LogCompaction(), false) }
                let to = min(end, from + Int64(max(1, chunk)))
                var part = LogCompaction()
                let records = try Row.fetchAll(
                    db, sql: "SELECT DISTINCT tbl, key FROM changelog WHERE seq > ? AND seq <= ? AND kind IN (0, 1)", arguments: [from, to])
                for row in records {
                    part.recordsExamined += 1
                    try session.compactRecord(table: row[0], key: row[1], into: &part)
                }
                let pairs = try Row.fetchAll(db, sql: "SELECT DISTINCT site, customer FROM scope_moves WHERE seq > ? AND seq <= ?", arguments: [from, to])
                let drop = try db.cachedStatement(
                    sql: "DELETE FROM scope_moves WHERE site = ? AND customer = ? AND seq < (SELECT max(seq) FROM scope_moves WHERE site = ? AND customer = ?)")
                for pair in pairs {
                    let site: String = pair[0]
                    let customer: Data = pair[1]
                    try drop.execute(arguments: [site, customer, site, customer])
                    part.movesDropped += db.changesCount
                }
                // Where a quarter or more of a stretch's rows went, its pages are refilled.
                let count = try db.cachedStatement(sql: "SELECT count(*) FROM changelog WHERE seq >= ? AND seq < ?")
                for (window, removed) in part.removed.sorted(by: { $0.key < $1.key }) {
                    let left = try Int.fetchOne(count, arguments: [window * Session.logWindow, (window + 1) * Session.logWindow]) ?? 0
                    guard left > 0, removed * 3 >= left else { continue }
                    try session.repackLog(window: window)
                    part.windowsRepacked += 1
                }
                part.removed = [:]
                try db.execute(
                    sql: "INSERT INTO meta(key, value) VALUES ('log_compacted_through', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    arguments: [to])
                return (part, to < end)
            }
            total.writesDropped += part.writesDropped
            total.changesDropped += part.changesDropped
            total.movesDropped += part.movesDropped
            total.recordsExamined += part.recordsExamined
            total.rowsPacked += part.rowsPacked
            total.windowsRepacked += part.windowsRepacked
            if !more { return total }
        }
    }
}

extension Session {
    /// Drops the superseded writes and existence changes of one record from the log and packs
    /// the survivors of each origin into one row (``Archive/compactHeadquartersLog(chunk:)``).
    ///
    /// The survivors of an origin go to the row of its that comes last in the log, so a write
    /// only ever moves to a later sequence: a branch resuming from any cursor still receives
    /// every survivor it has not merged (and may receive again one it has: merging a write the
    /// branch holds with the same stamp changes nothing). Rows keep a single origin, so a
    /// branch's pull still leaves out its own changes by the row's site.
    mutating func compactRecord(table: Int64, key: Data, into result: inout LogCompaction) throws {
        let rows = try Row.fetchAll(
            try db.cachedStatement(
                sql: "SELECT seq, kind, hlc, site, body FROM changelog WHERE key = ? AND tbl = ? AND kind IN (0, 1, \(LogBody.packedFields)) ORDER BY seq"
            ),
            arguments: [key, table])
        guard rows.count > 1 else { return }
        struct Entry {
            var seq: Int64
            var origin: Int64
            var site: SiteID
            var parts: [LogBody.Part]
        }
        var entries: [Entry] = []
        for row in rows {
            let time = Timestamp(rawValue: UInt64(bitPattern: row[2] as Int64))
            // A body or site number this version cannot read: the record is left as it is.
            guard let parts = try? decodeLogParts(kind: row[1], time: time, bytes: [UInt8](row[4] as Data)), !parts.isEmpty,
                let origin = try? site(at: row[3])
            else { return }
            entries.append(Entry(seq: row[0], origin: row[3], site: origin, parts: parts))
        }
        var greatest: [Int: Stamp] = [:]
        var longest: (length: UInt64, seq: Int64)?
        /// The stamps of existence changes: the writes that came with one stay beside it.
        var creations: Set<Stamp> = []
        for e in entries {
            for part in e.parts {
                switch part.body {
                case .fields(let writes):
                    let stamp = Stamp(time: part.time, site: e.site)
                    for w in writes where greatest[w.column].map({ stamp > $0 }) ?? true { greatest[w.column] = stamp }
                case .existence(let length):
                    if longest.map({ length > $0.length }) ?? true { longest = (length, e.seq) }
                    creations.insert(Stamp(time: part.time, site: e.site))
                default: break
                }
            }
        }
        let delete = try db.cachedStatement(sql: "DELETE FROM changelog WHERE seq = ?")
        let update = try db.cachedStatement(sql: "UPDATE changelog SET kind = ?, hlc = ?, body = ? WHERE seq = ?")
        /// Per origin: its rows of field writes in log order, each with its writes and those that survive.
        var byOrigin: [Int64: [Written]] = [:]
        for e in entries {
            if case .existence = e.parts[0].body {
                guard let longest, e.seq != longest.seq else { continue }
                try delete.execute(arguments: [e.seq])
                result.changesDropped += 1
                result.removed[e.seq / Self.logWindow, default: 0] += 1
                continue
            }
            // A change that only brought the record into existence (no writes) stays.
            let writes = e.parts.reduce(0) { $0 + $1.writeCount }
            guard writes > 0 else { continue }
            var survivors: [LogBody.Part] = []
            for part in e.parts {
                guard case .fields(let writes) = part.body else { continue }
                let stamp = Stamp(time: part.time, site: e.site)
                let kept = writes.filter { greatest[$0.column] == stamp }
                if !kept.isEmpty { survivors.append(LogBody.Part(time: part.time, body: .fields(kept))) }
            }
            if e.parts.count == 1, creations.contains(Stamp(time: e.parts[0].time, site: e.site)) {
                // The fields a record was created with stay beside its existence change,
                // so a pull never hands a branch a record without them (the two are never
                // cut apart: ``Archive/exportChanges(after:excluding:origin:limit:maxBytes:)``).
                try rewrite([Written(seq: e.seq, writes: writes, survivors: survivors)])
                continue
            }
            byOrigin[e.origin, default: []].append(Written(seq: e.seq, writes: writes, survivors: survivors))
        }
        for rows in byOrigin.values { try rewrite(rows) }

        /// Replaces one origin's `rows` (in log order) by one row holding their survivors, at
        /// the sequence of the last that holds any, or by none when nothing survives.
        func rewrite(_ rows: [Written]) throws {
            let before = rows.reduce(0) { $0 + $1.writes }
            let kept = rows.reduce(0) { $0 + $1.kept }
            let sources = rows.filter { !$0.survivors.isEmpty }
            // Nothing superseded and already in one row: nothing to do.
            guard kept < before || rows.count > 1 else { return }
            result.writesDropped += before - kept
            let target = sources.last?.seq
            for row in rows where row.seq != target {
                try delete.execute(arguments: [row.seq])
                result.changesDropped += 1
                result.removed[row.seq / Self.logWindow, default: 0] += 1
            }
            guard let target, let last = sources.last else { return }
            // The target row keeps all its writes and takes none from another: it stays as it is.
            if sources.count == 1 && last.kept == last.writes { return }
            if sources.count > 1 { result.rowsPacked += 1 }
            let stored = try encodeLogParts(sources.flatMap(\.survivors))
            try update.execute(arguments: [stored.kind, Int64(bitPattern: stored.time.rawValue), Data(stored.bytes), target])
        }
    }
}

/// A log row of field writes as compaction sees it.
private struct Written {
    var seq: Int64
    /// The writes it holds.
    var writes: Int
    /// Those of its writes no later write supersedes, by stamp.
    var survivors: [LogBody.Part]
    var kept: Int { survivors.reduce(0) { $0 + $1.writeCount } }
}

extension Session {
    /// How many log sequences ``repackLog(window:)`` rewrites at once.
    static let logWindow: Int64 = 1_024

    /// Rewrites the log's rows in one stretch of sequences, in order, so their pages are full.
    ///
    /// SQLite merges a b-tree page with its neighbours only once it is less than a third full,
    /// so a page that compaction thinned (eleven rows of twelve gone, the twelfth grown by
    /// what was packed into it) keeps its free space for good: overwritten field by field,
    /// a log compacted to about its live data still took twice the pages. Deleting the
    /// stretch's rows and inserting them again in order lets SQLite pack them. The rows are
    /// the same, at the same sequences.
    mutating func repackLog(window: Int64) throws {
        let range: StatementArguments = [window * Self.logWindow, (window + 1) * Self.logWindow]
        let rows = try Row.fetchAll(
            try db.cachedStatement(sql: "SELECT seq, tbl, key, kind, hlc, site, body FROM changelog WHERE seq >= ? AND seq < ? ORDER BY seq"),
            arguments: range)
        try db.cachedStatement(sql: "DELETE FROM changelog WHERE seq >= ? AND seq < ?").execute(arguments: range)
        let insert = try db.cachedStatement(sql: "INSERT INTO changelog(seq, tbl, key, kind, hlc, site, body) VALUES (?, ?, ?, ?, ?, ?, ?)")
        for row in rows { try insert.execute(arguments: StatementArguments(row.databaseValues)) }
    }
}

/// The size of a change log against the live data it describes (a full scan: for tests,
/// benchmarks and `outpost doctor`, not for a hot path).
public struct LogStatistics: Hashable, Sendable, CustomStringConvertible {
    /// Log entries.
    public var entries = 0
    /// Field writes in them (a fields change carries one or more).
    public var fieldWrites = 0
    /// Bytes of their stored bodies.
    public var bodyBytes = 0
    /// Written fields of the records held (each the write that won it).
    public var liveFields = 0

    public var description: String {
        "\(entries) log entries holding \(fieldWrites) field writes (\(bodyBytes) body bytes) for \(liveFields) live fields"
    }
}

extension Archive {
    /// Counts the log's entries and field writes against the records' written fields.
    public func logStatistics() throws -> LogStatistics {
        try writer.read { db in
            let session = try Session(db: db, core: core)
            var stats = LogStatistics()
            let rows = try Row.fetchCursor(db, sql: "SELECT kind, hlc, body FROM changelog")
            while let row = try rows.next() {
                stats.entries += 1
                let bytes = [UInt8](row[2] as Data)
                stats.bodyBytes += bytes.count
                let time = Timestamp(rawValue: UInt64(bitPattern: row[1] as Int64))
                guard let parts = try? session.decodeLogParts(kind: row[0], time: time, bytes: bytes) else { continue }
                stats.fieldWrites += parts.reduce(0) { $0 + $1.writeCount }
            }
            for table in Schema.tables where table.kind == .registers {
                for key in try Data.fetchAll(db, sql: "SELECT id FROM \(table.name)") {
                    guard let state = try? session.load(table, RecordKey(data: key)) else { continue }
                    stats.liveFields += state.registers.count { $0 != nil }
                }
            }
            return stats
        }
    }
}

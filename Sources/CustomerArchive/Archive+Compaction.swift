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
                try db.execute(
                    sql: "INSERT INTO meta(key, value) VALUES ('log_compacted_through', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    arguments: [to])
                return (part, to < end)
            }
            total.writesDropped += part.writesDropped
            total.changesDropped += part.changesDropped
            total.movesDropped += part.movesDropped
            total.recordsExamined += part.recordsExamined
            if !more { return total }
        }
    }
}

extension Session {
    /// Drops the superseded writes and existence changes of one record from the log
    /// (``Archive/compactHeadquartersLog(chunk:)``).
    mutating func compactRecord(table: Int64, key: Data, into result: inout LogCompaction) throws {
        let rows = try Row.fetchAll(
            try db.cachedStatement(sql: "SELECT seq, kind, hlc, site, body FROM changelog WHERE key = ? AND tbl = ? AND kind IN (0, 1) ORDER BY seq"),
            arguments: [key, table])
        guard rows.count > 1 else { return }
        struct Entry {
            var seq: Int64
            var stamp: Stamp
            var time: Timestamp
            var body: Change.Body
        }
        var entries: [Entry] = []
        for row in rows {
            guard let kind = Change.Kind(rawValue: UInt8(clamping: row[1] as Int64)) else { return }
            let time = Timestamp(rawValue: UInt64(bitPattern: row[2] as Int64))
            // A body or site number this version cannot read: the record is left as it is.
            guard let body = try? decodeLogBody(kind: kind, time: time, bytes: [UInt8](row[4] as Data)),
                let origin = try? site(at: row[3])
            else { return }
            entries.append(Entry(seq: row[0], stamp: Stamp(time: time, site: origin), time: time, body: body))
        }
        var greatest: [Int: Stamp] = [:]
        var longest: (length: UInt64, seq: Int64)?
        for e in entries {
            switch e.body {
            case .fields(let writes):
                for w in writes where greatest[w.column].map({ e.stamp > $0 }) ?? true { greatest[w.column] = e.stamp }
            case .existence(let length):
                if longest.map({ length > $0.length }) ?? true { longest = (length, e.seq) }
            default: break
            }
        }
        let delete = try db.cachedStatement(sql: "DELETE FROM changelog WHERE seq = ?")
        let update = try db.cachedStatement(sql: "UPDATE changelog SET body = ? WHERE seq = ?")
        for e in entries {
            switch e.body {
            case .fields(let writes):
                // A change that only brought the record into existence (no writes) stays.
                let kept = writes.filter { greatest[$0.column] == e.stamp }
                guard kept.count < writes.count else { continue }
                result.writesDropped += writes.count - kept.count
                if kept.isEmpty {
                    try delete.execute(arguments: [e.seq])
                    result.changesDropped += 1
                } else {
                    try update.execute(arguments: [Data(try encodeLogBody(.fields(kept), time: e.time)), e.seq])
                }
            case .existence:
                guard let longest, e.seq != longest.seq else { continue }
                try delete.execute(arguments: [e.seq])
                result.changesDropped += 1
            default: break
            }
        }
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
                guard (row[0] as Int64) == Int64(Change.Kind.fields.rawValue),
                    case .fields(let writes)? = try? session.decodeLogBody(
                        kind: .fields, time: Timestamp(rawValue: UInt64(bitPattern: row[1] as Int64)), bytes: bytes)
                else { continue }
                stats.fieldWrites += writes.count
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

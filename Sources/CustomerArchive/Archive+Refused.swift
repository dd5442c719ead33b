import Foundation
import GRDB
import Replication

/// A change of this site that headquarters refused, kept where the clerk can see it.
public struct RefusedChange: Sendable, Codable, Hashable {
    public var id: Int64
    /// When this site learnt of the refusal (Unix milliseconds).
    public var refusedAt: UInt64
    /// The table's name, when known.
    public var table: String?
    public var record: String
    /// The refusal's name in the one vocabulary (`HQ_ONLY`, `INVALID_VALUE`, `MALFORMED`, …).
    public var reason: String
    /// Headquarters' words (ids and rules only).
    public var message: String
    /// The write was set aside: headquarters refused the set holding it as a whole, and the
    /// changes after it flow on. (No journaled write is pushed again.)
    public var setAside: Bool
}

extension Archive {
    /// Journals the single changes headquarters refused in a push acknowledgement (it took the
    /// rest of the set and moved its cursor past them). `time` is the refused change's clock
    /// reading (0 from a headquarters before protocol 3, which did not say): a write journaled
    /// with it is never pushed again, and its answer in headquarters' stream
    /// (``RefusedWrite``) is not journaled twice.
    public func journalRefusals(_ refusals: [(record: String, reason: String, message: String, time: UInt64)]) throws {
        guard !refusals.isEmpty else { return }
        try writer.write { db in
            for r in refusals {
                guard let key = RecordKey(r.record) else { continue }
                let hlc: Int64? = r.time == 0 ? nil : Int64(bitPattern: r.time)
                try db.execute(
                    sql: """
                        INSERT INTO refused_changes(refused_at, key, hlc, reason, message) SELECT ?, ?, ?, ?, ?
                        WHERE ?3 IS NULL OR NOT EXISTS (SELECT 1 FROM refused_changes WHERE key = ?2 AND hlc = ?3)
                        """,
                    arguments: [Int64(core.environment.now()), key.data, hlc, String(r.reason.prefix(64)), String(r.message.prefix(1_000))])
            }
        }
    }

    /// Sets aside the writes of a set headquarters refused as a whole: journaled, and left out
    /// of every later push, so the changes after them still reach headquarters.
    public func setAside(_ set: ChangeSet, reason: String, message: String) throws {
        try writer.write { db in
            for change in set.changes where change.origin == core.site {
                try db.execute(
                    sql: "INSERT INTO refused_changes(refused_at, tbl, key, hlc, reason, message) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [
                        Int64(core.environment.now()), Int64(change.table), change.key.data, Int64(bitPattern: change.stamp.time.rawValue),
                        String(reason.prefix(64)), String(message.prefix(1_000)),
                    ])
            }
        }
    }

    /// The journal of refused changes, newest first.
    public func refusedChanges(limit: Int = 1_000) throws -> [RefusedChange] {
        try read { db in
            try Row.fetchAll(
                db, sql: "SELECT id, refused_at, tbl, key, hlc, reason, message FROM refused_changes ORDER BY id DESC LIMIT ?",
                arguments: [limit]
            ).map { row in
                RefusedChange(
                    id: row[0], refusedAt: UInt64(max(0, row[1] as Int64)), table: (row[2] as Int64?).flatMap { Schema.table(UInt8(clamping: $0))?.name },
                    record: RecordKey(data: row[3]).description, reason: row[5], message: row[6],
                    setAside: (row[4] as Int64?) != nil && Self.setAsideReasons.contains(row[5] as String))
            }
        }
    }

    /// Refusals of a whole set that a branch answers by setting its single writes aside.
    static let setAsideReasons: Set<String> = ["MALFORMED", "TOO_LARGE"]

    /// The SQL that leaves set-aside writes out of a push (`changelog` rows), or "" when there
    /// are none, which is the common case and costs the export nothing.
    func setAsideFilter(_ db: Database) throws -> String {
        guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM refused_changes WHERE hlc IS NOT NULL)") == true else { return "" }
        return " AND NOT EXISTS (SELECT 1 FROM refused_changes r WHERE r.key = changelog.key AND r.hlc = changelog.hlc)"
    }
}

/// How a branch keeps pushing when headquarters refuses a set as a whole (`MALFORMED`,
/// `TOO_LARGE`: sending the same set again would fail again): the set is sent again in halves,
/// and a single write headquarters still refuses is set aside (``Archive/setAside(_:reason:message:)``),
/// so one bad write never holds back the changes after it. The branch client and the
/// simulation both follow it.
public struct PushSplitter: Sendable {
    /// The limit of changes per set when nothing is being split.
    public let normalLimit: Int
    /// The limit for the next set.
    public private(set) var limit: Int

    public init(limit: Int) {
        normalLimit = max(1, limit)
        self.limit = normalLimit
    }

    public enum Next: Sendable, Equatable {
        /// Export again from headquarters' cursor with at most this many changes per set.
        case resend(limit: Int)
        /// The set is one write: set it aside, then go on at the normal limit.
        case setAside
    }

    /// What to do after headquarters refused `set` as a whole.
    public mutating func refused(_ set: ChangeSet) -> Next {
        // One write (a record's existence and fields, one key and clock reading) is never
        // split across sets, so it is the smallest thing that can be set aside.
        var writes = Set<String>()
        for change in set.changes { writes.insert("\(change.key)/\(change.stamp.time.rawValue)") }
        if writes.count > 1 {
            limit = max(1, min(limit, set.changes.count) / 2)
            return .resend(limit: limit)
        }
        limit = normalLimit
        return .setAside
    }
}

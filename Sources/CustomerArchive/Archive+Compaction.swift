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
    /// stays: sequences are never reused. Headquarters' log is not touched here.
    @discardableResult
    public func compactLog(retentionMilliseconds: UInt64) throws -> Int {
        guard site != headquarters else { return 0 }
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

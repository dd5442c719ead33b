import GRDB
import Replication
import Synchronization

/// Maps site codes to the small integers that packed clocks and the change log store.
///
/// The mapping is local to one archive file (another site numbers its sites differently) and
/// never leaves it: change sets carry codes. New entries made inside a transaction reach the
/// cache only when it commits, so a rollback cannot leave an index that means two sites.
final class SiteTable: Sendable {
    private struct Maps {
        var byCode: [SiteID: Int64] = [:]
        var byIndex: [Int64: SiteID] = [:]
    }
    private let maps = Mutex(Maps())

    func index(of site: SiteID, in db: Database, pending: inout [SiteID: Int64]) throws -> Int64 {
        if let i = maps.withLock({ $0.byCode[site] }) ?? pending[site] { return i }
        if let i = try Int64.fetchOne(db, sql: "SELECT idx FROM sites WHERE code = ?", arguments: [site.code]) {
            pending[site] = i
            return i
        }
        try db.execute(sql: "INSERT INTO sites(code) VALUES (?)", arguments: [site.code])
        let i = db.lastInsertedRowID
        pending[site] = i
        return i
    }

    /// The index of a site already in the table, without adding it (reads only).
    func existingIndex(of site: SiteID, in db: Database) throws -> Int64? {
        if let i = maps.withLock({ $0.byCode[site] }) { return i }
        return try Int64.fetchOne(db, sql: "SELECT idx FROM sites WHERE code = ?", arguments: [site.code])
    }

    func site(at index: Int64, in db: Database) throws -> SiteID {
        if let s = maps.withLock({ $0.byIndex[index] }) { return s }
        guard let code = try String.fetchOne(db, sql: "SELECT code FROM sites WHERE idx = ?", arguments: [index]) else {
            throw ArchiveError(.storage, "the archive refers to site number \(index), which its site table lacks; run 'outpost doctor'")
        }
        let s = SiteID(unchecked: code)
        maps.withLock { $0.byIndex[index] = s }
        return s
    }

    /// Publishes entries made by a committed transaction.
    func commit(_ pending: [SiteID: Int64]) {
        guard !pending.isEmpty else { return }
        maps.withLock { m in
            for (s, i) in pending {
                m.byCode[s] = i
                m.byIndex[i] = s
            }
        }
    }
}

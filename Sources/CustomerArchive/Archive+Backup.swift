import Foundation
import GRDB
import Replication

/// Backups, restores and the recovery that follows a restore.
///
/// A backup is a consistent copy of the archive taken while it is in use (SQLite's online
/// backup, inside one read transaction). Restoring it brings back an *older* state of this
/// site: its change log ends earlier than what headquarters already holds from it. Two things
/// keep that from losing or duplicating anything:
///
/// - **A new epoch of sequence numbers.** The restored archive numbers its next changes from
///   `epoch << 40`, above every sequence the site could have handed out before (2^40 changes
///   per epoch), so headquarters' cursor never covers a change it has not seen.
/// - **Recovery.** Until a branch has pulled headquarters' log to its end with its *own*
///   changes included (headquarters normally never echoes them), the archive is marked
///   recovering: what the site wrote after the backup comes back from headquarters, and new
///   numbered records (customers, complaints, claims) wait, because their numbers could
///   collide with numbers handed out after the backup. Afterwards the counters continue above
///   every number of this site's that the archive holds.
extension Archive {
    /// Sequences per epoch: a restore starts the next epoch at `epoch << epochShift`.
    public static let epochShift: UInt64 = 40

    public struct BackupSummary: Sendable {
        public var path: String
        public var bytes: Int64
        public var takenAtMilliseconds: UInt64
        public var lastSequence: UInt64
    }

    /// Copies the archive to `path` while it stays in use: a consistent snapshot, checked with
    /// `quick_check`, written to a temporary file and renamed into place (mode 0600: it holds
    /// customer data). An existing file at `path` is an error unless `replace`.
    public func backup(
        to path: String, replace: Bool = false, progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil
    ) throws -> BackupSummary {
        let fm = FileManager.default
        if fm.fileExists(atPath: path), !replace {
            throw ArchiveError(.invalidInput, "\(path) exists; choose another name or pass --replace")
        }
        let temporary = path + ".partial"
        for suffix in ["", "-wal", "-shm", "-journal"] { try? fm.removeItem(atPath: temporary + suffix) }
        guard fm.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw ArchiveError(.storage, "cannot write \(temporary): check the directory exists and is writable")
        }
        do {
            let target = try DatabaseQueue(path: temporary)
            let taken = core.environment.now()
            var last: UInt64 = 0
            try writer.backup(to: target, pagesPerStep: 2048) { step in
                progress?(step.completedPageCount, step.totalPageCount)
            }
            try target.writeWithoutTransaction { db in
                // A single self-contained file, whatever the live archive's journal mode.
                try db.execute(sql: "PRAGMA journal_mode = DELETE")
                try db.execute(
                    sql: "INSERT INTO meta(key, value) VALUES ('backup_taken_at', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    arguments: [Int64(taken)])
                let check = try String.fetchAll(db, sql: "PRAGMA quick_check")
                guard check == ["ok"] else {
                    throw ArchiveError(
                        .storage,
                        "the copy failed its integrity check (\(check.prefix(3).joined(separator: "; "))); the archive may be damaged: run 'outpost doctor'")
                }
                last = try Self.logEnd(db)
            }
            try target.close()
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: temporary))
            try handle.synchronize()
            try handle.close()
            if fm.fileExists(atPath: path) { try fm.removeItem(atPath: path) }
            try fm.moveItem(atPath: temporary, toPath: path)
            let bytes = (try? fm.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
            return BackupSummary(path: path, bytes: bytes, takenAtMilliseconds: taken, lastSequence: last)
        } catch let error as ArchiveError {
            try? fm.removeItem(atPath: temporary)
            throw error
        } catch {
            try? fm.removeItem(atPath: temporary)
            throw ArchiveError(.storage, "the backup to \(path) failed: \(Self.storageProblem(error) ?? "see the log")", cause: error)
        }
    }

    /// What a backup file holds, read without changing it.
    public struct BackupFacts: Sendable {
        public var site: SiteID
        public var role: Role
        public var takenAtMilliseconds: UInt64?
        public var lastSequence: UInt64
    }

    /// Checks that `path` is an intact Outpost archive (or a backup of one) and says whose.
    public static func inspectBackup(at path: String) throws -> BackupFacts {
        guard FileManager.default.fileExists(atPath: path) else { throw ArchiveError(.invalidInput, "\(path) does not exist") }
        var config = Configuration()
        config.readonly = true
        do {
            let queue = try DatabaseQueue(path: path, configuration: config)
            defer { try? queue.close() }
            return try queue.read { db in
                let check = try String.fetchAll(db, sql: "PRAGMA quick_check")
                guard check == ["ok"] else {
                    throw ArchiveError(.storage, "\(path) is damaged (\(check.prefix(3).joined(separator: "; "))); use an older backup")
                }
                let meta = try Dictionary(
                    uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT key, value FROM meta").map { ($0[0] as String, $0[1] as DatabaseValue) })
                guard let code = String.fromDatabaseValue(meta["site"] ?? .null), let site = try? SiteID(code),
                    let role = String.fromDatabaseValue(meta["role"] ?? .null).flatMap(Role.init(rawValue:))
                else { throw ArchiveError(.invalidInput, "\(path) is not an Outpost archive") }
                let last = try Self.logEnd(db)
                return BackupFacts(
                    site: site, role: role, takenAtMilliseconds: Int64.fromDatabaseValue(meta["backup_taken_at"] ?? .null).map { UInt64($0) },
                    lastSequence: last)
            }
        } catch let error as ArchiveError {
            throw error
        } catch {
            throw ArchiveError(.invalidInput, "\(path) is not a readable Outpost archive (\(Self.storageProblem(error) ?? "not SQLite"))", cause: error)
        }
    }

    /// Marks a just-restored archive: the next epoch of sequence numbers, and (at a branch)
    /// recovery until headquarters' log has been pulled with this site's own changes.
    public func beginEpochAfterRestore() throws -> UInt64 {
        try writer.write { db in
            let current = try Self.logEnd(db)
            let epoch = (current >> Self.epochShift) + 1
            let base = epoch << Self.epochShift
            try db.execute(sql: "UPDATE state SET sequence = ? WHERE id = 1", arguments: [Int64(base)])
            try db.execute(
                sql: "INSERT INTO meta(key, value) VALUES ('epoch', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", arguments: [Int64(epoch)])
            if role == .branch {
                try db.execute(
                    sql: "INSERT INTO meta(key, value) VALUES ('recovering_since', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    arguments: [Int64(core.environment.now())])
                // Not yet known to be new to headquarters: a backup older than an earlier restore
                // leads to the same epoch again (``confirmEpoch(headquartersHolds:)``).
                try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES ('epoch_unconfirmed', 1)")
                // A backup taken during a bootstrap: recovery pulls headquarters' log from the
                // backup's cursor instead, which covers what the snapshot had not sent yet.
                try db.execute(sql: "DELETE FROM meta WHERE key IN ('snapshot_cut', 'snapshot_after', 'snapshot_sent', 'snapshot_total')")
            }
            return epoch
        }
    }

    /// At the first handshake with headquarters after a restore: when headquarters already
    /// holds sequences of this site's new epoch (the backup was older than an earlier restore,
    /// which started the same epoch and pushed in it), what this site logged since the restore
    /// moves to the epoch after headquarters' cursor, keeping its order, so no change of it
    /// hides below that cursor. Nothing of the epoch was pushed before (a push needs the
    /// handshake first), so every entry from the epoch's start is this life's own.
    /// - Returns: the new epoch when the log moved, else nil.
    @discardableResult
    public func confirmEpoch(headquartersHolds received: UInt64) throws -> UInt64? {
        guard role == .branch else { return nil }
        return try writer.write { db in
            guard try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'epoch_unconfirmed'") != nil else { return nil }
            try db.execute(sql: "DELETE FROM meta WHERE key = 'epoch_unconfirmed'")
            let epoch = UInt64(max(0, try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'epoch'") ?? 0))
            let base = epoch << Self.epochShift
            guard received >= base, (received >> Self.epochShift) + 2 < (1 << (63 - Self.epochShift)) else { return nil }
            let moved = (received >> Self.epochShift) + 1
            let newBase = moved << Self.epochShift
            // Every target lies above every sequence in the log (newBase > received >= base, and an
            // epoch holds 2^40 of them), so no update meets an existing row.
            try db.execute(
                sql: "UPDATE changelog SET seq = seq - ? + ? WHERE seq >= ?", arguments: [Int64(base), Int64(newBase), Int64(base)])
            try db.execute(
                sql: "UPDATE state SET sequence = max(sequence, ?) - ? + ? WHERE id = 1", arguments: [Int64(base), Int64(base), Int64(newBase)])
            try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'epoch'", arguments: [Int64(moved)])
            logger.warning(
                "headquarters already holds this site's new epoch (restored from a backup older than an earlier restore); changes made since the restore were renumbered",
                metadata: ["epoch": "\(epoch)", "new_epoch": "\(moved)", "hq_received_through": "\(received)"])
            return moved
        }
    }

    /// When recovery after a restore began, or nil when the archive is not recovering.
    public func recoveringSince() throws -> UInt64? {
        try read { db in try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'recovering_since'").map { UInt64($0) } }
    }

    /// Ends recovery once headquarters' log has been pulled to its end with this site's own
    /// changes: the counters continue above every number of this site's in the archive.
    public func finishRecovery() throws {
        try writer.write { db in
            guard try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'recovering_since'") != nil else { return }
            try Self.raiseCounters(db, site: site)
            try db.execute(sql: "DELETE FROM meta WHERE key = 'recovering_since'")
        }
    }

    /// Sets each numbering counter to at least the highest number of this site's records.
    static func raiseCounters(_ db: Database, site: SiteID) throws {
        let code = site.code
        // Customers: CODE-C-000123.
        let customerPrefix = "\(code)-C-"
        if let n = try Int64.fetchOne(
            db, sql: "SELECT max(CAST(substr(number, ?) AS INTEGER)) FROM customers WHERE substr(number, 1, ?) = ?",
            arguments: [customerPrefix.count + 1, customerPrefix.count, customerPrefix])
        {
            try raise(db, counter: "customer", to: n)
        }
        // Complaints CODE-YYYY-000123 and claims CODE-YYYY-CL000123, per year.
        for (table, counter, marker) in [("complaints", "complaint", ""), ("claims", "claim", "CL")] {
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT substr(number, ?, 4) AS year, max(CAST(substr(number, ?) AS INTEGER))
                    FROM \(table) WHERE substr(number, 1, ?) = ? AND substr(number, ?, ?) = ? GROUP BY year
                    """,
                arguments: [
                    code.count + 2, code.count + 7 + marker.count, code.count + 1, code + "-", code.count + 6, marker.count + 1, "-" + marker,
                ])
            for row in rows {
                guard let year: String = row[0], let n: Int64 = row[1] else { continue }
                try raise(db, counter: "\(counter)-\(year)", to: n)
            }
        }
    }

    private static func raise(_ db: Database, counter: String, to value: Int64) throws {
        try db.execute(
            sql: "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
            arguments: [counter, value])
    }

    /// "disk full", "damaged file", … for a storage error from SQLite, else nil.
    public static func storageProblem(_ error: any Error) -> String? {
        guard let fault = StorageFault(error) else { return nil }
        return fault.description
    }
}

/// A failure of the disk or the file under the archive, as opposed to a refused input.
public enum StorageFault: String, Sendable, CaseIterable, CustomStringConvertible {
    case diskFull = "disk_full"
    case corrupt
    case io

    /// Classifies an error from SQLite (also when wrapped in an ``ArchiveError``).
    public init?(_ error: any Error) {
        var current: (any Error)? = error
        while let e = current {
            if let db = e as? DatabaseError {
                switch db.resultCode {
                case .SQLITE_FULL: self = .diskFull
                case .SQLITE_CORRUPT, .SQLITE_NOTADB: self = .corrupt
                case .SQLITE_IOERR: self = .io
                default: return nil
                }
                return
            }
            current = (e as? ArchiveError)?.cause
        }
        return nil
    }

    public var description: String {
        switch self {
        case .diskFull: "the disk is full"
        case .corrupt: "the archive file is damaged"
        case .io: "the disk reported an input/output error"
        }
    }
}

extension Archive {
    /// SQLite's `quick_check` (or the slower, thorough `integrity_check`): the problems it
    /// finds, empty when the file is sound. Problems name pages and tables, never values.
    public func checkIntegrity(thorough: Bool = false) throws -> [String] {
        try read { db in
            let rows = try String.fetchAll(db, sql: thorough ? "PRAGMA integrity_check(20)" : "PRAGMA quick_check(20)")
            return rows == ["ok"] ? [] : rows
        }
    }
}

extension Archive {
    /// Every non-null text of one column of a table (the simulation checks human numbers).
    package func texts(of column: String, in table: String) throws -> [String] {
        guard let schema = Schema.tables.first(where: { $0.name == table }), schema.columns.contains(where: { $0.name == column }) else {
            throw ArchiveError(.invalidInput, "no column \(table).\(column)")
        }
        return try read { db in try String.fetchAll(db, sql: "SELECT \(column) FROM \(table) WHERE \(column) IS NOT NULL") }
    }
}

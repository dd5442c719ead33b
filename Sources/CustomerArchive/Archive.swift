import Foundation
import GRDB
import Logging
import Replication

/// Which part a site plays.
public enum Role: String, Sendable, CaseIterable, Codable {
    case branch
    case hq
}

/// What the archive takes from the world, injectable so a simulation can replay it exactly.
public struct ArchiveEnvironment: Sendable {
    /// The wall clock, milliseconds since the Unix epoch.
    public var now: @Sendable () -> UInt64
    /// 128 random bits for new record keys.
    public var randomBits: @Sendable () -> (UInt64, UInt64)

    public init(now: @escaping @Sendable () -> UInt64, randomBits: @escaping @Sendable () -> (UInt64, UInt64)) {
        self.now = now
        self.randomBits = randomBits
    }

    public static let live = ArchiveEnvironment(
        now: { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) },
        randomBits: {
            var g = SystemRandomNumberGenerator()
            return (g.next(), g.next())
        })
}

/// State shared by every transaction of one open archive.
final class ArchiveCore: Sendable {
    let site: SiteID
    let role: Role
    let headquarters: SiteID
    let environment: ArchiveEnvironment
    let sites = SiteTable()
    let maximumDrift: UInt64

    init(site: SiteID, role: Role, headquarters: SiteID, environment: ArchiveEnvironment, maximumDrift: UInt64) {
        self.site = site
        self.role = role
        self.headquarters = headquarters
        self.environment = environment
        self.maximumDrift = maximumDrift
    }

    func newKey() -> RecordKey {
        let (a, b) = environment.randomBits()
        return RecordKey.version7(milliseconds: environment.now(), randomA: a, randomB: b)
    }
}

/// A site's customer archive: one SQLite file holding customer files, contacts, complaints and
/// claims, the change log that replicates them, and the conflict journal.
///
/// Open one `Archive` per file for the life of the process; it is safe to use from any thread.
/// Every write commits its change-log entries in the same transaction, and every merge path
/// (local writes, change sets, conflict restores) runs through the same code.
public final class Archive: Sendable {
    let writer: any DatabaseWriter
    let core: ArchiveCore
    let logger: Logger

    /// The file name of the archive inside a data directory.
    public static let fileName = "archive.sqlite"

    public var site: SiteID { core.site }
    public var role: Role { core.role }
    public var headquarters: SiteID { core.headquarters }
    public var path: String { writer.path }

    private init(writer: any DatabaseWriter, core: ArchiveCore) {
        self.writer = writer
        self.core = core
        var logger = Logger(label: "outpost.archive")
        logger[metadataKey: "site"] = "\(core.site)"
        self.logger = logger
    }

    static func configuration() -> Configuration {
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            db.add(function: DatabaseFunction(Migrations.guardFunction, argumentCount: 0, pure: false) { _ in nil })
            try db.execute(sql: "PRAGMA secure_delete = ON")
            // 32 MiB of page cache (the default is 2 MiB): a batch of merges or imports touches
            // pages all over several indexes, and a cache smaller than that spills dirty pages to
            // the WAL again and again within one transaction.
            try db.execute(sql: "PRAGMA cache_size = -32768")
        }
        return config
    }

    /// Creates a new archive file for a site.
    /// - Throws: `.alreadyInitialized` when the file exists, `.storage` when it cannot be made.
    public static func create(
        at path: String, site: SiteID, role: Role, headquarters: SiteID = .headquarters,
        environment: ArchiveEnvironment = .live
    ) throws -> Archive {
        if FileManager.default.fileExists(atPath: path) {
            throw ArchiveError(.alreadyInitialized, "an archive already exists at \(path); it belongs to the site it was made for")
        }
        let pool: DatabasePool
        do { pool = try DatabasePool(path: path, configuration: configuration()) } catch {
            throw ArchiveError(.storage, "cannot create the archive at \(path): check that the directory exists and is writable", cause: error)
        }
        try initialize(pool, site: site, role: role, headquarters: headquarters, environment: environment)
        try makeDurable(pool)
        return try Archive(writer: pool, environment: environment)
    }

    /// Opens an existing archive file.
    /// - Parameter maximumDrift: how far ahead of this site's wall clock a sender's own change
    ///   may be, in milliseconds, before it is quarantined; default the archive's setting.
    public static func open(at path: String, environment: ArchiveEnvironment = .live, maximumDrift: UInt64? = nil) throws -> Archive {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ArchiveError(.notInitialized, "no archive at \(path): run 'outpost init --site CODE --role branch|hq' first, or pass --data-dir")
        }
        let pool: DatabasePool
        do { pool = try DatabasePool(path: path, configuration: configuration()) } catch {
            throw ArchiveError(.storage, "cannot open the archive at \(path): it may be damaged or not an Outpost archive", cause: error)
        }
        do { try Migrations.migrator.migrate(pool) } catch {
            throw ArchiveError(.storage, "cannot migrate the archive at \(path)", cause: error)
        }
        try makeDurable(pool)
        return try Archive(writer: pool, environment: environment, maximumDrift: maximumDrift)
    }

    /// An archive in memory, for tests and the simulation.
    public static func inMemory(
        site: SiteID, role: Role, headquarters: SiteID = .headquarters, environment: ArchiveEnvironment = .live
    ) throws -> Archive {
        let queue = try DatabaseQueue(configuration: configuration())
        try initialize(queue, site: site, role: role, headquarters: headquarters, environment: environment)
        return try Archive(writer: queue, environment: environment)
    }

    private static func initialize(
        _ writer: any DatabaseWriter, site: SiteID, role: Role, headquarters: SiteID, environment: ArchiveEnvironment
    ) throws {
        try Migrations.migrator.migrate(writer)
        try writer.write { db in
            for (k, v) in [("site", site.code), ("role", role.rawValue), ("headquarters", headquarters.code)] {
                try db.execute(sql: "INSERT INTO meta(key, value) VALUES (?, ?)", arguments: [k, v])
            }
            try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('created_at', ?)", arguments: [Int64(environment.now())])
            try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('schema', ?)", arguments: [Schema.version])
        }
    }

    private convenience init(writer: any DatabaseWriter, environment: ArchiveEnvironment, maximumDrift: UInt64? = nil) throws {
        let meta = try writer.read { db in
            try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT key, value FROM meta").map { ($0[0] as String, $0[1] as DatabaseValue) })
        }
        guard let code = String.fromDatabaseValue(meta["site"] ?? .null),
            let roleName = String.fromDatabaseValue(meta["role"] ?? .null), let role = Role(rawValue: roleName),
            let hq = String.fromDatabaseValue(meta["headquarters"] ?? .null)
        else {
            throw ArchiveError(.storage, "the archive at \(writer.path) lacks its site identity; it is not an Outpost archive or it is damaged")
        }
        let drift =
            maximumDrift ?? Int64.fromDatabaseValue(meta["maximum_drift_ms"] ?? .null).map(UInt64.init) ?? HybridLogicalClock.defaultMaximumDrift
        self.init(
            writer: writer,
            core: ArchiveCore(
                site: SiteID(unchecked: code), role: role, headquarters: SiteID(unchecked: hq),
                environment: environment, maximumDrift: drift))
    }

    // MARK: Transactions

    /// Runs `body` in one write transaction with a merge session; commits the clock and the
    /// site table with it, and checkpoints the WAL after an erasure.
    func transaction<T>(_ body: (inout Session) throws -> T) throws -> T {
        var pending: [SiteID: Int64] = [:]
        var checkpoint = false
        let result = try writer.write { db -> T in
            var session = try Session(db: db, core: core)
            let value = try body(&session)
            try session.finish()
            pending = session.pendingSites
            checkpoint = session.needsCheckpoint
            return value
        }
        core.sites.commit(pending)
        if checkpoint { try erasureCheckpoint() }
        return result
    }

    /// Moves every page out of the WAL and truncates it, so that no copy of erased values is
    /// left in `-wal` (freed pages are zeroed by `secure_delete`).
    func erasureCheckpoint() throws {
        try writer.writeWithoutTransaction { db in
            _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    /// Commits reach the disk before they return (`synchronous = FULL`, an fsync per commit).
    ///
    /// GRDB opens pools with `NORMAL`, which survives a process crash but can lose the last
    /// commits on a power cut. An archive must not: a lost commit can hold change-log sequences a
    /// peer already acknowledged, and the site would hand out those numbers again.
    static func makeDurable(_ pool: DatabasePool) throws {
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        try writer.read(body)
    }
}

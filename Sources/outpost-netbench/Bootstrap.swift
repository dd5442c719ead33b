import CustomerArchive
import Foundation
import GRDBSQLite
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import OutpostTesting
import Replication
import SyncService

/// A new branch's bootstrap of its scope from a national headquarters
/// (`outpost-netbench --bootstrap N [--homes B] [--line]`): HQ holds N customers homed at B
/// branches; a new branch bootstraps its N/B over mTLS on 127.0.0.1. The baseline is the
/// physical limit of the same work in the same process: the snapshot's bytes copied over a TLS
/// connection between the same certificates (NIO and NIOSSL, no gRPC, no archive) plus SQLite's
/// C API inserting the same rows (prepared once, bound without boxing, the archive's pragmas
/// and key type, 10,000 rows per transaction). With `--line`, the bootstrap also runs through
/// `scripts/thin-line` (100 ms ± 20 ms each way, 500 kB/s), against the time that line needs
/// for the snapshot's bytes.
func bootstrapBenchmark(
    customers: Int, homes: Int, line: Bool, rounds: Int, dir: TemporaryDirectory, bundle: (String) throws -> TLSFiles, logger: Logger
) async throws {
    let fields = SampleCustomers.fields
    let columns = fields.map { Schema.customers.column($0) }
    let home = { (i: Int) in "BR\(String(format: "%03d", i % homes))" }
    let chosen = 7 % homes
    print("bootstrap: headquarters holds \(customers) customers homed at \(homes) branches; a new branch (\(home(chosen))) bootstraps its \(customers / homes)")
    let hq = try Archive.create(at: dir.file("bootstrap-hq.sqlite"), site: .headquarters, role: .hq)
    var rng = SplitMix64(seed: 11)
    let t0 = UInt64(Date().timeIntervalSince1970 * 1000) - 86_400_000
    let origin = try SiteID("GZ01")
    var rows: [[Value]] = []
    var keys: [RecordKey] = []
    let loadStart = ContinuousClock.now
    var start = 0
    while start < customers {
        let end = min(customers, start + 50_000)
        var changes: [Change] = []
        for i in start..<end {
            let key = RecordKey.version7(milliseconds: t0 + UInt64(i), using: &rng)
            let values = fields.map { $0 == "home_branch" ? Value.text(home(i)) : SampleCustomers.value($0, i, &rng) }
            if i % homes == chosen {
                keys.append(key)
                rows.append(values)
            }
            let stamp = Stamp(time: Timestamp(milliseconds: t0 + UInt64(i), counter: 0), site: origin)
            changes.append(
                Change(table: Schema.customers.id, key: key, stamp: stamp, body: .fields(zip(columns, values).map { FieldWrite(column: $0, value: $1) })))
        }
        try hq.apply(
            ChangeSet(producer: origin, schemaVersion: Schema.version, after: UInt64(start), through: UInt64(end), changes: changes),
            options: ApplyOptions(checkDrift: false, batchSize: 10_000))
        start = end
    }
    print("  headquarters loaded in \(fmt(seconds(since: loadStart))) s (scope reconciled for every customer)")

    // The snapshot's bytes, as the wire carries them.
    let target = try SiteID(home(chosen))
    var snapshotBytes = 0
    var parts: [SnapshotPart] = []
    let limits = SyncLimits()
    // Where the time goes, one stage after another: HQ's read, the encoding, the branch's
    // apply; each three times (a new branch each), the fastest counting: the stages are CPU
    // work this shared machine's neighbours slow by a third at times.
    var readSeconds = Double.infinity
    var encodeSeconds = Double.infinity
    var applySeconds = Double.infinity
    for attempt in 0..<3 {
        var read = 0.0
        var encode = 0.0
        var bytes = 0
        var after: RecordKey?
        parts = []
        while true {
            var t = ContinuousClock.now
            let part = try hq.snapshot(for: target, after: after, maxChanges: limits.batchMaximumChanges, maxBytes: limits.batchMaximumBytes / 2)
            read += seconds(since: t)
            t = ContinuousClock.now
            bytes += try ChangeSetCodec.encode(part.set, level: 1).count + 16 * part.customers.count + 64
            encode += seconds(since: t)
            parts.append(part)
            if part.done { break }
            after = part.customers.last
        }
        let probe = try Archive.create(at: dir.file("bootstrap-probe-\(attempt).sqlite"), site: target, role: .branch)
        let applyStart = ContinuousClock.now
        for part in parts { try probe.applySnapshot(part, acknowledgedBeforeRead: 0) }
        applySeconds = min(applySeconds, seconds(since: applyStart))
        readSeconds = min(readSeconds, read)
        encodeSeconds = min(encodeSeconds, encode)
        snapshotBytes = bytes
    }
    print(
        "  snapshot: \(parts.count) parts, \(snapshotBytes) bytes on the wire (\(fmt(Double(snapshotBytes) / Double(rows.count), 1)) B per customer); one stage after another (fastest of 3): HQ reads it in \(fmt(readSeconds)) s, encodes it in \(fmt(encodeSeconds)) s, the branch applies it in \(fmt(applySeconds)) s"
    )

    let watch = try LogWatch(archive: hq, pollInterval: .milliseconds(limits.pollIntervalMilliseconds))
    let service = HeadquartersService(archive: hq, limits: limits, watch: watch, revokedFile: nil, registry: BranchRegistry(), logger: logger)
    let hqTLS = TLSFiles(ca: dir.file("pki/ca.pem"), certificate: dir.file("pki/hq.pem"), key: dir.file("pki/hq-key.pem"))
    let server = try service.makeServer(address: HostPort(host: "127.0.0.1", port: 0), tls: hqTLS)
    let serving = Task { try await server.serve() }
    guard let address = try await server.listeningAddress?.ipv4 else { fatalError("the server did not bind") }
    let branchTLS = try bundle(target.code)
    var proxy: Process?
    var proxyPort = 0
    if line {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../scripts/thin-line").standardized.path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script, "0", String(address.port), "100", "20", "500"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let first = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard let port = first.split(separator: " ").last.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
            fatalError("thin-line did not start: \(first)")
        }
        proxy = p
        proxyPort = port
    }
    defer { proxy?.terminate() }

    var ratios: [Double] = []
    for round in 1...rounds {
        // Baseline: the bytes over TLS, then the rows through SQLite's C API.
        let copy = try await tlsCopy(bytes: snapshotBytes, server: hqTLS, client: branchTLS)
        let insert = try cInsert(keys: keys, rows: rows, path: dir.file("c-insert-\(round).sqlite"))
        // The bootstrap: a fresh branch, one exchange (snapshot, then the pull after the cut).
        let branch = try Archive.create(at: dir.file("bootstrap-branch-\(round).sqlite"), site: target, role: .branch)
        let client = BranchClient(
            archive: branch, hq: HostPort(host: "127.0.0.1", port: address.port), tls: branchTLS, limits: limits,
            watch: try LogWatch(archive: branch, pollInterval: .milliseconds(200)), logger: logger, dataDirectory: nil)
        let t = ContinuousClock.now
        _ = try await client.exchange(follow: false, progress: nil)
        let took = seconds(since: t)
        let held = try branch.counts()["customers"] ?? 0
        guard held == rows.count else {
            print("FAIL: the branch holds \(held) customers; its scope has \(rows.count)")
            exit(1)
        }
        let ratio = took / (copy + insert)
        ratios.append(ratio)
        print(
            "  round \(round): bootstrap \(fmt(took)) s (\(Int(Double(held) / took)) customers/s); TLS copy \(fmt(copy, 3)) s + C API insert \(fmt(insert, 3)) s → \(fmt(ratio))× the limit (goal ≤ 2×)"
        )
        if round == 1 {
            try branch.checkpointNow()
            let size = (try FileManager.default.attributesOfItem(atPath: dir.file("bootstrap-branch-\(round).sqlite"))[.size] as? Int) ?? 0
            let plain = (try FileManager.default.attributesOfItem(atPath: dir.file("c-insert-\(round).sqlite"))[.size] as? Int) ?? 0
            print(
                "  the branch's archive: \(size / 1024) KiB, against \(plain / 1024) KiB for a file holding only its customers' rows (\(fmt(Double(size) / Double(max(plain, 1))))×)"
            )
        }
    }
    let sorted = ratios.sorted()
    print("  bootstrap / physical limit: median \(fmt(sorted[sorted.count / 2]))×, range \(fmt(sorted.first!))–\(fmt(sorted.last!))× (goal ≤ 2×)")
    if line {
        let lineSeconds = Double(snapshotBytes) / 500_000 + 0.1
        let branch = try Archive.create(at: dir.file("bootstrap-line.sqlite"), site: target, role: .branch)
        let client = BranchClient(
            archive: branch, hq: HostPort(host: "127.0.0.1", port: proxyPort), tls: branchTLS, limits: limits,
            watch: try LogWatch(archive: branch, pollInterval: .milliseconds(200)), logger: logger, dataDirectory: nil)
        let t = ContinuousClock.now
        _ = try await client.exchange(follow: false, progress: nil)
        let took = seconds(since: t)
        print(
            "  through a line of 100 ms ± 20 ms each way at 500 kB/s: bootstrap \(fmt(took)) s; the line needs \(fmt(lineSeconds)) s for the snapshot's bytes → \(fmt(took / lineSeconds))× (goal ≤ 1.25×)"
        )
    }
    server.beginGracefulShutdown()
    try await serving.value
}

/// Copies `bytes` bytes over a TLS 1.3 connection on 127.0.0.1 with the same certificates
/// (NIO and NIOSSL directly): the wire's limit for the snapshot's bytes.
func tlsCopy(bytes: Int, server: TLSFiles, client: TLSFiles) async throws -> Double {
    let group = MultiThreadedEventLoopGroup.singleton
    var serverConfig = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(server.certificate).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: server.key, format: .pem)))
    serverConfig.minimumTLSVersion = .tlsv13
    serverConfig.trustRoots = .file(server.ca)
    serverConfig.certificateVerification = .noHostnameVerification
    var clientConfig = TLSConfiguration.makeClientConfiguration()
    clientConfig.certificateChain = try NIOSSLCertificate.fromPEMFile(client.certificate).map { .certificate($0) }
    clientConfig.privateKey = .privateKey(try NIOSSLPrivateKey(file: client.key, format: .pem))
    clientConfig.trustRoots = .file(client.ca)
    clientConfig.certificateVerification = .noHostnameVerification
    let serverContext = try NIOSSLContext(configuration: serverConfig)
    let clientContext = try NIOSSLContext(configuration: clientConfig)
    let done = group.next().makePromise(of: Void.self)
    let listener = try await ServerBootstrap(group: group)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
                try channel.pipeline.syncOperations.addHandler(CountingSink(expected: bytes, done: done))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    let port = listener.localAddress!.port!
    let start = ContinuousClock.now
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: clientContext, serverHostname: nil))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    var left = bytes
    let chunk = ByteBuffer(repeating: 0x5A, count: 64 * 1024)
    while left > 0 {
        let n = min(left, chunk.readableBytes)
        try await channel.writeAndFlush(chunk.getSlice(at: 0, length: n)!).get()
        left -= n
    }
    try await done.futureResult.get()
    let took = seconds(since: start)
    try await channel.close().get()
    try await listener.close().get()
    return took
}

final class CountingSink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let expected: Int
    let done: EventLoopPromise<Void>
    var received = 0
    init(expected: Int, done: EventLoopPromise<Void>) {
        self.expected = expected
        self.done = done
    }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytes
        if received >= expected { done.succeed() }
    }
}

/// Inserts the rows through SQLite's C API into a fresh file with the archive's pragmas (WAL,
/// synchronous=FULL, secure_delete) and key type (16-byte blob, WITHOUT ROWID), the statement
/// prepared once and values bound without boxing, 10,000 rows per transaction.
func cInsert(keys: [RecordKey], rows: [[Value]], path: String) throws -> Double {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else { fatalError("sqlite3_open_v2") }
    defer { sqlite3_close_v2(db) }
    func exec(_ sql: String) {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { fatalError(String(cString: sqlite3_errmsg(db))) }
    }
    exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON")
    let names = SampleCustomers.fields.map { "\"\($0)\"" }
    exec("CREATE TABLE customers (id BLOB PRIMARY KEY NOT NULL, \(names.joined(separator: ", "))) WITHOUT ROWID")
    var stmt: OpaquePointer?
    let sql = "INSERT INTO customers(id, \(names.joined(separator: ", "))) VALUES (?\(String(repeating: ", ?", count: names.count)))"
    guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else { fatalError(String(cString: sqlite3_errmsg(db))) }
    defer { sqlite3_finalize(stmt) }
    let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    let start = ContinuousClock.now
    for (i, row) in rows.enumerated() {
        if i % 10_000 == 0 { exec(i == 0 ? "BEGIN" : "COMMIT; BEGIN") }
        keys[i].bytes.withUnsafeBytes { _ = sqlite3_bind_blob(stmt, 1, $0.baseAddress, 16, transient) }
        for (j, v) in row.enumerated() {
            let index = Int32(j + 2)
            switch v {
            case .null: sqlite3_bind_null(stmt, index)
            case .integer(let n): sqlite3_bind_int64(stmt, index, n)
            case .text(let s): sqlite3_bind_text(stmt, index, s, -1, transient)
            case .blob(let b): b.withUnsafeBytes { _ = sqlite3_bind_blob(stmt, index, $0.baseAddress, Int32(b.count), transient) }
            }
        }
        guard sqlite3_step(stmt) == SQLITE_DONE else { fatalError(String(cString: sqlite3_errmsg(db))) }
        sqlite3_reset(stmt)
    }
    exec("COMMIT")
    return seconds(since: start)
}

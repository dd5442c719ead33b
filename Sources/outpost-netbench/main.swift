// Measures sync over mutual TLS on loopback. Not part of the test run.
//
//   swift build -c release --product outpost --product outpost-netbench
//   .build/release/outpost-netbench [--customers N] [--branches N] [--per-branch N]
//   .build/release/outpost-netbench --bootstrap 1000000 [--homes 100] [--line] [--rounds N]
//
// 1. Catch-up: headquarters holds N new customers × 12 fields (default 83,334 ≈ 1,000,000
//    field changes) from another branch; a fresh branch pulls them all over mTLS (server and
//    client in this process, real sockets). The baseline is the local apply of the same
//    change set into a fresh archive, in the same process: the ratio is network rate / local.
// 2. Intake: headquarters as a separate `outpost serve` process; B branches (default 200),
//    each with its own certificate and connection, push P changes each (default 1,000) at
//    once. Total time, errors and headquarters' peak RSS.
import CustomerArchive
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import OutpostTesting
import Replication
import SyncProtocol
import SyncService

struct Options {
    var customers = 83_334
    var branches = 200
    var perBranch = 1_000
    var skipCatchUp = false
    var skipIntake = false
    var rounds = 9
    var bootstrap: Int?
    var homes = 100
    var line = false
    init() {
        var args = CommandLine.arguments.dropFirst().makeIterator()
        while let a = args.next() {
            switch a {
            case "--customers": customers = Int(args.next() ?? "") ?? customers
            case "--branches": branches = Int(args.next() ?? "") ?? branches
            case "--per-branch": perBranch = Int(args.next() ?? "") ?? perBranch
            case "--rounds": rounds = max(1, Int(args.next() ?? "") ?? rounds)
            case "--only-catch-up": skipIntake = true
            case "--only-intake": skipCatchUp = true
            case "--bootstrap": bootstrap = Int(args.next() ?? "")
            case "--homes": homes = max(1, Int(args.next() ?? "") ?? homes)
            case "--line": line = true
            default:
                print(
                    "usage: outpost-netbench [--customers N] [--rounds N] [--branches N] [--per-branch N] [--only-catch-up|--only-intake] | --bootstrap N [--homes B] [--line]"
                )
                exit(2)
            }
        }
    }
}

let options = Options()
let fields = SampleCustomers.fields
let columns = fields.map { Schema.customers.column($0) }

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func fmt(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

LoggingSystem.bootstrap { label in
    var h = StreamLogHandler.standardError(label: label)
    h.logLevel = .warning
    return h
}
let logger = Logger(label: "outpost-netbench")
let dir = try TemporaryDirectory(prefix: "outpost-netbench")
let nowMs = UInt64(Date().timeIntervalSince1970 * 1000)
let hqSite = SiteID.headquarters

// MARK: PKI
try CertificateAuthority.initialize(directory: dir.file("pki"), headquarters: hqSite)
let authority = try CertificateAuthority.load(directory: dir.file("pki"))
func bundle(_ code: String) throws -> TLSFiles {
    let b = try authority.issue(site: try SiteID(code))
    return TLSFiles(ca: b.caCertificate, certificate: b.certificate, key: b.key)
}

if let n = options.bootstrap {
    try await bootstrapBenchmark(
        customers: n, homes: options.homes, line: options.line, rounds: min(options.rounds, 5), dir: dir, bundle: bundle, logger: logger)
    exit(0)
}

// MARK: 1. Catch-up
if !options.skipCatchUp {
    print("catch-up: headquarters holds \(options.customers) new customers × \(fields.count) fields = \(options.customers * fields.count) field changes")
    var rng = SplitMix64(seed: 42)
    let origin = try SiteID("GZ01")
    let t0 = nowMs - 3_600_000
    var changes: [Change] = []
    changes.reserveCapacity(options.customers)
    for i in 0..<options.customers {
        var g = rng
        let key = RecordKey.version7(milliseconds: t0 + UInt64(i), using: &g)
        rng = g
        let stamp = Stamp(time: Timestamp(milliseconds: t0 + UInt64(i), counter: 0), site: origin)
        changes.append(
            Change(
                table: Schema.customers.id, key: key, stamp: stamp,
                body: .fields(
                    zip(columns, fields.map { $0 == "home_branch" ? .text("BJ99") : SampleCustomers.value($0, i, &rng) }).map {
                        FieldWrite(column: $0, value: $1)
                    })))
    }
    let hq = try Archive.create(at: dir.file("hq.sqlite"), site: hqSite, role: .hq)
    try hq.apply(
        ChangeSet(producer: origin, schemaVersion: Schema.version, after: 0, through: UInt64(changes.count), changes: changes),
        options: ApplyOptions(checkDrift: false, batchSize: 10_000))
    changes = []

    // Every customer is homed at the branch that pulls (BJ99), so its scope is all of them: they
    // reach it as moves in with their current state (protocols/README.md §5.6).
    // Baseline: the same changes, exported by HQ for BJ99's scope, applied locally into a fresh
    // archive.
    let exported = try hq.exportChanges(for: try SiteID("BJ99"), after: 0).set
    let fieldCount = Double(options.customers * fields.count)

    // The stages a catch-up runs, one after another, for the record: where the time goes.
    do {
        var cursor: UInt64 = 0
        var exportTime = 0.0, encodeTime = 0.0, decodeTime = 0.0, batches = 0
        while true {
            var t = ContinuousClock.now
            let set = try hq.exportChanges(for: try SiteID("BJ99"), after: cursor, limit: 20_000, maxBytes: 1 << 20).set
            exportTime += seconds(since: t)
            if set.through <= cursor { break }
            t = ContinuousClock.now
            let bytes = try ChangeSetCodec.encode(set, level: 1)
            encodeTime += seconds(since: t)
            t = ContinuousClock.now
            _ = try ChangeSetCodec.decode(bytes)
            decodeTime += seconds(since: t)
            cursor = set.through
            batches += 1
        }
        print(
            "  stages, one after another: HQ export \(fmt(exportTime)) s, encode \(fmt(encodeTime)) s, branch decode \(fmt(decodeTime)) s (\(batches) batches)")
    }

    // Network: HQ's service on 127.0.0.1; each round a fresh branch pulls everything, and a
    // fresh archive applies the same set locally, alternating, so both see the same machine.
    let limits = SyncLimits()
    let watch = try LogWatch(archive: hq, pollInterval: .milliseconds(limits.pollIntervalMilliseconds))
    let service = HeadquartersService(archive: hq, limits: limits, watch: watch, revokedFile: nil, registry: BranchRegistry(), logger: logger)
    let server = try service.makeServer(
        address: HostPort(host: "127.0.0.1", port: 0),
        tls: TLSFiles(ca: dir.file("pki/ca.pem"), certificate: dir.file("pki/hq.pem"), key: dir.file("pki/hq-key.pem")))
    let serving = Task { try await server.serve() }
    guard let address = try await server.listeningAddress?.ipv4 else { fatalError("the server did not bind") }
    var ratios: [Double] = []
    for round in 1...options.rounds {
        let local = try Archive.create(at: dir.file("local\(round).sqlite"), site: try SiteID("BJ99"), role: .branch)
        let localStart = ContinuousClock.now
        try local.apply(exported, options: ApplyOptions(checkDrift: true, batchSize: 5_000))
        let localSeconds = seconds(since: localStart)

        // A fresh archive each round for the branch whose scope is every customer (BJ99).
        let code = "BJ99"
        let branch = try Archive.create(at: dir.file("branch\(round).sqlite"), site: try SiteID(code), role: .branch)
        let client = BranchClient(
            archive: branch, hq: HostPort(host: "127.0.0.1", port: address.port), tls: try bundle(code), limits: limits,
            watch: try LogWatch(archive: branch, pollInterval: .milliseconds(200)), logger: logger, dataDirectory: nil)
        let networkStart = ContinuousClock.now
        let result = try await client.exchange(follow: false, progress: nil)
        let networkSeconds = seconds(since: networkStart)
        let held = try branch.counts()["customers"] ?? 0
        guard result.pulledChanges == options.customers, held == options.customers else {
            print("FAIL: the branch holds \(held) customers after pulling \(result.pulledChanges); expected \(options.customers)")
            exit(1)
        }
        ratios.append(localSeconds / networkSeconds)
        print(
            "  round \(round): local apply \(fmt(localSeconds)) s = \(Int(fieldCount / localSeconds)) field changes/s;"
                + " catch-up over mTLS \(fmt(networkSeconds)) s = \(Int(fieldCount / networkSeconds)) field changes/s"
                + " (\(Int(Double(options.customers) / networkSeconds)) records/s); ratio \(fmt(localSeconds / networkSeconds))×")
    }
    server.beginGracefulShutdown()
    try await serving.value
    let sorted = ratios.sorted()
    print("  ratio network / local: median \(fmt(sorted[sorted.count / 2]))×, range \(fmt(sorted.first!))–\(fmt(sorted.last!))× (goal ≥ 0.8×)")
    let wire = try ChangeSetCodec.encode(exported, level: 1).count
    print("  on the wire (zlib level 1): \(fmt(Double(wire) / fieldCount)) B per field change")
}

// MARK: 2. Intake from many branches at once
if !options.skipIntake {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("outpost").path
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        print("intake: build the outpost executable next to this one first (swift build -c release --product outpost)")
        exit(2)
    }
    print("intake: \(options.branches) branches push \(options.perBranch) changes each to one `outpost serve` at once")
    let hqDir = dir.file("hq-process")
    func outpost(_ args: [String]) throws {
        let r = try runProcess(binary, args + ["--data-dir", hqDir])
        guard r.status == 0 else { fatalError("outpost \(args): \(r.stderr)") }
    }
    try outpost(["init", "--site", "HQ", "--role", "hq"])
    try outpost(["pki", "init"])
    let intakeAuthority = try CertificateAuthority.load(directory: hqDir + "/pki")
    let port = 20_000 + Int(nowMs % 20_000)
    let hqProcess = Process()
    hqProcess.executableURL = URL(fileURLWithPath: binary)
    hqProcess.arguments = ["serve", "--data-dir", hqDir, "--config", "/dev/null", "--listen", "127.0.0.1:\(port)", "--log-level", "warning"]
    hqProcess.standardError = FileHandle(forWritingAtPath: "/dev/null")
    try hqProcess.run()
    defer { if hqProcess.isRunning { hqProcess.terminate() } }

    print("  preparing \(options.branches) branches (certificates, \(options.perBranch) local writes each)…")
    struct Prepared: Sendable {
        let client: BranchClient
    }
    var prepared: [Prepared] = []
    for b in 0..<options.branches {
        let code = try SiteID("B\(String(format: "%03d", b + 1))")
        let issued = try intakeAuthority.issue(site: code)
        let archive = try Archive.inMemory(site: code, role: .branch)
        for i in 0..<options.perBranch {
            _ = try archive.addCustomer(["name": .text("客户\(code.code)-\(i)"), "phone": .text("1380000\(String(format: "%04d", i % 10_000))")])
        }
        let client = BranchClient(
            archive: archive, hq: HostPort(host: "127.0.0.1", port: port),
            tls: TLSFiles(ca: issued.caCertificate, certificate: issued.certificate, key: issued.key), limits: SyncLimits(),
            watch: try LogWatch(archive: archive, pollInterval: .milliseconds(200)), logger: logger, dataDirectory: nil)
        prepared.append(Prepared(client: client))
    }
    try await Task.sleep(for: .seconds(1))
    let start = ContinuousClock.now
    let outcomes = await withTaskGroup(of: (Int, String?).self) { group in
        for p in prepared {
            group.addTask {
                do {
                    let r = try await p.client.exchange(follow: false, pull: false, progress: nil)
                    return (r.pushedChanges, nil)
                } catch {
                    return (0, BranchClient.describe(error))
                }
            }
        }
        var all: [(Int, String?)] = []
        for await o in group { all.append(o) }
        return all
    }
    let total = seconds(since: start)
    let errors = outcomes.compactMap(\.1)
    let pushed = outcomes.map(\.0).reduce(0, +)
    let status = (try? String(contentsOfFile: "/proc/\(hqProcess.processIdentifier)/status", encoding: .utf8)) ?? ""
    let peak = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.map { $0.dropFirst(6).trimmingCharacters(in: .whitespaces) } ?? "?"
    hqProcess.terminate()
    hqProcess.waitUntilExit()
    let counted = try Archive.open(at: hqDir + "/archive.sqlite").counts()["customers"] ?? 0
    print("  total \(fmt(total)) s for \(pushed) changes = \(Int(Double(pushed) / total)) changes/s; errors \(errors.count) (goal 0)")
    print("  headquarters holds \(counted) customers (expected \(options.branches * options.perBranch)); peak RSS of headquarters \(peak)")
    for e in Set(errors).prefix(5) { print("  error: \(e)") }
    if !errors.isEmpty || counted != options.branches * options.perBranch { exit(1) }
}

import Foundation
import OutpostTesting
import Testing

/// Headquarters and three branches as separate `outpost serve` processes talking mutual TLS
/// on 127.0.0.1, with certificates from `outpost pki`.
@Suite(.serialized)
struct SyncDaemonTests {
    static let branches = ["BJ01", "GZ01", "SH01"]

    /// Every site writes while headquarters is down; when it comes back, all converge.
    @Test func sitesConvergeAfterHeadquartersReturns() throws {
        let network = try Network(branches: Self.branches)
        defer { network.stopAll() }
        for code in Self.branches { try network.start(code) }
        var expected: [String] = []
        for (i, code) in network.codes.enumerated() {
            for j in 0..<3 {
                let result = try network.site(code).ok("customer", "add", "--name", "客户\(code)-\(j)", "--phone", "13800\(i)0000\(j)")
                expected.append(
                    try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("number:") }).split(separator: " ").last.map(String.init)!)
            }
        }
        // Branches keep serving local writes and say why they are not in sync.
        Thread.sleep(forTimeInterval: 1)
        let offline = try network.site("SH01").object("status")
        let sync = try #require(offline["sync"] as? [String: Any])
        #expect(sync["connected"] as? Bool == false)
        #expect(sync["pending_local_changes"] as? Int == 3, "\(sync)")
        #expect((sync["last_error"] as? String)?.contains("unreachable") == true, "\(sync)")

        try network.start("HQ")
        if let dumps = try network.waitConverged() {
            Issue.record("sites did not converge: \(dumps.mapValues { $0.count })\n\(network.logs())")
        }
        // HQ holds the national base; each branch its scope: the customers homed at it.
        for code in network.codes {
            let numbers = try network.site(code).array("customer", "list").compactMap { $0["number"] as? String }
            let owed = code == "HQ" ? expected : expected.filter { $0.hasPrefix(code + "-") }
            #expect(Set(numbers) == Set(owed), "\(code) holds \(numbers.sorted())")
        }
        let online = try #require(try network.site("SH01").object("status")["sync"] as? [String: Any])
        #expect(online["connected"] as? Bool == true, "\(online)")
        #expect(online["pending_local_changes"] as? Int == 0, "\(online)")
        let hqStatus = try #require(try network.hq.object("status")["sync"] as? [String: Any])
        let rows = try #require(hqStatus["branches"] as? [[String: Any]])
        #expect(rows.compactMap { $0["site"] as? String } == Self.branches, "\(rows)")
    }

    /// While connected, a change made at one branch reaches another within two seconds: a
    /// customer SH01 registers for BJ01 (homed there) enters BJ01's scope.
    @Test func aChangeReachesAnotherBranchWithinTwoSeconds() throws {
        let network = try Network(branches: ["BJ01", "SH01"])
        defer { network.stopAll() }
        for code in network.codes { try network.start(code) }
        var worst: Duration = .zero
        for round in 0..<3 {
            let added = try network.site("SH01").ok(
                "customer", "add", "--name", "即时\(round)", "--phone", "1390000000\(round)", "--home-branch", "BJ01")
            let number = try #require(added.stdout.split(separator: "\n").first { $0.hasPrefix("number:") }?.split(separator: " ").last)
            let start = ContinuousClock.now
            var arrived = false
            while ContinuousClock.now - start < .seconds(5) {
                if try network.site("BJ01").run("customer", "show", String(number)).status == 0 {
                    arrived = true
                    break
                }
                Thread.sleep(forTimeInterval: 0.02)
            }
            let took = ContinuousClock.now - start
            worst = max(worst, took)
            #expect(arrived, "round \(round): not at BJ01 after 5 s\n\(network.logs())")
        }
        print("propagation SH01 -> HQ -> BJ01, worst of 3: \(worst)")
        #expect(worst < .seconds(2), "a change took \(worst) to reach the other branch")
        // The daemon indexes synced customers for search by itself, behind the writes.
        let start = ContinuousClock.now
        var backlog = -1
        while ContinuousClock.now - start < .seconds(5) {
            backlog = try network.site("BJ01").object("status")["search_backlog"] as? Int ?? -1
            if backlog == 0 { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(backlog == 0, "BJ01's daemon left \(backlog) customers unindexed\n\(network.logs())")
    }

    /// `sync --once` exits 0 after a full exchange, and 1 with a clear error when HQ is down.
    @Test func syncOnceExchangesBothWays() throws {
        let network = try Network(branches: ["BJ01", "SH01"])
        defer { network.stopAll() }
        try network.site("SH01").ok("customer", "add", "--name", "单次", "--phone", "13700000001")
        let down = try network.site("SH01").run("sync", "--once", "--hq", network.hqAddress)
        #expect(down.status == 1, "\(down)")
        #expect(down.stderr.contains("error: sync with \(network.hqAddress) failed"), "\(down)")

        try network.start("HQ")
        let up = try network.site("SH01").run("sync", "--once", "--hq", network.hqAddress)
        #expect(up.status == 0, "\(up)")
        #expect(up.stdout.contains("pushed: 1 changes"), "\(up)")
        #expect(try network.hq.array("customer", "list").count == 1)

        // BJ01 does not hold SH01's customer (not in its scope); HQ's settings reach it.
        let pull = try network.site("BJ01").run("sync", "--once", "--hq", network.hqAddress)
        #expect(pull.status == 0, "\(pull)")
        #expect(pull.stdout.contains("pulled: 0 changes"), "\(pull)")
        #expect(try network.site("BJ01").dump() == network.hq.scopeDump("BJ01"))
        #expect(try network.site("SH01").dump() == network.hq.scopeDump("SH01"))
        #expect(try network.site("BJ01").array("customer", "list").isEmpty)

        // HQ never echoes a change to its origin, and a second exchange has nothing to move.
        let again = try network.site("SH01").run("sync", "--once", "--hq", network.hqAddress)
        #expect(again.status == 0, "\(again)")
        #expect(again.stdout.contains("pushed: 0 changes") && again.stdout.contains("pulled: 0 changes"), "\(again)")
    }

    /// SIGTERM stops a daemon cleanly and promptly: headquarters while branches are connected
    /// (their following streams end), then a branch.
    @Test func sigtermStopsCleanly() throws {
        let network = try Network(branches: ["BJ01"])
        defer { network.stopAll() }
        let hq = try network.start("HQ")
        let branch = try network.start("BJ01")
        Thread.sleep(forTimeInterval: 0.5)
        for daemon in [hq, branch] {
            let start = ContinuousClock.now
            daemon.signal(SIGTERM)
            let status = daemon.waitExit(timeout: .seconds(10))
            #expect(status == 0, "exit \(String(describing: status)) after SIGTERM\n\(daemon.log.suffix(1500))")
            #expect(ContinuousClock.now - start < .seconds(5))
            #expect(daemon.log.contains("stopped"), "\(daemon.log.suffix(1500))")
        }
    }

    /// A branch restored from an older backup would reuse sequences headquarters already
    /// holds and its new writes would never be pushed: sync refuses loudly instead.
    @Test func aBranchRestoredFromAnOlderBackupIsStoppedNotSilentlySkipped() throws {
        let network = try Network(branches: ["SH01"])
        defer { network.stopAll() }
        let branch = network.site("SH01")
        let backup = network.sandbox.path("sh01-backup")
        try FileManager.default.copyItem(atPath: branch.dataDir, toPath: backup)
        try branch.ok("customer", "add", "--name", "备份后", "--phone", "13600001111")
        try network.start("HQ")
        let first = try branch.run("sync", "--once", "--hq", network.hqAddress)
        #expect(first.status == 0, "\(first)")
        try FileManager.default.removeItem(atPath: branch.dataDir)
        try FileManager.default.copyItem(atPath: backup, toPath: branch.dataDir)
        let restored = try branch.run("sync", "--once", "--hq", network.hqAddress)
        #expect(restored.status == 1, "\(restored)")
        #expect(restored.stderr.contains("restored from an older backup"), "\(restored)")
    }
}

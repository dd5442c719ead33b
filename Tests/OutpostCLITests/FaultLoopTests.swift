import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// SIGKILL at random moments while sites sync, then restart: nothing acknowledged is lost.
///
/// `OUTPOST_FAULT_CYCLES` sets the number of kills (default 20); `OUTPOST_FAULT_SEED` replays
/// a run's plan (which site, when, which writes). The seed is printed first.
@Suite(.serialized)
struct FaultLoopTests {
    @Test func killedSitesLoseNothingAcknowledged() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["OUTPOST_FAULT_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...999_999)
        let cycles = environment["OUTPOST_FAULT_CYCLES"].flatMap { Int($0) } ?? 20
        print("fault loop: seed \(seed), \(cycles) cycles (OUTPOST_FAULT_SEED=\(seed) replays the plan)")
        var random = SplitMix64(seed: seed)
        // Small batches so a catch-up is many batches, and short backoff so the loop is quick.
        let network = try Network(
            branches: ["BJ01", "GZ01", "SH01"],
            config: """
                [sync]
                batch_max_changes = 50
                retry_initial_ms = 100
                retry_max_ms = 1000
                """)
        defer { network.stopAll() }

        // A backlog at one branch, written in-process before its daemon starts.
        var acknowledged: Set<String> = []
        do {
            let archive = try Archive.open(at: network.site("GZ01").dataDir + "/" + Archive.fileName)
            for i in 0..<400 {
                let record = try archive.addCustomer(["name": .text("积压客户\(i)"), "phone": .text("1360000\(String(format: "%04d", i))")])
                acknowledged.insert(try #require(record["number"].textValue))
            }
        }
        for code in network.codes { try network.start(code) }

        var kills: [String: Int] = [:]
        for cycle in 0..<cycles {
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let code = network.codes.randomElement(using: &random)!
                let result = try network.site(code).run("customer", "add", "--name", "轮\(cycle)", "--phone", "1350000\(String(format: "%04d", cycle))")
                if result.status == 0, let number = result.stdout.split(separator: "\n").first(where: { $0.hasPrefix("number:") })?.split(separator: " ").last {
                    acknowledged.insert(String(number))
                } else {
                    Issue.record("a local write failed while the daemon was down or restarting: \(result)")
                }
            }
            let victim = network.codes.randomElement(using: &random)!
            Thread.sleep(forTimeInterval: Double(Int.random(in: 0...400, using: &random)) / 1000)
            let daemon = try #require(network.daemon(victim))
            daemon.signal(SIGKILL)
            #expect(daemon.waitExit(timeout: .seconds(5)) != nil, "\(victim) survived SIGKILL")
            kills[victim, default: 0] += 1
            Thread.sleep(forTimeInterval: Double(Int.random(in: 0...300, using: &random)) / 1000)
            try network.start(victim)
        }
        print("fault loop: kills per site \(kills.sorted { $0.key < $1.key }), \(acknowledged.count) acknowledged customers")

        if let dumps = try network.waitConverged(timeout: .seconds(120)) {
            Issue.record("sites did not converge after the fault loop (seed \(seed)): \(dumps.mapValues { $0.count })\n\(network.logs())")
        }
        for code in network.codes {
            let site = network.site(code)
            let check = try runProcess("/usr/bin/sqlite3", [site.dataDir + "/" + Archive.fileName, "PRAGMA integrity_check"])
            #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(code): \(check)")
            let numbers = Set(try site.array("customer", "list", "--limit", "100000").compactMap { $0["number"] as? String })
            // HQ holds every customer; a branch its scope, which holds those it added (homed
            // there) and what HQ says (waitConverged compared it with HQ's dump of its scope).
            let owed = code == "HQ" ? acknowledged : acknowledged.filter { $0.hasPrefix(code + "-") }
            let missing = owed.subtracting(numbers)
            #expect(missing.isEmpty, "\(code) lacks \(missing.count) acknowledged customers, e.g. \(missing.sorted().prefix(5)) (seed \(seed))")
        }
    }
}

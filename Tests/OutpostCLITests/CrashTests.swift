import Foundation
import OutpostTesting
import Replication
import Testing

/// `outpost changes apply` killed with SIGKILL at random moments, then run again: the archive
/// stays intact after every kill and ends exactly where an uninterrupted apply ends.
@Suite("SIGKILL during apply")
struct CrashTests {
    /// A change set of `count` new customers (SH01's, relayed in a file from headquarters for
    /// `recipient`: a branch applies headquarters' files exported for it only).
    static func changeSetFile(count: Int, at path: String, for recipient: String) throws {
        var rng = SplitMix64(seed: 7)
        let site = try SiteID("SH01")
        let t0: UInt64 = 1_767_225_600_000
        var changes: [Change] = []
        for i in 0..<count {
            let key = RecordKey.version7(milliseconds: t0 + UInt64(i), using: &rng)
            let stamp = Stamp(time: Timestamp(milliseconds: t0 + UInt64(i), counter: 0), site: site)
            changes.append(
                Change(
                    table: 1, key: key, stamp: stamp,
                    body: .fields([
                        FieldWrite(column: 0, value: .text("SH01-C-\(i)")), FieldWrite(column: 2, value: .text("客户 \(i)")),
                        FieldWrite(column: 4, value: .text("138\(10_000_000 + i)")), FieldWrite(column: 7, value: .text("上海")),
                        FieldWrite(column: 13, value: .integer(Int64(i) * 100)),
                    ])))
        }
        let set = ChangeSet(
            producer: .headquarters, schemaVersion: 1, after: 0, through: UInt64(count), changes: changes,
            scope: ChangeSet.Scope(recipient: try SiteID(recipient), receivedThrough: 0))
        try Data(try ChangeSetCodec.encode(set)).write(to: URL(fileURLWithPath: path))
    }

    @Test("killing apply at random moments loses nothing, doubles nothing, and a re-run completes it")
    func killDuringApply() throws {
        let sandbox = try Sandbox()
        let reference = try sandbox.initializedSite("BJ01")
        let referenceFile = sandbox.path("for-BJ01.ocs")
        try Self.changeSetFile(count: 30_000, at: referenceFile, for: "BJ01")
        let started = Date()
        try reference.ok("changes", "apply", referenceFile)
        // Kill within the span an uninterrupted apply takes on this machine.
        let span = max(0.2, Date().timeIntervalSince(started))
        let expected = try reference.dump()

        let seed = UInt64(ProcessInfo.processInfo.environment["OUTPOST_CRASH_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
        print("SIGKILL test seed \(seed) (replay: OUTPOST_CRASH_SEED=\(seed) swift test --filter CrashTests)")
        var rng = SplitMix64(seed: seed)
        let executable = try #require(Outpost.executable)
        var progress: [String] = []
        for cycle in 0..<5 {
            // A fresh site each time, so every kill lands in a first apply; killed twice, then
            // completed.
            let victim = try sandbox.initializedSite("GZ0\(cycle + 1)")
            let file = sandbox.path("for-GZ0\(cycle + 1).ocs")
            try Self.changeSetFile(count: 30_000, at: file, for: "GZ0\(cycle + 1)")
            for _ in 0..<2 {
                let p = Process()
                p.executableURL = executable
                p.arguments = ["changes", "apply", file, "--data-dir", victim.dataDir]
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                try p.run()
                usleep(UInt32(span * 1_000_000 * (0.1 + Double(rng.next() % 1000) / 1000 * 0.8)))
                let wasRunning = p.isRunning
                if wasRunning { kill(p.processIdentifier, SIGKILL) }
                p.waitUntilExit()
                // Whatever moment it died at, the file is a sound SQLite database.
                let check = try runProcess("/usr/bin/sqlite3", [victim.dataDir + "/archive.sqlite", "PRAGMA integrity_check"])
                #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "seed \(seed): \(check.stdout)")
                let held = try runProcess("/usr/bin/sqlite3", [victim.dataDir + "/archive.sqlite", "SELECT count(*) FROM customers"])
                progress.append((wasRunning ? "killed at " : "finished with ") + held.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            try victim.ok("changes", "apply", file)
            #expect(try victim.dump() == expected, "seed \(seed), cycle \(cycle)")
            let status = try victim.object("status")
            let referenceStatus = try reference.object("status")
            #expect(
                "\(status["last_sequence"] ?? "")" == "\(referenceStatus["last_sequence"] ?? "")",
                "seed \(seed), cycle \(cycle): the change log holds each change once")
        }
        print("SIGKILL test: \(progress.joined(separator: "; "))")
    }
}

import Foundation
import Testing

/// Backups taken while the daemon runs, and a branch that loses its disk and comes back from a
/// backup older than a day's work: it must neither lose what headquarters held from it nor
/// reuse change numbers or human numbers.
@Suite(.serialized)
struct RestoreTests {
    @Test func aBranchRestoredFromAnOldBackupConvergesAndLosesNothing() throws {
        let network = try Network(branches: ["SH01", "SH02"])
        for code in network.codes { try network.start(code) }
        let sh01 = network.site("SH01")
        let sh02 = network.site("SH02")
        for i in 1...3 { try sh01.ok("customer", "add", "--name", "上海客户\(i)", "--phone", "1381000000\(i)") }
        try sh02.ok("customer", "add", "--name", "苏州客户", "--phone", "13820000001")
        #expect(try network.waitConverged() == nil, "\(network.logs())")

        // The nightly backup, taken while the daemon serves.
        let backup = network.sandbox.path("SH01-nightly.sqlite")
        let taken = try sh01.ok("backup", backup)
        #expect(taken.stdout.contains("quick_check ok"), "\(taken)")
        #expect(try FileManager.default.attributesOfItem(atPath: backup)[.posixPermissions] as? Int == 0o600)

        // A day's work after the backup, all of it delivered to headquarters.
        for i in 4...6 { try sh01.ok("customer", "add", "--name", "上海客户\(i)", "--phone", "1381000000\(i)") }
        try sh01.ok("customer", "update", "SH01-C-000001", "--name", "上海客户一改")
        let complaint = try sh01.object("complaint", "open", "--customer", "SH01-C-000002", "--category", "damaged", "--description", "破损")
        let complaintNumber = try #require(complaint["number"] as? String)
        try network.hq.ok("customer", "update", "SH01-C-000003", "--region", "华东")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        let before = try network.hq.dump()

        // The branch's disk dies; its archive comes back from last night's backup.
        network.daemon("SH01")!.stop()
        let restored = try sh01.ok("restore", backup)
        #expect(restored.stdout.contains("epoch 1"), "\(restored)")
        #expect(FileManager.default.fileExists(atPath: sh01.dataDir + "/archive.sqlite"))
        let kept = try FileManager.default.contentsOfDirectory(atPath: sh01.dataDir).filter { $0.hasPrefix("archive.sqlite.replaced-") }
        #expect(!kept.isEmpty, "the replaced archive is kept beside")

        // Until headquarters sent back what the branch wrote after the backup, numbered
        // records wait (their numbers could collide); other writes go on.
        let early = try sh01.run("customer", "add", "--name", "太早", "--phone", "13810000099")
        #expect(early.status == 1 && early.stderr.contains("restored from a backup"), "\(early)")
        try sh01.ok("contact", "add", "--customer", "SH01-C-000001", "--kind", "call", "--summary", "恢复期间的回访")

        try network.start("SH01")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        let log = network.daemon("SH01")!.log
        #expect(log.contains("recovery after the restore is complete"), "\(log.suffix(2000))")
        // Everything headquarters held of the branch's scope before the restore is at the
        // branch again (SH02's customer is not in SH01's scope).
        let customers = try sh01.array("customer", "list")
        let numbers = customers.compactMap { $0["number"] as? String }
        #expect(Set(numbers) == Set((1...6).map { String(format: "SH01-C-%06d", $0) }), "\(numbers)")
        #expect(try sh02.array("customer", "list").compactMap { $0["number"] as? String } == ["SH02-C-000001"])
        #expect(try sh01.object("customer", "show", "SH01-C-000001")["name"] as? String == "上海客户一改")
        #expect(try sh01.object("complaint", "show", complaintNumber)["number"] as? String == complaintNumber)
        #expect(try sh01.dump() == (try network.hq.scopeDump("SH01")))
        #expect(before != (try network.hq.dump()), "the contact written during recovery reached headquarters")

        // New numbered records continue above every number the site used, and travel.
        let next = try sh01.object("customer", "add", "--name", "恢复后", "--phone", "13810000007")
        #expect(next["number"] as? String == "SH01-C-000007", "\(next)")
        let nextComplaint = try sh01.object("complaint", "open", "--customer", "SH01-C-000007", "--category", "late", "--description", "延误")
        #expect(nextComplaint["number"] as? String != complaintNumber)
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        let atHQ = try network.hq.array("customer", "list").compactMap { $0["number"] as? String }
        #expect(atHQ.count == Set(atHQ).count, "no number is used twice: \(atHQ)")
        #expect(atHQ.contains("SH01-C-000007"))
    }

    @Test func restoreRefusesAnotherSitesBackupAndADamagedFile() throws {
        let sandbox = try Sandbox()
        let sh01 = try sandbox.initializedSite("SH01")
        let sh02 = try sandbox.initializedSite("SH02")
        let backup = sandbox.path("sh02.sqlite")
        try sh02.ok("backup", backup)
        let other = try sh01.run("restore", backup)
        #expect(other.status == 1 && other.stderr.contains("belongs to site SH02"), "\(other)")

        // A backup damaged after it was written is refused before anything is touched.
        let damaged = sandbox.path("damaged.sqlite")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: backup))
        for i in stride(from: 4096, to: bytes.count, by: 7) { bytes[i] ^= 0x5A }
        try bytes.write(to: URL(fileURLWithPath: damaged))
        let refused = try sh02.run("restore", damaged)
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("damaged") || refused.stderr.contains("not a readable Outpost archive"), "\(refused)")
        #expect(try sh02.run("status").status == 0, "the current archive is untouched")

        // A backup over an existing file needs --replace.
        let again = try sh02.run("backup", backup)
        #expect(again.status == 1 && again.stderr.contains("--replace"), "\(again)")
        try sh02.ok("backup", backup, "--replace")
    }
}

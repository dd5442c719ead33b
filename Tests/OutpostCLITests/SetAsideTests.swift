import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// A set headquarters refuses as a whole never stalls a branch: it is split, the bad write is
/// set aside where the clerk sees it, and every later change still flows.
@Suite(.serialized)
struct SetAsideTests {
    /// The same with the branch's daemon following: the push call HQ ended is opened again at
    /// once, and the pull side never notices.
    @Test("a following daemon sets a refused write aside and keeps syncing")
    func aFollowingDaemonSetsItAside() throws {
        let network = try Network(branches: ["SH01"])
        defer { network.stopAll() }
        try network.start("HQ")
        let sh01 = network.site("SH01")
        try sh01.ok("customer", "add", "--name", "之前", "--phone", "13800000001")
        try Self.logAWriteHeadquartersRefuses(at: sh01)
        try sh01.ok("customer", "add", "--name", "之后", "--phone", "13900000001")
        try network.start("SH01")
        let deadline = ContinuousClock.now + .seconds(20)
        var names: [String] = []
        while ContinuousClock.now < deadline {
            names = try network.hq.array("customer", "list").compactMap { $0["name"] as? String }
            if names.contains("之后") { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(Set(names) == ["之前", "之后"], "\(names)\n\(network.logs())")
        try sh01.ok("customer", "add", "--name", "再后", "--phone", "13700000001")
        let later = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < later, !(try network.hq.array("customer", "list").contains { $0["name"] as? String == "再后" }) {
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(try network.hq.array("customer", "list").contains { $0["name"] as? String == "再后" }, "\(network.logs())")
        #expect(try sh01.array("changes", "refused").first?["set_aside"] as? Bool == true)
    }

    /// A write a newer or broken version logged at `site`: a column headquarters' schema does
    /// not have, so HQ refuses any set holding it as MALFORMED.
    static func logAWriteHeadquartersRefuses(at site: Site) throws {
        let archive = try Archive.open(at: (site.dataDir as NSString).appendingPathComponent(Archive.fileName))
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        var random = SystemRandomNumberGenerator()
        try archive.appendToLogOnly(
            Change(
                table: Schema.customers.id, key: RecordKey.version7(milliseconds: now, using: &random),
                stamp: Stamp(time: Timestamp(milliseconds: now, counter: 0), site: try SiteID("SH01")),
                body: .fields([FieldWrite(column: 60, value: .text("future"))])))
    }

    @Test("one write headquarters refuses is set aside and the branch keeps syncing around it")
    func aRefusedWriteIsSetAsideAndTheRestFlows() throws {
        let network = try Network(branches: ["SH01"])
        defer { network.stopAll() }
        try network.start("HQ")
        let sh01 = network.site("SH01")
        for i in 0..<3 { try sh01.ok("customer", "add", "--name", "之前\(i)", "--phone", "1380000000\(i)") }
        try Self.logAWriteHeadquartersRefuses(at: sh01)
        for i in 0..<3 { try sh01.ok("customer", "add", "--name", "之后\(i)", "--phone", "1390000000\(i)") }

        let sync = try sh01.run("sync", "--once", "--hq", network.hqAddress)
        #expect(sync.status == 0, "\(sync)\n\(network.logs())")
        // Everything but the bad write reached headquarters, before and after it.
        let names = try network.hq.array("customer", "list").compactMap { $0["name"] as? String }
        #expect(Set(names) == Set((0..<3).flatMap { ["之前\($0)", "之后\($0)"] }), "\(names)")
        // The branch says what it set aside and why; nothing is left pending.
        let refused = try sh01.array("changes", "refused")
        #expect(refused.count == 1, "\(refused)")
        #expect(refused.first?["reason"] as? String == "MALFORMED", "\(refused)")
        #expect(refused.first?["set_aside"] as? Bool == true, "\(refused)")
        let status = try #require(try sh01.object("status")["sync"] as? [String: Any])
        #expect(status["pending_local_changes"] as? Int == 0, "\(status)")
        #expect(status["refused_changes"] as? Int == 1, "\(status)")
        // Later writes flow as before, and the set-aside write is never sent again.
        try sh01.ok("customer", "add", "--name", "再后", "--phone", "13700000000")
        #expect(try sh01.run("sync", "--once", "--hq", network.hqAddress).status == 0)
        #expect(try network.hq.array("customer", "list").contains { $0["name"] as? String == "再后" })
        let hqLog = network.daemon("HQ")?.log ?? ""
        #expect(hqLog.components(separatedBy: "reason=MALFORMED").count - 1 <= 4, "the bad write was sent again: \(hqLog.suffix(2000))")
    }
}

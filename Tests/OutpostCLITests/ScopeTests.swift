import Foundation
import Testing

/// Scope over real processes and mutual TLS: a branch holds only the customers headquarters
/// counts in its scope, a customer that enters it arrives whole, and one that leaves it is
/// evicted from the branch's file (records, log, index, WAL) once headquarters holds what the
/// branch wrote about it.
@Suite(.serialized)
struct ScopeTests {
    /// Whether any of the archive's files (main file and WAL) holds these bytes.
    static func archiveHolds(_ site: Site, _ text: String) throws -> Bool {
        let needle = Data(text.utf8)
        for suffix in ["", "-wal"] {
            let path = site.dataDir + "/archive.sqlite" + suffix
            guard let bytes = FileManager.default.contents(atPath: path) else { continue }
            if bytes.range(of: needle) != nil { return true }
        }
        return false
    }

    /// Polls `check` every 50 ms for up to `timeout`.
    static func eventually(_ timeout: Duration = .seconds(20), _ check: () throws -> Bool) rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try check() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return try check()
    }

    @Test func aCustomerFollowsItsHomeAndLeavesNothingBehind() throws {
        let network = try Network(branches: ["BJ01", "SH01"])
        defer { network.stopAll() }
        for code in network.codes { try network.start(code) }
        let sh01 = network.site("SH01")
        let bj01 = network.site("BJ01")

        // SH01 registers a customer and opens a complaint for it: BJ01 does not hold it.
        let phone = "13912340001"
        let name = "迁移客户甲"
        let added = try sh01.object("customer", "add", "--name", name, "--phone", phone)
        let number = try #require(added["number"] as? String)
        try sh01.ok("contact", "add", "--customer", number, "--kind", "call", "--summary", "首次来电")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        #expect(try bj01.run("customer", "show", number).status == 1, "BJ01 holds SH01's customer")
        let scope = try network.hq.array("scope", "list", "--site", "SH01")
        #expect(scope.first?["number"] as? String == number && (scope.first?["reasons"] as? [String])?.contains("homed") == true, "\(scope)")

        // HQ moves the customer to BJ01: it arrives there whole, contact included.
        try network.hq.ok("customer", "update", number, "--home-branch", "BJ01")
        #expect(try Self.eventually { try bj01.run("customer", "show", number).status == 0 }, "\(network.logs())")
        #expect(try Self.eventually { try bj01.array("contact", "list", "--customer", number).count == 1 })
        // SH01 served it (it registered it), so it keeps it within the served window.
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        #expect(try sh01.run("customer", "show", number).status == 0)

        // With no served window left, the customer leaves SH01: evicted from the file, the
        // log, the search index and the WAL, with no change sent anywhere.
        let hqBefore = try network.hq.dump()
        try network.hq.ok("scope", "window", "--served-days", "0")
        #expect(try Self.eventually { try sh01.run("customer", "show", number).status == 1 }, "\(network.logs())")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        #expect(try network.hq.dump() == hqBefore, "an eviction changed headquarters")
        #expect(try sh01.array("customer", "search", "迁移").isEmpty)
        #expect(try !Self.archiveHolds(sh01, phone), "SH01's files still hold the evicted customer's phone")
        #expect(try !Self.archiveHolds(sh01, name), "SH01's files still hold the evicted customer's name")
        #expect(try !Self.archiveHolds(sh01, "首次来电"), "SH01's files still hold the evicted customer's contact")
        #expect(try Self.archiveHolds(bj01, phone), "BJ01 holds the customer now")
    }

    /// A branch that edits a customer while offline, as headquarters moves the customer away,
    /// keeps its edit until headquarters has it: nothing is lost to a move.
    @Test func anOfflineEditSurvivesTheCustomerMovingAway() throws {
        let network = try Network(branches: ["BJ01", "SH01"])
        defer { network.stopAll() }
        for code in network.codes { try network.start(code) }
        try network.hq.ok("scope", "window", "--served-days", "0")
        let sh01 = network.site("SH01")
        let added = try sh01.object("customer", "add", "--name", "离线客户", "--phone", "13912340002")
        let number = try #require(added["number"] as? String)
        #expect(try network.waitConverged() == nil, "\(network.logs())")

        // SH01 goes offline and edits; meanwhile HQ re-homes the customer and retires SH01's
        // served reason.
        network.daemon("SH01")!.stop()
        try sh01.ok("customer", "update", number, "--notes", "离线时的备注")
        try network.hq.ok("customer", "update", number, "--home-branch", "BJ01")
        try network.hq.ok("scope", "window", "--served-days", "0")

        // Back online: the edit reaches HQ (and BJ01) before SH01 lets the customer go.
        try network.start("SH01")
        #expect(
            try Self.eventually { try network.hq.object("customer", "show", number)["notes"] as? String == "离线时的备注" }, "\(network.logs())")
        #expect(try Self.eventually { try bj01Notes(network, number) == "离线时的备注" }, "\(network.logs())")
        // Its edit made SH01 a server of the customer again; once that lapses, it is evicted.
        try network.hq.ok("scope", "window", "--served-days", "0")
        #expect(try Self.eventually { try sh01.run("customer", "show", number).status == 1 }, "\(network.logs())")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        #expect((try sh01.object("status")["sync"] as? [String: Any])?["pending_evictions"] as? Int == 0)
    }

    /// A branch that corrects a customer's name offline after headquarters moved the customer
    /// away is refused at headquarters' door; the refusal comes back in its pull, its copy
    /// returns to headquarters' state, and the counter refuses the next try at once.
    @Test func aWriteHeadquartersRefusesReturnsTheBranchToHeadquartersState() throws {
        let network = try Network(branches: ["BJ01", "SH01"])
        defer { network.stopAll() }
        for code in network.codes { try network.start(code) }
        let sh01 = network.site("SH01")
        let added = try sh01.object("customer", "add", "--name", "原名客户", "--phone", "13912340003")
        let number = try #require(added["number"] as? String)
        #expect(try network.waitConverged() == nil, "\(network.logs())")

        network.daemon("SH01")!.stop()
        try network.hq.ok("customer", "update", number, "--home-branch", "BJ01")
        // Not knowing yet, SH01 renames it (and notes something in the same write).
        try sh01.ok("customer", "update", number, "--name", "离线改名", "--notes", "同一次修改")
        try network.start("SH01")
        #expect(
            try Self.eventually { try sh01.array("changes", "refused").contains { $0["reason"] as? String == "NOT_HOME" } },
            "\(network.logs())")
        #expect(try Self.eventually { try sh01.object("customer", "show", number)["name"] as? String == "原名客户" }, "\(network.logs())")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        let shown = try sh01.object("customer", "show", number)
        #expect(shown["home_branch"] as? String == "BJ01" && (shown["notes"] as? String) == nil, "\(shown)")
        #expect(try network.hq.object("customer", "show", number)["name"] as? String == "原名客户")

        // Now SH01 knows: the counter refuses at once, naming the customer's number and home.
        let again = try sh01.run("customer", "update", number, "--name", "再改")
        #expect(again.status != 0 && again.stderr.contains("\(number) is homed at BJ01") && !again.stderr.contains("原名"), "\(again.stderr)")
        // What hangs off the customer it may still record.
        try sh01.ok("contact", "add", "--customer", number, "--kind", "call", "--summary", "仍可记录")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
    }

    /// HQ assigns one branch's customers to another (covering for it): they arrive there, the
    /// assignment is replicated, and withdrawing it evicts them again.
    @Test func anAssignmentBringsABranchsCustomersAndTakesThemAway() throws {
        let network = try Network(branches: ["BJ01", "SH01"])
        defer { network.stopAll() }
        for code in network.codes { try network.start(code) }
        try network.hq.ok("scope", "window", "--served-days", "0")
        let sh01 = network.site("SH01")
        let bj01 = network.site("BJ01")
        let number = try #require(try sh01.object("customer", "add", "--name", "代管客户", "--phone", "13912340004")["number"] as? String)
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        #expect(try bj01.run("customer", "show", number).status == 1)

        let given = try network.hq.object("scope", "assign", "--site", "BJ01", "--branch", "SH01")
        #expect(given["kind"] as? String == "branch" && given["customers"] as? Int == 1, "\(given)")
        #expect(try Self.eventually { try bj01.run("customer", "show", number).status == 0 }, "\(network.logs())")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        let listed = try bj01.array("scope", "assignments")
        #expect(listed.count == 1 && listed.first?["target"] as? String == "SH01", "\(listed)")
        let refused = try bj01.run("scope", "assign", "--site", "BJ01", "--region", "华东")
        #expect(refused.status != 0 && refused.stderr.contains("headquarters"), "\(refused.stderr)")
        let reasons = try network.hq.array("scope", "list", "--site", "BJ01")
        #expect(reasons.first?["reasons"] as? [String] == ["assigned"], "\(reasons)")

        try network.hq.ok("scope", "unassign", "--site", "BJ01", "--branch", "SH01")
        #expect(try Self.eventually { try bj01.run("customer", "show", number).status == 1 }, "\(network.logs())")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        #expect(try !Self.archiveHolds(bj01, "13912340004"))
    }

    /// A clerk finds a customer at headquarters (masked, nothing stored), fetches it by phone
    /// over mutual TLS, and it is at the counter with its history; offline a fetch fails clearly.
    @Test func aClerkFetchesACustomerTheBranchDoesNotHold() throws {
        let network = try Network(branches: ["BJ01", "SH01"], config: "[sync]\nmax_fetches_per_hour = 3\n")
        defer { network.stopAll() }
        for code in network.codes { try network.start(code) }
        let sh01 = network.site("SH01")
        let bj01 = network.site("BJ01")
        let number = try #require(try sh01.object("customer", "add", "--name", "上海远方物流", "--phone", "13912340005")["number"] as? String)
        try sh01.ok("contact", "add", "--customer", number, "--kind", "call", "--summary", "首次来电")
        #expect(try network.waitConverged() == nil, "\(network.logs())")
        let hq = ["--hq", network.hqAddress]

        let found = try bj01.run(["customer", "search", "--remote", "远方", "--json"] + hq)
        let masked = try found.array()
        #expect(masked.count == 1 && masked.first?["number"] as? String == number, "\(found)")
        #expect(masked.first?["name"] as? String == "上****流" && masked.first?["phone"] as? String == "139******05", "\(masked)")
        #expect(try !Self.archiveHolds(bj01, "13912340005"), "a remote search stored the customer")

        let fetched = try bj01.run(["customer", "fetch", "139 1234 0005", "--json"] + hq)
        #expect(fetched.status == 0 && (try? fetched.object()["number"] as? String) == number, "\(fetched)\n\(network.logs())")
        #expect(try bj01.array("contact", "list", "--customer", number).count == 1)
        #expect(try network.hq.array("scope", "list", "--site", "BJ01").first?["reasons"] as? [String] == ["fetched"])
        #expect(try network.waitConverged() == nil, "\(network.logs())")

        // A third call this hour is allowed, a fourth refused: a stolen certificate cannot copy
        // the national base one customer at a time.
        #expect(try bj01.run(["customer", "search", "--remote", "远方"] + hq).status == 0)
        let limited = try bj01.run(["customer", "fetch", number] + hq)
        #expect(limited.status != 0 && limited.stderr.contains("RATE_LIMITED"), "\(limited)")

        network.daemon("HQ")!.stop()
        let offline = try bj01.run(["customer", "fetch", number] + hq)
        #expect(offline.status != 0 && offline.stderr.contains("cannot fetch the customer from headquarters"), "\(offline)")
        let offlineSearch = try bj01.run(["customer", "search", "--remote", "远方"] + hq)
        #expect(offlineSearch.status != 0 && !offlineSearch.stderr.contains("13912340005"), "\(offlineSearch)")
    }

    /// A new branch bootstraps from a snapshot of its scope; killed with SIGKILL half-way, it
    /// refuses the counter's writes, resumes after the last part it committed, and ends at
    /// HQ's scope.
    @Test func aBootstrapKilledHalfWayResumes() throws {
        // Small parts, so the bootstrap takes many commits.
        let network = try Network(branches: ["WH01"], config: "[sync]\nbatch_max_changes = 60\n")
        defer { network.stopAll() }
        let csv = network.sandbox.path("customers.csv")
        var lines = ["name,phone,home_branch"]
        for i in 0..<6_000 { lines.append("武汉客户\(i),139\(String(format: "%08d", i)),\(i % 4 == 0 ? "SH01" : "WH01")") }
        try (lines.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)
        try network.hq.ok("import", "customers", csv)
        try network.start("HQ")
        let wh01 = network.site("WH01")
        let daemon = try network.start("WH01")
        func bootstrap() throws -> [String: Any]? { try wh01.run("status", "--json").object()["bootstrap"] as? [String: Any] }
        let started = try Self.eventually(.seconds(30)) { ((try bootstrap())?["customers"] as? Int ?? 0) > 0 }
        daemon.signal(SIGKILL)
        _ = daemon.waitExit()
        #expect(started, "the bootstrap never showed progress\n\(network.logs())")
        let stopped = try #require(try bootstrap(), "the bootstrap finished before the kill: nothing was resumed\n\(network.logs())")
        let received = stopped["customers"] as? Int ?? 0
        #expect(received > 0 && received < 4_500 && stopped["of"] as? Int == 4_500, "\(stopped)")
        let refused = try wh01.run("customer", "add", "--name", "开业客户")
        #expect(refused.status != 0 && refused.stderr.contains("still receiving its customers from headquarters"), "\(refused)")
        #expect(try wh01.run("status").stdout.contains("bootstrap"), "status does not show the bootstrap")

        try network.start("WH01")
        #expect(try network.waitConverged(timeout: .seconds(120)) == nil, "\(network.logs())")
        #expect(try wh01.run("status", "--json").object()["bootstrap"] is NSNull)
        let resumed = network.daemon("WH01")!.log.split(separator: "\n").filter { $0.contains("bootstrapping this branch's customers from a snapshot") }
        #expect(resumed.last.map { !$0.contains("after=start") } == true, "\(resumed)")
        #expect(try wh01.array("customer", "list", "--limit", "10000").count == 4_500)
        try wh01.ok("customer", "add", "--name", "开业客户")
    }

    private func bj01Notes(_ network: Network, _ number: String) throws -> String? {
        let shown = try network.site("BJ01").run("customer", "show", number, "--json")
        guard shown.status == 0 else { return nil }
        return try shown.object()["notes"] as? String
    }
}

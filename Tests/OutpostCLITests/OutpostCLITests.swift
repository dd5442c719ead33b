import Foundation
import Testing

/// The `outpost` executable, run as a subprocess against archives in temporary directories.
@Suite("outpost command line")
struct OutpostCLITests {
    // MARK: Basics

    @Test("--version prints the version")
    func version() throws {
        let result = try Outpost.run(["--version"])
        #expect(result.status == 0)
        #expect(result.stdout == "outpost 0.1.0\n")
    }

    @Test("every command explains itself in --help with an example")
    func help() throws {
        let commands = [
            [], ["init"], ["status"], ["dump"],
            ["customer"], ["customer", "add"], ["customer", "update"], ["customer", "show"], ["customer", "list"],
            ["customer", "search"], ["customer", "archive"], ["customer", "erase"], ["customer", "delete"], ["customer", "restore"],
            ["contact"], ["contact", "add"], ["contact", "list"],
            ["complaint"], ["complaint", "open"], ["complaint", "note"], ["complaint", "advance"], ["complaint", "reopen"],
            ["complaint", "show"], ["complaint", "list"],
            ["claim"], ["claim", "file"], ["claim", "assess"], ["claim", "approve"], ["claim", "reject"], ["claim", "pay"],
            ["claim", "close"], ["claim", "show"], ["claim", "list"],
            ["changes"], ["changes", "export"], ["changes", "apply"], ["changes", "quarantine"], ["changes", "release"],
            ["conflicts"], ["conflicts", "list"], ["conflicts", "restore"],
            ["settings"], ["settings", "approval-threshold"], ["settings", "value"], ["settings", "sla"],
            ["customer", "figures"], ["customer", "merge"], ["complaint", "visit"], ["duplicates"],
            ["report"], ["report", "abc"], ["report", "quadrants"], ["report", "value"], ["report", "complaints"], ["report", "claims"],
            ["import"], ["import", "customers"], ["export"], ["export", "customers"],
        ]
        for command in commands {
            let result = try Outpost.run(command + ["--help"])
            let name = (["outpost"] + command).joined(separator: " ")
            #expect(result.status == 0, "\(name) --help: \(result)")
            #expect(result.stdout.contains("OVERVIEW: "), "\(name) has no abstract")
            #expect(result.stdout.contains("Example"), "\(name) has no example")
            #expect(result.stdout.contains("USAGE: \(name)"), "\(name)'s help does not show its usage")
        }
    }

    @Test("a missing archive is one clear error line")
    func notInitialized() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.site("nothing").run("status")
        #expect(result.status == 1)
        #expect(result.stderrLines.count == 1)
        #expect(result.stderr.contains("outpost init"))
    }

    @Test("--data-dir defaults to $OUTPOST_DATA_DIR")
    func dataDirFromEnvironment() throws {
        let sandbox = try Sandbox()
        let dir = sandbox.path("env-site")
        let made = try Outpost.run(["init", "--site", "SH09", "--role", "branch"], environment: ["OUTPOST_DATA_DIR": dir])
        #expect(made.status == 0, "\(made)")
        let status = try Site(dataDir: dir).object("status")
        #expect(status["site"] as? String == "SH09")
        #expect(status["headquarters"] as? String == "HQ")
    }

    // MARK: init

    @Test("init makes a private data directory once and refuses a second time")
    func initTwice() throws {
        let sandbox = try Sandbox()
        let site = sandbox.site("deep/nested/sh01")
        try site.ok("init", "--site", "SH01", "--role", "branch")
        let attributes = try FileManager.default.attributesOfItem(atPath: site.dataDir)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o700)
        #expect(FileManager.default.fileExists(atPath: site.dataDir + "/archive.sqlite"))

        let stderr = try site.refused("init", "--site", "SH01", "--role", "branch")
        #expect(stderr.contains("already exists"))
        try site.refused("init", "--site", "HQ", "--role", "hq")

        let status = try site.object("status")
        #expect(status["site"] as? String == "SH01")
        #expect(status["role"] as? String == "branch")
    }

    @Test("init rejects a bad site code or role and creates nothing")
    func initValidates() throws {
        let sandbox = try Sandbox()
        for arguments in [
            ["--site", "1BAD", "--role", "branch"], ["--site", "SH01", "--role", "boss"], ["--site", "SH01", "--role", "branch", "--hq-site", "SH01"],
        ] {
            let site = sandbox.site("bad-\(UUID().uuidString)")
            let result = try site.run(["init"] + arguments)
            #expect(result.status == 1, "\(arguments): \(result)")
            #expect(result.stderrLines.count == 1, "\(result)")
            #expect(!FileManager.default.fileExists(atPath: site.dataDir + "/archive.sqlite"))
        }
    }

    // MARK: Customers

    @Test("customer add, show, update and search, with Chinese names and phone numbers")
    func customers() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        let added = try site.object(
            "customer", "add", "--name", "上海物流有限公司", "--phone", "+86 １３８-0013-8000", "--contact-person", "王芳",
            "--revenue", "1250000.50", "--key-account", "--customer-since", "2019-04-01")
        #expect(added["number"] as? String == "SH01-C-000001")
        #expect(added["phone"] as? String == "13800138000")
        #expect(added["revenue_fen"] as? Int == 125_000_050)
        #expect(added["key_account"] as? Int == 1)
        #expect(added["home_branch"] as? String == "SH01")
        let id = try #require(added["id"] as? String)
        try site.ok("customer", "add", "--name", "北京快递", "--kind", "person")

        let shown = try site.ok("customer", "show", "sh01-c-000001").stdout
        #expect(shown.contains("上海物流有限公司"))
        #expect(shown.contains("13800138000"))
        #expect(shown.contains("1250000.50"))
        #expect(try site.object("customer", "show", id)["number"] as? String == "SH01-C-000001")

        let found = try site.array("customer", "search", "物流")
        #expect(found.count == 1)
        #expect(found.first?["name"] as? String == "上海物流有限公司")
        #expect(try site.array("customer", "search", "１３８ 0013").first?["id"] as? String == id)
        #expect(try site.array("customer", "search", "不存在").isEmpty)

        let updated = try site.object("customer", "update", "SH01-C-000001", "--credit-rating", "aa", "--profit", "-12.5", "--no-key-account")
        #expect(updated["credit_rating"] as? String == "AA")
        #expect(updated["profit_fen"] as? Int == -1250)
        #expect(updated["key_account"] as? Int == 0)
        #expect(updated["name"] as? String == "上海物流有限公司")

        #expect(try site.array("customer", "list").count == 2)
        try site.ok("customer", "archive", "SH01-C-000002")
        #expect(try site.array("customer", "list").count == 1)
        #expect(try site.array("customer", "list", "--all").count == 2)
        let table = try site.ok("customer", "list", "--all").stdout
        #expect(table.hasPrefix("NUMBER"))
        #expect(table.contains("archived"))
    }

    @Test("customer input errors are one line and write nothing")
    func customerErrors() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        try site.ok("customer", "add", "--name", "上海物流有限公司")
        try site.refused("customer", "show", "SH01-C-999999")
        try site.refused("customer", "update", "SH01-C-999999", "--region", "华东")
        try site.refused("customer", "add", "--name", "X", "--revenue", "12.345")
        try site.refused("customer", "add", "--name", "X", "--revenue", "lots")
        try site.refused("customer", "add", "--name", "X", "--phone", "call me")
        try site.refused("customer", "add", "--name", "X", "--email", "not-an-address")
        try site.refused("customer", "add", "--name", "X", "--kind", "robot")
        try site.refused("customer", "update", "SH01-C-000001")
        let secret = "王秘密"
        let stderr = try site.refused("customer", "add", "--name", secret, "--wallet-share", "140")
        #expect(!stderr.contains(secret), "an error message shows a field value")
    }

    @Test("erase needs --yes; delete and restore")
    func eraseDeleteRestore() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        try site.ok("customer", "add", "--name", "上海物流有限公司", "--phone", "13800138000")
        try site.ok("customer", "add", "--name", "录错了")

        let refusal = try site.refused("customer", "erase", "SH01-C-000001")
        #expect(refusal.contains("permanent"))
        #expect(refusal.contains("--yes"))
        try site.ok("customer", "erase", "SH01-C-000001", "--yes")
        let erased = try site.object("customer", "show", "SH01-C-000001")
        #expect(erased["erased"] as? Bool == true)
        #expect(erased["name"] is NSNull)
        #expect(erased["phone"] is NSNull)
        try site.refused("customer", "update", "SH01-C-000001", "--name", "again")

        try site.ok("customer", "delete", "SH01-C-000002")
        #expect(try site.object("customer", "show", "SH01-C-000002")["deleted"] as? Bool == true)
        #expect(try site.array("customer", "list", "--all").map { $0["number"] as? String } == ["SH01-C-000001"])
        try site.refused("customer", "update", "SH01-C-000002", "--region", "华东")
        try site.ok("customer", "restore", "SH01-C-000002")
        #expect(try site.array("customer", "list").map { $0["number"] as? String } == ["SH01-C-000002"], "erased people are not listed")
        #expect(try site.array("customer", "list", "--all").count == 2)
    }

    @Test("contacts are recorded and listed")
    func contacts() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        try site.ok("customer", "add", "--name", "上海物流有限公司")
        try site.ok("contact", "add", "--customer", "SH01-C-000001", "--kind", "call", "--summary", "询价", "--staff", "李明")
        try site.ok("contact", "add", "--customer", "SH01-C-000001", "--kind", "return_visit", "--satisfaction", "4")
        try site.refused("contact", "add", "--customer", "SH01-C-000001", "--kind", "return_visit")
        try site.refused("contact", "add", "--customer", "SH01-C-000001", "--kind", "letter")
        try site.refused("contact", "add", "--customer", "SH01-C-000001", "--kind", "call", "--satisfaction", "9")
        let list = try site.array("contact", "list", "--customer", "SH01-C-000001")
        #expect(list.map { $0["kind"] as? String } == ["call", "return_visit"])
        #expect(try site.ok("contact", "list", "--customer", "SH01-C-000001").stdout.contains("询价"))
    }

    // MARK: Complaints

    @Test("complaint open, note, advance and reopen")
    func complaints() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        try site.ok("customer", "add", "--name", "上海物流有限公司")
        let opened = try site.object(
            "complaint", "open", "--customer", "SH01-C-000001", "--category", "late", "--waybill", "SF1234567890", "--severity", "high")
        let number = try #require(opened["number"] as? String)
        #expect(number.hasPrefix("SH01-"))
        #expect(opened["status"] as? String == "received")
        #expect(opened["severity"] as? String == "high")

        try site.ok("complaint", "note", number, "called the customer back", "--author", "张伟")
        #expect(try site.object("complaint", "advance", number)["status"] as? String == "acknowledged")
        try site.refused("complaint", "reopen", number)
        #expect(try site.object("complaint", "advance", number, "--to", "resolved")["status"] as? String == "resolved")
        try site.refused("complaint", "advance", number, "--to", "investigating")
        #expect(try site.object("complaint", "advance", number)["status"] as? String == "closed")
        try site.refused("complaint", "advance", number)

        let reopened = try site.object("complaint", "reopen", number)
        #expect(reopened["status"] as? String == "received")
        #expect(reopened["epoch"] as? Int == 1)
        #expect((reopened["notes"] as? [Any])?.count == 1)

        let shown = try site.ok("complaint", "show", number).stdout
        #expect(shown.contains("timeline:"))
        #expect(shown.contains("called the customer back"))
        #expect(try site.array("complaint", "list", "--status", "received").count == 1)
        #expect(try site.array("complaint", "list", "--status", "closed").isEmpty)
        // The customer is found by the complaint's waybill.
        #expect(try site.array("customer", "search", "SF1234567890").count == 1)
    }

    @Test("an unknown category, severity or stage is rejected")
    func complaintErrors() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        try site.ok("customer", "add", "--name", "上海物流有限公司")
        let stderr = try site.refused("complaint", "open", "--customer", "SH01-C-000001", "--category", "weather")
        #expect(stderr.contains("late"))
        try site.refused("complaint", "open", "--customer", "SH01-C-000001", "--category", "late", "--severity", "urgent")
        try site.refused("complaint", "open", "--customer", "SH01-C-424242", "--category", "late")
        try site.refused("complaint", "list", "--status", "pending")
        try site.refused("complaint", "show", "SH01-2026-999999")
    }

    // MARK: Claims

    @Test("claim file, approve and pay; overpayment and bad amounts are refused")
    func claims() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        try site.ok("customer", "add", "--name", "上海物流有限公司")
        let complaint = try #require(try site.object("complaint", "open", "--customer", "SH01-C-000001", "--category", "damaged")["number"] as? String)
        let filed = try site.object("claim", "file", "--customer", "SH01-C-000001", "--complaint", complaint, "--waybill", "SF1", "--amount", "800")
        let claim = try #require(filed["number"] as? String)
        #expect(filed["claimed_fen"] as? Int == 80_000)
        #expect(filed["status"] as? String == "filed")

        try site.refused("claim", "pay", claim, "--amount", "100")
        try site.refused("claim", "approve", claim, "--amount", "900.00")
        try site.refused("claim", "approve", claim, "--amount", "12.345")
        try site.refused("claim", "approve", claim, "--amount", "abc")
        try site.refused("claim", "approve", claim, "--amount", "-5")
        try site.ok("claim", "assess", claim, "--amount", "700")
        #expect(try site.object("claim", "approve", claim, "--amount", "650.00")["approved_fen"] as? Int == 65_000)

        let overpay = try site.refused("claim", "pay", claim, "--amount", "650.01")
        #expect(overpay.contains("approved"))
        let paid = try site.object("claim", "pay", claim, "--amount", "650.00", "--reference", "TX-1")
        #expect(paid["paid_fen"] as? Int == 65_000)
        #expect(paid["status"] as? String == "paid")
        try site.refused("claim", "pay", claim, "--amount", "0.01")
        try site.refused("claim", "reject", claim)

        let reversed = try site.object("claim", "pay", claim, "--amount", "-50.00", "--reference", "TX-1-R")
        #expect(reversed["paid_fen"] as? Int == 60_000)
        try site.refused("claim", "pay", claim, "--amount", "-700")
        #expect(try site.object("claim", "close", claim)["status"] as? String == "closed")

        let shown = try site.ok("claim", "show", claim).stdout
        #expect(shown.contains("650.00"))
        #expect(shown.contains("-50.00"))
        #expect(try site.array("claim", "list").count == 1)
        try site.refused("claim", "file", "--customer", "SH01-C-000001", "--amount", "0")
        try site.refused("claim", "show", "SH01-2026-CL999999")
    }

    @Test("a branch may not approve above the 5000.00 threshold; headquarters may")
    func approvalThreshold() throws {
        let sandbox = try Sandbox()
        let branch = try sandbox.initializedSite("SH01")
        try branch.ok("customer", "add", "--name", "上海物流有限公司")
        let claim = try #require(try branch.object("claim", "file", "--customer", "SH01-C-000001", "--amount", "8000")["number"] as? String)
        #expect(try branch.ok("settings", "approval-threshold").stdout.contains("5000.00"))
        let stderr = try branch.refused("claim", "approve", claim, "--amount", "6000.00")
        #expect(stderr.contains("5000.00"))
        try branch.refused("settings", "approval-threshold", "9000")
        #expect(try branch.object("claim", "approve", claim, "--amount", "5000.00")["approved_fen"] as? Int == 500_000)

        let hq = try sandbox.initializedSite("HQ", role: "hq")
        try hq.ok("customer", "add", "--name", "北京物流")
        let hqClaim = try #require(try hq.object("claim", "file", "--customer", "HQ-C-000001", "--amount", "8000")["number"] as? String)
        #expect(try hq.object("claim", "approve", hqClaim, "--amount", "6000")["approved_fen"] as? Int == 600_000)
        try hq.ok("settings", "approval-threshold", "9000")
        #expect(try hq.object("settings", "approval-threshold")["approval_threshold_fen"] as? Int == 900_000)
    }

    // MARK: Replication

    @Test("changes exported at one site and applied at another, twice, both ways, converge")
    func exchange() throws {
        let sandbox = try Sandbox()
        let hq = try sandbox.initializedSite("HQ", role: "hq")
        let branch = try sandbox.initializedSite("SH01")

        try branch.ok("customer", "add", "--name", "上海物流有限公司", "--phone", "13800138000")
        try branch.ok("contact", "add", "--customer", "SH01-C-000001", "--kind", "visit")
        let complaint = try #require(try branch.object("complaint", "open", "--customer", "SH01-C-000001", "--category", "lost")["number"] as? String)
        try branch.ok("complaint", "advance", complaint)
        let claim = try #require(
            try branch.object("claim", "file", "--customer", "SH01-C-000001", "--complaint", complaint, "--amount", "8000")["number"] as? String)
        try hq.ok("customer", "add", "--name", "北京物流")
        try hq.ok("settings", "approval-threshold", "7000")

        // Branch → HQ, applied twice.
        let toHQ = sandbox.path("SH01-1.opcs")
        let export1 = try branch.ok("changes", "export", "--for", "HQ", "--out", toHQ).stdout
        #expect(export1.contains("next time: --since"))
        #expect(!FileManager.default.fileExists(atPath: toHQ + ".tmp"))
        let first = try hq.ok("changes", "apply", toHQ).stdout
        #expect(first.contains("advanced"))
        let afterFirst = try hq.dump()
        let second = try hq.ok("changes", "apply", toHQ).stdout
        #expect(second.contains("applied:     0"), "\(second)")
        #expect(try hq.dump() == afterFirst)

        // HQ approves above the branch threshold, then HQ → branch, applied twice.
        try hq.ok("claim", "approve", claim, "--amount", "7500")
        let toBranch = sandbox.path("HQ-1.opcs")
        let exportHQ1 = try hq.ok("changes", "export", "--for", "SH01", "--out", toBranch).stdout
        try branch.ok("changes", "apply", toBranch)
        try branch.ok("changes", "apply", toBranch)
        // HQ's file for SH01 carries SH01's scope: not HQ's own customer 北京物流.
        #expect(try branch.dump() == hq.scopeDump("SH01"))
        #expect(try branch.array("customer", "list").count == 1)
        #expect(try branch.object("settings", "approval-threshold")["approval_threshold_fen"] as? Int == 700_000)
        #expect(try branch.object("claim", "show", claim)["approved_fen"] as? Int == 750_000)

        // Concurrent edits of the same field, then a second round from the cursors.
        try branch.ok("customer", "update", "SH01-C-000001", "--region", "华东")
        try hq.ok("customer", "update", "SH01-C-000001", "--region", "华北")
        try branch.ok("claim", "pay", claim, "--amount", "7500", "--reference", "TX-9")
        let branchSince = try nextSince(export1)
        let hqSince = try nextSince(exportHQ1)
        let toHQ2 = sandbox.path("SH01-2.opcs")
        let toBranch2 = sandbox.path("HQ-2.opcs")
        try branch.ok("changes", "export", "--for", "HQ", "--since", String(branchSince), "--out", toHQ2)
        try hq.ok("changes", "export", "--for", "SH01", "--since", String(hqSince), "--out", toBranch2)
        try hq.ok("changes", "apply", toHQ2)
        try branch.ok("changes", "apply", toBranch2)
        try hq.ok("changes", "apply", toHQ2, toHQ)
        // HQ's files for SH01 again: both lie behind its cursor now, and are skipped.
        let again = try branch.ok("changes", "apply", toBranch2, toBranch).stdout
        #expect(again.components(separatedBy: "skipped:").count == 3, "\(again)")
        // HQ exports for one branch only; a third site's file is not SH01's to apply.
        #expect(try hq.refused("changes", "export", "--out", sandbox.path("all.opcs")).contains("--for SITE"))
        let forGZ = sandbox.path("HQ-GZ01.opcs")
        #expect(try hq.ok("changes", "export", "--for", "GZ01", "--out", forGZ).stdout.contains("knows nothing of GZ01"))
        #expect(!exportHQ1.contains("knows nothing"), "\(exportHQ1)")
        #expect(try branch.refused("changes", "apply", forGZ).contains("exported by headquarters for GZ01"))

        let hqDump = try hq.scopeDump("SH01")
        #expect(try branch.dump() == hqDump)
        #expect(hqDump.hasPrefix("{"))
        #expect(hqDump.hasSuffix("}\n"))
        let conflicts = try hq.array("conflicts", "list") + branch.array("conflicts", "list")
        #expect(!conflicts.isEmpty)
        #expect(conflicts.allSatisfy { $0["field"] as? String == "region" })
        #expect(try hq.object("claim", "show", claim)["paid_fen"] as? Int == 750_000)

        let status = try branch.object("status")
        let cursors = try #require(status["cursors"] as? [[String: Any]])
        #expect(cursors.first?["peer"] as? String == "HQ")
    }

    @Test("a garbage, truncated or future-schema change set is refused and changes nothing")
    func badChangeSets() throws {
        let sandbox = try Sandbox()
        let hq = try sandbox.initializedSite("HQ", role: "hq")
        let branch = try sandbox.initializedSite("SH01")
        try branch.ok("customer", "add", "--name", "上海物流有限公司")
        try branch.ok("complaint", "open", "--customer", "SH01-C-000001", "--category", "late")
        let good = sandbox.path("good.opcs")
        try branch.ok("changes", "export", "--out", good)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))

        let garbage = sandbox.path("garbage.opcs")
        try Data("this is not a change set\n".utf8).write(to: URL(fileURLWithPath: garbage))
        let truncated = sandbox.path("truncated.opcs")
        try bytes.prefix(bytes.count - 7).write(to: URL(fileURLWithPath: truncated))
        let future = sandbox.path("future.opcs")
        var futureBytes = [UInt8](bytes)
        futureBytes[6] = 99  // the schema version: magic (4), format (1), flags (1), then schema
        try Data(futureBytes).write(to: URL(fileURLWithPath: future))
        let empty = sandbox.path("empty.opcs")
        try Data().write(to: URL(fileURLWithPath: empty))

        let statusBefore = try hq.ok("status").stdout
        #expect(try hq.refused("changes", "apply", garbage).contains("garbage.opcs"))
        #expect(try hq.refused("changes", "apply", truncated).contains("truncated"))
        #expect(try hq.refused("changes", "apply", future).contains("schema"))
        try hq.refused("changes", "apply", empty)
        try hq.refused("changes", "apply", sandbox.path("missing.opcs"))
        // A good file given with a bad one: nothing is applied.
        try hq.refused("changes", "apply", good, truncated)
        // Its own change set is not for this site.
        try branch.refused("changes", "apply", good)
        #expect(try hq.ok("status").stdout == statusBefore)

        try hq.ok("changes", "apply", good)
        #expect(try hq.dump() == branch.dump())
    }

    @Test("export writes nothing on bad input")
    func exportErrors() throws {
        let sandbox = try Sandbox()
        let branch = try sandbox.initializedSite("SH01")
        let out = sandbox.path("x.opcs")
        try branch.refused("changes", "export", "--for", "not a site", "--out", out)
        try branch.refused("changes", "export", "--for", "SH01", "--out", out)
        try branch.refused("changes", "export", "--out", sandbox.path("no/such/dir/x.opcs"))
        #expect(!FileManager.default.fileExists(atPath: out))
        let empty = try branch.ok("changes", "export", "--out", out).stdout
        #expect(empty.contains("changes:   0"), "\(empty)")
    }

    @Test("quarantine and conflicts lists are empty on a fresh site")
    func journals() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        #expect(try site.array("changes", "quarantine").isEmpty)
        #expect(try site.array("conflicts", "list", "--open").isEmpty)
        try site.refused("conflicts", "restore", "1")
        try site.refused("conflicts", "restore", "one")
        try site.refused("changes", "release", "1")
    }

    @Test("usage errors are ArgumentParser's (exit 64)")
    func usageErrors() throws {
        let result = try Outpost.run(["claim", "pay", "X"])
        #expect(result.status == 64)
        let unknown = try Outpost.run(["frobnicate"])
        #expect(unknown.status == 64)
    }

    func nextSince(_ exportOutput: String) throws -> Int {
        let line = try #require(exportOutput.split(separator: "\n").first { $0.hasPrefix("next time:") })
        return try #require(Int(line.split(separator: " ").last ?? ""))
    }
}

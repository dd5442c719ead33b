import Foundation
import OutpostTesting
import Testing

/// The CRM commands through the real binary: import and export, reports, SLA, merge.
@Suite("CRM commands")
struct CRMCommandTests {
    /// Moves every change `from` holds to `to` as a signed-less change-set file.
    func sync(_ sandbox: Sandbox, _ from: Site, _ to: Site, for code: String) throws {
        let file = sandbox.path("set-\(UUID().uuidString).opcs")
        try from.ok("changes", "export", "--for", code, "--out", file)
        try to.ok("changes", "apply", file)
    }

    @Test("import customers: a GB18030 file with bad rows imports nothing and names the lines; --dry-run; --skip-bad; export round-trips")
    func importExport() throws {
        let sandbox = try Sandbox()
        let site = try sandbox.initializedSite("SH01")
        let csv =
            [
                "客户名称,联系人,电话,营业额,城市,类型",
                "上海物流有限公司,王芳,+86 １３８-0013-8000,\"1,250,000.00\",上海,公司",
                "北京快运,李四,1234,100,北京,公司",
                "\"广州\"\"速递\"\"\",张三,020-12345678,abc,广州,个人",
                "深圳仓储,,,,深圳,企业",
            ].joined(separator: "\r\n") + "\r\n"
        let utf8 = sandbox.path("customers-utf8.csv")
        try csv.write(toFile: utf8, atomically: true, encoding: .utf8)
        let gb = sandbox.path("customers-gb18030.csv")
        let converted = try runProcess("/usr/bin/iconv", ["-f", "UTF-8", "-t", "GB18030", "-o", gb, utf8])
        try #require(converted.status == 0, "iconv: \(converted.stderr)")

        for args in [["import", "customers", gb], ["import", "customers", gb, "--dry-run"]] {
            let result = try site.run(args)
            #expect(result.status == 1, "\(result)")
            #expect(
                result.stderrLines == [
                    "line 3: the phone number has 4 digits; expected 5 to 15",
                    "line 4: revenue: not a valid amount: use yuan with up to two decimals, e.g. 123.45",
                ])
            #expect(result.stdout.contains("4 rows, GB18030"))
            #expect(!result.stderr.contains("李四") && !result.stderr.contains("abc"))
        }
        #expect(try site.array("customer", "list").isEmpty, "nothing is imported while a row is bad")

        let report = try site.run("import", "customers", gb, "--skip-bad", "--json")
        #expect(report.status == 0, "\(report)")
        let summary = try report.object()
        #expect(summary["imported"] as? Int == 2 && summary["valid"] as? Int == 2)
        let customers = try site.array("customer", "list")
        #expect(Set(customers.compactMap { $0["name"] as? String }) == ["上海物流有限公司", "深圳仓储"])
        #expect(customers.first { $0["name"] as? String == "上海物流有限公司" }?["phone"] as? String == "13800138000")

        let exported = sandbox.path("export.csv")
        try site.ok("export", "customers", "--csv", "--out", exported)
        let text = try String(contentsOfFile: exported, encoding: .utf8)
        #expect(text.hasPrefix("number,id,state,name,"))
        #expect(text.contains("1250000.00"))
        let again = try site.run("import", "customers", exported, "--dry-run", "--json")
        #expect(again.status == 0, "\(again)")
        #expect(try again.object()["valid"] as? Int == 2)
        let lines = try site.ok("export", "customers", "--jsonl").stdout.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) is [String: Any] })

        // A file that is not CSV at all: one clear error, nothing changed.
        let broken = sandbox.path("broken.csv")
        try "name,phone\n\"never closed,1\n".write(toFile: broken, atomically: true, encoding: .utf8)
        #expect(try site.refused("import", "customers", broken).contains("line 2: a quoted field is never closed"))
        #expect(try site.refused("import", "customers", sandbox.path("missing.csv")).contains("cannot read"))
    }

    @Test("reports at HQ and at a branch: ABC, quadrants and value as CSV and JSON; a branch reports on itself only")
    func valueReports() throws {
        let sandbox = try Sandbox()
        let hq = try sandbox.initializedSite("HQ", role: "hq")
        let sh = try sandbox.initializedSite("SH01")
        for (name, profit) in [("甲", "500.00"), ("乙", "300.00"), ("丙", "150.00"), ("丁", "50.00")] {
            let c = try sh.object("customer", "add", "--name", name)
            let number = try #require(c["number"] as? String)
            try sh.ok("customer", "figures", number, "--month", "2025-06", "--shipments", "3", "--revenue", "1000.00", "--profit", profit)
        }
        try sync(sandbox, sh, hq, for: "HQ")
        // By hand: total 1,000; running totals before each 0, 500, 800, 950: A, A, B (800 is
        // not below 80%), C (950 is not below 95%).
        for site in [hq, sh] {
            let report = try site.object("report", "abc", "--from", "2025-01", "--to", "2025-12")
            let rows = try #require(report["customers"] as? [[String: Any]])
            #expect(rows.map { $0["class"] as? String } == ["A", "A", "B", "C"])
            #expect(rows.map { $0["amount_fen"] as? Int } == [50_000, 30_000, 15_000, 5_000])
        }
        let csv = try hq.ok("report", "quadrants", "--from", "2025-01", "--to", "2025-12", "--csv").stdout
        let lines = csv.split(separator: "\r\n")
        #expect(lines.count == 5)
        #expect(lines[0].hasPrefix("number,id,home_branch,class,d_reason,basis,amount,share_pct,cumulative_pct,quadrant,potential,index,"))
        let text = try hq.ok("report", "value", "--from", "2025-01", "--to", "2025-12").stdout
        #expect(text.contains("4 customers, all branches, 2025-01 to 2025-12"))
        #expect(text.contains("by branch:") == false, "the index summary has no branch table")
        #expect(try hq.ok("report", "abc", "--from", "2025-01", "--to", "2025-12").stdout.contains("by branch:"))
        #expect(try sh.refused("report", "abc", "--branch", "BJ01").contains("run at headquarters"))
        #expect(try sh.refused("report", "abc", "--from", "2025-13").contains("not a month"))
        // Nothing recorded in the period: the report says so instead of ranking zeros silently.
        #expect(try sh.ok("report", "abc", "--from", "2020-01", "--to", "2020-12").stdout.contains("no monthly figures"))
    }

    @Test("SLA settings are HQ's to change; an overdue complaint lists with its escalation; a return visit follows resolution")
    func complaintsAndSLA() throws {
        let sandbox = try Sandbox()
        let hq = try sandbox.initializedSite("HQ", role: "hq")
        let sh = try sandbox.initializedSite("SH01")
        #expect(try sh.refused("settings", "sla", "--category", "late", "--severity", "normal", "--acknowledge", "1m").contains("headquarters"))
        // One minute to acknowledge: a complaint opened now is overdue a minute later. Rather
        // than wait, HQ sets it and the test checks the deadline the complaint carries.
        try hq.ok("settings", "sla", "--category", "late", "--severity", "normal", "--acknowledge", "1m", "--resolve", "2m")
        let rules = try hq.array("settings", "sla")
        #expect(rules.count == 24)
        #expect(rules.first { $0["category"] as? String == "late" && $0["severity"] as? String == "normal" }?["acknowledge_minutes"] as? Int == 1)
        try sync(sandbox, hq, sh, for: "SH01")
        let customer = try #require(try sh.object("customer", "add", "--name", "上海物流有限公司")["number"] as? String)
        let complaint = try sh.object("complaint", "open", "--customer", customer, "--category", "late", "--waybill", "SF1")
        let number = try #require(complaint["number"] as? String)
        let sla = try #require(complaint["sla"] as? [String: Any])
        let opened = try #require(complaint["opened_at"] as? Int)
        #expect(sla["acknowledge_by"] as? Int == opened + 60_000)
        #expect(sla["resolve_by"] as? Int == opened + 120_000)
        #expect(try sh.ok("complaint", "list", "--overdue").stdout == "no overdue complaints\n")
        #expect(try sh.refused("complaint", "visit", number, "--satisfaction", "4").contains("follows its resolution"))
        try sh.ok("complaint", "advance", number, "--to", "resolved")
        try sh.ok("complaint", "visit", number, "--satisfaction", "4")
        let report = try sh.array("report", "complaints")
        let total = try #require(report.first { $0["category"] is NSNull })
        #expect(total["complaints"] as? Int == 1 && total["return_visits"] as? Int == 1 && total["satisfaction"] as? Double == 4)
        #expect(try sh.refused("complaint", "visit", number, "--satisfaction", "6").contains("1 (very unhappy) to 5"))
    }

    @Test("duplicates across branches are found at HQ; merge there, refused at a branch; the branch follows after sync")
    func duplicatesAndMerge() throws {
        let sandbox = try Sandbox()
        let hq = try sandbox.initializedSite("HQ", role: "hq")
        let sh = try sandbox.initializedSite("SH01")
        let bj = try sandbox.initializedSite("BJ01")
        let a = try #require(try sh.object("customer", "add", "--name", "上海物流有限公司", "--phone", "13800138000")["number"] as? String)
        let b = try #require(try bj.object("customer", "add", "--name", "上海物流", "--phone", "+86 138 0013 8000")["number"] as? String)
        try sync(sandbox, sh, hq, for: "HQ")
        try sync(sandbox, bj, hq, for: "HQ")
        let groups = try hq.array("duplicates")
        #expect(groups.count == 1)
        #expect(groups.first?["reason"] as? String == "phone")
        #expect(try hq.ok("duplicates").stdout.contains("outpost customer merge \(a) \(b)"))
        try sync(sandbox, hq, sh, for: "SH01")
        #expect(try sh.refused("customer", "merge", a, b).contains("merged at headquarters"))
        try hq.ok("customer", "merge", a, b)
        #expect(try hq.ok("duplicates").stdout == "no probable duplicates\n")
        try sync(sandbox, hq, bj, for: "BJ01")
        let merged = try bj.object("customer", "show", b)
        #expect(merged["merged_into"] as? String == (try hq.object("customer", "show", a)["id"] as? String))
        // A complaint opened at BJ01 for its old number lands on the kept customer.
        let complaint = try bj.object("complaint", "open", "--customer", b, "--category", "late")
        #expect(complaint["customer_id"] as? String == merged["merged_into"] as? String)
        #expect(try bj.ok("customer", "search", "上海物流").stdout.contains("merged"))
    }
}

import Foundation
import GRDB
import OutpostTesting
import Replication
import Testing

@testable import CustomerArchive

@Suite("Customer search")
struct SearchTests {
    func numbers(_ archive: Archive, _ text: String) throws -> Set<String> {
        Set(try archive.searchCustomers(text).compactMap { $0["number"].textValue })
    }

    @Test("Chinese fragments of one, two or more characters, phone fragments typed any way, numbers and waybills")
    func chinese() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        let names = ["上海物流有限公司", "北京快运", "广州物流", "上海仓储服务", "Shanghai Express 物流"]
        var n: [String: String] = [:]
        for (i, name) in names.enumerated() {
            let r = try a.addCustomer(["name": .text(name), "phone": .text("1380013800\(i)"), "contact_person": .text(i == 1 ? "王芳" : "李四")])
            n[name] = r["number"].textValue!
        }
        // Two characters: the common Chinese case trigram indexes cannot answer.
        #expect(try numbers(a, "物流") == [n["上海物流有限公司"]!, n["广州物流"]!, n["Shanghai Express 物流"]!])
        #expect(try numbers(a, "上海") == [n["上海物流有限公司"]!, n["上海仓储服务"]!])
        // Longer: the whole phrase in order, not its characters scattered.
        #expect(try numbers(a, "物流有限") == [n["上海物流有限公司"]!])
        #expect(try numbers(a, "海物流有") == [n["上海物流有限公司"]!])
        #expect(try numbers(a, "流物").isEmpty)
        #expect(try numbers(a, "上海快运").isEmpty)
        // One character, including a name's last.
        #expect(try numbers(a, "运") == [n["北京快运"]!])
        #expect(try numbers(a, "务") == [n["上海仓储服务"]!])
        // Spaces and case do not matter; full-width letters are letters.
        #expect(try numbers(a, "上海 物流") == [n["上海物流有限公司"]!])
        #expect(try numbers(a, "shanghai ＥＸＰ") == [n["Shanghai Express 物流"]!])
        // Contact person, number, phone fragments.
        #expect(try numbers(a, "王芳") == [n["北京快运"]!])
        #expect(try numbers(a, n["广州物流"]!) == [n["广州物流"]!])
        #expect(try numbers(a, "0013 8003") == [n["上海仓储服务"]!])
        #expect(try numbers(a, "１３８００１３８００").count == 5)
        // Waybill of a complaint.
        _ = try a.openComplaint(customer: n["广州物流"]!, category: .late, waybill: "SF1234567890")
        #expect(try numbers(a, "SF1234567890") == [n["广州物流"]!])
        // Limit.
        #expect(try a.searchCustomers("物流", limit: 2).count == 2)
    }

    @Test("the index follows every write: renames, replication, deletion, and erasure leaves no token behind")
    func indexFollowsWrites() throws {
        let sites = try Sites()
        let sh = try sites.make("SH01")
        // Headquarters, which may erase any customer (a branch only those homed at it).
        let bj = try sites.make("HQ", role: .hq)
        let c = try sh.addCustomer(["name": .text("上海物流有限公司"), "phone": .text("13800138000")])
        try exchange(sh, bj)
        #expect(try numbers(bj, "物流").count == 1)
        _ = try sh.updateCustomer(c.id.description, ["name": .text("上海鑫淼")])
        try exchange(sh, bj)
        for site in [sh, bj] {
            #expect(try numbers(site, "物流").isEmpty)
            #expect(try numbers(site, "鑫淼").count == 1)
        }
        let gone = try sh.addCustomer(["name": .text("错误录入公司")])
        try sh.deleteCustomer(gone.id.description)
        #expect(try numbers(sh, "错误").isEmpty)
        _ = try bj.eraseCustomer(c.id.description)
        try exchange(bj, sh)
        for site in [sh, bj] {
            #expect(try numbers(site, "鑫淼").isEmpty)
            #expect(try numbers(site, "38000").isEmpty)
            // Not even in an old segment of the index: the bytes of its tokens are merged away
            // (no other token shares the rare 淼, so its bytes would show in a stale segment).
            let stale = try DatabaseQueue(path: site.path).read { db in
                try Int.fetchOne(
                    db,
                    sql: """
                        SELECT (SELECT count(*) FROM search_text_data WHERE instr(block, CAST('淼' AS BLOB)) > 0)
                             + (SELECT count(*) FROM search_rows WHERE instr(name, '淼') > 0)
                        """)
            }
            #expect(stale == 0)
        }
    }
}

@Suite("Duplicates and merge")
struct MergeTests {
    @Test("duplicates registered at two branches are found at HQ, and a merge converges on every site with nothing lost")
    func mergeConverges() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh = try sites.make("SH01")
        let bj = try sites.make("BJ01")
        let keep = try sh.addCustomer(["name": .text("上海物流有限公司"), "phone": .text("+86 138 0013 8000"), "city": .text("上海")])
        sites.environment.advance(milliseconds: 1)  // the older file is the one to keep
        let dup = try bj.addCustomer([
            "name": .text("上海物流有限公司"), "phone": .text("13800138000"), "city": .text("上海"), "email": .text("ops@example.cn"),
        ])
        // The same company by name and city, but another phone.
        let third = try bj.addCustomer(["name": .text("上海 物流有限公司"), "phone": .text("02160001234"), "city": .text("上海")])
        _ = try sh.addCustomer(["name": .text("无关公司"), "phone": .text("13900000000")])
        for b in [sh, bj] { try exchange(b, hq) }

        let groups = try hq.duplicates()
        #expect(groups.count == 2)
        let byPhone = try #require(groups.first { $0.reason == .phone })
        #expect(byPhone.customers.map(\.id) == [keep.id, dup.id])
        #expect(byPhone.branches == ["BJ01", "SH01"])
        let byName = try #require(groups.first { $0.reason == .nameAndCity })
        #expect(Set(byName.customers.map(\.id)) == [keep.id, dup.id, third.id])
        // Within one branch only: not shown unless asked.
        let local = try sites.make("GZ01")
        _ = try local.addCustomer(["name": .text("甲"), "phone": .text("13700000000")])
        _ = try local.addCustomer(["name": .text("乙"), "phone": .text("13700000000")])
        #expect(try local.duplicates().isEmpty)
        #expect(try local.duplicates(sameBranch: true).count == 1)

        // While HQ merges, BJ01 (offline) records a contact and a complaint for its customer.
        try bj.addContact(customer: dup.id.description, kind: .call, summary: "来电")
        let complaint = try bj.openComplaint(customer: dup.id.description, category: .damaged, waybill: "SF9")
        try bj.recordFigures(customer: dup.id.description, month: Month("2025-03")!, shipments: 3, revenueFen: 3_000, profitFen: 300)
        let kept = try hq.mergeCustomers(keep: keep.id.description, duplicate: dup.id.description)
        #expect(kept["email"].textValue == "ops@example.cn", "a field the kept customer lacked is filled from the duplicate")
        #expect { try hq.mergeCustomers(keep: keep.id.description, duplicate: dup.id.description) } throws: {
            ($0 as? ArchiveError)?.code == .invalidState
        }
        #expect { try hq.mergeCustomers(keep: dup.id.description, duplicate: keep.id.description) } throws: {
            ($0 as? ArchiveError)?.code == .invalidInput
        }
        #expect { try sh.mergeCustomers(keep: keep.id.description, duplicate: third.id.description) } throws: {
            ($0 as? ArchiveError)?.code == .refused
        }

        // Sync in an awkward order: HQ's merge reaches SH01 before BJ01's offline writes do.
        try exchange(hq, sh)
        try exchange(bj, hq)
        try exchange(hq, bj)
        try exchange(hq, sh)
        try exchange(sh, hq)
        let dumps = try [hq, sh, bj].map { try $0.canonicalDump() }
        #expect(dumps[0] == dumps[1] && dumps[1] == dumps[2])
        for site in [hq, sh, bj] {
            #expect(try site.customer(dup.id.description)["merged_into"].keyValue == keep.id)
            // The duplicate's contacts, even the one written offline, count under the kept one.
            #expect(try site.contacts(customer: keep.id.description).count == 1)
            #expect(try site.complaint(complaint.record.id.description).record["customer_id"].keyValue == dup.id, "nothing is rewritten")
            // A new record for the duplicate lands on the kept customer.
        }
        let later = try sh.openComplaint(customer: dup["number"].textValue!, category: .late, waybill: "SF10")
        #expect(later.record["customer_id"].keyValue == keep.id)
        // HQ no longer reports them as duplicates; the value report counts one customer.
        #expect(try hq.duplicates().allSatisfy { !$0.customers.contains { $0.id == dup.id } })
        let shanghai = try hq.valueReport(branch: "SH01", from: Month("2025-01")!, to: Month("2025-12")!)
        #expect(shanghai.valuations.first { $0.facts.id == keep.id }?.facts.profitFen == 300)
    }

    @Test("a forged merge from a branch is refused at HQ, and at every site, the same way")
    func forgedMerge() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh = try sites.make("SH01")
        let a = try sh.addCustomer(["name": .text("甲公司")])
        let b = try sh.addCustomer(["name": .text("乙公司")])
        try exchange(sh, hq)
        // A hand-made change from SH01 setting the merge pointer.
        let column = Schema.customers.column("merged_into")
        let forged = Change(
            table: 1, key: b.id, stamp: Stamp(time: Timestamp(milliseconds: sites.environment.now, counter: 9), site: try SiteID("SH01")),
            body: .fields([FieldWrite(column: column, value: a.id.value)]))
        let report = try hq.apply(ChangeSet(producer: try SiteID("SH01"), schemaVersion: 2, after: 0, through: 0, changes: [forged]))
        #expect(report.refused == 1)
        #expect(report.refusals.first?.message == "only headquarters may merge customers")
        #expect(try hq.customer(b.id.description)["merged_into"].isNull)
    }
}

@Suite("Schema migration")
struct MigrationTests {
    @Test("a schema-1 archive opens as schema 3: new columns and tables, and its customers are searchable")
    func fromVersion1() throws {
        let dir = try TemporaryDirectory()
        let path = dir.file("old.sqlite")
        // Build a schema-1 file the way version 1 left it: its migration only, a customer row.
        let queue = try DatabaseQueue(path: path, configuration: Archive.configuration())
        try Migrations.migrator.migrate(queue, upTo: "v1")
        try queue.write { db in
            for (k, v) in [("site", "SH01"), ("role", "branch"), ("headquarters", "HQ"), ("schema", "1")] {
                try db.execute(sql: "INSERT INTO meta(key, value) VALUES (?, ?)", arguments: [k, v])
            }
            // No stamps (an empty clock blob with 23 unwritten columns): enough to be read and
            // indexed; the row is old data, not a test of merging.
            try db.execute(
                sql: "INSERT INTO customers(id, cl, erased, clocks, number, name, phone) VALUES (?, 1, 0, ?, 'SH01-C-000001', '上海物流有限公司', '13800138000')",
                arguments: [RecordKey(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0001).data, Data([0] + [UInt8](repeating: 0, count: 23))])
        }
        try queue.close()
        let archive = try Archive.open(at: path)
        #expect(try archive.searchCustomers("物流").map { $0["number"].textValue } == ["SH01-C-000001"])
        #expect(try archive.searchCustomers("38000").count == 1)
        #expect(try archive.rules() == CompanyRules())
        let c = try archive.addCustomer(["name": .text("北京快运"), "city": .text("北京")])
        #expect(c["city"].textValue == "北京")
        let schema = try DatabaseQueue(path: path).read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'schema'") }
        #expect(schema == "3")
        #expect(try archive.assignments().isEmpty)
        #expect(try archive.scope(of: archive.site).map(\.reasons) == [["homed"]], "the reasons view works on a migrated file")
    }
}

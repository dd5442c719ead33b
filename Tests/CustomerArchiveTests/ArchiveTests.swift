import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// Two or more sites with controlled clocks.
struct Sites {
    let directory: TemporaryDirectory
    let environment = ManualEnvironment()

    init() throws { directory = try TemporaryDirectory() }

    func make(_ code: String, role: Role = .branch) throws -> Archive {
        try Archive.create(at: directory.file("\(code).sqlite"), site: SiteID(code), role: role, environment: environment.environment)
    }
}

/// Sends everything `from` holds that `to` lacks.
func exchange(_ from: Archive, _ to: Archive) throws {
    let cursor = try to.cursor(for: from.site).receivedThrough
    try to.apply(try from.exportChanges(after: cursor, excluding: to.site))
}

@Suite("Archive")
struct ArchiveTests {
    @Test("a write from another program is refused by the guard triggers, and nothing changes")
    func foreignWritesRefused() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        let c = try a.addCustomer(["name": .text("上海物流有限公司"), "phone": .text("13800000001")])
        try a.checkpointNow()
        let before = try a.canonicalDump()
        let sqlite = "/usr/bin/sqlite3"
        try #require(FileManager.default.fileExists(atPath: sqlite), "the sqlite3 shell is needed (apt-get install sqlite3)")
        let id = "X'" + c.id.bytes.map { String(format: "%02X", $0) }.joined() + "'"
        for sql in [
            "UPDATE customers SET region = 'x' WHERE id = \(id)",
            "INSERT INTO contacts(id, hlc, origin, kind) VALUES (randomblob(16), 1, 'SH01', 'call')",
            "DELETE FROM customers",
            "DELETE FROM changelog",
        ] {
            let result = try runProcess(sqlite, [a.path, sql])
            #expect(result.status != 0, "sqlite3 accepted: \(sql)")
            #expect(result.stderr.contains("outpost_direct_write_refused"), "\(result.stderr)")
        }
        // Reading is fine.
        #expect(try runProcess(sqlite, [a.path, "SELECT count(*) FROM customers"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
        #expect(try a.canonicalDump() == before)
    }

    @Test("every local write is captured: replaying the change log elsewhere rebuilds the same records")
    func everyWriteCaptured() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        let c = try a.addCustomer(["name": .text("北京快运"), "phone": .text("+86 139 0000 0002"), "revenue_fen": .integer(1_000_000)])
        _ = try a.updateCustomer(c.id.description, ["region": .text("北京"), "key_account": .integer(1)])
        try a.addContact(customer: c.id.description, kind: .returnVisit, satisfaction: 4, summary: "满意")
        let complaint = try a.openComplaint(customer: c.id.description, category: .late, waybill: "WB1", description: "晚了两天")
        _ = try a.advanceComplaint(complaint.record.id.description)
        try a.noteComplaint(complaint.record.id.description, text: "called the driver")
        let claim = try a.fileClaim(customer: c.id.description, complaint: complaint.record.id.description, waybill: "WB1", claimedFen: 30_000)
        _ = try a.approveClaim(claim.record.id.description, amountFen: 20_000)
        _ = try a.payClaim(claim.record.id.description, amountFen: 20_000)
        try a.deleteCustomer(try a.addCustomer(["name": .text("typo")]).id.description)
        let b = try sites.make("BJ01")
        try exchange(a, b)
        #expect(try b.canonicalDump() == a.canonicalDump())
        #expect(try b.claim(claim.record.id.description).stage == .paid)
        #expect(try b.complaint(complaint.record.id.description).stage == .acknowledged)
    }

    @Test("a change set applied twice, in pieces, out of order, or cut short by a crash leaves the archive right")
    func applyIsIdempotentAndResumable() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        for i in 0..<30 {
            let c = try a.addCustomer(["name": .text("客户 \(i)"), "shipments": .integer(Int64(i))])
            if i % 3 == 0 { _ = try a.updateCustomer(c.id.description, ["region": .text("上海")]) }
        }
        let full = try a.exportChanges()
        var pieces: [ChangeSet] = []
        var after: UInt64 = 0
        while true {
            let p = try a.exportChanges(after: after, limit: 7)
            if p.changes.isEmpty { break }
            pieces.append(p)
            after = p.through
        }
        let b = try sites.make("BJ01")
        for p in pieces.reversed() { try b.apply(p) }
        for p in pieces { try b.apply(p) }
        #expect(try b.canonicalDump() == a.canonicalDump())
        #expect(try b.cursor(for: a.site).receivedThrough == full.through, "the cursor ends at the end once the gaps are filled")

        // A crash after some batches committed leaves a prefix; applying again completes it.
        // At HQ, which logs every change it stores (a branch logs its own only).
        let c = try sites.make("HQ", role: .hq)
        var prefix = full
        prefix.changes = Array(full.changes.prefix(full.changes.count / 2))
        try c.apply(prefix, options: ApplyOptions(batchSize: 3, advanceCursor: false))
        try c.apply(full, options: ApplyOptions(batchSize: 3))
        try c.apply(full, options: ApplyOptions(batchSize: 3))
        #expect(try c.canonicalDump() == a.canonicalDump())
        #expect(try c.counts()["changelog"] == a.counts()["changelog"], "re-applying logs nothing twice")
    }

    @Test("concurrent edits of one field: the loser is journaled on both sites and can be restored")
    func conflictJournal() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        let b = try sites.make("BJ01")
        let c = try a.addCustomer(["name": .text("广州货代"), "region": .text("广州")])
        try exchange(a, b)
        _ = try a.updateCustomer(c.id.description, ["region": .text("佛山"), "shipments": .integer(5)])
        sites.environment.advance(milliseconds: 10)
        _ = try b.updateCustomer(c.id.description, ["region": .text("深圳"), "industry": .text("电子")])
        try exchange(a, b)
        try exchange(b, a)
        #expect(try a.canonicalDump() == b.canonicalDump())
        let merged = try a.customer(c.id.description)
        #expect(merged["region"] == .text("深圳"), "the later write wins")
        #expect(merged["shipments"] == .integer(5) && merged["industry"] == .text("电子"), "different fields both survive")
        let journalA = try a.conflicts()
        let journalB = try b.conflicts()
        #expect(journalA.count == 1 && journalB.count == 1)
        #expect(journalA.first?.loser == .text("佛山") && journalA.first?.field == "region")
        try a.restoreConflict(id: try #require(journalA.first).id)
        try exchange(a, b)
        #expect(try b.customer(c.id.description)["region"] == .text("佛山"))
        #expect(try a.canonicalDump() == b.canonicalDump())
        #expect(throws: ArchiveError.self) { try a.restoreConflict(id: journalA[0].id) }
    }

    @Test("erasure leaves no byte of the person in any site's file: records, log, journal, freed pages, WAL")
    func erasureLeavesNoTrace() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        // Headquarters, which may write and erase any customer (a branch only those homed at it).
        let b = try sites.make("HQ", role: .hq)
        let secrets = ["张三丰测试员", "13912345678", "zhang.secret@example.com", "南京西路一千号", "私人回访记录", "投诉描述秘密", "跟进备注秘密"]
        let c = try a.addCustomer([
            "name": .text(secrets[0]), "phone": .text(secrets[1]), "email": .text(secrets[2]), "address": .text(secrets[3]), "revenue_fen": .integer(123_456),
        ])
        try a.addContact(customer: c.id.description, kind: .visit, summary: secrets[4])
        let complaint = try a.openComplaint(customer: c.id.description, category: .damaged, waybill: "WB9", description: secrets[5])
        try a.noteComplaint(complaint.record.id.description, text: secrets[6])
        try exchange(a, b)
        // A concurrent edit puts the name in both conflict journals too.
        _ = try a.updateCustomer(c.id.description, ["name": .text(secrets[0] + "A")])
        sites.environment.advance(milliseconds: 5)
        _ = try b.updateCustomer(c.id.description, ["name": .text(secrets[0] + "B")])
        try exchange(a, b)
        try exchange(b, a)
        #expect(try a.conflicts().count == 1)
        // Edits field by field, which headquarters' compaction packs into one log row.
        _ = try a.updateCustomer(c.id.description, ["phone": .text(secrets[1] + "9")])
        _ = try a.updateCustomer(c.id.description, ["email": .text("x" + secrets[2])])
        _ = try a.updateCustomer(c.id.description, ["address": .text(secrets[3] + "二")])
        try exchange(a, b)
        #expect(try b.compactHeadquartersLog().rowsPacked > 0, "the erasure must scrub a packed row")

        _ = try b.eraseCustomer(c.id.description)
        try exchange(b, a)
        for site in [a, b] {
            #expect(try site.canonicalDump() == a.canonicalDump())
            let erased = try site.customer(c.id.description)
            #expect(erased.erased && erased["name"].isNull && erased["phone"].isNull)
            #expect(erased["revenue_fen"] == .integer(123_456), "de-identified business figures stay")
            #expect(try site.conflicts().isEmpty)
            try site.checkpointNow()
            var bytes = try Data(contentsOf: URL(fileURLWithPath: site.path))
            if let wal = try? Data(contentsOf: URL(fileURLWithPath: site.path + "-wal")) { bytes.append(wal) }
            for secret in secrets {
                #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(site.site) still holds a personal value in its file")
            }
        }
        #expect(throws: ArchiveError.self) { try a.updateCustomer(c.id.description, ["name": .text("again")]) }
    }

    @Test("malformed, future-schema and rule-breaking change sets harm nothing")
    func hostileChangeSets() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let a = try sites.make("SH01")
        _ = try a.addCustomer(["name": .text("成都仓储")])
        let before = try hq.canonicalDump()
        let good = try a.exportChanges()
        let stamp = Stamp(time: Timestamp(milliseconds: sites.environment.now, counter: 9), site: a.site)

        var unknownTable = good
        unknownTable.changes.append(Change(table: 77, key: RecordKey(high: 1, low: 1), stamp: stamp, body: .erase))
        #expect { try hq.apply(unknownTable) } throws: { ($0 as? ArchiveError)?.code == .malformedChangeSet }
        var wrongType = good
        wrongType.changes.append(Change(table: 1, key: RecordKey(high: 1, low: 1), stamp: stamp, body: .fields([FieldWrite(column: 12, value: .text("many"))])))
        #expect { try hq.apply(wrongType) } throws: { ($0 as? ArchiveError)?.code == .malformedChangeSet }
        var future = good
        future.schemaVersion = 99
        #expect { try hq.apply(future) } throws: { ($0 as? ArchiveError)?.code == .schemaTooNew }
        #expect(try hq.canonicalDump() == before, "a rejected set writes nothing, not even its good part")

        // A branch forging settings, and approving above the threshold, is refused change by change.
        let forged = ChangeSet(
            producer: a.site, schemaVersion: 1, after: 0, through: 0,
            changes: [
                Change(table: 9, key: RecordKey.wellKnown(1), stamp: stamp, body: .fields([FieldWrite(column: 0, value: .integer(1))])),
                Change(
                    table: 7, key: RecordKey(high: 2, low: 2), stamp: stamp,
                    body: .append([
                        ColumnValue(column: 0, value: .blob(RecordKey(high: 3, low: 3).bytes)), ColumnValue(column: 1, value: .integer(2)),
                        ColumnValue(column: 2, value: .integer(9_000_000)),
                    ])),
            ])
        let report = try hq.apply(forged)
        #expect(report.refused == 2 && report.applied == 0)
        #expect(try hq.canonicalDump() == before)

        // A change stamped an hour ahead by the site that sends it is quarantined, then released.
        let ahead = Stamp(time: Timestamp(milliseconds: sites.environment.now + 3_600_000, counter: 0), site: a.site)
        let skewed = ChangeSet(
            producer: a.site, schemaVersion: 1, after: 0, through: 0,
            changes: [
                Change(table: 2, key: RecordKey(high: 4, low: 4), stamp: ahead, body: .append([ColumnValue(column: 1, value: .text("call"))]))
            ])
        #expect(try hq.apply(skewed).quarantined == 1)
        #expect(try hq.canonicalDump() == before)
        let held = try hq.quarantined()
        #expect(held.count == 1 && held[0].reason.contains("SH01"))
        #expect(try hq.releaseQuarantined(id: held[0].id).applied == 1)
        #expect(try hq.quarantined().isEmpty)
    }

    @Test("claims: payments never exceed the approval; a branch cannot approve above the threshold")
    func claimRules() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        let c = try a.addCustomer(["name": .text("深圳电子")])
        let claim = try a.fileClaim(customer: c.id.description, waybill: "WB7", claimedFen: 900_000)
        #expect { try a.approveClaim(claim.record.id.description, amountFen: 600_000) } throws: { ($0 as? ArchiveError)?.code == .refused }
        _ = try a.approveClaim(claim.record.id.description, amountFen: 400_000)
        _ = try a.payClaim(claim.record.id.description, amountFen: 300_000)
        #expect { try a.payClaim(claim.record.id.description, amountFen: 100_001) } throws: { ($0 as? ArchiveError)?.code == .refused }
        #expect { try a.payClaim(claim.record.id.description, amountFen: -300_001) } throws: { ($0 as? ArchiveError)?.code == .refused }
        let paid = try a.payClaim(claim.record.id.description, amountFen: 100_000)
        #expect(paid.stage == .paid && paid.paidFen == 400_000 && paid.overpaidFen == 0)
    }

    @Test("two offline sites that together overpay a claim see it flagged, with every payment kept")
    func overpaymentFlagged() throws {
        let sites = try Sites()
        let a = try sites.make("SH01")
        let b = try sites.make("BJ01")
        let c = try a.addCustomer(["name": .text("杭州物流")])
        let claim = try a.fileClaim(customer: c.id.description, waybill: "WB8", claimedFen: 100_000)
        _ = try a.approveClaim(claim.record.id.description, amountFen: 100_000)
        try exchange(a, b)
        _ = try a.payClaim(claim.record.id.description, amountFen: 70_000)
        _ = try b.payClaim(claim.record.id.description, amountFen: 60_000)
        try exchange(a, b)
        try exchange(b, a)
        let view = try a.claim(claim.record.id.description)
        #expect(view.paidFen == 130_000 && view.overpaidFen == 30_000)
        #expect(try b.claim(claim.record.id.description).overpaidFen == 30_000)
    }
}

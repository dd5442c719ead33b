import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// Scope at the archive: what headquarters sends a branch, and how a branch evicts.
@Suite("Scope moves")
struct ScopeMoveTests {
    /// Pushes a branch's own changes to HQ and records HQ's acknowledgement, as the client does.
    static func push(_ branch: Archive, to hq: Archive) throws {
        let after = try hq.cursor(for: branch.site).receivedThrough
        try hq.admit(try branch.exportChanges(after: after, origin: branch.site), from: branch.site)
        try branch.acknowledgeSent(to: hq.site, through: try hq.cursor(for: branch.site).receivedThrough)
    }

    /// Pulls HQ's set for a branch's scope from the branch's cursor, moves included.
    @discardableResult
    static func pull(_ hq: Archive, to branch: Archive) throws -> (ChangeSet, ScopeMoves) {
        let (set, moves) = try hq.exportChanges(for: branch.site, after: try branch.cursor(for: hq.site).receivedThrough)
        try branch.admit(set, from: hq.site, moves: moves)
        return (set, moves)
    }

    @Test("a customer arrives whole where it moves, is not echoed to its creator, and leaves only once HQ has the branch's edit")
    func movesAndWaitingEvictions() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        let bj01 = try sites.make("BJ01")
        try hq.setServedDays(0)
        let c = try sh01.addCustomer(["name": .text("上海物流有限公司"), "phone": .text("13800000001")])
        try sh01.addContact(customer: c.id.description, kind: .call, satisfaction: 4, summary: "首次来电")
        try Self.push(sh01, to: hq)

        // Its creator gets nothing back; another branch gets nothing of it.
        let (echo, echoMoves) = try Self.pull(hq, to: sh01)
        #expect(echo.changes.isEmpty && echoMoves.isEmpty, "\(echo.changes.count) changes, \(echoMoves)")
        let (other, otherMoves) = try Self.pull(hq, to: bj01)
        #expect(other.changes.isEmpty && otherMoves.isEmpty)
        #expect(try bj01.customers(limit: 10).isEmpty)

        // Re-homed at HQ: BJ01 gets the customer's state and its contact, not its history.
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("BJ01"), "region": .text("北京")])
        let (moved, moves) = try Self.pull(hq, to: bj01)
        #expect(moves.movedIn == [c.id])
        #expect(moved.changes.filter { $0.table == 1 }.count == 2, "one change per stamp of the customer's fields")
        #expect(try bj01.contacts(customer: c.id.description).count == 1)
        #expect(try bj01.canonicalDump() == hq.canonicalDump(scope: bj01.site))

        // SH01 edits the customer while HQ retires SH01's served reason: the eviction waits.
        _ = try sh01.updateCustomer(c.id.description, ["notes": .text("离线时的备注")])
        try hq.expireScope()
        let (_, out) = try Self.pull(hq, to: sh01)
        #expect(out.evicted == [c.id])
        #expect(try sh01.pendingEvictions() == 1)
        #expect(try sh01.customer(c.id.description).id == c.id, "evicted before HQ had the branch's edit")

        // HQ takes the edit: SH01 served the customer again, so it moves back in, and the wait
        // ends without an eviction (the customer never left the counter). Its own changes in
        // the state it got back are not logged again.
        try Self.push(sh01, to: hq)
        #expect(try sh01.customer(c.id.description).id == c.id)
        let logEnd = try sh01.lastSequence()
        #expect(try hq.customer(c.id.description)["notes"] == .text("离线时的备注"))
        let (_, back) = try Self.pull(hq, to: sh01)
        #expect(back.movedIn == [c.id])
        #expect(try sh01.pendingEvictions() == 0)
        #expect(try sh01.lastSequence() == logEnd)
        #expect(try sh01.canonicalDump() == hq.canonicalDump(scope: sh01.site))

        // Once that reason lapses too, SH01 evicts: nothing of the customer is left there.
        sites.environment.advance(milliseconds: 1)
        #expect(try hq.expireScope() == 1)
        let (_, gone) = try Self.pull(hq, to: sh01)
        #expect(gone.evicted == [c.id])
        #expect(try sh01.pendingEvictions() == 0)
        try Self.pull(hq, to: bj01)
        #expect(try sh01.customers(limit: 10).isEmpty)
        #expect(try sh01.keysOutsideRecords().isEmpty)
        #expect(try sh01.searchCustomers("上海").isEmpty)
        #expect(try sh01.canonicalDump() == hq.canonicalDump(scope: sh01.site))
        #expect(try bj01.customer(c.id.description)["notes"] == .text("离线时的备注"), "the edit reached the customer's new home")
    }

    @Test("a scoped set is taken only where it continues the cursor, and HQ refuses a branch set past a gap")
    func setsInTheirPlace() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        _ = try hq.addCustomer(["name": .text("甲"), "home_branch": .text("SH01")])
        let (first, firstMoves) = try hq.exportChanges(for: sh01.site, after: 0)
        _ = try hq.addCustomer(["name": .text("乙"), "home_branch": .text("SH01")])
        let (second, secondMoves) = try hq.exportChanges(for: sh01.site, after: first.through)
        // The second before the first: left alone, cursor unmoved.
        let skipped = try sh01.admit(second, from: hq.site, moves: secondMoves)
        #expect(skipped.outOfOrder && skipped.applied == 0)
        #expect(try sh01.customers(limit: 10).isEmpty)
        try sh01.admit(first, from: hq.site, moves: firstMoves)
        try sh01.admit(second, from: hq.site, moves: secondMoves)
        #expect(try sh01.customers(limit: 10).count == 2)

        // A branch's set that starts past HQ's cursor for it is refused whole.
        _ = try sh01.addCustomer(["name": .text("丙")])
        let end = try sh01.lastSequence()
        _ = try sh01.addCustomer(["name": .text("丁")])
        let later = try sh01.exportChanges(after: end, origin: sh01.site)
        #expect(throws: ArchiveError.self) { try hq.admit(later, from: sh01.site) }
        #expect(try hq.customers(limit: 10).count == 2)
    }

    @Test("HQ assigns a customer, another branch's customers or a region to a branch: they move in, count in its reports, and leave when withdrawn")
    func assignments() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let bj01 = try sites.make("BJ01")
        let bj02 = try sites.make("BJ02")
        try hq.setServedDays(0)
        let one = try hq.addCustomer(["name": .text("总部客户"), "region": .text("华南"), "revenue_fen": .integer(500_000)])
        let homed = try bj02.addCustomer(["name": .text("北京二号客户"), "region": .text("华北"), "revenue_fen": .integer(300_000)])
        let regional = try hq.addCustomer(["name": .text("华东客户"), "region": .text("华东"), "home_branch": .text("SH01"), "revenue_fen": .integer(100_000)])
        try Self.push(bj02, to: hq)
        try Self.pull(hq, to: bj01)
        #expect(try bj01.customers(limit: 10).isEmpty)

        try hq.assign(.customer(try #require(one["number"].textValue)), to: bj01.site)
        try hq.assign(.branch(bj02.site), to: bj01.site)
        let region = try hq.assign(.region("华东"), to: bj01.site)
        #expect(region.kind == "region" && region.customers == 1)
        #expect(try hq.assign(.region("华东"), to: bj01.site) == region, "assigning again changes nothing")
        let (_, moves) = try Self.pull(hq, to: bj01)
        #expect(Set(moves.movedIn) == [one.id, homed.id, regional.id])
        #expect(try bj01.canonicalDump() == hq.canonicalDump(scope: bj01.site))
        #expect(try bj01.assignments().count == 3, "assignments are replicated")
        #expect(try hq.scope(of: bj01.site).allSatisfy { $0.reasons == ["assigned"] })
        // Its reports count them, as HQ's report on it does.
        let report = try bj01.valueReport()
        #expect(report.valuations.count == 3)
        #expect(report.valuations == (try hq.valueReport(branch: "BJ01")).valuations)
        // The branch is also still in BJ02's scope for its own.
        try Self.pull(hq, to: bj02)
        #expect(try bj02.canonicalDump() == hq.canonicalDump(scope: bj02.site))

        // Only HQ assigns, at the counter and at its door.
        #expect { try bj01.assign(.region("华北"), to: bj01.site) } throws: { ($0 as? ArchiveError)?.code == .refused }
        #expect { try hq.assign(.branch(bj01.site), to: bj01.site) } throws: { ($0 as? ArchiveError)?.code == .invalidInput }

        // Withdrawn: the customers leave, nothing of them stays.
        try hq.unassign(.branch(bj02.site), from: bj01.site)
        try hq.unassign(.region("华东"), from: bj01.site)
        #expect { try hq.unassign(.region("华东"), from: bj01.site) } throws: { ($0 as? ArchiveError)?.code == .notFound }
        let (_, out) = try Self.pull(hq, to: bj01)
        #expect(Set(out.evicted) == [homed.id, regional.id])
        #expect(try bj01.customers(limit: 10).map(\.id) == [one.id])
        #expect(try bj01.keysOutsideRecords().isEmpty)
        #expect(try bj01.canonicalDump() == hq.canonicalDump(scope: bj01.site))
        #expect(try bj01.valueReport().valuations == (try hq.valueReport(branch: "BJ01")).valuations)
    }

    @Test("a clerk fetches a customer from HQ by number or phone: it moves in whole, and leaves when the fetched window lapses")
    func fetchedCustomers() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let bj01 = try sites.make("BJ01")
        try hq.setServedDays(0)
        let far = try hq.addCustomer(["name": .text("深圳远方物流有限公司"), "phone": .text("13700000001"), "home_branch": .text("SZ01")])
        try hq.addContact(customer: far.id.description, kind: .call, summary: "来电")
        _ = try hq.addCustomer(["name": .text("甲"), "phone": .text("13700000002")])
        _ = try hq.addCustomer(["name": .text("乙"), "phone": .text("13700000002")])
        try Self.pull(hq, to: bj01)
        #expect(try bj01.customers(limit: 10).isEmpty)

        // HQ's search for the clerk: partly hidden, nothing stored.
        let found = try hq.remoteSearch("远方")
        #expect(found == [MaskedCustomer(number: try #require(far["number"].textValue), name: "深********司", phone: "137******01", homeBranch: "SZ01")])

        // By phone, only when one customer has it; the error never repeats the phone.
        #expect { try hq.fetch("137 0000 0002", for: bj01.site) } throws: { e in
            (e as? ArchiveError)?.code == .invalidInput && !"\(e)".contains("13700000002")
        }
        #expect { try hq.fetch("13799999999", for: bj01.site) } throws: { ($0 as? ArchiveError)?.code == .notFound && !"\($0)".contains("1379") }
        #expect { try bj01.fetch("13700000001", for: bj01.site) } throws: { ($0 as? ArchiveError)?.code == .refused }
        let (key, number) = try hq.fetch("137-0000-0001", for: bj01.site)
        #expect(key == far.id && number == far["number"].textValue)
        #expect(try hq.scope(of: bj01.site).map(\.reasons) == [["fetched"]])
        let (_, moves) = try Self.pull(hq, to: bj01)
        #expect(moves.movedIn == [far.id])
        #expect(try bj01.contacts(customer: far.id.description).count == 1)
        #expect(try bj01.canonicalDump() == hq.canonicalDump(scope: bj01.site))
        #expect(try bj01.valueReport().valuations.isEmpty, "a fetched customer is not the branch's in its reports")

        // Fetched again, the window starts again; once it lapses, the customer leaves.
        sites.environment.advance(milliseconds: 3 * 86_400_000)
        _ = try hq.fetch(try #require(number), for: bj01.site)
        sites.environment.advance(milliseconds: 5 * 86_400_000)
        #expect(try hq.expireScope() == 0, "7 days from the second fetch have not passed")
        sites.environment.advance(milliseconds: 2 * 86_400_000)
        #expect(try hq.expireScope() == 1)
        let (_, out) = try Self.pull(hq, to: bj01)
        #expect(out.evicted == [far.id])
        #expect(try bj01.customers(limit: 10).isEmpty && bj01.keysOutsideRecords().isEmpty)
    }
}

/// Restores from backups at the archive: a branch restored twice from the same old backup
/// must not hide what it wrote after the second restore below headquarters' cursor.
@Suite("Restore epochs")
struct RestoreEpochTests {
    @Test("restored twice from one old backup, a branch's new changes move past headquarters' cursor and reach it")
    func aSecondRestoreFromAnOldBackupLosesNothing() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        var branch = try sites.make("CD01")
        let old = try branch.addCustomer(["name": .text("成都仓储")])
        let backup = sites.directory.file("CD01-backup.sqlite")
        _ = try branch.backup(to: backup)
        try ScopeMoveTests.push(branch, to: hq)

        // The disk dies; restored from the backup, the branch writes in epoch 1 and pushes.
        func restore() throws -> Archive {
            let path = sites.directory.file("CD01-restored-\(UUID().uuidString).sqlite")
            try FileManager.default.copyItem(atPath: backup, toPath: path)
            let restored = try Archive.open(at: path, environment: sites.environment.environment)
            #expect(try restored.beginEpochAfterRestore() == 1)
            return restored
        }
        branch = try restore()
        #expect(try branch.confirmEpoch(headquartersHolds: try hq.cursor(for: branch.site).receivedThrough) == nil)
        try branch.addContact(customer: old.id.description, kind: .call, summary: "第一次恢复后")
        try branch.addContact(customer: old.id.description, kind: .call, summary: "再一次")
        try ScopeMoveTests.push(branch, to: hq)
        let holds = try hq.cursor(for: branch.site).receivedThrough
        #expect(holds >> 40 == 1)

        // It dies again and comes back from the same backup: epoch 1 again. What it writes now
        // would sit at sequences headquarters already holds, and never be pushed.
        branch = try restore()
        let contact = try branch.addContact(customer: old.id.description, kind: .visit, summary: "第二次恢复后")
        #expect(try branch.lastSequence() < holds, "the collision this test is about")
        #expect(try branch.confirmEpoch(headquartersHolds: holds) == 2)
        #expect(try branch.lastSequence() > holds)
        #expect(try branch.confirmEpoch(headquartersHolds: holds) == nil, "confirmed once")
        try ScopeMoveTests.push(branch, to: hq)
        #expect(try hq.contacts(customer: old.id.description).contains { $0.id == contact })
    }
}

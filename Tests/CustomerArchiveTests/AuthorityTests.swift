import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// Write authority (protocols/README.md §5.6): who may write a customer's identifying fields,
/// home branch, existence and erasure; judged at the counter and again at HQ's door by the
/// home at the change's stamp; refusals answered in the branch's stream.
@Suite("Write authority")
struct AuthorityTests {
    typealias Line = ScopeMoveTests

    @Test("a branch that is not the home may add what hangs off a customer and edit its other fields, but not identify, move, delete or erase it")
    func theCounterRefusesWhatOnlyTheHomeMayWrite() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        let bj01 = try sites.make("BJ01")
        let c = try sh01.addCustomer(["name": .text("上海物流有限公司"), "phone": .text("13800000001")])
        try Line.push(sh01, to: hq)
        // Homed at BJ01 for a while, where it is served (a contact), then back at SH01: BJ01
        // keeps it for the served window.
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("BJ01")])
        try Line.pull(hq, to: bj01)
        try bj01.addContact(customer: c.id.description, kind: .visit, summary: "上门")
        try Line.push(bj01, to: hq)
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("SH01")])
        try Line.pull(hq, to: bj01)
        #expect(try bj01.customer(c.id.description)["home_branch"] == .text("SH01"))
        let number = try #require(c["number"].textValue)

        for attempt: () throws -> Void in [
            { _ = try bj01.updateCustomer(c.id.description, ["name": .text("改名")]) },
            { _ = try bj01.updateCustomer(c.id.description, ["phone": .text("13900000000"), "notes": .text("x")]) },
            { _ = try bj01.updateCustomer(c.id.description, ["home_branch": .text("BJ01")]) },
            { try bj01.deleteCustomer(c.id.description) },
            { _ = try bj01.eraseCustomer(c.id.description) },
        ] {
            #expect {
                try attempt()
            } throws: { error in
                guard let e = error as? ArchiveError, e.code == .refused else { return false }
                return e.message.contains("\(number) is homed at SH01") && !e.message.contains("上海物流") && !e.message.contains("13800000001")
            }
        }
        _ = try bj01.updateCustomer(c.id.description, ["notes": .text("北京网点备注"), "credit_rating": .text("AA")])
        try bj01.addContact(customer: c.id.description, kind: .call, summary: "来电")
        _ = try bj01.openComplaint(customer: c.id.description, category: .late, waybill: "WB1", description: "晚到")
        try Line.push(bj01, to: hq)
        #expect(try hq.customer(c.id.description)["credit_rating"] == .text("AA"))
        #expect(try hq.refusedChanges().isEmpty && bj01.refusedChanges().isEmpty)
    }

    @Test(
        "HQ judges by the home at the change's stamp: an offline edit made before a re-home stands, one made after is refused, journaled and reset at its branch"
    )
    func headquartersJudgesAtTheStamp() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        let bj01 = try sites.make("BJ01")
        let c = try sh01.addCustomer(["name": .text("上海物流有限公司"), "phone": .text("13800000001")])
        try Line.push(sh01, to: hq)
        try Line.pull(hq, to: sh01)

        // Offline at SH01: a correction made before HQ re-homes the customer (by clock).
        sites.environment.advance(milliseconds: 10)
        _ = try sh01.updateCustomer(c.id.description, ["phone": .text("13800000002")])
        sites.environment.advance(milliseconds: 10)
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("BJ01")])
        sites.environment.advance(milliseconds: 10)
        // ...and one made after it, still not knowing: refused. So is a delete.
        _ = try sh01.updateCustomer(c.id.description, ["name": .text("上海物流（更正）"), "notes": .text("先于同步的备注")])
        try sh01.deleteCustomer(c.id.description)
        try sh01.restoreCustomer(c.id.description)
        let after = try hq.cursor(for: sh01.site).receivedThrough
        let report = try hq.admit(try sh01.exportChanges(after: after, origin: sh01.site), from: sh01.site)
        #expect(report.refusals.map(\.kind) == [.notHome, .notHome, .notHome], "\(report.refusals)")
        #expect(report.refusals.allSatisfy { $0.message.contains("homed at BJ01") && !$0.message.contains("上海") })
        #expect(try hq.customer(c.id.description)["phone"] == .text("13800000002"), "written before the re-home: it stands")
        #expect(try hq.customer(c.id.description)["name"] == .text("上海物流有限公司"))
        try sh01.acknowledgeSent(to: hq.site, through: try hq.cursor(for: sh01.site).receivedThrough)

        // Written after the push, not yet at HQ: kept through the reset.
        _ = try sh01.updateCustomer(c.id.description, ["industry": .text("电子")])
        // HQ's stream answers the refusals with its state of the customer (SH01 still serves it).
        let (_, moves) = try Line.pull(hq, to: sh01)
        #expect(moves.refused.count == 3 && moves.refused.allSatisfy { $0.customer == c.id && $0.reason == "NOT_HOME" })
        let here = try sh01.customer(c.id.description)
        #expect(here["name"] == .text("上海物流有限公司") && here["home_branch"] == .text("BJ01") && here.alive)
        #expect(here["notes"].isNull, "a change is judged whole: the note written with the name went with it")
        #expect(here["industry"] == .text("电子"), "an edit not yet pushed survives the reset")
        let journal = try sh01.refusedChanges()
        #expect(journal.count == 3 && journal.allSatisfy { $0.reason == "NOT_HOME" && $0.record == c.id.description })
        // The refused writes are never pushed again; the waiting edit is.
        try Line.push(sh01, to: hq)
        try Line.pull(hq, to: sh01)
        #expect(try hq.customer(c.id.description)["industry"] == .text("电子"))
        #expect(try sh01.canonicalDump() == hq.canonicalDump(scope: sh01.site))
        // Pulled again from an older cursor (a restored branch), the answers are not journaled twice.
        let (again, againMoves) = try hq.exportChanges(for: sh01.site, after: 0)
        #expect(againMoves.refused.count == 3 && !again.changes.isEmpty)
        try Line.pull(hq, to: bj01)
        #expect(try bj01.canonicalDump() == hq.canonicalDump(scope: bj01.site))
    }

    @Test("a refused write to a customer the branch no longer holds leaves nothing of it there")
    func aRefusalOutsideTheScopeEvicts() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        try hq.setServedDays(0)
        let c = try sh01.addCustomer(["name": .text("上海物流有限公司"), "phone": .text("13800000001")])
        try Line.push(sh01, to: hq)
        sites.environment.advance(milliseconds: 10)
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("BJ01")])
        sites.environment.advance(milliseconds: 10)
        _ = try sh01.updateCustomer(c.id.description, ["phone": .text("13900000009")])
        try Line.push(sh01, to: hq)
        sites.environment.advance(milliseconds: 10)
        try hq.expireScope()
        let (_, moves) = try Line.pull(hq, to: sh01)
        #expect(moves.refused.count == 1 && moves.evicted == [c.id])
        #expect(try sh01.customers(limit: 10).isEmpty)
        #expect(try sh01.keysOutsideRecords().isEmpty)
        #expect(try sh01.canonicalDump() == hq.canonicalDump(scope: sh01.site))
        #expect(try sh01.refusedChanges().count == 1)
    }
}

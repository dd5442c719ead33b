import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// A branch's change log holds what headquarters may still ask for, not the national base.
@Suite("A branch's change log")
struct LogCompactionTests {
    @Test("a branch logs its own changes only, and drops them once acknowledged and past the retention window")
    func ownChangesOnlyThenCompacted() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        let bj01 = try sites.make("BJ01")
        for i in 0..<5 { _ = try bj01.addCustomer(["name": .text("北京\(i)")]) }
        try hq.admit(try bj01.exportChanges(origin: bj01.site), from: bj01.site)
        let before = try sh01.lastSequence()
        // Everything HQ relays is merged at SH01, and none of it grows SH01's log.
        try sh01.admit(try hq.exportChanges(excluding: sh01.site), from: .headquarters)
        #expect(try sh01.customers(limit: 100).count == 5)
        #expect(try sh01.lastSequence() == before)
        #expect(try sh01.exportChanges().changes.isEmpty)

        for i in 0..<3 { _ = try sh01.addCustomer(["name": .text("上海\(i)")]) }
        let own = try sh01.exportChanges(origin: sh01.site)
        #expect(own.changes.count == 3)
        try hq.admit(own, from: sh01.site)
        let day: UInt64 = 86_400_000
        // Not yet acknowledged: kept whatever the window.
        #expect(try sh01.compactLog(retentionMilliseconds: 0) == 0)
        try sh01.acknowledgeSent(to: .headquarters, through: try hq.cursor(for: sh01.site).receivedThrough)
        // Acknowledged, but inside the 30-day window: kept (a restored HQ may ask again).
        sites.environment.advance(milliseconds: 29 * day)
        #expect(try sh01.compactLog(retentionMilliseconds: 30 * day) == 0)
        _ = try sh01.addCustomer(["name": .text("未确认")])
        sites.environment.advance(milliseconds: 2 * day)
        // Past it: the three go, the unacknowledged one stays, and numbering goes on.
        let end = try sh01.lastSequence()
        #expect(try sh01.compactLog(retentionMilliseconds: 30 * day) == 3)
        #expect(try sh01.exportChanges(origin: sh01.site).changes.count == 1)
        #expect(try sh01.lastSequence() == end)
        _ = try sh01.addCustomer(["name": .text("之后")])
        #expect(try sh01.lastSequence() == end + 1)
        // HQ's log is its relay and is not touched here.
        #expect(try hq.compactLog(retentionMilliseconds: 0) == 0)
    }
}

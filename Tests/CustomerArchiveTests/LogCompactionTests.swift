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
        // HQ's log is its relay: nothing in it is superseded yet, so nothing goes.
        #expect(try hq.compactLog(retentionMilliseconds: 0) == 0)
    }
}

/// Headquarters' log keeps, per record and field, what a branch resuming from any cursor needs.
@Suite("Headquarters' log compaction")
struct HeadquartersCompactionTests {
    /// Two headquarters take the same branches' sets; one compacts at random moments, the other
    /// never. Observers copy each at random cursors, then resume from there: the compacted
    /// log's suffix must bring them where the full log's does (snapshot ⊕ suffix = full
    /// replay), and the compacted log must hold at most one write per live field.
    @Test("snapshot ⊕ compacted suffix = full replay, from every cursor, over generated histories", arguments: 1...24)
    func law(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }
        let env = ManualEnvironment(seed: seed)
        let full = try Archive.inMemory(site: .headquarters, role: .hq, environment: env.environment)
        let compacted = try Archive.inMemory(site: .headquarters, role: .hq, environment: env.environment)
        let branches = try ["SH01", "BJ01", "GZ01"].map { try Archive.inMemory(site: SiteID($0), role: .branch, environment: env.environment) }
        var held: [SiteID: [RecordKey]] = [:]
        var complaints: [SiteID: [RecordKey]] = [:]
        /// Observer pairs: one copied from each headquarters at the same cursor.
        var observers: [(cursor: UInt64, fromFull: Archive, fromCompacted: Archive)] = []
        var passes = LogCompaction()
        let names = ["上海物流有限公司", "北京快运", "广州货代", "李娜"]
        for step in 0..<160 {
            env.advance(milliseconds: 1 + rng.next() % 3_000)
            let b = branches[Int(rng.next() % UInt64(branches.count))]
            let mine = held[b.site] ?? []
            do {
                switch rng.next() % 10 {
                case 0, 1:
                    held[b.site, default: []].append(try b.addCustomer(["name": .text(names[Int(rng.next() % 4)]), "phone": .text("13800000001")]).id)
                case 2, 3, 4:
                    guard let k = mine.randomElement(using: &rng) else { break }
                    var fields: [String: Value] = ["notes": .text("note \(rng.next() % 50)")]
                    if chance(50) { fields["region"] = .text(["上海", "北京", "广州"][Int(rng.next() % 3)]) }
                    if chance(50) { fields["revenue_fen"] = .integer(Int64(rng.next() % 1_000_000)) }
                    if chance(40) { fields["name"] = .text(names[Int(rng.next() % 4)] + " \(step)") }
                    if chance(10) { fields["home_branch"] = .text(["SH01", "BJ01", "GZ01"][Int(rng.next() % 3)]) }
                    _ = try b.updateCustomer(k.description, fields)
                case 5:
                    guard let k = mine.randomElement(using: &rng) else { break }
                    if chance(50) { try b.deleteCustomer(k.description) } else { try b.restoreCustomer(k.description) }
                    if chance(10) { _ = try b.eraseCustomer(k.description) }
                case 6:
                    guard let k = mine.randomElement(using: &rng) else { break }
                    try b.addContact(customer: k.description, kind: .call, satisfaction: 3, summary: "来电 \(step)")
                    complaints[b.site, default: []].append(
                        try b.openComplaint(customer: k.description, category: .late, waybill: "WB\(step)", description: "迟到").record.id)
                case 7:
                    guard let c = (complaints[b.site] ?? []).randomElement(using: &rng) else { break }
                    _ = try b.advanceComplaint(c.description)
                default:
                    // The branch pushes to both headquarters and pulls its scope from the full one.
                    let set = try b.exportChanges(after: try full.cursor(for: b.site).receivedThrough, origin: b.site)
                    try full.admit(set, from: b.site)
                    try compacted.admit(set, from: b.site)
                    try b.acknowledgeSent(to: .headquarters, through: try full.cursor(for: b.site).receivedThrough)
                    let (pulled, moves) = try full.exportChanges(for: b.site, after: try b.cursor(for: .headquarters).receivedThrough)
                    try b.admit(pulled, from: .headquarters, moves: moves)
                    held[b.site] = try b.customers(limit: 10_000).map(\.id)
                }
            } catch let e as ArchiveError where [.notFound, .invalidState, .refused, .invalidInput].contains(e.code) {}
            if chance(12) {
                let pass = try compacted.compactHeadquartersLog(chunk: Int(1 + rng.next() % 40))
                passes.writesDropped += pass.writesDropped
                passes.changesDropped += pass.changesDropped
                passes.rowsPacked += pass.rowsPacked
            }
            if chance(8) {
                // An observer at this cursor of each headquarters' log.
                let cursor = try full.lastSequence()
                #expect(try compacted.lastSequence() == cursor)
                let index = observers.count
                let a = try Archive.inMemory(site: SiteID("OB\(index)"), role: .branch, environment: env.environment)
                let c = try Archive.inMemory(site: SiteID("OB\(index)"), role: .branch, environment: env.environment)
                try a.admit(try full.exportChanges(after: 0), from: .headquarters)
                try c.admit(try compacted.exportChanges(after: 0), from: .headquarters)
                observers.append((cursor, a, c))
            }
        }
        let pass = try compacted.compactHeadquartersLog()
        passes.writesDropped += pass.writesDropped
        let truth = try full.canonicalDump()
        #expect(try compacted.canonicalDump() == truth, "seed \(seed): the two headquarters differ before the observers resume")
        for (i, o) in observers.enumerated() {
            try o.fromFull.admit(try full.exportChanges(after: o.cursor), from: .headquarters)
            try o.fromCompacted.admit(try compacted.exportChanges(after: o.cursor), from: .headquarters)
            #expect(try o.fromFull.canonicalDump() == truth, "seed \(seed): observer \(i) replaying the full log differs from HQ")
            #expect(try o.fromCompacted.canonicalDump() == truth, "seed \(seed): observer \(i) resuming from cursor \(o.cursor) across compaction differs")
        }
        // And from the very start: a new branch replaying the compacted log ends at HQ's state.
        let fresh = try Archive.inMemory(site: SiteID("NEW1"), role: .branch, environment: env.environment)
        try fresh.admit(try compacted.exportChanges(after: 0), from: .headquarters)
        #expect(try fresh.canonicalDump() == truth, "seed \(seed): a replay of the compacted log from 0 differs")
        // The bound: at most one write per live field, whatever the overwrites.
        let stats = try compacted.logStatistics()
        #expect(stats.fieldWrites <= stats.liveFields, "seed \(seed): \(stats)")
        #expect(passes.writesDropped > 0, "seed \(seed): nothing was ever superseded, so the test proved nothing")
        #expect(passes.rowsPacked + pass.rowsPacked > 0, "seed \(seed): no survivors were ever packed, so the test proved nothing of packing")
    }
}

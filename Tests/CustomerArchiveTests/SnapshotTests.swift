import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// A new branch bootstraps from a snapshot of its scope, then follows the log after the cut.
@Suite("Snapshot bootstrap")
struct SnapshotTests {
    /// Fetches and applies parts until the bootstrap is done; `interrupt` drops a part now
    /// and then, as a broken line would, and `between` runs after each applied part.
    @discardableResult
    static func bootstrap(
        _ branch: Archive, from hq: Archive, maxChanges: Int, interrupt: (Int) -> Bool = { _ in false }, between: (Int) throws -> Void = { _ in }
    ) throws -> Int {
        var parts = 0
        while try branch.needsSnapshot() {
            let part = try hq.snapshot(for: branch.site, after: try branch.snapshotResumePoint(), maxChanges: maxChanges)
            parts += 1
            if interrupt(parts) { continue }
            try branch.applySnapshot(part, acknowledgedBeforeRead: .max)
            try between(parts)
        }
        return parts
    }

    @Test("parts resume after a broken line, HQ moving on between them, and the branch then follows the log to HQ's scope")
    func resumableAndConvergent() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let wh01 = try sites.make("WH01")
        var mine: [RecordKey] = []
        for i in 0..<40 {
            let c = try hq.addCustomer(["name": .text("武汉物流\(i)"), "phone": .text("1380000\(1000 + i)"), "home_branch": .text(i % 4 == 0 ? "SH01" : "WH01")])
            if i % 4 != 0 { mine.append(c.id) }
            try hq.addContact(customer: c.id.description, kind: .call, satisfaction: 4, summary: "来电 \(i)")
            if i % 5 == 0 { _ = try hq.openComplaint(customer: c.id.description, category: .late, waybill: "WB\(i)", description: "迟到") }
            // History the snapshot does not replay: ten edits of the notes.
            for n in 0..<10 { _ = try hq.updateCustomer(c.id.description, ["notes": .text("第\(n)次")]) }
        }
        try hq.assign(.region("深圳"), to: wh01.site)
        try hq.setSLA(SLARule(category: .lost, severity: .high, acknowledgeMinutes: 30, resolveMinutes: 600))
        let logEnd = try hq.lastSequence()
        #expect(try wh01.needsSnapshot())

        var changed: RecordKey?
        let parts = try Self.bootstrap(wh01, from: hq, maxChanges: 12, interrupt: { $0 == 2 || $0 == 5 }) { part in
            // Local writes wait while the bootstrap is under way, with a clear reason.
            if part == 1 {
                #expect(throws: ArchiveError.self) { try wh01.addCustomer(["name": .text("新客户")]) }
                let progress = try #require(try wh01.snapshotProgress())
                #expect(progress.total == mine.count && progress.sent > 0 && progress.sent < progress.total)
            }
            // HQ moves on meanwhile: an edit to a customer already sent, a customer moved out
            // and one moved in ahead of the resume point.
            if part == 3 {
                changed = try wh01.customers(limit: 1).first?.id
                _ = try hq.updateCustomer(changed!.description, ["notes": .text("快照之后")])
                _ = try hq.updateCustomer(mine.last!.description, ["home_branch": .text("SH01")])
                _ = try hq.addCustomer(["name": .text("深圳货代"), "region": .text("深圳")])
            }
        }
        #expect(parts > 4, "the scope came in several parts")
        #expect(try !wh01.needsSnapshot())
        #expect(try wh01.snapshotProgress() == nil)
        // The cursor is the first part's cut; the pull after it brings what happened since.
        #expect(try wh01.cursor(for: hq.site).receivedThrough == logEnd)
        #expect(try wh01.customer(changed!.description)["notes"] != .text("快照之后"))
        try ScopeMoveTests.pull(hq, to: wh01)
        #expect(try wh01.customer(changed!.description)["notes"] == .text("快照之后"))
        #expect(try wh01.canonicalDump() == hq.canonicalDump(scope: wh01.site))
        #expect(try wh01.customers(limit: 100).count == mine.count)  // one left, one came in
        // Nothing of the history was logged at the branch, and it writes again.
        #expect(try wh01.exportChanges().changes.isEmpty)
        _ = try wh01.addCustomer(["name": .text("新客户")])
    }

    @Test("a part that does not match its checksum once stored, or comes out of order, writes nothing")
    func refusedParts() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let wh01 = try sites.make("WH01")
        for i in 0..<6 { _ = try hq.addCustomer(["name": .text("客户\(i)"), "home_branch": .text("WH01")]) }
        let first = try hq.snapshot(for: wh01.site, after: nil, maxChanges: 3)
        // A value changed on the way (a wrong HQ, a bug): the digest no longer describes it.
        var tampered = first
        if case .fields(var writes) = tampered.set.changes[tampered.set.changes.count - 1].body {
            writes[0].value = .text("篡改")
            tampered.set.changes[tampered.set.changes.count - 1].body = .fields(writes)
        }
        let before = try wh01.canonicalDump()
        #expect(throws: ArchiveError.self) { try wh01.applySnapshot(tampered, acknowledgedBeforeRead: .max) }
        #expect(try wh01.canonicalDump() == before)
        #expect(try wh01.snapshotProgress() == nil)
        // A later part before the first: refused, nothing kept.
        let second = try hq.snapshot(for: wh01.site, after: first.customers.last, maxChanges: 3)
        #expect(throws: ArchiveError.self) { try wh01.applySnapshot(second, acknowledgedBeforeRead: .max) }
        #expect(try wh01.canonicalDump() == before)
        try wh01.applySnapshot(first, acknowledgedBeforeRead: .max)
        #expect(throws: ArchiveError.self) { try wh01.applySnapshot(first, acknowledgedBeforeRead: .max) }
        try wh01.applySnapshot(second, acknowledgedBeforeRead: .max)
        try Self.bootstrap(wh01, from: hq, maxChanges: 3)
        #expect(try wh01.canonicalDump() == hq.canonicalDump(scope: wh01.site))
    }

    @Test("a branch that wrote before its first contact keeps what HQ has not seen, on top of HQ's state")
    func ownWritesFirst() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let wh02 = try sites.make("WH02")
        let own = try wh02.addCustomer(["name": .text("开业第一位客户"), "phone": .text("13900000001")])
        let gone = try wh02.addCustomer(["name": .text("转走的客户")])
        try ScopeMoveTests.push(wh02, to: hq)
        // HQ moves one away and edits the other; the branch edits it too, not pushed yet.
        try hq.setServedDays(0)
        _ = try hq.updateCustomer(gone.id.description, ["home_branch": .text("SH01")])
        try hq.expireScope()
        _ = try hq.updateCustomer(own.id.description, ["region": .text("武汉")])
        _ = try wh02.updateCustomer(own.id.description, ["notes": .text("未推送")])
        #expect(try wh02.needsSnapshot())
        let part = try hq.snapshot(for: wh02.site, after: nil)
        #expect(part.customers == [own.id] && part.done)
        // Reset to HQ's state (the digest matches it), then its own edit on top; the
        // customer moved away is evicted.
        try wh02.applySnapshot(part, acknowledgedBeforeRead: .max)
        #expect(try wh02.customer(own.id.description)["region"] == .text("武汉"))
        #expect(try wh02.customer(own.id.description)["notes"] == .text("未推送"))
        #expect(throws: ArchiveError.self) { try wh02.customer(gone.id.description) }
        try ScopeMoveTests.push(wh02, to: hq)
        try ScopeMoveTests.pull(hq, to: wh02)
        #expect(try hq.customer(own.id.description)["notes"] == .text("未推送"))
        #expect(try wh02.canonicalDump() == hq.canonicalDump(scope: wh02.site))
    }

    @Test("a write HQ refused before the branch's first pull is journaled and reset by the snapshot, even when no part names the customer")
    func refusalsBeforeFirstContact() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let cd01 = try sites.make("CD01")
        try hq.setServedDays(0)
        let c = try cd01.addCustomer(["name": .text("成都仓储"), "phone": .text("13900000002")])
        try ScopeMoveTests.push(cd01, to: hq)
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("WH01")])
        // The old home corrects the name, not knowing: HQ refuses it (NOT_HOME), and the
        // acknowledgement is lost; a contact it records next waits to be pushed.
        sites.environment.advance(milliseconds: 10)
        _ = try cd01.updateCustomer(c.id.description, ["name": .text("成都仓储 更正")])
        let refused = try hq.admit(try cd01.exportChanges(after: try hq.cursor(for: cd01.site).receivedThrough, origin: cd01.site), from: cd01.site)
        #expect(refused.refusals.map(\.kind) == [.notHome])
        try hq.expireScope()
        try cd01.addContact(customer: c.id.description, kind: .call, satisfaction: 3, summary: "回访")
        // The handshake acknowledges what HQ holds; the snapshot names nothing of CD01's.
        try cd01.acknowledgeSent(to: .headquarters, through: try hq.cursor(for: cd01.site).receivedThrough)
        let part = try hq.snapshot(for: cd01.site, after: nil)
        #expect(part.customers.isEmpty && part.refused.count == 1)
        try cd01.applySnapshot(part, acknowledgedBeforeRead: .max)
        #expect(try cd01.refusedChanges().contains { $0.reason == "NOT_HOME" })
        #expect(try cd01.countOwnChanges(after: try cd01.cursor(for: .headquarters).sentThrough) == 1, "the contact HQ has not seen waits")
        // Pushed, the contact makes CD01 serve the customer again: it arrives as HQ has it.
        try ScopeMoveTests.push(cd01, to: hq)
        try ScopeMoveTests.pull(hq, to: cd01)
        #expect(try cd01.customer(c.id.description)["name"] == .text("成都仓储"))
        #expect(try cd01.contacts(customer: c.id.description).count == 1)
        #expect(try cd01.canonicalDump() == hq.canonicalDump(scope: cd01.site))
    }
}

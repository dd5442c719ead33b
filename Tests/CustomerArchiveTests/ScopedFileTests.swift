import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// A branch fed by files only: headquarters' file for it carries its scope's moves, refusals
/// and acknowledgement (CHANGESET.md §5.3), so it evicts, returns refused writes to
/// headquarters' state and converges as a branch on the line does.
@Suite("Scoped change-set files")
struct ScopedFileTests {
    /// A branch's own changes to headquarters as a file: through the codec, judged at the door.
    static func send(_ branch: Archive, to hq: Archive) throws {
        let after = try hq.cursor(for: branch.site).receivedThrough
        let file = try ChangeSetCodec.decode(try ChangeSetCodec.encode(try branch.exportChanges(after: after, origin: branch.site)))
        try hq.admitFile(file, from: branch.site)
    }

    /// Headquarters' file for a branch, exported from `after` (default: the branch's cursor).
    static func file(_ hq: Archive, for branch: Archive, after: UInt64? = nil) throws -> ChangeSet {
        let from = try after ?? branch.cursor(for: hq.site).receivedThrough
        return try ChangeSetCodec.decode(try ChangeSetCodec.encode(try hq.exportFile(for: branch.site, after: from)))
    }

    @Test("a file-fed branch evicts a re-homed customer once headquarters holds its edit, and leaves none of its bytes")
    func evictionByFile() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        try hq.setServedDays(0)
        let c = try sh01.addCustomer(["name": .text("离线物流有限公司"), "phone": .text("13800000077")])
        try Self.send(sh01, to: hq)
        let first = try Self.file(hq, for: sh01)
        #expect(first.scope?.recipient == sh01.site)
        try sh01.admitFile(first, from: hq.site)
        #expect(try sh01.cursor(for: hq.site).sentThrough == sh01.lastSequence(), "the file carries what HQ holds of SH01's log")

        // HQ re-homes the customer while SH01, offline, edits it: the file says evict, and
        // SH01 waits, since HQ does not hold the edit yet.
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("BJ01")])
        sites.environment.advance(milliseconds: 1)
        try hq.expireScope()
        _ = try sh01.updateCustomer(c.id.description, ["notes": .text("离线时的备注")])
        let out = try Self.file(hq, for: sh01)
        #expect(out.scope?.evicted == [c.id])
        try sh01.admitFile(out, from: hq.site)
        #expect(try sh01.pendingEvictions() == 1)
        #expect(try sh01.customer(c.id.description).id == c.id)

        // SH01's file reaches HQ; HQ's next file acknowledges it, and the customer goes. The
        // served reason lapses at once here (0 days), so its move back in is withdrawn too.
        try Self.send(sh01, to: hq)
        #expect(try hq.customer(c.id.description)["notes"] == .text("离线时的备注"))
        sites.environment.advance(milliseconds: 1)
        try hq.expireScope()
        try sh01.admitFile(try Self.file(hq, for: sh01), from: hq.site)
        #expect(try sh01.pendingEvictions() == 0)
        #expect(try sh01.customers(limit: 10).isEmpty)
        #expect(try sh01.keysOutsideRecords().isEmpty)
        #expect(try sh01.canonicalDump() == hq.canonicalDump(scope: sh01.site))
    }

    @Test("a write headquarters refused comes back in its file: journaled, and the branch returns to headquarters' state")
    func refusalByFile() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        let c = try sh01.addCustomer(["name": .text("原名物流"), "phone": .text("13800000078")])
        try Self.send(sh01, to: hq)
        try sh01.admitFile(try Self.file(hq, for: sh01), from: hq.site)
        // HQ re-homes it away, then SH01 (not knowing) renames it: NOT_HOME at HQ's door.
        sites.environment.advance(milliseconds: 10)
        _ = try hq.updateCustomer(c.id.description, ["home_branch": .text("BJ01")])
        sites.environment.advance(milliseconds: 10)
        _ = try sh01.updateCustomer(c.id.description, ["name": .text("新名物流")])
        try Self.send(sh01, to: hq)
        let file = try Self.file(hq, for: sh01)
        #expect(file.scope?.refused.map(\.record) == [c.id])
        try sh01.admitFile(file, from: hq.site)
        #expect(try sh01.refusedChanges().contains { $0.reason == "NOT_HOME" })
        #expect(try sh01.customer(c.id.description)["name"] == .text("原名物流"))
        #expect(try sh01.canonicalDump() == hq.canonicalDump(scope: sh01.site))
    }

    @Test("a file for another branch, headquarters' whole log and a file past the cursor are refused; an older one is skipped; an overlapping one applies")
    func placeAndRecipient() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        let bj01 = try sites.make("BJ01")
        _ = try hq.addCustomer(["name": .text("总部客户"), "phone": .text("13800000079"), "home_branch": .text("SH01")])
        let forSH01 = try Self.file(hq, for: sh01)
        #expect { try bj01.admitFile(forSH01, from: hq.site) } throws: {
            ($0 as? ArchiveError)?.code == .refused && "\($0)".contains("exported by headquarters for SH01")
        }
        #expect { try sh01.admitFile(try hq.exportChanges(after: 0), from: hq.site) } throws: {
            ($0 as? ArchiveError)?.code == .refused && "\($0)".contains("--for SH01")
        }
        try sh01.admitFile(forSH01, from: hq.site)
        let cursor = try sh01.cursor(for: hq.site).receivedThrough
        #expect(cursor == forSH01.through)

        // HQ moves on twice; the second file, exported from the branch's cursor, is ahead
        // until the first is applied.
        _ = try hq.addCustomer(["name": .text("第二客户"), "phone": .text("13800000080"), "home_branch": .text("SH01")])
        let second = try Self.file(hq, for: sh01)
        _ = try hq.addCustomer(["name": .text("第三客户"), "phone": .text("13800000081"), "home_branch": .text("SH01")])
        let third = try Self.file(hq, for: sh01, after: second.through)
        #expect { try sh01.admitFile(third, from: hq.site) } throws: { ($0 as? ArchiveError)?.code == .outOfOrder }
        // Applied again, the first file is behind: skipped, nothing written.
        let before = try sh01.canonicalDump()
        #expect(try sh01.admitFile(forSH01, from: hq.site).outOfOrder)
        #expect(try sh01.canonicalDump() == before)
        // A file from 0 overlaps the cursor: it applies, and ends where the pulls would.
        let overlapping = try Self.file(hq, for: sh01, after: 0)
        #expect(Archive.place(after: overlapping.after, through: overlapping.through, cursor: cursor) == .applies)
        #expect(!(try sh01.admitFile(overlapping, from: hq.site)).outOfOrder)
        try sh01.admitFile(third, from: hq.site)
        #expect(try sh01.customers(limit: 10).count == 3)
        #expect(try sh01.canonicalDump() == hq.canonicalDump(scope: sh01.site))
    }
}

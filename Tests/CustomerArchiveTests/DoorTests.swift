import CustomerArchive
import Foundation
import OutpostTesting
import Replication
import Testing

/// Headquarters' door (`Archive.admit`): what a branch's set may do, judged alike for the line
/// and for files.
@Suite("The door")
struct DoorTests {
    static let seeds: [UInt64] = {
        // Fixed seeds by default, as the simulation runs; set a start to explore new ones.
        let start = ProcessInfo.processInfo.environment["OUTPOST_DOOR_SEED"].flatMap { UInt64($0) } ?? 1
        return (0..<20).map { start + $0 }
    }()

    @Test("whatever a branch sends, headquarters stores only values inside their domains", arguments: seeds)
    func onlyValuesInsideTheirDomainsPassTheDoor(seed: UInt64) throws {
        print("door: seed \(seed) (replay with OUTPOST_DOOR_SEED=\(seed))")
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try SiteID("SH01")
        let set = HostileChanges.changeSet(seed: seed, producer: sh01, origins: [sh01], startMilliseconds: sites.environment.now - 100_000)
        let report = try hq.admit(set, from: sh01)
        let invalid = report.refusals.filter { $0.kind == .invalidValue }
        #expect(!invalid.isEmpty, "seed \(seed): a hostile set always holds some value outside its domain")
        for r in invalid {
            // The reason names table, column and record, and never a text value.
            #expect(r.message.contains("of record \(r.record)"), "seed \(seed): \(r.message)")
            #expect(!r.message.contains("\u{1B}") && !r.message.contains("长长"), "seed \(seed): \(r.message)")
        }
        // Every value that reached HQ's log (what it stored and will relay) is inside its domain.
        for change in try hq.exportChanges().changes {
            let table = try #require(Schema.table(change.table))
            switch change.body {
            case .fields(let writes):
                for w in writes { #expect(table.domainProblem(w.value, column: w.column, record: change.key) == nil, "seed \(seed)") }
            case .append(let values):
                for v in values { #expect(table.domainProblem(v.value, column: v.column, record: change.key) == nil, "seed \(seed)") }
            case .existence, .erase:
                break
            }
        }
        // A branch stores what headquarters relays as it is: its judgement stands.
        let branch = try sites.make("BJ01")
        try branch.admit(try hq.exportChanges(), from: .headquarters)
        #expect(try branch.canonicalDump() == (try hq.canonicalDump()), "seed \(seed)")
    }

    @Test("a set from the wrong site is refused whole, and nothing is stored")
    func setsFromTheWrongSiteAreRefused() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let bj01 = try sites.make("BJ01")
        let sh01 = try sites.make("SH01")
        _ = try sh01.addCustomer(["name": .text("客户")])
        let own = try sh01.exportChanges()
        let before = try hq.canonicalDump()
        func refusal(_ body: () throws -> Void) -> ArchiveError.Code? {
            do { try body() } catch let error as ArchiveError { return error.code } catch { return nil }
            return nil
        }
        // Signed or connected as BJ01, but produced by SH01.
        #expect(refusal { try hq.admit(own, from: bj01.site) } == .forgedOrigin)
        // Produced by SH01, holding a settings change that claims HQ's origin (the file that
        // once raised HQ's approval threshold).
        var forged = own
        let stamp = Stamp(time: Timestamp(milliseconds: sites.environment.now, counter: 9), site: .headquarters)
        forged.changes.append(
            Change(
                table: Schema.settings.id, key: Schema.settingsKey, stamp: stamp,
                body: .fields([FieldWrite(column: 0, value: .integer(99_999_999))])))
        #expect(refusal { try hq.admit(forged, from: sh01.site) } == .forgedOrigin)
        // Over the line's limit.
        #expect(refusal { try hq.admit(own, from: sh01.site, maximumChanges: 0) } == .tooLarge)
        #expect(try hq.canonicalDump() == before)
        // Branches take sets from headquarters only: never from each other.
        let bjBefore = try bj01.canonicalDump()
        #expect(refusal { try bj01.admit(own, from: sh01.site) } == .forgedOrigin)
        #expect(try bj01.canonicalDump() == bjBefore)
        // The genuine set passes.
        #expect(try hq.admit(own, from: sh01.site).applied > 0)
        // A file is judged like the line: its own changes' clocks are checked for drift.
        sites.environment.advance(milliseconds: 3_600_000)
        _ = try sh01.addCustomer(["name": .text("未来")])
        sites.environment.now -= 3_600_000
        let ahead = try sh01.exportChanges(after: own.through)
        #expect(try hq.admit(ahead, from: sh01.site).quarantined == ahead.changes.count)
    }

    @Test("a branch's set moves its cursor at headquarters only as far as its log can reach")
    func cursorSanity() throws {
        let sites = try Sites()
        let hq = try sites.make("HQ", role: .hq)
        let sh01 = try sites.make("SH01")
        _ = try sh01.addCustomer(["name": .text("客户")])
        var set = try sh01.exportChanges()
        // An empty set never moves it, however far it claims to reach.
        let empty = ChangeSet(producer: sh01.site, schemaVersion: Schema.version, after: 0, through: UInt64(Int64.max), changes: [])
        #expect(try hq.admit(empty, from: sh01.site).cursorAdvanced == false)
        #expect(try hq.cursor(for: sh01.site).receivedThrough == 0)
        // Nor does a set claiming past the next epoch (or past what SQLite can store).
        for through in [UInt64(Int64.max), UInt64.max, 2 << Archive.epochShift] {
            set.through = through
            #expect(try hq.admit(set, from: sh01.site).cursorAdvanced == false, "through \(through)")
            #expect(try hq.cursor(for: sh01.site).receivedThrough == 0, "through \(through)")
        }
        // A restore's new epoch is within reach.
        set.through = (1 << Archive.epochShift) + 5
        #expect(try hq.admit(set, from: sh01.site).cursorAdvanced)
        #expect(try hq.cursor(for: sh01.site).receivedThrough == (1 << Archive.epochShift) + 5)
    }
}

@Suite("Protocol documents")
struct ProtocolDocumentTests {
    /// protocols/CHANGESET.md §10.3 is the spec other clients judge values by: it must be the
    /// schema's own domains, column by column.
    @Test("CHANGESET.md lists every column's domain exactly as the schema declares it")
    func domainTableMatchesTheSchema() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("protocols/CHANGESET.md"), encoding: .utf8)
        #expect(text.contains(Schema.domainsMarkdown), "regenerate §10.3 from Schema.domainsMarkdown:\n\(Schema.domainsMarkdown)")
    }
}

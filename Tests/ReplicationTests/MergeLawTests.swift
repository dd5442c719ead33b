import OutpostTesting
import Replication
import Testing

/// Generates random changes to one record over a few sites, columns and clock readings, so
/// that ties, equal values, erasures and deletes all occur often.
struct ChangeGenerator {
    var rng: SplitMix64
    let rules = TableRules(id: 1, kind: .registers, columnCount: 4, personalColumns: [1])
    let sites = ["HQ", "BJ01", "SH01"].map { SiteID(unchecked: $0) }
    let key = RecordKey(high: 1, low: 2)

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func value() -> Value {
        switch rng.next() % 4 {
        case 0: .null
        case 1: .integer(Int64(rng.next() % 5))
        case 2: .text(["a", "b", "上海"][Int(rng.next() % 3)])
        default: .blob([UInt8(rng.next() % 3)])
        }
    }

    mutating func stamp() -> Stamp {
        Stamp(time: Timestamp(milliseconds: 1 + rng.next() % 6, counter: UInt16(rng.next() % 2)), site: sites[Int(rng.next() % 3)])
    }

    mutating func change() -> Change {
        let stamp = stamp()
        let body: Change.Body
        switch rng.next() % 10 {
        case 0: body = .erase
        case 1, 2: body = .existence(causalLength: 1 + rng.next() % 4)
        default:
            var writes: [FieldWrite] = []
            for column in 0..<4 where rng.next() % 2 == 0 {
                writes.append(FieldWrite(column: column, value: value(), base: rng.next() % 3 == 0 ? self.stamp() : nil))
            }
            body = .fields(writes)
        }
        return Change(table: 1, key: key, stamp: stamp, body: body)
    }

    /// Distinct stamps must carry one value: a stamp names one write. Re-stamp duplicates.
    mutating func changes(_ n: Int) -> [Change] {
        var seen = Set<Stamp>()
        var out: [Change] = []
        while out.count < n {
            let c = change()
            if seen.insert(c.stamp).inserted { out.append(c) }
        }
        return out
    }
}

@Suite("Merge laws")
struct MergeLawTests {
    static let seeds: [UInt64] = Array(1...500)

    func apply(_ changes: [Change], rules: TableRules) -> RecordState {
        var s = RecordState(columnCount: rules.columnCount)
        for c in changes { _ = s.merge(c, rules: rules) }
        return s
    }

    @Test("merging is idempotent: applying a change twice changes nothing", arguments: seeds)
    func idempotent(seed: UInt64) {
        var g = ChangeGenerator(seed: seed)
        let changes = g.changes(8)
        let once = apply(changes, rules: g.rules)
        let twice = apply(changes + changes, rules: g.rules)
        #expect(once == twice, "seed \(seed)")
        var again = once
        for c in changes { #expect(again.merge(c, rules: g.rules).applied == nil, "seed \(seed): re-applied change took effect") }
    }

    @Test("merging commutes: any order of the same changes gives the same state", arguments: seeds)
    func commutative(seed: UInt64) {
        var g = ChangeGenerator(seed: seed)
        let changes = g.changes(8)
        let reference = apply(changes, rules: g.rules)
        for _ in 0..<5 {
            let shuffled = changes.shuffled(using: &g.rng)
            #expect(apply(shuffled, rules: g.rules) == reference, "seed \(seed)")
        }
    }

    @Test("joining states is associative, commutative and idempotent", arguments: seeds)
    func joinLaws(seed: UInt64) {
        var g = ChangeGenerator(seed: seed)
        // One stamp names one write, so the three sites' changes come from one stamp-unique pool.
        let pool = g.changes(12)
        let a = apply(Array(pool[0..<4]), rules: g.rules)
        let b = apply(Array(pool[4..<8]), rules: g.rules)
        let c = apply(Array(pool[8..<12]), rules: g.rules)
        let r = g.rules
        #expect(a.joined(with: b, rules: r) == b.joined(with: a, rules: r), "seed \(seed)")
        #expect(a.joined(with: b, rules: r).joined(with: c, rules: r) == a.joined(with: b.joined(with: c, rules: r), rules: r), "seed \(seed)")
        #expect(a.joined(with: a, rules: r) == a, "seed \(seed)")
    }

    @Test("the join of two sites' states equals merging all their changes", arguments: seeds)
    func joinMatchesMerge(seed: UInt64) {
        var g = ChangeGenerator(seed: seed)
        let pool = g.changes(10)
        let left = Array(pool[0..<5])
        let right = Array(pool[5..<10])
        let joined = apply(left, rules: g.rules).joined(with: apply(right, rules: g.rules), rules: g.rules)
        #expect(joined == apply(left + right, rules: g.rules), "seed \(seed)")
    }

    @Test("erasure beats every write to personal columns, before and after it")
    func erasureWins() {
        let rules = TableRules(id: 1, kind: .registers, columnCount: 2, personalColumns: [0])
        let hq = SiteID.headquarters
        let before = Change(
            table: 1, key: RecordKey(high: 0, low: 1), stamp: Stamp(time: Timestamp(milliseconds: 1, counter: 0), site: hq),
            body: .fields([FieldWrite(column: 0, value: .text("x")), FieldWrite(column: 1, value: .integer(5))]))
        let erase = Change(table: 1, key: before.key, stamp: Stamp(time: Timestamp(milliseconds: 2, counter: 0), site: hq), body: .erase)
        let after = Change(
            table: 1, key: before.key, stamp: Stamp(time: Timestamp(milliseconds: 3, counter: 0), site: hq),
            body: .fields([FieldWrite(column: 0, value: .text("y"))]))
        for order in [[before, erase, after], [after, erase, before], [erase, after, before]] {
            var s = RecordState(columnCount: 2)
            for c in order { _ = s.merge(c, rules: rules) }
            #expect(s.erased)
            #expect(s.registers[0] == nil)
            #expect(s.registers[1]?.value == .integer(5))
        }
    }

    @Test("a concurrent losing write is reported; a knowing overwrite and a site's own sequence are not")
    func conflictsReported() {
        let rules = TableRules(id: 1, kind: .registers, columnCount: 1)
        let key = RecordKey(high: 0, low: 1)
        let a = Stamp(time: Timestamp(milliseconds: 10, counter: 0), site: SiteID(unchecked: "BJ01"))
        let b = Stamp(time: Timestamp(milliseconds: 11, counter: 0), site: SiteID(unchecked: "SH01"))
        let wa = Change(table: 1, key: key, stamp: a, body: .fields([FieldWrite(column: 0, value: .text("a"))]))
        let wb = Change(table: 1, key: key, stamp: b, body: .fields([FieldWrite(column: 0, value: .text("b"))]))
        var s = RecordState(columnCount: 1)
        _ = s.merge(wa, rules: rules)
        let outcome = s.merge(wb, rules: rules)
        #expect(outcome.conflicts == [Conflict(column: 0, winner: Register(value: .text("b"), stamp: b), loser: Register(value: .text("a"), stamp: a))])
        var t = RecordState(columnCount: 1)
        _ = t.merge(wb, rules: rules)
        #expect(t.merge(wa, rules: rules).conflicts.count == 1, "the loser arriving late is reported too")
        let knowing = Change(table: 1, key: key, stamp: b, body: .fields([FieldWrite(column: 0, value: .text("b"), base: a)]))
        var u = RecordState(columnCount: 1)
        _ = u.merge(wa, rules: rules)
        #expect(u.merge(knowing, rules: rules).conflicts.isEmpty)
    }

    @Test("causal length decides delete and re-create: the longer history wins")
    func causalLength() {
        let rules = TableRules(id: 1, kind: .registers, columnCount: 1)
        var s = RecordState(columnCount: 1)
        let k = RecordKey(high: 0, low: 1)
        let st = Stamp(time: Timestamp(milliseconds: 1, counter: 0), site: .headquarters)
        _ = s.merge(Change(table: 1, key: k, stamp: st, body: .existence(causalLength: 3)), rules: rules)
        _ = s.merge(Change(table: 1, key: k, stamp: st, body: .existence(causalLength: 2)), rules: rules)
        #expect(s.isAlive && s.causalLength == 3)
    }

    @Test("workflow status is the lattice maximum: a reopening outranks any earlier stage")
    func workflowLattice() {
        let timeline = [WorkflowPosition(epoch: 0, stage: 4), WorkflowPosition(epoch: 1, stage: 0), WorkflowPosition(epoch: 0, stage: 2)]
        #expect(WorkflowPosition.current(of: timeline) == WorkflowPosition(epoch: 1, stage: 0))
        #expect(WorkflowPosition.current(of: timeline.reversed()) == WorkflowPosition(epoch: 1, stage: 0))
    }
}

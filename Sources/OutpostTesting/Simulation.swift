import CustomerArchive
import Foundation
import Replication

/// A deterministic multi-replica simulation: one HQ and several branches, each a real
/// ``Archive`` (SQLite in memory), driven by a seeded random schedule of local writes and
/// faulty exchanges, then a final full exchange and the convergence checks.
///
/// Everything random comes from the seed, so a failing seed replays exactly:
/// `OUTPOST_SIM_SEED=<seed> swift test --filter SimulationTests`; `OUTPOST_SIM_DUMPS=DIR` writes
/// the dumps of a branch that differs from HQ's dump of its scope into DIR.
public struct Simulation {
    public struct Failure: Error, CustomStringConvertible {
        public var seed: UInt64
        public var problem: String
        public var description: String {
            "simulation seed \(seed) failed: \(problem)\n  replay: OUTPOST_SIM_SEED=\(seed) swift test --filter SimulationTests"
        }
    }

    /// What one run did, for the test's summary.
    public struct Summary: Sendable {
        public var operations = 0
        public var exchanges = 0
        public var droppedBatches = 0
        public var crashes = 0
        public var conflicts = 0
        public var erasures = 0
        public var writes = 0
        public var merges = 0
        public var restores = 0
        /// Hostile writes a branch logged (a value outside its domain, a column from a newer
        /// schema) and what HQ's door did with them.
        public var hostileWrites = 0
        public var refusedAtDoor = 0
        /// Honest writes HQ refused for write authority (a branch that had not heard yet that
        /// a customer was re-homed away), each answered in the branch's stream.
        public var refusedNotHome = 0
        /// Assignments HQ gave or withdrew.
        public var assignments = 0
        /// Customers clerks fetched from HQ.
        public var fetches = 0
        public var setAside = 0
        /// Changes branches dropped from their logs once HQ had acknowledged them.
        public var compactedChanges = 0
        /// Snapshot parts branches applied at their first contact, and parts lost on the line.
        public var snapshotParts = 0
        public var snapshotPartsLost = 0
        /// Pushes that headquarters acknowledged between reading a snapshot part and the
        /// branch applying it.
        public var pushesDuringBootstrap = 0
        /// Sets HQ sent a branch as scoped files (`changes export --for SITE`), those exported
        /// from a cursor older than the branch's, and those wholly behind it (skipped).
        public var filesApplied = 0
        public var filesOverlapping = 0
        public var filesSkipped = 0
        /// Superseded writes and scope moves HQ dropped from its log (no retention horizon).
        public var hqCompactedWrites = 0
        public var hqCompactedMoves = 0
        /// Rows HQ's compaction packed one origin's surviving writes of a record into.
        public var hqPackedRows = 0
        /// Customers whose home branch changed, scope reasons HQ retired, and customers
        /// branches evicted (scope).
        public var rehomings = 0
        public var lapsedReasons = 0
        public var evictions = 0
        /// Evictions that waited for HQ to acknowledge the branch's own changes first.
        public var evictionsWaited = 0
        public init() {}

        /// Adds another run's counts (every property is a count).
        public static func += (lhs: inout Summary, rhs: Summary) {
            for path in Self.counts { lhs[keyPath: path] += rhs[keyPath: path] }
        }

        static var counts: [WritableKeyPath<Summary, Int>] {
            [
                \.operations, \.exchanges, \.droppedBatches, \.crashes, \.conflicts, \.erasures, \.writes, \.merges, \.restores,
                \.hostileWrites, \.refusedAtDoor, \.refusedNotHome, \.assignments, \.fetches, \.setAside, \.compactedChanges,
                \.snapshotParts, \.snapshotPartsLost, \.pushesDuringBootstrap, \.filesApplied, \.filesOverlapping, \.filesSkipped,
                \.hqCompactedWrites, \.hqCompactedMoves, \.hqPackedRows, \.rehomings, \.lapsedReasons, \.evictions, \.evictionsWaited,
            ]
        }
    }

    public let seed: UInt64
    public var steps: Int
    public var branches: [String]

    /// The last branch joins late: until a random step it is a site HQ may home and assign
    /// customers to but that has no machine yet; then it bootstraps from a snapshot.
    public init(seed: UInt64, steps: Int = 60, branches: [String] = ["BJ01", "SH01", "GZ01", "CD01", "WH01"]) {
        self.seed = seed
        self.steps = steps
        self.branches = branches
    }

    final class Replica {
        let site: SiteID
        /// Replaced when the site is restored from a backup.
        var archive: Archive
        let environment: ManualEnvironment
        var seenSequence: UInt64 = 0
        /// The last backup taken here (a file), if any.
        var backup: String?
        init(site: SiteID, archive: Archive, environment: ManualEnvironment) {
            self.site = site
            self.archive = archive
            self.environment = environment
        }
    }

    struct Write: Hashable {
        var table: UInt8
        var key: RecordKey
        var column: Int
        var value: Value
        var stamp: Stamp
        var base: Stamp?
    }

    public func run() throws(Failure) -> Summary {
        do {
            return try runUnchecked()
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(seed: seed, problem: "unexpected error: \(error)")
        }
    }

    private func runUnchecked() throws -> Summary {
        var rng = SplitMix64(seed: seed)
        var summary = Summary()
        let start: UInt64 = 1_767_225_600_000 + (rng.next() % 1_000_000)
        var replicas: [Replica] = []
        for (i, code) in (["HQ"] + branches).enumerated() {
            let site = try SiteID(code)
            // Each site's wall clock is a little off (within the drift limit).
            let env = ManualEnvironment(now: start + rng.next() % 5_000, seed: seed &* 31 &+ UInt64(i))
            let archive = try Archive.inMemory(site: site, role: i == 0 ? .hq : .branch, environment: env.environment)
            replicas.append(Replica(site: site, archive: archive, environment: env))
        }
        let hq = replicas[0]
        var customers: [RecordKey] = []
        var complaints: [RecordKey] = []
        var claims: [RecordKey] = []
        var erased: Set<RecordKey> = []
        var writes: [Write] = []
        var paymentsTotal: Int64 = 0

        // Own changes already counted: a restored site gets its own changes back from HQ and
        // logs them again; they are not new writes.
        var counted = Set<String>()
        /// Records of writes a branch logged that HQ must refuse: refusals of them are expected,
        /// and they are not writes that must survive.
        var hostile: Set<RecordKey> = []
        /// Honest writes HQ refused for write authority ("record/clock/site"): journaled at
        /// their origin, which returned to HQ's state; not writes that must survive.
        var refusedWrites: Set<String> = []
        /// Each customer's erasures, by stamp, as their sites logged them (HQ may refuse one).
        var erasures: [RecordKey: [Stamp]] = [:]
        func collect(_ r: Replica) throws {
            let set = try r.archive.exportChanges(after: r.seenSequence)
            r.seenSequence = set.through
            for c in set.changes
            where c.origin == r.site && !hostile.contains(c.key) && counted.insert("\(c.table)/\(c.key)/\(c.stamp)/\(c.body.kind)").inserted {
                if case .fields(let fs) = c.body {
                    for f in fs { writes.append(Write(table: c.table, key: c.key, column: f.column, value: f.value, stamp: c.stamp, base: f.base)) }
                }
                if case .erase = c.body { erasures[c.key, default: []].append(c.stamp) }
                if case .append(let vs) = c.body, c.table == 8 {
                    paymentsTotal += vs.first { $0.column == 1 }?.value.integerValue ?? 0
                }
            }
        }

        func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[Int(rng.next() % UInt64(items.count))] }
        func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }

        let names = ["上海物流有限公司", "北京快运", "广州货代", "Chen Wei", "李娜", "成都仓储"]
        let regions = ["上海", "北京", "广州", "成都", "深圳"]

        /// Sends `from`'s log to `to` the way a link with faults would. A branch recovering from
        /// a restore gets its own changes from HQ too, as `PullStart.include_own` asks.
        /// A set HQ's door refused as a whole (a branch's write HQ cannot take at all).
        struct RefusedWhole: Error {
            var set: ChangeSet
            var message: String
        }

        /// One exchange as the line makes it. Towards HQ a set refused whole is split and a
        /// single bad write set aside (`PushSplitter`, the branch client's own policy), so the
        /// rest still flows.
        func exchange(from: Replica, to: Replica, faults: Bool) throws {
            summary.exchanges += 1
            var splitter = PushSplitter(limit: 50)
            while true {
                do {
                    try exchangeOnce(from: from, to: to, faults: faults, limit: splitter.limit)
                    return
                } catch let refused as RefusedWhole {
                    if case .setAside = splitter.refused(refused.set) {
                        try from.archive.setAside(refused.set, reason: "MALFORMED", message: refused.message)
                        summary.setAside += 1
                    }
                }
            }
        }

        /// HQ's sets for a branch carried as files (`changes export --for SITE`, `changes
        /// apply`): exported from the branch's cursor or an older one, through the file
        /// format, now and then kept in a drawer and applied later, after newer ones.
        var drawer: [SiteID: ChangeSet] = [:]
        func deliverFile(to branch: Replica) throws {
            let cursor = try branch.archive.cursor(for: hq.site).receivedThrough
            let after = chance(50) ? cursor : rng.next() % (cursor + 1)
            let bytes = try ChangeSetCodec.encode(try hq.archive.exportFile(for: branch.site, after: after))
            var sets = [try ChangeSetCodec.decode(bytes)]
            if chance(30) {
                let kept = drawer.updateValue(sets[0], forKey: branch.site)
                sets = chance(50) ? [] : sets
                if let kept, chance(50) { sets.append(kept) }
            } else if let kept = drawer[branch.site], chance(60) {
                sets.insert(kept, at: chance(50) ? 0 : sets.count)
            }
            for set in sets {
                let holds = try branch.archive.cursor(for: hq.site).receivedThrough
                let place = Archive.place(after: set.after, through: set.through, cursor: holds)
                if case .ahead = place {
                    // Only a file from before a restore of the branch is ahead of its cursor.
                    do {
                        try branch.archive.admitFile(set, from: hq.site)
                        throw Failure(seed: seed, problem: "\(branch.site) applied a file from HQ that starts past its cursor")
                    } catch let e as ArchiveError where e.code == .outOfOrder {
                        continue
                    }
                }
                let report = try branch.archive.admitFile(set, from: hq.site)
                if case .behind = place {
                    guard report.outOfOrder else { throw Failure(seed: seed, problem: "\(branch.site) applied a file behind its cursor") }
                    summary.filesSkipped += 1
                    continue
                }
                summary.filesApplied += 1
                if set.after < holds { summary.filesOverlapping += 1 }
                summary.conflicts += report.conflicts
                if report.outOfOrder || report.quarantined > 0 || !report.refusals.isEmpty {
                    throw Failure(seed: seed, problem: "HQ's file was not taken whole at \(branch.site): \(report)")
                }
            }
        }

        func exchangeOnce(from: Replica, to: Replica, faults: Bool, limit maximum: Int) throws {
            // A branch with no line now and then: HQ's sets reach it as files, without a
            // handshake; a bootstrap under way finishes on the line first.
            if from === hq && faults && chance(15), try to.archive.snapshotProgress() == nil {
                try deliverFile(to: to)
                return
            }
            // The handshake first, as the client makes it: a branch restored from a backup older
            // than an earlier restore moves what it wrote since past HQ's cursor.
            let branch = from === hq ? to : from
            let holds = try hq.archive.cursor(for: branch.site).receivedThrough
            try branch.archive.confirmEpoch(headquartersHolds: holds)
            if holds > (try branch.archive.lastSequence()) {
                throw Failure(seed: seed, problem: "HQ holds \(branch.site)'s log past its end after a restore: the branch client would stop")
            }
            // What HQ holds is acknowledged, as the client takes it from the handshake.
            try branch.archive.acknowledgeSent(to: hq.site, through: holds)
            // A new branch first bootstraps from a snapshot of its scope, part by part, the
            // line breaking between parts now and then; then it follows the log from the cut.
            if from === hq, try to.archive.needsSnapshot() {
                while try to.archive.needsSnapshot() {
                    let acknowledged = try to.archive.acknowledgedByHeadquarters()
                    let part = try hq.archive.snapshot(
                        for: to.site, after: try to.archive.snapshotResumePoint(), maxChanges: faults ? Int(1 + rng.next() % 20) : 5_000)
                    if faults && chance(15) {
                        summary.snapshotPartsLost += 1
                        return
                    }
                    // The branch's push runs beside its bootstrap on the line: headquarters may
                    // take and acknowledge what the branch wrote after reading the part.
                    if faults && chance(10) {
                        try exchange(from: to, to: hq, faults: false)
                        summary.pushesDuringBootstrap += 1
                    }
                    // A part that does not match its checksum once stored is a bug: what the
                    // branch wrote before its first contact is reset and merged again on top.
                    try to.archive.applySnapshot(part, acknowledgedBeforeRead: acknowledged)
                    summary.snapshotParts += 1
                    if faults && chance(25) { return }
                }
            }
            let cursor = try to.archive.cursor(for: from.site).receivedThrough
            let includeOwn = try from === hq && to.archive.recoveringSince() != nil
            // A branch sends HQ its own changes only, as the line does; HQ judges them at its
            // door (the same function for the line and for files).
            let toHQ = to === hq
            var after = cursor
            let acknowledged = try to.archive.acknowledgedByHeadquarters()
            var batches: [(set: ChangeSet, moves: ScopeMoves)] = []
            while true {
                let limit = min(maximum, faults ? Int(1 + rng.next() % 8) : 50)
                // HQ sends a branch its scope with the scope's moves, as the line does.
                let (set, moves) =
                    toHQ
                    ? (try from.archive.exportChanges(after: after, origin: from.site, limit: limit), ScopeMoves())
                    : try from.archive.exportChanges(for: to.site, after: after, includeOwn: includeOwn, limit: limit)
                if set.through == after { break }
                // Through the wire format: encode, decode.
                batches.append((try ChangeSetCodec.decode(try ChangeSetCodec.encode(set)), moves))
                after = set.through
            }
            if faults {
                // Out of order or again: a set that does not continue from the cursor merges its
                // changes but leaves its moves and the cursor alone.
                if chance(20) { batches.shuffle(using: &rng) }
                if chance(20), let b = pick(batches) { batches.append(b) }
            }
            var crashed = false
            for (batch, moves) in batches {
                if faults && chance(10) { summary.droppedBatches += 1; continue }
                if faults && chance(5) {  // the receiver dies here
                    summary.crashes += 1
                    crashed = true
                    break
                }
                let report: ApplyReport
                do {
                    let before = toHQ ? 0 : try to.archive.pendingEvictions()
                    report = try to.archive.admit(
                        batch, from: from.site, moves: toHQ ? nil : moves, batchSize: faults ? Int(1 + rng.next() % 6) : 5_000,
                        acknowledgedBeforeRead: toHQ ? .max : acknowledged)
                    if !moves.evicted.isEmpty {
                        let waiting = max(0, try to.archive.pendingEvictions() - before)
                        summary.evictions += max(0, moves.evicted.count - waiting)
                        summary.evictionsWaited += waiting
                    }
                } catch let e as ArchiveError where toHQ && (e.code == .malformedChangeSet || e.code == .tooLarge) {
                    guard batch.changes.contains(where: { hostile.contains($0.key) }) else {
                        throw Failure(seed: seed, problem: "HQ refused an honest set from \(from.site): \(e.message)")
                    }
                    throw RefusedWhole(set: batch, message: e.message)
                } catch let e as ArchiveError where toHQ && e.code == .outOfOrder {
                    // A set ahead of HQ's cursor (reordered on the way): the stream breaks, and
                    // the next exchange sends again from the cursor.
                    crashed = true
                    break
                }
                summary.conflicts += report.conflicts
                summary.refusedAtDoor += report.refusals.count
                // The branch journals what HQ refused in the acknowledgement, as its client does.
                if toHQ {
                    try from.archive.journalRefusals(
                        report.refusals.map { ($0.record.description, $0.kind.rawValue, $0.message, $0.time.rawValue) })
                }
                // A branch that wrote a customer's identifying fields after HQ re-homed it away
                // (by clock), not knowing yet: HQ refuses it, and its stream resets the branch.
                for r in report.refusals where r.kind == .notHome {
                    refusedWrites.insert("\(r.record)/\(r.time.rawValue)/\(r.origin)")
                    summary.refusedNotHome += 1
                }
                if report.quarantined > 0 || report.refusals.contains(where: { !hostile.contains($0.record) && $0.kind != .notHome }) {
                    throw Failure(seed: seed, problem: "an honest change was refused or quarantined at \(to.site): \(report)")
                }
            }
            // HQ's acknowledgement, as the branch client records it from each PushAck: what a
            // branch may compact away.
            if toHQ && !crashed {
                try from.archive.acknowledgeSent(to: hq.site, through: try hq.archive.cursor(for: from.site).receivedThrough)
            }
            // Recovery ends once HQ's log is held to its end, own changes included.
            if includeOwn, try to.archive.cursor(for: hq.site).receivedThrough >= hq.archive.lastSequence() {
                try to.archive.finishRecovery()
            }
        }

        let files = try TemporaryDirectory(prefix: "outpost-sim")
        var backups = 0
        /// A backup of a branch, taken as `outpost backup` takes it.
        func backUp(_ r: Replica) throws {
            backups += 1
            let path = files.file("\(r.site)-\(backups).sqlite")
            _ = try r.archive.backup(to: path)
            r.backup = path
        }
        /// The branch's disk dies after everything it wrote reached HQ; it comes back from its
        /// last backup, as `outpost restore` brings it back: a new epoch, then recovery.
        func restore(_ r: Replica, from backup: String) throws {
            try exchange(from: r, to: hq, faults: false)
            backups += 1
            let path = files.file("\(r.site)-restored-\(backups).sqlite")
            try FileManager.default.copyItem(atPath: backup, toPath: path)
            r.archive = try Archive.open(at: path, environment: r.environment.environment)
            _ = try r.archive.beginEpochAfterRestore()
            summary.restores += 1
            if chance(50) {
                // Back online at once: recovery, then a new customer numbered after every
                // number the branch handed out before its disk died.
                try exchange(from: hq, to: r, faults: false)
                customers.append(try r.archive.addCustomer(["name": .text(pick(names)! + " 恢复后"), "phone": .text("13912345678")]).id)
            }
        }

        // Half the runs keep what a branch served only until HQ next retires lapsed reasons,
        // so customers leave branches' scopes (and come back) often.
        if chance(50) { try hq.archive.setServedDays(0) }
        let late = replicas.last!
        let joinAt = Int(rng.next() % UInt64(max(1, steps)))
        for step in 0..<steps {
            summary.operations += 1
            // Sites with a machine: the late branch has none before its step.
            let sites = step >= joinAt ? replicas : Array(replicas.dropLast())
            let active = Array(sites.dropFirst())
            let r = pick(sites)!
            r.environment.advance(milliseconds: 1 + rng.next() % 2_000)
            let roll = rng.next() % 100
            do {
                switch roll {
                case 0..<12:
                    let c = try r.archive.addCustomer([
                        "name": .text(pick(names)! + " \(rng.next() % 1000)"), "phone": .text("138\(10_000_000 + rng.next() % 89_999_999)"),
                        "region": .text(pick(regions)!), "revenue_fen": .integer(Int64(rng.next() % 10_000_000)),
                    ])
                    customers.append(c.id)
                case 12..<34:
                    guard let k = pick(customers) else { break }
                    var fields: [String: Value] = [:]
                    if chance(50) { fields["name"] = .text(pick(names)! + " \(rng.next() % 1000)") }
                    if chance(50) { fields["region"] = .text(pick(regions)!) }
                    if chance(40) { fields["revenue_fen"] = .integer(Int64(rng.next() % 10_000_000)) }
                    if chance(30) { fields["notes"] = .text("note \(rng.next() % 100)") }
                    if fields.isEmpty { fields["shipments"] = .integer(Int64(rng.next() % 500)) }
                    // Now and then the customer moves to another branch: it leaves the old one's
                    // scope unless that branch served it, and enters the new one's.
                    let rehome = chance(12)
                    if rehome { fields["home_branch"] = .text(pick(branches)!) }
                    _ = try r.archive.updateCustomer(k.description, fields)
                    if rehome { summary.rehomings += 1 }
                case 34..<38:
                    guard let k = pick(customers) else { break }
                    if chance(50) { try r.archive.deleteCustomer(k.description) } else { try r.archive.restoreCustomer(k.description) }
                case 38..<40:
                    guard let k = pick(customers), chance(50) else { break }
                    _ = try r.archive.eraseCustomer(k.description)
                    erased.insert(k)
                    summary.erasures += 1
                case 40..<48:
                    guard let k = pick(customers) else { break }
                    try r.archive.addContact(
                        customer: k.description, kind: .returnVisit, satisfaction: Int(1 + rng.next() % 5), summary: "回访 \(rng.next() % 100)")
                case 48..<56:
                    guard let k = pick(customers) else { break }
                    let v = try r.archive.openComplaint(
                        customer: k.description, category: pick(ComplaintCategory.allCases)!, waybill: "WB\(rng.next() % 100000)",
                        description: "parcel \(rng.next() % 100)")
                    complaints.append(v.record.id)
                case 56..<66:
                    guard let k = pick(complaints) else { break }
                    let view = try r.archive.complaint(k.description)
                    if view.stage == .closed || (view.stage == .resolved && chance(50)) {
                        _ = try r.archive.reopenComplaint(k.description)
                    } else if chance(30) {
                        try r.archive.noteComplaint(k.description, text: "called back \(rng.next() % 100)")
                    } else {
                        _ = try r.archive.advanceComplaint(k.description)
                    }
                case 66..<70:
                    guard let k = pick(customers) else { break }
                    let v = try r.archive.fileClaim(
                        customer: k.description, waybill: "WB\(rng.next() % 100000)", claimedFen: Int64(10_000 + rng.next() % 400_000))
                    claims.append(v.record.id)
                case 70..<78:
                    guard let k = pick(claims) else { break }
                    let view = try r.archive.claim(k.description)
                    switch view.stage {
                    case .filed, .assessing:
                        _ = try r.archive.approveClaim(k.description, amountFen: view.record["claimed_fen"].integerValue ?? 1)
                    case .approved, .paid:
                        let room = (view.approvedFen ?? 0) - view.paidFen
                        if room > 0 {
                            _ = try r.archive.payClaim(k.description, amountFen: max(1, Int64(rng.next() % UInt64(room)) + 1))
                        } else if view.paidFen > 0 && chance(30) {
                            _ = try r.archive.payClaim(k.description, amountFen: -1)
                        }
                    default: break
                    }
                case 78..<80:
                    // A conflict restore somewhere, now and then.
                    if let c = try r.archive.conflicts(includeRestored: false).first(where: { $0.table == "customers" }), chance(50) {
                        try r.archive.restoreConflict(id: c.id)
                    }
                case 80..<82:
                    // A month's figures, entered (or corrected) at any site.
                    guard let k = pick(customers) else { break }
                    try r.archive.recordFigures(
                        customer: k.description, month: Month(year: 2025, month: Int(1 + rng.next() % 12)), shipments: Int64(rng.next() % 50),
                        revenueFen: Int64(rng.next() % 1_000_000), profitFen: Int64(rng.next() % 200_000) - 20_000)
                case 82..<84:
                    // HQ's decisions (whichever site's turn it is): a merge of two customers, or
                    // new rules.
                    if chance(25) {
                        // HQ shortens or restores how long a branch keeps what it served, and
                        // retires the reasons that lapsed: branches evict what they hold for
                        // no other reason (with their own changes not yet at HQ kept until they are).
                        try hq.archive.setServedDays(chance(60) ? 0 : 90)
                        try hq.archive.setFetchedDays(chance(60) ? 0 : 7)
                        summary.lapsedReasons += try hq.archive.expireScope()
                    } else if chance(25), let site = pick(branches), let k = pick(customers) {
                        // A clerk at a branch fetches a customer from HQ (`customer fetch`):
                        // HQ counts it in the branch's scope, and its next pull brings it.
                        _ = try hq.archive.fetch(k.description, for: try SiteID(site))
                        summary.fetches += 1
                    } else if chance(35), let site = pick(branches) {
                        // HQ assigns a customer, another branch's customers or a region to a
                        // branch, or withdraws such an assignment: customers move in and out.
                        let target: AssignmentTarget =
                            switch rng.next() % 3 {
                            case 0: .customer((pick(customers) ?? RecordKey(high: 1, low: 1)).description)
                            case 1: .branch(try SiteID(pick(branches)!))
                            default: .region(pick(regions)!)
                            }
                        if chance(40), let existing = pick(try hq.archive.assignments()) {
                            let kind: AssignmentTarget =
                                switch existing.kind {
                                case "customer": .customer(existing.target)
                                case "branch": .branch(try SiteID(existing.target))
                                default: .region(existing.target)
                                }
                            try hq.archive.unassign(kind, from: try SiteID(existing.site))
                        } else {
                            try hq.archive.assign(target, to: try SiteID(site))
                        }
                        summary.assignments += 1
                    } else if chance(60), let keep = pick(customers), let duplicate = pick(customers) {
                        try hq.archive.mergeCustomers(keep: keep.description, duplicate: duplicate.description)
                        summary.merges += 1
                    } else if chance(50) {
                        try hq.archive.setSLA(
                            SLARule(
                                category: pick(ComplaintCategory.allCases)!, severity: pick(ComplaintSeverity.allCases)!,
                                acknowledgeMinutes: Int(1 + rng.next() % 600), resolveMinutes: Int(600 + rng.next() % 6_000)))
                    } else {
                        var rules = try hq.archive.rules().value
                        rules.aCumulativePct = Int(50 + rng.next() % 40)
                        rules.bCumulativePct = max(rules.aCumulativePct, Int(80 + rng.next() % 21))
                        rules.weights[pick(ValueDimension.allCases)!] = Int(rng.next() % 40)
                        try hq.archive.setValueRules(rules)
                    }
                case 84..<85:
                    // A return visit after a resolved complaint.
                    guard let k = pick(complaints) else { break }
                    try r.archive.returnVisit(complaint: k.description, satisfaction: Int(1 + rng.next() % 5))
                case 85..<87:
                    // A branch's nightly backup, or (later) its restore from the last one.
                    let b = pick(active)!
                    if let backup = b.backup, chance(40) { try restore(b, from: backup) } else { try backUp(b) }
                default:
                    let b = pick(active)!
                    if chance(4) {
                        // A hostile or broken write in the branch's log (a newer schema's column,
                        // or a value outside its domain): HQ's door must refuse it, and the
                        // branch's other changes must still flow.
                        let key = RecordKey.version7(milliseconds: b.environment.now, using: &rng)
                        let stamp = Stamp(time: Timestamp(milliseconds: b.environment.now, counter: 0), site: b.site)
                        let write: FieldWrite =
                            chance(50)
                            ? FieldWrite(column: 60, value: .text("newer schema"))
                            : FieldWrite(column: Schema.complaints.column("resolve_minutes"), value: .integer(150_000_000_000_000))
                        try b.archive.appendToLogOnly(Change(table: Schema.complaints.id, key: key, stamp: stamp, body: .fields([write])))
                        hostile.insert(key)
                        summary.hostileWrites += 1
                    }
                    if chance(15) { summary.lapsedReasons += try hq.archive.expireScope() }
                    if chance(20), let k = pick(customers) {
                        // HQ moves a customer to another branch (a branch offline meanwhile
                        // learns of it when it next syncs, with its own edits still in flight).
                        do {
                            let before = try hq.archive.customer(k.description)["home_branch"].textValue
                            _ = try hq.archive.updateCustomer(k.description, ["home_branch": .text(pick(branches)!)])
                            summary.rehomings += 1
                            // The old home, not knowing yet, corrects the customer's name and
                            // phone: HQ takes it if it was written before the re-home (by
                            // clock), and otherwise refuses it and resets the branch's copy.
                            if chance(50), let old = replicas.first(where: { $0.site.code == before }), old !== hq {
                                old.environment.advance(milliseconds: rng.next() % 8_000)
                                _ = try? old.archive.updateCustomer(
                                    k.description, ["name": .text(pick(names)! + " 更正"), "phone": .text("139\(10_000_000 + rng.next() % 89_999_999)")])
                                try collect(old)
                            }
                        } catch let e as ArchiveError where e.code == .notFound {}
                    }
                    if chance(5) {
                        // Compaction with no retention window: everything HQ acknowledged goes.
                        summary.compactedChanges += try b.archive.compactLog(retentionMilliseconds: 0)
                    }
                    if chance(8) {
                        // HQ drops superseded writes and moves at a random cut, in chunks of a
                        // random size, whoever is offline: every branch must still converge.
                        let done = try hq.archive.compactHeadquartersLog(chunk: Int(1 + rng.next() % 30))
                        summary.hqCompactedWrites += done.writesDropped
                        summary.hqCompactedMoves += done.movesDropped
                        summary.hqPackedRows += done.rowsPacked
                    }
                    if chance(50) { try exchange(from: b, to: hq, faults: true) } else { try exchange(from: hq, to: b, faults: true) }
                    if chance(10), let other = pick(active), other !== b {
                        // A change-set file carried by hand between two branches: the door
                        // refuses it (a branch takes headquarters' sets only) and nothing changes.
                        let file = try b.archive.exportChanges(excluding: other.site)
                        do {
                            try other.archive.admit(file, from: b.site)
                            throw Failure(seed: seed, problem: "branch \(other.site) applied a change set from branch \(b.site)")
                        } catch let e as ArchiveError where e.code == .forgedOrigin {}
                    }
                }
            } catch let e as ArchiveError where e.code == .notFound || e.code == .invalidState || e.code == .refused || e.code == .invalidInput {
                // The chosen record has not reached this site yet (or only in part), or the step is not
                // possible there: the archive said so clearly, which is what a person would see.
            }
            try collect(r)
            for other in replicas { try collect(other) }
        }

        // Final full exchange until nothing moves.
        for _ in 0..<3 {
            for b in replicas.dropFirst() { try exchange(from: b, to: hq, faults: false) }
            for b in replicas.dropFirst() { try exchange(from: hq, to: b, faults: false) }
        }
        summary.writes = writes.count
        try check(
            replicas: replicas, writes: writes, erased: erased, paymentsTotal: paymentsTotal, hostile: hostile, refused: refusedWrites, erasures: erasures)
        return summary
    }

    private func check(
        replicas: [Replica], writes: [Write], erased: Set<RecordKey>, paymentsTotal: Int64, hostile: Set<RecordKey>, refused: Set<String>,
        erasures: [RecordKey: [Stamp]]
    ) throws {
        // 1. Every branch holds exactly HQ's records restricted to its scope, waits to evict
        //    nothing, and keeps nothing of a customer it does not hold.
        let hqReplica = replicas[0]
        for r in replicas.dropFirst() {
            let expected = try hqReplica.archive.canonicalDump(scope: r.site)
            let held = try r.archive.canonicalDump()
            if held != expected {
                if let dir = ProcessInfo.processInfo.environment["OUTPOST_SIM_DUMPS"] {
                    try? expected.write(toFile: dir + "/hq-scope-\(r.site).json", atomically: true, encoding: .utf8)
                    try? held.write(toFile: dir + "/\(r.site).json", atomically: true, encoding: .utf8)
                    try? (try hqReplica.archive.canonicalDump()).write(toFile: dir + "/hq.json", atomically: true, encoding: .utf8)
                }
                let a = expected.split(separator: "\n")
                let b = held.split(separator: "\n")
                let line = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
                throw Failure(
                    seed: seed,
                    problem:
                        "\(r.site) differs from HQ's records in its scope after the final exchange (first difference at dump line \(line + 1)); OUTPOST_SIM_DUMPS=DIR writes both dumps there"
                )
            }
            if try r.archive.pendingEvictions() != 0 {
                throw Failure(seed: seed, problem: "\(r.site) still waits to evict a customer after HQ acknowledged everything")
            }
            // (A hostile write HQ refused stays in the log of a branch restored from a backup
            // older than the refusal: refusals are not yet answered in HQ's stream.)
            if let left = try r.archive.keysOutsideRecords().first(where: { l in !hostile.contains { l.hasSuffix($0.description) } }) {
                throw Failure(seed: seed, problem: "\(r.site) keeps a record it does not hold: \(left)")
            }
        }
        // A branch's log holds its own changes only (it relays nothing), and after a
        // compaction with no retention, nothing HQ has acknowledged.
        for r in replicas.dropFirst() {
            if let foreign = try r.archive.exportChanges().changes.first(where: { $0.origin != r.site }) {
                throw Failure(
                    seed: seed, problem: "\(r.site)'s change log holds \(foreign.origin)'s change to \(foreign.key): a branch logs its own changes only")
            }
            try r.archive.compactLog(retentionMilliseconds: 0)
            let acknowledged = try r.archive.cursor(for: .headquarters).sentThrough
            if try r.archive.countOwnChanges(after: 0) != r.archive.countOwnChanges(after: acknowledged) {
                throw Failure(seed: seed, problem: "\(r.site) kept a change HQ acknowledged after compacting with no retention")
            }
        }
        // HQ's compacted log holds at most one write per live field, however often each was
        // overwritten (and branches converged across its compactions: check 1).
        let hqArchive = replicas[0].archive
        try hqArchive.compactHeadquartersLog()
        let stats = try hqArchive.logStatistics()
        if stats.fieldWrites > stats.liveFields {
            throw Failure(seed: seed, problem: "HQ's log after compaction holds more writes than live fields: \(stats)")
        }
        // 2. Every write survives, was knowingly overwritten, or sits in a conflict journal.
        var journaled = Set<Write>()
        for r in replicas {
            for c in try r.archive.conflicts() {
                guard let t = Schema.tables.first(where: { $0.name == c.table }), let col = t.columns.firstIndex(where: { $0.name == c.field }) else {
                    continue
                }
                journaled.insert(Write(table: t.id, key: c.record, column: col, value: c.loser, stamp: c.loserStamp, base: nil))
            }
        }
        var overwrittenKnowingly = Set<String>()
        for w in writes { if let b = w.base { overwrittenKnowingly.insert("\(w.table)/\(w.key)/\(w.column)/\(b)") } }
        let hq = replicas[0].archive
        for w in writes {
            guard let schema = Schema.table(w.table) else { continue }
            let state = try hq.recordState(table: w.table, key: w.key)
            if state?.registers[w.column]?.stamp == w.stamp { continue }
            if refused.contains("\(w.key)/\(w.stamp.time.rawValue)/\(w.stamp.site)") {
                // Refused at HQ's door: its origin journaled it and holds HQ's value instead.
                let journal = try replicas.first { $0.site == w.stamp.site }?.archive.refusedChanges(limit: .max) ?? []
                guard journal.contains(where: { $0.record == w.key.description && $0.reason == "NOT_HOME" }) else {
                    throw Failure(seed: seed, problem: "\(w.stamp.site)'s write to \(w.key) was refused at HQ but is not in its journal of refused changes")
                }
                continue
            }
            if state?.erased == true && schema.rules.personalColumns.contains(w.column) { continue }
            // Its own site erased the customer after it (scrubbing its log), and HQ refused
            // that erasure: the clerk's own erasure took the value.
            if schema.rules.personalColumns.contains(w.column) {
                let owner =
                    w.table == Schema.customers.id
                    ? w.key : (schema.columns.firstIndex { $0.name == "customer_id" }).flatMap { state?.registers[$0]?.value.keyValue }
                if let owner, erasures[owner]?.contains(where: { $0.site == w.stamp.site && $0 > w.stamp }) == true { continue }
            }
            if overwrittenKnowingly.contains("\(w.table)/\(w.key)/\(w.column)/\(w.stamp)") { continue }
            // Superseded by a later write of its own site, or by a later write of the same value
            // (the merge journals no loss when the value survives).
            if writes.contains(where: {
                $0.table == w.table && $0.key == w.key && $0.column == w.column && $0.stamp > w.stamp && ($0.stamp.site == w.stamp.site || $0.value == w.value)
            }) {
                continue
            }
            if journaled.contains(Write(table: w.table, key: w.key, column: w.column, value: w.value, stamp: w.stamp, base: nil)) { continue }
            throw Failure(
                seed: seed,
                problem:
                    "a write to \(schema.name).\(schema.columns[w.column].name) of \(w.key) stamped \(w.stamp) was lost: not the final value, not knowingly overwritten, not in any conflict journal"
            )
        }
        // 3. Erased people leave no personal value anywhere: records, change logs, journals.
        for key in erased {
            let customer = try hq.recordState(table: Schema.customers.id, key: key)
            // Erased at a branch that was no longer its home, and refused at HQ's door.
            if customer?.erased != true,
                erasures[key]?.allSatisfy({ refused.contains("\(key)/\($0.time.rawValue)/\($0.site)") }) == true
            {
                continue
            }
            guard customer?.erased == true else { throw Failure(seed: seed, problem: "customer \(key) was erased but is not erased at HQ") }
            for r in replicas {
                let log = try r.archive.exportChanges(after: 0)
                for c in log.changes where c.key == key {
                    if case .fields(let fs) = c.body, fs.contains(where: { Schema.customers.rules.personalColumns.contains($0.column) && !$0.value.isNull }) {
                        throw Failure(seed: seed, problem: "\(r.site)'s change log still holds personal data of erased customer \(key)")
                    }
                }
                for c in log.changes where c.table == Schema.contacts.id {
                    if case .append(let vs) = c.body, vs.contains(where: { $0.column == 0 && $0.value == .blob(key.bytes) }),
                        vs.contains(where: { $0.column == Schema.contacts.column("summary") && !$0.value.isNull })
                    {
                        throw Failure(seed: seed, problem: "\(r.site)'s change log still holds a contact summary of erased customer \(key)")
                    }
                }
                for c in try r.archive.conflicts() where c.record == key && Schema.customers.rules.personalColumns.contains(Schema.customers.column(c.field)) {
                    throw Failure(seed: seed, problem: "\(r.site)'s conflict journal still holds personal data of erased customer \(key)")
                }
                // (Contacts of customers merged into the erased one are other people's.)
                // (A branch that does not hold the customer has nothing of it: check 1.)
                let contacts: [Record]
                do { contacts = try r.archive.contacts(customer: key.description) } catch let e as ArchiveError where e.code == .notFound && r !== replicas[0] {
                    continue
                }
                for contact in contacts where contact["customer_id"].keyValue == key && !contact["summary"].isNull {
                    throw Failure(seed: seed, problem: "\(r.site) still holds a contact summary of erased customer \(key)")
                }
            }
        }
        // 4. What every site computes from the records agrees: each branch's value report equals
        //    HQ's report on that branch, and search finds the same customers. (Complaint reports
        //    depend on each site's own clock for open deadlines, so they are not compared.)
        for r in replicas.dropFirst() {
            let mine = try r.archive.valueReport(from: Month(year: 2025, month: 1), to: Month(year: 2025, month: 12))
            let theirs = try hqArchive.valueReport(branch: r.site.code, from: Month(year: 2025, month: 1), to: Month(year: 2025, month: 12))
            if mine.valuations != theirs.valuations {
                throw Failure(seed: seed, problem: "\(r.site)'s value report differs from HQ's report on \(r.site)")
            }
            let inScope = Set(try hqArchive.scope(of: r.site).map(\.customer))
            for text in ["物流", "北京快运", "李", "138"] {
                // As sets: each site lists what it indexed most recently first.
                let found = Set(try r.archive.searchCustomers(text, limit: 1_000_000).map(\.id))
                if found != Set(try hqArchive.searchCustomers(text, limit: 1_000_000).map(\.id).filter { inScope.contains($0.description) }) {
                    throw Failure(seed: seed, problem: "\(r.site) finds other customers than HQ for a search")
                }
            }
        }
        // 5. Human numbers are never handed out twice (a restored site must not reuse them).
        for table in [Schema.customers, Schema.complaints, Schema.claims] {
            let numbers = try hq.texts(of: "number", in: table.name)
            if numbers.count != Set(numbers).count {
                throw Failure(seed: seed, problem: "a number in \(table.name) was handed out twice")
            }
        }
        // 6. Money: HQ's payments add up to every payment made anywhere (a branch holds those of
        //    its scope, which check 1 compares).
        for r in replicas.prefix(1) {
            let paid = try r.archive.claims(limit: 100_000).reduce(Int64(0)) { $0 + $1.paidFen }
            if paid != paymentsTotal {
                throw Failure(seed: seed, problem: "\(r.site) holds payments totalling \(paid) fen; \(paymentsTotal) fen were paid")
            }
        }
    }
}

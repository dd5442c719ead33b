import Foundation
import GRDB
import Replication

/// The door: the one place a change set from another site is judged before it is applied,
/// for sets pushed on the line and for files alike.
///
/// At headquarters a set must come from the branch that the certificate (line) or the
/// signature (file) names: producer = that branch, every change's origin = that branch, no more
/// changes than the line allows; then each change is judged alone: writes only headquarters
/// may make and values outside their column's domain are refused, a clock too far ahead is
/// quarantined. At a branch a set must come from headquarters (branches never exchange sets
/// with each other); what headquarters relays is stored as it is, since its judgement stands.
extension Archive {
    /// Applies a set that arrived from `site` after judging it at the door.
    /// - Parameters:
    ///   - site: who sent it, from the TLS client certificate or the file's signature, never
    ///     from the payload; at a site without a PKI, the file's producer.
    ///   - maximumChanges: the most changes one set may hold (the line's limit); nil for files.
    ///   - batchSize: changes per transaction (see ``ApplyOptions/batchSize``).
    /// - Throws: `ArchiveError` with `.forgedOrigin` (producer or an origin is not `site`, or
    ///   a branch's set at a branch), `.tooLarge`, `.schemaTooNew`, `.malformedChangeSet` or, at
    ///   headquarters, `.outOfOrder` (the set skips part of the branch's log): the set was
    ///   refused as a whole and nothing was written.
    ///   - moves: headquarters' scope moves for a set it sent this branch (nil for a set that
    ///     is not scoped); a scoped set is taken only where it continues the cursor.
    ///   - acknowledgedBeforeRead: see ``ApplyOptions/acknowledgedBeforeRead``.
    @discardableResult
    public func admit(
        _ set: ChangeSet, from site: SiteID, moves: ScopeMoves? = nil, maximumChanges: Int? = nil, batchSize: Int = 5_000,
        acknowledgedBeforeRead: UInt64 = .max, progress: ((Int, Int) -> Void)? = nil
    ) throws -> ApplyReport {
        try judge(set, from: site, maximumChanges: maximumChanges)
        let atHeadquarters = self.site == headquarters
        // A scoped set (one that came with its scope's moves, even none) is taken only in its place.
        return try apply(
            set, moves: moves ?? ScopeMoves(),
            options: ApplyOptions(
                checkDrift: true, batchSize: batchSize, advanceCursor: true, judgeDomains: atHeadquarters, continuationOnly: moves != nil && !atHeadquarters,
                acknowledgedBeforeRead: acknowledgedBeforeRead),
            progress: progress)
    }

    /// The whole-set checks of ``admit(_:from:moves:maximumChanges:batchSize:progress:)``, without
    /// applying: a file is judged before any file of the same command is applied.
    public func judge(_ set: ChangeSet, from site: SiteID, maximumChanges: Int? = nil) throws {
        if self.site == headquarters {
            guard site != headquarters else {
                throw ArchiveError(.forgedOrigin, "a change set from \(site) arrived at \(site) itself; headquarters takes sets from branches only")
            }
        } else {
            guard site == headquarters else {
                throw ArchiveError(
                    .forgedOrigin,
                    "a change set from \(site) arrived at branch \(self.site); a branch takes change sets from headquarters (\(headquarters)) only")
            }
        }
        guard set.producer == site else {
            throw ArchiveError(.forgedOrigin, "a change set produced by \(set.producer) arrived from \(site); a site sends only the sets it produced")
        }
        if self.site == headquarters, let forged = set.changes.first(where: { $0.origin != site }) {
            throw ArchiveError(
                .forgedOrigin,
                "change to record \(forged.key) claims origin \(forged.origin) in a set from \(site); a branch sends only its own changes")
        }
        if self.site == headquarters {
            // A branch's log is causal (a complaint before its notes): taking a set that skips
            // part of it would put a dependant in headquarters' log before its parent, where a
            // branch's scope could not follow it. Overlaps are harmless; gaps wait.
            let cursor = try cursor(for: site).receivedThrough
            guard set.after <= cursor else {
                throw ArchiveError(
                    .outOfOrder,
                    "the change set from \(site) continues its log after \(set.after), but headquarters holds \(site)'s log only up to \(cursor): apply the set that comes before it first"
                )
            }
        }
        if let maximumChanges, set.changes.count > maximumChanges {
            throw ArchiveError(.tooLarge, "\(set.changes.count) changes in one set; the limit is \(maximumChanges)")
        }
        try validate(set)
    }

    /// Why a change holds a value outside its column's domain (table, column and record
    /// named, never the value); nil when every value is inside.
    static func domainViolation(_ change: Change) -> String? {
        guard let table = Schema.table(change.table) else { return nil }
        switch change.body {
        case .fields(let writes):
            for w in writes {
                if let problem = table.domainProblem(w.value, column: w.column, record: change.key) { return problem }
            }
        case .append(let values):
            for v in values {
                if let problem = table.domainProblem(v.value, column: v.column, record: change.key) { return problem }
            }
        case .existence, .erase:
            break
        }
        return nil
    }

    /// The highest `through` headquarters accepts from a branch whose cursor is `cursor`: the
    /// end of the next epoch of sequence numbers (a restore starts one, ``Archive/epochShift``).
    /// A branch cannot have produced more, so a cursor beyond it is never stored.
    static func cursorCeiling(after cursor: UInt64) -> UInt64 {
        let epoch = cursor >> epochShift
        guard epoch + 2 < (1 << (64 - epochShift)) else { return .max }
        return ((epoch + 2) << epochShift) - 1
    }
}

extension Archive {
    /// Appends a change to this site's log without merging it: a test hook standing for a
    /// change a newer or broken version of Outpost logged, which headquarters may refuse.
    package func appendToLogOnly(_ change: Change) throws {
        try transaction { session in try session.appendLog(change) }
    }
}

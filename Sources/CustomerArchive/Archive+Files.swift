import Foundation
import GRDB
import Replication

/// Change-set files between headquarters and a branch with no line (DESIGN, "Change-set files
/// follow the same star").
///
/// A file headquarters exports for a branch carries what the branch's pull carries on the line:
/// the changes of its scope, and in the set's scope section (CHANGESET.md §5.3) the customers
/// that entered or left the scope, the branch's own changes headquarters refused, and how much
/// of the branch's log headquarters holds. So a branch fed only by files evicts, returns
/// refused writes to headquarters' state and drops its acknowledged changes as a branch on the
/// line does.
///
/// A branch applies such a file where it continues or overlaps what it holds of headquarters'
/// log: the moves are net over the file's range, so a file that covers the branch's cursor
/// brings it to the same state as the pulls it stands for. A file wholly behind the cursor is
/// skipped (its customers may have left since), one past it is refused (an earlier file is
/// missing).
extension Archive {
    /// What a file would carry for `site`: headquarters' log after `after` restricted to the
    /// site's scope, with the scope's moves and refusals in its scope section.
    public func exportFile(for site: SiteID, after: UInt64) throws -> ChangeSet {
        guard self.site == headquarters else {
            throw ArchiveError(.refused, "only headquarters exports a branch's scope; a branch exports its own changes for headquarters")
        }
        guard site != headquarters else { throw ArchiveError(.invalidInput, "headquarters exports files for branches, not for itself") }
        // Read first: the cursor only grows, so the file never claims more than headquarters held.
        let received = try cursor(for: site).receivedThrough
        // The branch's own changes come too: a branch restored from a backup lost those made
        // after it, and a file cannot know whether it was; one not recovering merges them
        // without logging them again.
        var (set, moves) = try exportChanges(for: site, after: after, includeOwn: true)
        set.scope = ChangeSet.Scope(
            recipient: site, receivedThrough: received, movedIn: moves.movedIn, evicted: moves.evicted, refused: moves.refused)
        return set
    }

    /// Whether headquarters knows anything of a branch: a customer it holds or held (its scope
    /// moves) or an exchange with it (its cursor). A file for a branch it knows nothing of
    /// holds the settings only: most likely a mistyped site code.
    public func knowsBranch(_ site: SiteID) throws -> Bool {
        try read { db in
            try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM cursors WHERE peer = ?) OR EXISTS (SELECT 1 FROM scope_moves WHERE site = ?)",
                arguments: [site.code, site.code]) ?? false
        }
    }

    /// Where a file from headquarters stands against this branch's cursor.
    public enum FilePlace: Sendable, Hashable {
        /// It continues or overlaps what this branch holds: it applies.
        case applies
        /// This branch holds all of its range already: skipped.
        case behind(cursor: UInt64)
        /// It starts past what this branch holds: the file before it is missing.
        case ahead(cursor: UInt64)
    }

    /// Where a scoped set from headquarters with range `(after, through]` stands when this
    /// branch holds headquarters' log through `cursor`.
    public static func place(after: UInt64, through: UInt64, cursor: UInt64) -> FilePlace {
        if after == cursor || (after < cursor && cursor < through) { return .applies }
        return after > cursor ? .ahead(cursor: cursor) : .behind(cursor: cursor)
    }

    /// The whole-file checks at a branch, before anything of the command is applied: the file
    /// is headquarters' export for this branch (its scope section names this site).
    /// - Throws: `.refused` for headquarters' whole log (no scope section) or a file exported
    ///   for another branch, `.forgedOrigin` for a scope section in a branch's file.
    public func judgeFile(_ set: ChangeSet, from sender: SiteID) throws {
        try judge(set, from: sender)
        if site == headquarters {
            guard set.scope == nil else {
                throw ArchiveError(
                    .forgedOrigin, "the file carries a branch's scope, which only headquarters writes; headquarters takes a branch's own changes only")
            }
            return
        }
        guard let scope = set.scope else {
            throw ArchiveError(
                .refused,
                "the file holds headquarters' whole log, not this branch's scope; at headquarters, export it with 'outpost changes export --for \(site)'")
        }
        guard scope.recipient == site else {
            throw ArchiveError(
                .refused,
                "the file was exported by headquarters for \(scope.recipient); this site is \(site): apply it at \(scope.recipient), and at headquarters export one with 'outpost changes export --for \(site)'"
            )
        }
    }

    /// Applies a file's set that ``judgeFile(_:from:)`` accepted. At a branch: headquarters'
    /// word on how much of this branch's log it holds is taken first (evictions wait for it),
    /// then the set with its moves where it applies (``place(after:through:cursor:)``).
    /// - Returns: the report; `outOfOrder` when the file was behind the cursor and skipped.
    /// - Throws: `.outOfOrder` when the file starts past what this branch holds.
    @discardableResult
    public func admitFile(_ set: ChangeSet, from sender: SiteID, progress: ((Int, Int) -> Void)? = nil) throws -> ApplyReport {
        try judgeFile(set, from: sender)
        // At a branch ``judgeFile(_:from:)`` made sure of the scope section.
        guard site != headquarters, let scope = set.scope else { return try admit(set, from: sender, progress: progress) }
        if let progress = try snapshotProgress() {
            throw ArchiveError(
                .refused,
                "this branch is still receiving its customers from headquarters over the line (\(progress.sent) of \(progress.total) so far): let 'outpost serve' or 'outpost sync --once' finish it, then apply files"
            )
        }
        switch Self.place(after: set.after, through: set.through, cursor: try cursor(for: headquarters).receivedThrough) {
        case .ahead(let cursor):
            throw ArchiveError(
                .outOfOrder,
                "the file continues headquarters' log after \(set.after), but this branch holds it only through \(cursor): apply the file that comes before it first, or at headquarters export one with 'outpost changes export --for \(site) --since \(cursor)'"
            )
        case .behind:
            var skipped = ApplyReport()
            skipped.outOfOrder = true
            return skipped
        case .applies:
            break
        }
        try acknowledgeFromFile(headquartersHolds: scope.receivedThrough)
        let moves = ScopeMoves(movedIn: scope.movedIn, evicted: scope.evicted, refused: scope.refused)
        let report = try apply(
            set, moves: moves,
            options: ApplyOptions(
                checkDrift: true, advanceCursor: true, continuationOnly: true, acceptOverlap: true, acknowledgedBeforeRead: scope.receivedThrough),
            progress: progress)
        // The file held headquarters' whole log at its export, this branch's own changes
        // included: a recovery from a restore is over, as after a pull to the log's end.
        if !report.outOfOrder, try recoveringSince() != nil { try finishRecovery() }
        return report
    }

    /// Takes a file's word that headquarters holds this branch's log through `received`, as
    /// the line's handshake does, with one difference: a file may be old, so it never
    /// confirms a restore's new epoch (``confirmEpoch(headquartersHolds:)``) unless it shows
    /// headquarters holding part of that epoch already, when what was written since moves
    /// past it. A word past the end of this branch's log (a restore the line sorts out) is
    /// not taken.
    func acknowledgeFromFile(headquartersHolds received: UInt64) throws {
        let base = try read { db -> UInt64? in
            guard try Self.meta(db, "epoch_unconfirmed") != nil else { return nil }
            return UInt64(max(0, try Self.meta(db, "epoch") ?? 0)) << Self.epochShift
        }
        if let base, received >= base { try confirmEpoch(headquartersHolds: received) }
        guard received <= (try lastSequence()) else { return }
        try acknowledgeSent(to: headquarters, through: received)
    }
}

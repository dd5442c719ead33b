import ArgumentParser
import CustomerArchive
import Foundation
import Replication
import SyncService

/// `outpost status`: who this site is and what its archive holds.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show this site's sync state, record counts and replication cursors.",
        discussion: """
            Sync: at a branch, headquarters' address, whether the daemon is connected, changes \
            made here that headquarters has not acknowledged (pending), sequences of \
            headquarters' log not yet received (behind), the last time both directions were \
            caught up and the last error. At headquarters, one row per branch: connected, \
            last seen, and the same cursors. The daemon ('outpost serve') keeps this in \
            DATA/\(SyncState.fileName).

            Then the site code, role and headquarters, how many records each table holds, the \
            last sequence of this site's change log (the number to give 'changes export --since' \
            next time), open conflicts, quarantined changes, and for every peer the change-log \
            sequence received from it and acknowledged by it.

            Examples:
              outpost status
              outpost status --json
            """)

    @OptionGroup var storage: DataDirOptions
    @OptionGroup var output: JSONOption

    func run() throws {
        let archive = try storage.openArchive()
        let counts = try archive.counts()
        let last = try archive.lastSequence()
        let backlog = try archive.searchBacklog()
        let recovering = try archive.recoveringSince()
        let bootstrap = try archive.snapshotProgress()
        let cursors = try archive.cursors()
        let sync = try SyncReport(archive: archive, dataDirectory: storage.directory, cursors: cursors, lastSequence: last)
        if output.json {
            Output.json(
                .object([
                    "sync": sync.json,
                    "site": .string(archive.site.code),
                    "role": .string(archive.role.rawValue),
                    "headquarters": .string(archive.headquarters.code),
                    "archive": .string(archive.path),
                    "last_sequence": .int(Int64(last)),
                    "search_backlog": .int(Int64(backlog)),
                    "recovering_since": recovering.map { .int(Int64(clamping: $0)) } ?? .null,
                    "bootstrap": bootstrap.map {
                        .object(["customers": .int(Int64($0.sent)), "of": .int(Int64($0.total)), "cut": .int(Int64(clamping: $0.cut))])
                    }
                        ?? .null,
                    "counts": .object(counts.mapValues { .int(Int64(clamping: $0)) }),
                    "cursors": .array(
                        cursors.map {
                            .object([
                                "peer": .string($0.peer),
                                "received_through": .int(Int64(clamping: $0.receivedThrough)),
                                "sent_through": .int(Int64(clamping: $0.sentThrough)),
                            ])
                        }),
                ]))
            return
        }
        Output.fields([
            ("site", archive.site.code),
            ("role", archive.role.rawValue),
            ("headquarters", archive.headquarters.code),
            ("archive", archive.path),
            ("last sequence", String(last)),
            ("search index", backlog == 0 ? "up to date" : "\(Output.pluralize(backlog, "customer")) waiting (indexed by 'serve', or at the next search)"),
        ])
        if let recovering {
            Output.fields([
                (
                    "restored",
                    "\(Output.time(milliseconds: Int64(recovering))): fetching back from headquarters what this site wrote after the backup; new numbered records wait until then"
                )
            ])
        }
        if let bootstrap {
            Output.fields([
                (
                    "bootstrap",
                    "\(bootstrap.sent) of \(bootstrap.total) customers received from headquarters' snapshot; records can be written once all are in (it resumes where it stopped)"
                )
            ])
        }
        sync.print()
        Output.write("\nrecords:\n")
        let order = [
            "customers", "contacts", "complaints", "complaint_notes", "complaint_transitions",
            "claims", "claim_transitions", "claim_payments", "settings", "changelog", "conflicts", "quarantine",
        ]
        let names = order.filter { counts[$0] != nil } + counts.keys.filter { !order.contains($0) }.sorted()
        Output.fields(names.map { ($0, String(counts[$0]!)) }, indent: 2)
        Output.write("\ncursors:\n")
        if cursors.isEmpty {
            Output.write("  none: no change set applied here yet\n")
        } else {
            Output.table(
                ["  PEER", "RECEIVED THROUGH", "SENT THROUGH"],
                cursors.map { ["  " + $0.peer, String($0.receivedThrough), String($0.sentThrough)] })
        }
    }
}

/// The sync part of `status`, from the archive's cursors and the daemon's state file.
struct SyncReport {
    var role: Role
    var state: SyncState?
    var daemonRunning: Bool
    var hqAddress: String?
    var pending: Int
    /// This site's changes headquarters refused (`outpost changes refused`).
    var refused: Int
    /// Customers that left this branch's scope, waiting for headquarters to acknowledge this
    /// site's changes to them before they are evicted.
    var pendingEvictions: Int
    var behind: UInt64?
    var branches: [Branch]

    struct Branch {
        var site: String
        var connected: Bool
        var lastSeen: UInt64?
        var receivedThrough: UInt64
        var sentThrough: UInt64
        var behind: UInt64
    }

    init(archive: Archive, dataDirectory: String, cursors: [PeerCursor], lastSequence: UInt64) throws {
        role = archive.role
        state = SyncState.load(fromDataDirectory: dataDirectory)
        daemonRunning = state?.isDaemonRunning ?? false
        hqAddress = state?.hqAddress
        let hq = cursors.first { $0.peer == archive.headquarters.code }
        pending = archive.role == .branch ? try archive.countOwnChanges(after: hq?.sentThrough ?? 0) : 0
        refused = archive.role == .branch ? try archive.refusedChanges().count : 0
        pendingEvictions = archive.role == .branch ? try archive.pendingEvictions() : 0
        if let end = state?.hqLastSequence {
            behind = end > (hq?.receivedThrough ?? 0) ? end - (hq?.receivedThrough ?? 0) : 0
        }
        var rows: [String: Branch] = [:]
        if archive.role == .hq {
            for c in cursors where c.peer != archive.site.code {
                rows[c.peer] = Branch(
                    site: c.peer, connected: false, lastSeen: c.lastSeenMilliseconds, receivedThrough: c.receivedThrough,
                    sentThrough: c.sentThrough, behind: UInt64(try archive.countChanges(after: c.sentThrough, excluding: SiteID(unchecked: c.peer))))
            }
            for e in state?.branches ?? [] {
                var row =
                    try rows[e.site]
                    ?? Branch(
                        site: e.site, connected: false, lastSeen: nil, receivedThrough: 0, sentThrough: 0,
                        behind: UInt64(archive.countChanges(after: 0, excluding: SiteID(unchecked: e.site))))
                row.connected = daemonRunning && e.streams > 0
                row.lastSeen = max(row.lastSeen ?? 0, e.lastSeenMilliseconds)
                rows[e.site] = row
            }
        }
        branches = rows.values.sorted { $0.site < $1.site }
    }

    private var connected: Bool { daemonRunning && (state?.connected ?? false) }

    var json: JSON {
        func time(_ ms: UInt64?) -> JSON { ms.map { .string(Output.time(milliseconds: Int64(clamping: $0))) } ?? .null }
        var object: [String: JSON] = [
            "daemon_running": .bool(daemonRunning),
            "last_error": state?.lastError.map { .string($0) } ?? .null,
        ]
        if role == .branch {
            object["hq_address"] = hqAddress.map { .string($0) } ?? .null
            object["connected"] = .bool(connected)
            object["pending_local_changes"] = .int(Int64(pending))
            object["refused_changes"] = .int(Int64(refused))
            object["pending_evictions"] = .int(Int64(pendingEvictions))
            object["behind_hq"] = behind.map { .int(Int64(clamping: $0)) } ?? .null
            object["last_success"] = time(state?.lastSuccessMilliseconds)
            object["clock_offset_ms"] = state?.clockOffsetMilliseconds.map { .int($0) } ?? .null
        } else {
            object["branches"] = .array(
                branches.map {
                    .object([
                        "site": .string($0.site), "connected": .bool($0.connected), "last_seen": time($0.lastSeen),
                        "received_through": .int(Int64(clamping: $0.receivedThrough)), "acknowledged_through": .int(Int64(clamping: $0.sentThrough)),
                        "behind": .int(Int64(clamping: $0.behind)),
                    ])
                })
        }
        return .object(object)
    }

    func print() {
        Output.write("\nsync:\n")
        func time(_ ms: UInt64?) -> String { ms.map { Output.time(milliseconds: Int64(clamping: $0)) } ?? "never" }
        if role == .branch {
            Output.fields(
                [
                    ("headquarters", hqAddress ?? "not configured"),
                    ("daemon", daemonRunning ? "running" : "not running"),
                    ("connected", connected ? "yes" : "no"),
                    ("pending local changes", String(pending)),
                    ("refused by headquarters", refused == 0 ? "none" : "\(refused) ('outpost changes refused')"),
                    ("evictions waiting", pendingEvictions == 0 ? "none" : "\(pendingEvictions) (until headquarters has this site's changes to them)"),
                    ("behind headquarters", behind.map(String.init) ?? "unknown (never connected)"),
                    ("last successful sync", time(state?.lastSuccessMilliseconds)),
                    ("last error", state?.lastError ?? "none"),
                ], indent: 2)
            return
        }
        Output.fields([("daemon", daemonRunning ? "running" : "not running"), ("last error", state?.lastError ?? "none")], indent: 2)
        if branches.isEmpty {
            Output.write("  no branch has connected yet\n")
        } else {
            Output.table(
                ["  BRANCH", "CONNECTED", "LAST SEEN", "RECEIVED THROUGH", "ACKNOWLEDGED THROUGH", "BEHIND"],
                branches.map {
                    ["  " + $0.site, $0.connected ? "yes" : "no", time($0.lastSeen), String($0.receivedThrough), String($0.sentThrough), String($0.behind)]
                })
        }
    }
}

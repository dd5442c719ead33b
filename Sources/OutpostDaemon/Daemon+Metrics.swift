import CustomerArchive
import Foundation
import Logging
import Replication
import ServiceLifecycle
import SyncService

extension Daemon {
    /// The operations endpoint on `metrics.listen_address` (local by default):
    ///
    /// - `/metrics`: Prometheus text format. Gauges are read from the archive when scraped.
    /// - `/healthz`: 200 while the process answers and its archive can be read.
    /// - `/readyz`: 200 once the site serves (headquarters listens; a branch runs its link),
    ///   503 before that and while stopping.
    func metricsService(address: String) throws -> any Service {
        let endpoint: HostPort
        do { endpoint = try HostPort(parsing: address, defaultPort: DaemonConfiguration.defaultMetricsPort, listening: true) } catch {
            throw ConfigurationError(file: "configuration", line: nil, key: "metrics.listen_address", "\(error)")
        }
        let logger = self.logger
        return ClosureService { [self] in
            // The endpoint is for operators; a port already taken must not stop the sync, so
            // a failed bind is logged and retried every 30 s.
            await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do {
                        let server = try await HTTPEndpoint.start(host: endpoint.host, port: endpoint.port) { path in
                            await self.respond(to: path)
                        }
                        logger.notice("operations endpoint listening", metadata: ["address": "\(server.address)"])
                        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                        await server.stop()
                        return
                    } catch {
                        logger.error(
                            "the operations endpoint cannot listen; retrying in 30 s (metrics.listen_address)",
                            metadata: ["address": "\(endpoint)", "error": "\(error)"])
                        try? await Task.sleep(for: .seconds(30))
                    }
                }
            }
        }
    }

    func respond(to path: String) async -> HTTPEndpoint.Response {
        switch path {
        case "/metrics":
            do {
                return HTTPEndpoint.Response(contentType: "text/plain; version=0.0.4; charset=utf-8", body: try await renderMetrics())
            } catch {
                return HTTPEndpoint.Response(status: .internalServerError, body: "the archive could not be read: \(error)\n")
            }
        case "/healthz":
            do {
                _ = try await Blocking.run { [archive] in try archive.lastSequence() }
                return HTTPEndpoint.Response(body: "ok\n")
            } catch {
                return HTTPEndpoint.Response(status: .serviceUnavailable, body: "the archive cannot be read: \(error)\n")
            }
        case "/readyz":
            if let fault = health.fault {
                return HTTPEndpoint.Response(status: .serviceUnavailable, body: "not syncing: \(fault.detail)\n")
            }
            return view.isReady
                ? HTTPEndpoint.Response(body: "ready\n")
                : HTTPEndpoint.Response(status: .serviceUnavailable, body: "not ready: starting, reloading or stopping\n")
        default:
            return HTTPEndpoint.Response(status: .notFound, body: "not found; try /metrics, /healthz or /readyz\n")
        }
    }

    /// Every metric, in the Prometheus text exposition format.
    func renderMetrics() async throws -> String {
        // A damaged or unreadable archive still gets its metrics: the fault is what matters then.
        let snapshot: MetricsSnapshot
        do {
            snapshot = try await Blocking.run { [archive, dataDirectory] in try MetricsSnapshot.read(archive: archive, dataDirectory: dataDirectory) }
        } catch {
            health.record(error)
            snapshot = MetricsSnapshot(
                lastSequence: 0, cursors: [], pendingOwn: 0, conflicts: 0, quarantined: 0, databaseBytes: MetricsSnapshot.fileBytes(archive.path))
        }
        var out = MetricsText()
        let role = archive.role.rawValue
        out.gauge("outpost_info", "The site this daemon serves (value always 1).", [(["site": archive.site.code, "role": role], 1)])
        out.gauge("outpost_ready", "1 once the site serves, 0 while starting, reloading or stopping.", [([:], view.isReady ? 1 : 0)])
        out.gauge("outpost_log_sequence", "The end of this site's change log.", [([:], Double(snapshot.lastSequence))])
        out.gauge("outpost_database_bytes", "Size of the archive file with its write-ahead log.", [([:], Double(snapshot.databaseBytes))])
        out.gauge("outpost_conflicts_unreviewed", "Conflict journal entries not restored.", [([:], Double(snapshot.conflicts))])
        out.gauge("outpost_quarantined_changes", "Changes held in quarantine (clock too far ahead).", [([:], Double(snapshot.quarantined))])
        let fault = health.fault
        out.gauge(
            "outpost_storage_fault", "1 while syncing is stopped by the disk or the archive file, by reason (doctor says what to do).",
            StorageFault.allCases.map { (["reason": $0.rawValue], fault?.reason == $0.rawValue ? 1 : 0) })
        let now = Date().timeIntervalSince1970
        switch archive.role {
        case .branch:
            let state = view.branch?.currentState
            let hqCursor = snapshot.cursors.first { $0.peer == archive.headquarters.code }
            out.gauge(
                "outpost_pending_local_changes", "Changes made here that headquarters has not acknowledged.",
                [([:], Double(snapshot.pendingOwn))])
            let behind = state?.hqLastSequence.map { last in last > (hqCursor?.receivedThrough ?? 0) ? last - (hqCursor?.receivedThrough ?? 0) : 0 } ?? 0
            out.gauge(
                "outpost_changes_behind", "Sequences of headquarters' log not yet received (an upper bound; 0 when unknown).",
                [([:], Double(behind))])
            out.gauge("outpost_connected", "1 while connected to headquarters.", [([:], state?.connected == true ? 1 : 0)])
            let since = state?.lastSuccessMilliseconds.map { max(0, now - Double($0) / 1000) } ?? .infinity
            out.gauge(
                "outpost_seconds_since_last_sync", "Seconds since both directions were last caught up (+Inf: never since start).",
                [([:], since)])
        case .hq:
            let entries = view.registry?.snapshot ?? []
            out.gauge(
                "outpost_connected_branches", "Branches with an open stream.", [([:], Double(entries.filter { $0.streams > 0 }.count))])
            let lag = snapshot.cursors.filter { $0.peer != archive.site.code }.map { c in
                (["site": c.peer], Double(snapshot.lastSequence > c.sentThrough ? snapshot.lastSequence - c.sentThrough : 0))
            }
            out.gauge("outpost_branch_lag_changes", "Sequences of this log a branch has not acknowledged (an upper bound).", lag)
            let seen = snapshot.cursors.filter { $0.peer != archive.site.code }.compactMap { c -> ([String: String], Double)? in
                guard let ms = c.lastSeenMilliseconds else { return nil }
                return (["site": c.peer], max(0, now - Double(ms) / 1000))
            }
            out.gauge("outpost_branch_seconds_since_push", "Seconds since a branch last delivered a change set.", seen)
            if let connections = view.connections {
                out.gauge(
                    "outpost_open_connections", "Connections open at headquarters, from accept to close, authenticated or not.",
                    [([:], Double(connections.open))])
                out.gauge(
                    "outpost_connection_limit", "The most connections headquarters holds at once (sync.max_connections, fitted to the descriptor limit).",
                    [([:], Double(connections.maximum))])
            }
        }
        let counters = metrics.snapshot
        let help: [(String, String)] = [
            (SyncMetrics.applied, "Changes from peers applied here, by direction (pulled at a branch, received at headquarters)."),
            (SyncMetrics.sent, "Changes sent to peers."),
            (SyncMetrics.conflicts, "Concurrent writes that lost and went to the conflict journal."),
            (
                SyncMetrics.refusals,
                "Refusals, by reason, in the names of logs, protocol and CLI alike; at headquarters what it refused, at a branch what "
                    + "headquarters refused of its changes (connections: TLS_HANDSHAKE, TLS_VERSION, HANDSHAKE_TIMEOUT, FIRST_CALL_TIMEOUT, "
                    + "IDLE_TIMEOUT, CONNECTION_LIMIT, SITE_CONNECTION_LIMIT; calls and sets: UNAUTHENTICATED, REVOKED, FORGED_ORIGIN, "
                    + "TOO_LARGE, MALFORMED, VERSION, PROTOCOL; single changes: HQ_ONLY, INVALID_VALUE, CLOCK_AHEAD)."
            ),
            (SyncMetrics.failures, "Sessions with headquarters that failed (a branch reconnects with backoff)."),
            (SyncMetrics.connections, "Connections headquarters accepted, refused ones included."),
        ]
        for (name, text) in help {
            let series = counters.filter { $0.series.name == name }.map { ($0.series.labels, Double($0.value)) }
            out.counter(name, text, series.isEmpty && name != SyncMetrics.refusals ? [([:], 0)] : series)
        }
        return out.text
    }
}

/// What a scrape reads from the archive, in one trip to a worker thread.
struct MetricsSnapshot {
    var lastSequence: UInt64
    var cursors: [PeerCursor]
    var pendingOwn: Int
    var conflicts: Int
    var quarantined: Int
    var databaseBytes: Int64

    static func read(archive: Archive, dataDirectory: String) throws -> MetricsSnapshot {
        let cursors = try archive.cursors()
        let pending =
            archive.role == .branch
            ? try archive.countOwnChanges(after: cursors.first { $0.peer == archive.headquarters.code }?.sentThrough ?? 0) : 0
        let review = try archive.reviewCounts()
        return MetricsSnapshot(
            lastSequence: try archive.lastSequence(), cursors: cursors, pendingOwn: pending, conflicts: review.conflicts,
            quarantined: review.quarantined, databaseBytes: fileBytes(archive.path))
    }

    /// The archive file and its write-ahead log.
    static func fileBytes(_ path: String) -> Int64 {
        ["", "-wal"].reduce(Int64(0)) { sum, suffix in
            sum + (((try? FileManager.default.attributesOfItem(atPath: path + suffix))?[.size] as? NSNumber)?.int64Value ?? 0)
        }
    }
}

/// The Prometheus text format: `# HELP`, `# TYPE`, then one line per series.
struct MetricsText {
    private(set) var text = ""

    mutating func gauge(_ name: String, _ help: String, _ series: [([String: String], Double)]) { family(name, "gauge", help, series) }
    mutating func counter(_ name: String, _ help: String, _ series: [([String: String], Double)]) { family(name, "counter", help, series) }

    private mutating func family(_ name: String, _ type: String, _ help: String, _ series: [([String: String], Double)]) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        for (labels, value) in series {
            text += name
            if !labels.isEmpty {
                text += "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escape($0.value))\"" }.joined(separator: ",") + "}"
            }
            text += " " + Self.format(value) + "\n"
        }
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ v: Double) -> String {
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v.isNaN { return "NaN" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}

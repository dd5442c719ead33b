import CustomerArchive
import Foundation
import Replication
import SyncService
import Synchronization

/// What the running services expose to the operations side (systemd's STATUS line, the
/// metrics endpoint, the health checks). The services are rebuilt on a reload; each new one
/// registers itself here.
final class DaemonView: Sendable {
    private struct State {
        var ready = false
        var branch: BranchClient?
        var registry: BranchRegistry?
        var connections: ConnectionLimiter?
    }

    private let state = Mutex(State())

    func set(ready: Bool) { state.withLock { $0.ready = ready } }
    func set(branch: BranchClient) { state.withLock { $0.branch = branch } }
    func set(registry: BranchRegistry) { state.withLock { $0.registry = registry } }
    func set(connections: ConnectionLimiter) { state.withLock { $0.connections = connections } }

    var isReady: Bool { state.withLock { $0.ready } }
    var branch: BranchClient? { state.withLock { $0.branch } }
    var registry: BranchRegistry? { state.withLock { $0.registry } }
    var connections: ConnectionLimiter? { state.withLock { $0.connections } }

    /// One line for `systemctl status`: ids and counts only.
    func statusLine(site: SiteID) -> String {
        if let registry {
            let branches = registry.snapshot
            let connected = branches.filter { $0.streams > 0 }.count
            return "headquarters \(site): \(connected) branch(es) connected, \(branches.count) seen since start"
        }
        if let branch {
            let s = branch.currentState
            if s.connected {
                let since = s.lastSuccessMilliseconds.map { ", last caught up \(Self.age(ms: $0)) ago" } ?? ""
                return "branch \(site): connected to headquarters\(since)"
            }
            if let error = s.lastError {
                return "branch \(site): offline, retrying (\(error.prefix(120)))"
            }
            return "branch \(site): connecting to headquarters"
        }
        return "\(site): starting"
    }

    static func age(ms: UInt64) -> String {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let seconds = now > ms ? (now - ms) / 1000 : 0
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7_200 { return "\(seconds / 60) min" }
        return "\(seconds / 3_600) h"
    }
}

import CustomerArchive
import Synchronization

/// Counters of what the sync service did since the process started, for the daemon's
/// Prometheus endpoint. Gauges (pending changes, lag, database size) are not kept here: the
/// daemon reads them from the archive when scraped, so they are never stale.
public final class SyncMetrics: Sendable {
    /// A counter's name and labels, e.g. `outpost_refusals_total{reason="MALFORMED"}`.
    public struct Series: Hashable, Sendable, Comparable {
        public var name: String
        public var labels: [String: String]

        public static func < (a: Series, b: Series) -> Bool {
            (a.name, a.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))
                < (b.name, b.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))
        }
    }

    private let counters = Mutex<[Series: UInt64]>([:])

    public init() {}

    public func add(_ name: String, _ labels: [String: String] = [:], _ amount: Int = 1) {
        guard amount > 0 else { return }
        counters.withLock { $0[Series(name: name, labels: labels), default: 0] += UInt64(amount) }
    }

    /// Every counter with its value, sorted by name and labels.
    public var snapshot: [(series: Series, value: UInt64)] {
        counters.withLock { $0.map { (series: $0.key, value: $0.value) } }.sorted { $0.series < $1.series }
    }

    public func value(_ name: String, _ labels: [String: String] = [:]) -> UInt64 {
        counters.withLock { $0[Series(name: name, labels: labels)] ?? 0 }
    }

    // Names, documented where the daemon renders them (`MetricsEndpoint`).
    public static let applied = "outpost_changes_applied_total"
    public static let conflicts = "outpost_conflicts_total"
    public static let refusals = "outpost_refusals_total"
    public static let sent = "outpost_changes_sent_total"
    public static let failures = "outpost_sync_failures_total"
    public static let connections = "outpost_connections_total"

    /// Records what applying one set from a peer did.
    func record(_ report: ApplyReport, direction: String) {
        add(Self.applied, ["direction": direction], report.applied)
        add(Self.conflicts, [:], report.conflicts)
    }

    func refused(_ reason: String, _ count: Int = 1) { add(Self.refusals, ["reason": reason], count) }
}

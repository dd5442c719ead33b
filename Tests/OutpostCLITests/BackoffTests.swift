import CustomerArchive
import Replication
import Testing

@testable import SyncService

/// Reconnecting: the wait doubles from the initial delay up to the maximum, and each wait is
/// drawn between half and all of that, so branches that lost HQ together spread out.
struct BackoffTests {
    @Test func waitsDoubleUpToTheMaximumWithJitter() throws {
        var limits = SyncLimits()
        limits.retryInitialMilliseconds = 500
        limits.retryMaximumMilliseconds = 30_000
        let archive = try Archive.inMemory(site: try SiteID("SH01"), role: .branch)
        let client = BranchClient(
            archive: archive, hq: HostPort(host: "127.0.0.1", port: 1), tls: TLSFiles(ca: "", certificate: "", key: ""), limits: limits,
            watch: try LogWatch(archive: archive, pollInterval: .milliseconds(200)), logger: .init(label: "test"), dataDirectory: nil)
        for (failures, ceiling) in [(1, 500), (2, 1_000), (3, 2_000), (4, 4_000), (7, 30_000), (40, 30_000)] {
            let waits = (0..<200).map { _ in client.backoff(failures: failures) }
            #expect(waits.allSatisfy { $0 >= ceiling / 2 && $0 <= ceiling }, "failure \(failures): \(waits.min()!)...\(waits.max()!)")
            // Jitter: 200 draws are not all the same.
            #expect(Set(waits).count > 20, "failure \(failures): no jitter")
        }
    }
}

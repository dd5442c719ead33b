import ArgumentParser
import CustomerArchive
import Foundation
import Logging
import OutpostDaemon
import Replication
import SyncService

/// How a branch command reaches headquarters for one request: the configuration file and
/// headquarters' address, as `outpost sync --once` finds them.
struct RemoteOptions: ParsableArguments {
    @OptionGroup var configFile: ConfigFileOption

    @Option(name: .customLong("hq"), help: ArgumentHelp("Headquarters' address, overrides sync.hq_address.", valueName: "host:port"))
    var hq: String?

    /// A client for headquarters with this branch's certificate, and the branch's archive.
    func client(storage: DataDirOptions, purpose: String) throws -> (BranchClient, Archive, HostPort) {
        let (explicit, path) = configFile.file
        var configuration = try DaemonConfiguration.load(path: path, required: explicit)
        if let hq { configuration.hqAddress = hq }
        let directory = ConfigFileOption.dataDirectory(storage, configuration: configuration)
        LogLevel.set(.warning)
        let archive = try Archive.open(
            at: (directory as NSString).appendingPathComponent(Archive.fileName), maximumDrift: configuration.limits.maximumClockDriftMilliseconds)
        guard archive.role == .branch else {
            throw CLIError("this site is headquarters, which holds every customer; \(purpose) runs at a branch")
        }
        guard let address = configuration.hqAddress else {
            throw CLIError("headquarters' address is not set: pass --hq host:port or set sync.hq_address in the configuration")
        }
        let hq = try HostPort(parsing: address, defaultPort: DaemonConfiguration.defaultPort)
        let files = configuration.resolvedTLS(role: .branch, site: archive.site, dataDirectory: directory)
        let watch = try LogWatch(archive: archive, pollInterval: .milliseconds(configuration.limits.pollIntervalMilliseconds))
        let client = BranchClient(
            archive: archive, hq: hq, tls: files, limits: configuration.limits, watch: watch, logger: Logger(label: "outpost"),
            dataDirectory: directory)
        return (client, archive, hq)
    }
}

extension CustomerCommand {
    struct Fetch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring a customer this branch does not hold from headquarters (online only).",
            discussion: """
                Asks headquarters for the customer by its number, id or phone; headquarters \
                counts it in this branch's scope as fetched, and one exchange brings it here with \
                its contacts, complaints and claims. The branch keeps it for the fetched window \
                after the last fetch (7 days; 'outpost scope window --fetched-days' at \
                headquarters), and as long as it serves the customer. Offline, the fetch fails \
                and nothing changes: the customer stays at headquarters.

                Examples:
                  outpost customer fetch BJ02-C-000123
                  outpost customer fetch 13800138000
                """)

        @Argument(help: ArgumentHelp("The customer's number, id or phone.", valueName: "ref"))
        var ref: String

        @OptionGroup var remote: RemoteOptions
        @OptionGroup var storage: DataDirOptions
        @OptionGroup var output: JSONOption

        func run() async throws {
            let (client, archive, hq) = try remote.client(storage: storage, purpose: "'customer fetch'")
            let fetched: (customer: RecordKey, number: String)
            do {
                fetched = try await client.fetch(ref)
            } catch {
                throw CLIError("cannot fetch the customer from headquarters (\(hq)): \(BranchClient.describe(error))")
            }
            // The exchange above brings it, or this branch's daemon does when it pulled first.
            let deadline = ContinuousClock.now + .seconds(10)
            while (try? archive.customer(fetched.customer.description)) == nil && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            guard let record = try? archive.customer(fetched.customer.description) else {
                throw CLIError(
                    "headquarters counts customer \(fetched.number) in this branch's scope now; it arrives with the next sync ('outpost sync --once')")
            }
            CustomerOutput.show(record, json: output.json)
        }
    }
}

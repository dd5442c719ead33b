import CustomerArchive
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Replication
import ServiceLifecycle
import SyncProtocol
import SyncService
import Synchronization

/// `outpost serve`: the services of one site under a `ServiceGroup` that stops them in
/// order on SIGTERM or SIGINT.
///
/// Headquarters serves the sync protocol to branches; a branch keeps a link to headquarters.
/// Both watch their archive's change log, which the CLI writes from other processes.
public struct Daemon: Sendable {
    public let archive: Archive
    public let configuration: DaemonConfiguration
    public let dataDirectory: String
    public let logger: Logger

    public init(archive: Archive, configuration: DaemonConfiguration, dataDirectory: String, logger: Logger) {
        self.archive = archive
        self.configuration = configuration
        self.dataDirectory = dataDirectory
        self.logger = logger
    }

    /// Runs until SIGTERM/SIGINT. `onReady` is called once the site serves (HQ: listening,
    /// with the bound address; branch: started).
    public func run(onReady: @escaping @Sendable (String) -> Void = { _ in }) async throws {
        let watch = try LogWatch(archive: archive, pollInterval: .milliseconds(configuration.limits.pollIntervalMilliseconds))
        var services: [any Service] = [
            ClosureService { await cancelWhenGracefulShutdown { await watch.run() } },
            ClosureService { [archive, logger] in await cancelWhenGracefulShutdown { await Self.indexSearch(archive: archive, logger: logger) } },
        ]
        switch archive.role {
        case .hq:
            services.append(try headquarters(watch: watch, onReady: onReady))
        case .branch:
            services.append(try branch(watch: watch, onReady: onReady))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
        logger.info("stopped", metadata: ["site": "\(archive.site)"])
    }

    /// Keeps the customer search index caught up behind the writes (synced batches, the CLI),
    /// twice a second, so searches seldom find work left for them.
    static func indexSearch(archive: Archive, logger: Logger) async {
        while !Task.isCancelled {
            do {
                let indexed = try await Blocking.run { try archive.catchUpSearchIndex() }
                if indexed > 0 { logger.debug("indexed customers for search", metadata: ["customers": "\(indexed)"]) }
            } catch {
                logger.warning("search indexing failed; searches will index what is pending", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    // MARK: Headquarters

    private func headquarters(watch: LogWatch, onReady: @escaping @Sendable (String) -> Void) throws -> any Service {
        let listen: HostPort
        do { listen = try HostPort(parsing: configuration.listenAddress, defaultPort: DaemonConfiguration.defaultPort) } catch {
            throw ConfigurationError(file: "listen address", line: nil, key: "sync.listen_address", "\(error)")
        }
        let files = configuration.resolvedTLS(role: .hq, site: archive.site, dataDirectory: dataDirectory)
        let limits = configuration.limits
        let state = StateFile(directory: dataDirectory, initial: SyncState(role: "hq", site: archive.site.code))
        let registry = BranchRegistry(onChange: { state.markDirty() })
        let service = HeadquartersService(
            archive: archive, limits: limits, watch: watch, revokedFile: files.revoked, registry: registry, logger: logger)
        let server = try service.makeServer(address: listen, tls: files)
        let logger = self.logger
        let site = archive.site
        return ClosureService {
            let serving = Task { try await server.serve() }
            try await withGracefulShutdownHandler {
                async let ready: Void = {
                    guard let bound = try await server.listeningAddress else { return }
                    logger.info("serving branches", metadata: ["site": "\(site)", "address": "\(bound)"])
                    onReady("\(bound)")
                }()
                // The state file for `outpost status`: rewritten within a quarter second of a
                // branch connecting or moving a cursor, and at least every 5 s.
                let stateWriter = Task {
                    var ticks = 0
                    while !Task.isCancelled {
                        if state.takeDirty() || ticks % 20 == 0 { state.update { $0.branches = registry.snapshot } }
                        ticks += 1
                        try? await Task.sleep(for: .milliseconds(250))
                    }
                }
                defer { stateWriter.cancel() }
                try await ready
                try await serving.value
                state.update {
                    $0.branches = registry.snapshot.map { entry in
                        var e = entry
                        e.streams = 0
                        return e
                    }
                }
            } onGracefulShutdown: {
                logger.info("shutting down: ending branch streams after the batch in flight")
                service.beginShutdown()
                server.beginGracefulShutdown()
                // A branch that does not let go within the grace period is cut off.
                Task {
                    try? await Task.sleep(for: .seconds(10))
                    serving.cancel()
                }
            }
        }
    }

    // MARK: Branch

    private func branch(watch: LogWatch, onReady: @escaping @Sendable (String) -> Void) throws -> any Service {
        guard let address = configuration.hqAddress else {
            throw ConfigurationError(
                file: "configuration", line: nil, key: "sync.hq_address", "a branch needs headquarters' address (host:port): set it or pass --hq")
        }
        let hq: HostPort
        do { hq = try HostPort(parsing: address, defaultPort: DaemonConfiguration.defaultPort) } catch {
            throw ConfigurationError(file: "configuration", line: nil, key: "sync.hq_address", "\(error)")
        }
        let files = configuration.resolvedTLS(role: .branch, site: archive.site, dataDirectory: dataDirectory)
        _ = try files.load()
        let client = BranchClient(
            archive: archive, hq: hq, tls: files, limits: configuration.limits, watch: watch, logger: logger, dataDirectory: dataDirectory)
        let logger = self.logger
        let site = archive.site
        return ClosureService {
            logger.info("branch started", metadata: ["site": "\(site)", "hq": "\(hq)"])
            onReady(hq.description)
            await cancelWhenGracefulShutdown { await client.run() }
        }
    }
}

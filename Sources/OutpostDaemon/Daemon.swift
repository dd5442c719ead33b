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
import UnixSignals

/// `outpost serve`: the services of one site under a `ServiceGroup`.
///
/// Headquarters serves the sync protocol to branches; a branch keeps a link to headquarters.
/// Both watch their archive's change log, which the CLI writes from other processes, and
/// serve `/metrics`, `/healthz` and `/readyz` on a local port.
///
/// Signals: SIGTERM or SIGINT stop gracefully (the batch in flight is finished). SIGHUP
/// re-reads the configuration and the certificates; a new configuration that does not load
/// is logged and the old one keeps running. Under systemd (`Type=notify`) the daemon reports
/// READY=1, STATUS= lines, WATCHDOG=1 pings and STOPPING=1.
public struct Daemon: Sendable {
    public let archive: Archive
    public let configuration: DaemonConfiguration
    public let dataDirectory: String
    public let logger: Logger
    public let metrics = SyncMetrics()
    public let health = StorageHealth()
    let notifier: SystemdNotifier
    let view = DaemonView()

    public init(
        archive: Archive, configuration: DaemonConfiguration, dataDirectory: String, logger: Logger,
        notifier: SystemdNotifier = SystemdNotifier()
    ) {
        self.archive = archive
        self.configuration = configuration
        self.dataDirectory = dataDirectory
        self.logger = logger
        self.notifier = notifier
    }

    /// Runs until SIGTERM/SIGINT.
    /// - Parameters:
    ///   - reload: reads the configuration again (SIGHUP); nil keeps the first one.
    ///   - onReady: called each time the site serves (HQ: listening, with the bound address;
    ///     branch: started), after a reload too.
    public func run(
        reload: (@Sendable () throws -> DaemonConfiguration)? = nil, onReady: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        let watch = try LogWatch(archive: archive, pollInterval: .milliseconds(configuration.limits.pollIntervalMilliseconds))
        let control = ControlBox()
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        try await withThrowingTaskGroup(of: Void.self) { top in
            top.addTask { [self] in
                for await signal in signals {
                    if signal == .sighup {
                        await self.reload(reload, control: control)
                    } else {
                        logger.notice("stopping", metadata: ["signal": "\(signal)"])
                        notifier.stopping()
                        let group = control.state.withLock { c -> ServiceGroup? in
                            c.stop = true
                            return c.group
                        }
                        await group?.triggerGracefulShutdown()
                    }
                }
            }
            top.addTask { [self] in await self.superviseForManager() }
            // After the watchdog pinger is up: on a large archive the check takes a while.
            await checkArchiveAtStart()
            top.addTask { [archive, logger, health] in await Self.indexSearch(archive: archive, logger: logger, health: health) }
            top.addTask { await watch.run() }
            top.addTask { [self] in await self.watchDisk() }

            var current = configuration
            while true {
                let services = try makeServices(current, watch: watch, onReady: onReady)
                let group = ServiceGroup(
                    configuration: ServiceGroupConfiguration(
                        services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                        gracefulShutdownSignals: [], logger: logger))
                let stopNow = control.state.withLock { c -> Bool in
                    c.group = group
                    return c.stop
                }
                if stopNow { break }
                try await group.run()
                let next = control.state.withLock { c -> DaemonConfiguration? in
                    c.group = nil
                    defer { c.next = nil }
                    return c.stop ? nil : c.next
                }
                guard let next else { break }
                current = next
                logger.notice("configuration reloaded")
            }
            top.cancelAll()
        }
        view.set(ready: false)
        logger.info("stopped")
    }

    /// What the signal handler asks of the main loop.
    private final class ControlBox: Sendable {
        struct Control {
            var group: ServiceGroup?
            var next: DaemonConfiguration?
            var stop = false
        }
        let state = Mutex(Control())
    }

    /// `quick_check` before anything is sent: a damaged file must not reach other sites.
    private func checkArchiveAtStart() async {
        notifier.status("checking the archive (quick_check)")
        do {
            let problems = try await Blocking.run { [archive] in try archive.checkIntegrity() }
            guard !problems.isEmpty else { return }
            health.set(.corrupt, detail: StorageHealth.advice(.corrupt))
            logger.critical(
                "the archive failed its integrity check: syncing is stopped; run 'outpost doctor', then 'outpost restore' a backup",
                metadata: ["problems": "\(problems.count)", "first": "\(problems[0].prefix(160))"])
        } catch {
            if health.record(error) == nil {
                logger.error("the archive's integrity check could not run", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Every 5 s: pauses syncing when the disk is nearly full (before writes fail) and
    /// resumes it once there is room again.
    private func watchDisk() async {
        while !Task.isCancelled {
            if health.fault == nil, StorageHealth.isNearlyFull(directory: dataDirectory) {
                health.set(.diskFull, detail: StorageHealth.advice(.diskFull))
                logger.error(
                    "stopped syncing: the data directory's disk is nearly full",
                    metadata: ["free_bytes": "\(StorageHealth.freeBytes(directory: dataDirectory) ?? 0)"])
            } else if health.clearIfRecovered(directory: dataDirectory) {
                logger.notice("the disk has room again: syncing resumes")
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }

    /// SIGHUP: load the configuration and check its certificates; only a good one replaces
    /// the running services (gracefully: the batch in flight finishes, branches reconnect).
    private func reload(_ load: (@Sendable () throws -> DaemonConfiguration)?, control: ControlBox) async {
        notifier.reloading()
        let next: DaemonConfiguration
        do {
            next = try load?() ?? configuration
            _ = try next.resolvedTLS(role: archive.role, site: archive.site, dataDirectory: dataDirectory).load()
        } catch {
            logger.error("reload refused; the running configuration stays in force", metadata: ["error": "\(error)"])
            notifier.ready(status: "reload failed, running the previous configuration: \(error)")
            return
        }
        logger.notice("reloading configuration and certificates")
        view.set(ready: false)
        let group = control.state.withLock { c -> ServiceGroup? in
            c.next = next
            return c.group
        }
        await group?.triggerGracefulShutdown()
    }

    /// WATCHDOG=1 at half of WatchdogSec while the archive's worker threads answer, and a
    /// STATUS= line whenever the sync state changes.
    private func superviseForManager() async {
        guard notifier.isEnabled else { return }
        var lastStatus = ""
        var lastPing = ContinuousClock.now
        let interval = notifier.watchdogInterval
        while !Task.isCancelled {
            if let interval, ContinuousClock.now - lastPing >= interval {
                // A ping proves the cooperative pool and the archive's threads both run.
                if (try? await Blocking.run { true }) == true {
                    notifier.watchdog()
                    lastPing = .now
                }
            }
            let status = health.fault.map { "\(archive.site): NOT SYNCING: \($0.detail)" } ?? view.statusLine(site: archive.site)
            if status != lastStatus, view.isReady {
                notifier.status(status)
                lastStatus = status
            }
            let step: Duration = interval.map { min($0 / 4, .seconds(2)) } ?? .seconds(2)
            try? await Task.sleep(for: step)
        }
    }

    private func makeServices(
        _ configuration: DaemonConfiguration, watch: LogWatch, onReady: @escaping @Sendable (String) -> Void
    ) throws -> [any Service] {
        var services: [any Service] = []
        let ready: @Sendable (String) -> Void = { [view, notifier, site = archive.site] address in
            view.set(ready: true)
            notifier.ready(status: view.statusLine(site: site))
            onReady(address)
        }
        switch archive.role {
        case .hq: services.append(try headquarters(configuration, watch: watch, onReady: ready))
        case .branch: services.append(try branch(configuration, watch: watch, onReady: ready))
        }
        if let address = configuration.metricsAddress {
            services.append(try metricsService(address: address))
        }
        services.append(housekeepingService(retentionDays: configuration.limits.logRetentionDays, watch: watch))
        return services
    }

    /// At start and hourly: a branch drops from its log what headquarters acknowledged beyond
    /// the retention window (``Archive/compactLog(retentionMilliseconds:)``); headquarters
    /// retires lapsed scope reasons (``Archive/expireScope()``), and the moves out that follow
    /// wake the branches' streams, then drops the superseded writes from its log
    /// (``Archive/compactHeadquartersLog(chunk:)``).
    private func housekeepingService(retentionDays: Int, watch: LogWatch) -> any Service {
        let (archive, logger, health) = (self.archive, self.logger, self.health)
        return ClosureService {
            await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    if health.fault == nil {
                        do {
                            if archive.role == .hq {
                                let lapsed = try await Blocking.run { try archive.expireScope() }
                                if lapsed > 0 {
                                    watch.advance(to: try await Blocking.run { try archive.lastSequence() })
                                    logger.info("retired lapsed scope reasons", metadata: ["reasons": "\(lapsed)"])
                                }
                                let compacted = try await Blocking.run { try archive.compactHeadquartersLog() }
                                if compacted.writesDropped + compacted.movesDropped > 0 {
                                    logger.info(
                                        "compacted the change log",
                                        metadata: [
                                            "writes_dropped": "\(compacted.writesDropped)", "changes_dropped": "\(compacted.changesDropped)",
                                            "moves_dropped": "\(compacted.movesDropped)", "rows_packed": "\(compacted.rowsPacked)",
                                        ])
                                }
                            } else {
                                let dropped = try await Blocking.run {
                                    try archive.compactLog(retentionMilliseconds: UInt64(retentionDays) * 86_400_000)
                                }
                                if dropped > 0 {
                                    logger.info("compacted the change log", metadata: ["dropped": "\(dropped)", "retention_days": "\(retentionDays)"])
                                }
                            }
                        } catch {
                            if health.record(error) == nil {
                                logger.warning("housekeeping failed; it is tried again in an hour", metadata: ["error": "\(error)"])
                            }
                        }
                    }
                    try? await Task.sleep(for: .seconds(3600))
                }
            }
        }
    }

    /// Keeps the customer search index caught up behind the writes (synced batches, the CLI),
    /// twice a second, so searches seldom find work left for them.
    static func indexSearch(archive: Archive, logger: Logger, health: StorageHealth) async {
        while !Task.isCancelled {
            // Nothing is written while the disk is full or the file damaged.
            if health.fault == nil {
                do {
                    let indexed = try await Blocking.run { try archive.catchUpSearchIndex() }
                    if indexed > 0 { logger.debug("indexed customers for search", metadata: ["customers": "\(indexed)"]) }
                } catch {
                    if let fault = health.record(error) {
                        logger.error("stopped syncing: \(fault.detail)", metadata: ["reason": "\(fault.reason)"])
                    } else {
                        logger.warning("search indexing failed; searches will index what is pending", metadata: ["error": "\(error)"])
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    // MARK: Headquarters

    private func headquarters(
        _ configuration: DaemonConfiguration, watch: LogWatch, onReady: @escaping @Sendable (String) -> Void
    ) throws -> any Service {
        let listen: HostPort
        do { listen = try HostPort(parsing: configuration.listenAddress, defaultPort: DaemonConfiguration.defaultPort) } catch {
            throw ConfigurationError(file: "listen address", line: nil, key: "sync.listen_address", "\(error)")
        }
        let files = configuration.resolvedTLS(role: .hq, site: archive.site, dataDirectory: dataDirectory)
        let limits = configuration.limits
        let state = StateFile(directory: dataDirectory, initial: SyncState(role: "hq", site: archive.site.code))
        let registry = BranchRegistry(onChange: { state.markDirty() })
        let connections = connectionLimiter(limits)
        let service = HeadquartersService(
            archive: archive, limits: limits, watch: watch, revokedFile: files.revoked, registry: registry, logger: logger, metrics: metrics,
            health: health, connections: connections)
        view.set(registry: registry)
        view.set(connections: connections)
        let server = try service.makeServer(address: listen, tls: files)
        let logger = self.logger
        return ClosureService {
            let serving = Task { try await server.serve() }
            try await withGracefulShutdownHandler {
                async let ready: Void = {
                    guard let bound = try await server.listeningAddress else { return }
                    logger.info(
                        "serving branches",
                        metadata: [
                            "address": "\(bound)", "max_connections": "\(connections.maximum)",
                            "max_connections_per_site": "\(connections.maximumPerSite)",
                        ])
                    onReady("\(bound)")
                }()
                // The state file for `outpost status`: rewritten within a quarter second of a
                // branch connecting or moving a cursor, and at least every 5 s.
                let stateWriter = Task {
                    var ticks = 0
                    while !Task.isCancelled {
                        if state.takeDirty() || ticks % 20 == 0 {
                            state.update {
                                $0.branches = registry.snapshot
                                $0.storageFault = health.fault
                            }
                        }
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

    /// The connection caps in force: the descriptor limit is raised to its hard limit first,
    /// and `sync.max_connections` lowered to fit under it, so accept never runs out of
    /// descriptors.
    private func connectionLimiter(_ limits: SyncLimits) -> ConnectionLimiter {
        let descriptors = DescriptorLimit.raiseToHard()
        let maximum = ConnectionLimiter.effectiveMaximum(configured: limits.maximumConnections, descriptorLimit: descriptors)
        if maximum < limits.maximumConnections {
            logger.notice(
                "sync.max_connections lowered to fit the descriptor limit (raise LimitNOFILE to allow more)",
                metadata: [
                    "max_connections": "\(maximum)", "configured": "\(limits.maximumConnections)",
                    "descriptor_limit": "\(descriptors.map { "\($0)" } ?? "?")",
                ])
        }
        return ConnectionLimiter(maximum: maximum, maximumPerSite: limits.maximumConnectionsPerSite)
    }

    // MARK: Branch

    private func branch(
        _ configuration: DaemonConfiguration, watch: LogWatch, onReady: @escaping @Sendable (String) -> Void
    ) throws -> any Service {
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
            archive: archive, hq: hq, tls: files, limits: configuration.limits, watch: watch, logger: logger, dataDirectory: dataDirectory,
            metrics: metrics, health: health)
        view.set(branch: client)
        let logger = self.logger
        return ClosureService {
            logger.info("branch started", metadata: ["hq": "\(hq)"])
            onReady(hq.description)
            await cancelWhenGracefulShutdown { await client.run() }
        }
    }
}

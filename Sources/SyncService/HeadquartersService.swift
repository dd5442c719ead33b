import CustomerArchive
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Replication
import SyncProtocol
import Synchronization
import X509

/// Headquarters' side of the protocol: authenticates each call by the client certificate,
/// takes branches' changes in (refusing what a branch may not write) and streams everyone
/// else's changes out, never echoing a change to its origin.
public final class HeadquartersService: WireSync.SimpleServiceProtocol, Sendable {
    let archive: Archive
    let limits: SyncLimits
    let watch: LogWatch
    let revocations: RevocationWatcher
    let registry: BranchRegistry
    let logger: Logger
    let metrics: SyncMetrics
    let health: StorageHealth
    /// The caps on connections, counted by ``makeServer(address:tls:)``'s guards.
    let connections: ConnectionLimiter
    private let stopping = Atomic(false)
    /// When each site's recent `Fetch` and `Search` calls came (the last hour's, at most
    /// `max_fetches_per_hour` per site).
    private let fetchTimes = Mutex<[SiteID: [ContinuousClock.Instant]]>([:])

    /// - Parameter connections: the connection caps; by default the configured ones, not
    ///   lowered to the descriptor limit (the daemon passes the lowered ones).
    public init(
        archive: Archive, limits: SyncLimits, watch: LogWatch, revokedFile: String?, registry: BranchRegistry, logger: Logger,
        metrics: SyncMetrics = SyncMetrics(), health: StorageHealth = StorageHealth(), connections: ConnectionLimiter? = nil
    ) {
        self.metrics = metrics
        self.health = health
        self.connections =
            connections ?? ConnectionLimiter(maximum: limits.maximumConnections, maximumPerSite: limits.maximumConnectionsPerSite)
        self.archive = archive
        self.limits = limits
        self.watch = watch
        self.revocations = RevocationWatcher(path: revokedFile)
        self.registry = registry
        self.logger = logger
    }

    /// The oldest branch schema served; HQ serves the previous schema too once there is one.
    static let minimumSchemaVersion: UInt32 = 1

    var wireLimits: WireLimits {
        var l = WireLimits()
        l.maxChangeSetBytes = UInt32(limits.maximumMessageBytes)
        l.maxChanges = UInt32(limits.batchMaximumChanges)
        l.maxClockDriftMs = limits.maximumClockDriftMilliseconds
        return l
    }

    var codecLimits: CodecLimits {
        // A body inflates to at most ~20x here; a larger claim is refused before allocating.
        CodecLimits(
            maximumEncodedBytes: limits.maximumMessageBytes, maximumBodyBytes: max(limits.batchMaximumBytes * 4, 16 << 20),
            maximumChanges: limits.batchMaximumChanges * 2)
    }

    /// A refusal for the branch, counted by reason for the metrics.
    func refusal(_ code: RPCError.Code, _ reason: Reason, _ message: String) -> RPCError {
        metrics.refused(reason.metadataName)
        return Wire.refusal(code, reason, message)
    }

    // MARK: Identity

    /// The branch a call comes from, from its verified client certificate only, and the
    /// certificate's serial (streams re-check revocation with it).
    func caller(_ context: ServerContext) throws -> (site: SiteID, serial: String) {
        let peer = context.remotePeer
        guard let certificate = (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate else {
            logger.warning("refused a call without a client certificate", metadata: ["peer": "\(peer)", "reason": "UNAUTHENTICATED"])
            throw refusal(.unauthenticated, .unauthenticated, "a client certificate issued by this headquarters is required")
        }
        let identity = CertificateIdentity(certificate)
        guard let site = try? SiteID(identity.commonName), site != archive.headquarters, identity.unit == "branch" else {
            logger.warning("refused a certificate that names no branch", metadata: ["peer": "\(peer)", "reason": "UNAUTHENTICATED"])
            throw refusal(.unauthenticated, .unauthenticated, "the client certificate does not name a branch site")
        }
        if revocations.isRevoked(identity.serial) {
            logger.warning("refused a revoked certificate", metadata: ["site": "\(site)", "serial": "\(identity.serial)", "reason": "REVOKED"])
            throw refusal(.permissionDenied, .revoked, "the certificate of \(site) (serial \(identity.serial)) is revoked at headquarters")
        }
        if identity.notValidAfter < Date() {
            logger.warning("refused an expired certificate", metadata: ["site": "\(site)", "reason": "UNAUTHENTICATED"])
            throw refusal(.unauthenticated, .unauthenticated, "the certificate of \(site) expired; issue a new one with 'outpost pki issue'")
        }
        return (site, identity.serial)
    }

    /// Ends a long-lived stream once its certificate is revoked (`pki revoke` takes effect
    /// on open streams too, not only on the next call).
    func checkStillValid(_ site: SiteID, serial: String) throws {
        if revocations.isRevoked(serial) {
            logger.warning("closed a stream of a revoked certificate", metadata: ["site": "\(site)", "serial": "\(serial)", "reason": "REVOKED"])
            throw refusal(.permissionDenied, .revoked, "the certificate of \(site) (serial \(serial)) is revoked at headquarters")
        }
    }

    // MARK: Hello

    public func hello(request: WireHelloRequest, context: ServerContext) async throws -> WireHelloResponse {
        let site = try caller(context).site
        try checkNotStopping()
        guard (Wire.minimumProtocolVersion...Wire.protocolVersion).contains(request.protocolVersion) else {
            logger.warning("refused a protocol version", metadata: ["site": "\(site)", "version": "\(request.protocolVersion)", "reason": "VERSION"])
            throw refusal(
                .failedPrecondition, .version,
                "headquarters speaks sync protocols \(Wire.minimumProtocolVersion)-\(Wire.protocolVersion); \(site) speaks \(request.protocolVersion): upgrade the older side"
            )
        }
        let schema = UInt32(Schema.version)
        guard (Self.minimumSchemaVersion...schema).contains(request.schemaVersion) else {
            logger.warning("refused a schema version", metadata: ["site": "\(site)", "schema": "\(request.schemaVersion)", "reason": "VERSION"])
            throw refusal(
                .failedPrecondition, .version,
                "headquarters serves archive schemas \(Self.minimumSchemaVersion)-\(schema); \(site) has \(request.schemaVersion): "
                    + (request.schemaVersion > schema ? "upgrade headquarters first" : "upgrade the branch"))
        }
        let (cursor, last) = try await Blocking.run { [archive] in (try archive.cursor(for: site), try archive.lastSequence()) }
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let skew = Int64(bitPattern: request.clockMs &- now)
        if skew.magnitude > limits.maximumClockDriftMilliseconds {
            logger.warning("branch clock differs from headquarters'", metadata: ["site": "\(site)", "skew_ms": "\(skew)"])
        }
        logger.info("branch connected", metadata: ["site": "\(site)", "peer": "\(context.remotePeer)", "software": "\(request.software.prefix(40))"])
        registry.seen(site)
        var response = WireHelloResponse()
        response.protocolVersion = Wire.protocolVersion
        response.schemaVersion = schema
        response.minSchemaVersion = Self.minimumSchemaVersion
        response.site = site.code
        response.headquarters = archive.headquarters.code
        response.clockMs = now
        response.receivedThrough = cursor.receivedThrough
        response.sentThrough = cursor.sentThrough
        response.lastSequence = last
        response.limits = wireLimits
        return response
    }

    // MARK: Fetch and search (protocol 3)

    /// A clerk at the branch fetches a customer the branch does not hold: HQ counts it in the
    /// branch's scope as fetched, and its move in reaches the branch with its pull.
    public func fetch(request: WireFetchRequest, context: ServerContext) async throws -> WireFetchResponse {
        let site = try caller(context).site
        try checkNotStopping()
        try checkRate(site)
        guard !request.reference.isEmpty, request.reference.utf8.count <= 64 else {
            throw RPCError(code: .invalidArgument, message: "a fetch names one customer by its number, id or phone (at most 64 bytes)")
        }
        let (customer, number, end) = try await answering(site) { [archive] in
            let (customer, number) = try archive.fetch(request.reference, for: site)
            return (customer, number, try archive.lastSequence())
        }
        watch.advance(to: end)
        logger.info("a branch fetched a customer", metadata: ["site": "\(site)", "customer": "\(customer)"])
        var response = WireFetchResponse()
        response.customer = Data(customer.bytes)
        response.number = number ?? ""
        response.sequence = end
        return response
    }

    /// HQ's search for a clerk at the branch: numbers, homes, names and phones partly hidden.
    public func search(request: WireSearchRequest, context: ServerContext) async throws -> WireSearchResponse {
        let site = try caller(context).site
        try checkNotStopping()
        try checkRate(site)
        guard !request.text.isEmpty, request.text.utf8.count <= 256 else {
            throw RPCError(code: .invalidArgument, message: "a search needs 1 to 256 bytes of text")
        }
        let limit = request.limit == 0 ? 20 : Int(min(request.limit, 50))
        let found = try await answering(site) { [archive] in try archive.remoteSearch(request.text, limit: limit) }
        var response = WireSearchResponse()
        response.customers = found.map { c in
            var w = WireMaskedCustomer()
            w.number = c.number
            w.name = c.name
            w.phone = c.phone
            w.homeBranch = c.homeBranch
            return w
        }
        logger.info("a branch searched headquarters", metadata: ["site": "\(site)", "found": "\(found.count)"])
        return response
    }

    /// A new branch's bootstrap: its scope as it is now, in parts, after `request.after`
    /// (protocols/README.md §5.8). Each part is read in its own read transaction, so a long
    /// bootstrap holds no lock, and bounded like a pull's batch.
    public func snapshot(request: WireSnapshotRequest, response: RPCWriter<WireSnapshotPart>, context: ServerContext) async throws {
        let (site, serial) = try caller(context)
        try checkNotStopping()
        guard request.after.isEmpty || request.after.count == 16 else {
            throw refusal(.invalidArgument, .protocol, "SnapshotRequest.after is a 16-byte customer key or empty")
        }
        registry.opened(site)
        defer { registry.closed(site) }
        let maxBytes =
            request.maxChangeSetBytes == 0 ? limits.batchMaximumBytes : max(4_096, min(Int(request.maxChangeSetBytes), limits.batchMaximumBytes))
        var after = request.after.isEmpty ? nil : try RecordKey(bytes: request.after)
        logger.info("a branch is bootstrapping from a snapshot", metadata: ["site": "\(site)", "after": "\(after.map { "\($0)" } ?? "start")"])
        while true {
            try checkStillValid(site, serial: serial)
            try checkNotStopping()
            let resume = after
            let part = try await answering(site) { [archive, limits] in
                try archive.snapshot(for: site, after: resume, maxChanges: limits.batchMaximumChanges, maxBytes: maxBytes)
            }
            var message = WireSnapshotPart()
            message.cut = part.cut
            message.after = part.after.map { Data($0.bytes) } ?? Data()
            message.customers = part.customers.map { Data($0.bytes) }
            message.changeSet = Data(try ChangeSetCodec.encode(part.set, level: Wire.compressionLevel))
            message.sent = UInt64(part.sent)
            message.total = UInt64(part.total)
            message.done = part.done
            message.digest = Data(part.digest)
            message.refused = part.refused.map(WireRefusedWrite.init)
            try await response.write(message)
            metrics.add(SyncMetrics.sent, [:], part.set.changes.count)
            if part.done {
                logger.info("a branch received its snapshot", metadata: ["site": "\(site)", "customers": "\(part.total)", "cut": "\(part.cut)"])
                return
            }
            after = part.customers.last
        }
    }

    /// Counts a `Fetch` or `Search` call against the site's hour (`max_fetches_per_hour`).
    private func checkRate(_ site: SiteID) throws {
        let now = ContinuousClock.now
        let allowed = fetchTimes.withLock { times -> Bool in
            var mine = times[site, default: []]
            mine.removeAll { now - $0 > .seconds(3_600) }
            guard mine.count < limits.maximumFetchesPerHour else {
                times[site] = mine
                return false
            }
            mine.append(now)
            times[site] = mine
            return true
        }
        guard allowed else {
            logger.warning("refused a fetch over the hourly limit", metadata: ["site": "\(site)", "reason": "RATE_LIMITED"])
            throw refusal(
                .resourceExhausted, .rateLimited,
                "\(site) made \(limits.maximumFetchesPerHour) customer fetches and remote searches in the last hour, the limit (sync.max_fetches_per_hour); try again later"
            )
        }
    }

    /// Runs an archive call for a branch's request, turning its errors into the call's status.
    private func answering<T: Sendable>(_ site: SiteID, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await Blocking.run(body)
        } catch let error as ArchiveError where error.code == .notFound {
            throw RPCError(code: .notFound, message: error.message)
        } catch let error as ArchiveError where error.code == .invalidInput || error.code == .refused {
            throw RPCError(code: .invalidArgument, message: error.message)
        } catch {
            if let fault = health.record(error) {
                logger.error("cannot answer a branch: \(fault.detail)", metadata: ["site": "\(site)", "reason": "\(fault.reason)"])
                throw RPCError(code: .unavailable, message: "headquarters cannot read its archive now (\(fault.reason)); try again")
            }
            throw RPCError(code: .unavailable, message: "headquarters could not answer now; try again")
        }
    }

    // MARK: Push

    public func push(
        request: RPCAsyncSequence<WirePushRequest, any Error>, response: RPCWriter<WirePushAck>, context: ServerContext
    ) async throws {
        let (site, serial) = try caller(context)
        registry.opened(site)
        defer { registry.closed(site) }
        do {
            for try await message in request {
                try checkStillValid(site, serial: serial)
                try checkNotStopping()
                let ack = try await receive(message.changeSet, from: site)
                try await response.write(ack)
            }
        } catch let error as RPCError {
            throw error
        } catch {
            // Not a refusal of any set (a branch sets aside a write HQ refuses as MALFORMED):
            // reading the stream failed, and the branch retries.
            logger.warning("push stream failed", metadata: ["site": "\(site)", "error": "\(error)"])
            throw RPCError(code: .unavailable, message: "the push stream broke: \(error); the branch will retry")
        }
    }

    /// Checks one change set from `site` and commits it with the cursor; refusals of whole
    /// sets throw (nothing stored), refusals of single changes are reported in the ack.
    func receive(_ data: Data, from site: SiteID) async throws -> WirePushAck {
        func refuse(_ code: RPCError.Code, _ reason: Reason, _ message: String) -> RPCError {
            logger.warning("refused a change set", metadata: ["site": "\(site)", "reason": "\(reason.metadataName)", "detail": "\(message)"])
            return refusal(code, reason, message)
        }
        guard data.count <= limits.maximumMessageBytes else {
            throw refuse(.resourceExhausted, .tooLarge, "a change set of \(data.count) bytes is over the limit of \(limits.maximumMessageBytes)")
        }
        let set: ChangeSet
        do {
            set = try ChangeSetCodec.decode([UInt8](data), limits: codecLimits)
        } catch {
            if error.code == .changeSetTooLarge { throw refuse(.resourceExhausted, .tooLarge, error.message) }
            throw refuse(.invalidArgument, .malformed, "the change set does not decode: \(error.message)")
        }
        // The door: the same judgement as `outpost changes apply` gives a branch's file.
        let report: ApplyReport
        let cursor: PeerCursor
        do {
            (report, cursor) = try await Blocking.run { [archive, watch, limits] in
                let report = try archive.admit(set, from: site, maximumChanges: limits.batchMaximumChanges, batchSize: .max)
                watch.advance(to: try archive.lastSequence())
                return (report, try archive.cursor(for: site))
            }
        } catch let error as ArchiveError where Wire.refusal(for: error.code) != nil {
            let (code, reason) = Wire.refusal(for: error.code)!
            throw refuse(code, reason, error.message)
        } catch {
            // HQ's own trouble (disk full, a busy or damaged file): not the branch's fault.
            if let fault = health.record(error) {
                logger.error("cannot store change sets: \(fault.detail)", metadata: ["site": "\(site)", "reason": "\(fault.reason)"])
                throw RPCError(code: .unavailable, message: "headquarters cannot store change sets now (\(fault.reason)); the branch will retry")
            }
            logger.error("storing a change set failed", metadata: ["site": "\(site)", "error": "\(error)"])
            throw RPCError(code: .unavailable, message: "headquarters could not store the change set now; the branch will retry")
        }
        registry.received(site, through: cursor.receivedThrough)
        metrics.record(report, direction: "received")
        var ack = WirePushAck()
        ack.receivedThrough = cursor.receivedThrough
        ack.applied = UInt32(clamping: set.changes.count - report.refusals.count)
        ack.refusals = report.refusals.map { r in
            var w = WireRefusal()
            w.record = r.record.description
            w.reason = Reason(metadataName: r.kind.rawValue)
            w.message = r.message
            w.hlc = r.time.rawValue
            return w
        }
        // The archive logged each refused change (record, origin, reason).
        for r in report.refusals { metrics.refused(r.kind.rawValue) }
        return ack
    }

    // MARK: Pull

    public func pull(
        request: RPCAsyncSequence<WirePullRequest, any Error>, response: RPCWriter<WirePullBatch>, context: ServerContext
    ) async throws {
        let (site, serial) = try caller(context)
        registry.opened(site)
        defer { registry.closed(site) }
        // The reader takes the PullStart and then the acknowledgements; the sender streams
        // batches. Both are children of one group, so whichever fails ends the call at once.
        let (starts, startSink) = AsyncStream.makeStream(of: WirePullStart.self)
        enum Finished { case reader, sender }
        try await withThrowingTaskGroup(of: Finished.self) { group in
            group.addTask { [self] in
                var started = false
                // The branch's acknowledgements are saved at most once a second and when the
                // stream ends: the cursor only informs status (a lower one after a crash is
                // harmless), and an fsync per batch would compete with the branch's commits.
                var acknowledged: UInt64?
                var saved = ContinuousClock.now
                func save() async throws {
                    guard let through = acknowledged else { return }
                    acknowledged = nil
                    saved = ContinuousClock.now
                    try await Blocking.run { [archive] in try archive.acknowledgeSent(to: site, through: through) }
                }
                defer {
                    if let through = acknowledged {
                        let archive = archive
                        Task { try? await Blocking.run { try archive.acknowledgeSent(to: site, through: through) } }
                    }
                }
                for try await message in request {
                    switch message.kind {
                    case .start(let start)? where !started:
                        started = true
                        startSink.yield(start)
                        startSink.finish()
                    case .ack(let ack)? where started:
                        // An acknowledgement past the log's end is a confused or hostile peer.
                        guard ack.through <= watch.lastSequence else {
                            logger.warning("refused an acknowledgement past the log's end", metadata: ["site": "\(site)", "reason": "PROTOCOL"])
                            throw refusal(.invalidArgument, .protocol, "PullAck.through \(ack.through) is past headquarters' log end")
                        }
                        acknowledged = max(acknowledged ?? 0, ack.through)
                        registry.acknowledged(site, through: ack.through)
                        if ContinuousClock.now - saved > .seconds(1) { try await save() }
                    default:
                        logger.warning("refused a pull out of order", metadata: ["site": "\(site)", "reason": "PROTOCOL"])
                        throw refusal(.invalidArgument, .protocol, "a pull is one PullStart followed by PullAcks")
                    }
                }
                if !started {
                    logger.warning("refused a pull without a start", metadata: ["site": "\(site)", "reason": "PROTOCOL"])
                    throw refusal(.invalidArgument, .protocol, "a pull must begin with PullStart")
                }
                try await save()
                return .reader
            }
            group.addTask { [self] in
                var iterator = starts.makeAsyncIterator()
                guard let start = await iterator.next() else { return .sender }
                do {
                    try await send(to: site, serial: serial, start: start, response: response)
                } catch  where Task.isCancelled {
                    // The branch ended its side (half-close) and the reader stopped the
                    // sender: the call ends OK, as the protocol says (§5.3).
                }
                return .sender
            }
            // Once: the sender ends when caught up, the reader when the branch has sent its
            // last acknowledgement. Follow: either ending ends the call; the branch's
            // half-close ends it with OK.
            while let finished = try await group.next() {
                if finished == .reader { group.cancelAll() }
            }
        }
    }

    /// Streams HQ's log after `start.after` restricted to the branch's scope, with the scope's
    /// moves, except the branch's own changes.
    private func send(to site: SiteID, serial: String, start: WirePullStart, response: RPCWriter<WirePullBatch>) async throws {
        let maxBytes = start.maxChangeSetBytes == 0 ? limits.batchMaximumBytes : max(4_096, min(Int(start.maxChangeSetBytes), limits.batchMaximumBytes))
        // A cursor past the log's end means one side was restored from an older backup: sending
        // from there would silently skip what the log holds now. Say so instead.
        let logEnd = try await Blocking.run { [archive] in try archive.lastSequence() }
        guard start.after <= logEnd else {
            logger.error(
                "a branch's cursor is past this log's end: was headquarters restored from a backup?",
                metadata: ["site": "\(site)", "cursor": "\(start.after)", "log_end": "\(logEnd)", "reason": "PROTOCOL"])
            throw refusal(
                .failedPrecondition, .protocol,
                "the branch holds headquarters' log up to \(start.after), but the log ends at \(logEnd): headquarters was restored from an older backup; an operator must reconcile before syncing"
            )
        }
        var cursor = start.after
        if start.includeOwn {
            logger.notice("a branch restored from a backup is fetching back its own changes", metadata: ["site": "\(site)", "after": "\(cursor)"])
        }
        // The first batch always goes out, even empty: it tells the branch where it stands.
        // After that, a quiet log gets an empty batch every 15 s, which keeps the branch's
        // "last successful sync" true and finds dead connections.
        var due = true
        while true {
            try Task.checkCancellation()
            try checkStillValid(site, serial: serial)
            try checkNotStopping()
            // The log's end is read after the export (never before), so "caught up" is never
            // claimed early while another process is writing.
            let set: ChangeSet
            let moves: ScopeMoves
            let end: UInt64
            do {
                (set, moves, end) = try await Blocking.run { [archive, limits, cursor] in
                    let (set, moves) = try archive.exportChanges(
                        for: site, after: cursor, includeOwn: start.includeOwn, limit: limits.batchMaximumChanges, maxBytes: maxBytes)
                    return (set, moves, try archive.lastSequence())
                }
            } catch {
                if let fault = health.record(error) {
                    logger.error("cannot read the change log: \(fault.detail)", metadata: ["reason": "\(fault.reason)"])
                    throw RPCError(code: .unavailable, message: "headquarters cannot read its change log now (\(fault.reason)); the branch will retry")
                }
                throw error
            }
            watch.advance(to: end)
            let last = max(end, watch.lastSequence)
            if set.through > cursor || !start.follow || due {
                due = false
                var batch = WirePullBatch()
                batch.changeSet = Data(try ChangeSetCodec.encode(set, level: Wire.compressionLevel))
                batch.lastSequence = max(last, set.through)
                batch.caughtUp = set.through >= last
                batch.movedIn = moves.movedIn.map { Data($0.bytes) }
                batch.evicted = moves.evicted.map { Data($0.bytes) }
                batch.refused = moves.refused.map(WireRefusedWrite.init)
                try await response.write(batch)
                metrics.add(SyncMetrics.sent, [:], set.changes.count)
                cursor = set.through
                if !start.follow && batch.caughtUp { return }
                continue
            }
            // Wait for the log to grow in short slices, so a revocation or a shutdown ends the
            // stream within a second.
            let deadline = ContinuousClock.now + .seconds(15)
            var grew = false
            while !grew && ContinuousClock.now < deadline {
                try Task.checkCancellation()
                try checkStillValid(site, serial: serial)
                try checkNotStopping()
                grew = await watch.wait(after: cursor, timeout: .seconds(1))
            }
            due = !grew
        }
    }

    // MARK: Shutdown

    /// Asks every stream to end (HQ is stopping): following pulls end with `UNAVAILABLE`,
    /// which a branch treats as "reconnect later"; push streams end after their set in flight.
    public func beginShutdown() {
        stopping.store(true, ordering: .releasing)
    }

    func checkNotStopping() throws {
        if stopping.load(ordering: .acquiring) {
            throw RPCError(code: .unavailable, message: "headquarters is shutting down; reconnect later")
        }
        // A damaged archive sends nothing and takes nothing in until it is restored.
        if let fault = health.fault, fault.isPermanent {
            throw RPCError(code: .unavailable, message: "headquarters' archive is damaged and is being restored; the branch will retry")
        }
    }
}

/// Which branches are connected, for `outpost status` at headquarters.
public final class BranchRegistry: Sendable {
    public struct Entry: Sendable, Codable, Equatable {
        public var site: String
        public var streams: Int
        public var lastSeenMilliseconds: UInt64
        public var receivedThrough: UInt64
        public var acknowledgedThrough: UInt64
    }

    private let entries = Mutex<[SiteID: Entry]>([:])
    private let onChange: @Sendable () -> Void

    public init(onChange: @escaping @Sendable () -> Void = {}) { self.onChange = onChange }

    private func update(_ site: SiteID, _ body: (inout Entry) -> Void) {
        entries.withLock { all in
            var e = all[site] ?? Entry(site: site.code, streams: 0, lastSeenMilliseconds: 0, receivedThrough: 0, acknowledgedThrough: 0)
            body(&e)
            e.lastSeenMilliseconds = UInt64(Date().timeIntervalSince1970 * 1000)
            all[site] = e
        }
        onChange()
    }

    func seen(_ site: SiteID) { update(site) { _ in } }
    func opened(_ site: SiteID) { update(site) { $0.streams += 1 } }
    func closed(_ site: SiteID) { update(site) { $0.streams = max(0, $0.streams - 1) } }
    func received(_ site: SiteID, through: UInt64) { update(site) { $0.receivedThrough = max($0.receivedThrough, through) } }
    func acknowledged(_ site: SiteID, through: UInt64) { update(site) { $0.acknowledgedThrough = max($0.acknowledgedThrough, through) } }

    /// Every branch seen since start, connected ones with `streams > 0`.
    public var snapshot: [Entry] { entries.withLock { Array($0.values) }.sorted { $0.site < $1.site } }
}

/// The revocation list, re-read when its file changes, so `outpost pki revoke` takes effect
/// on the next call without a restart.
final class RevocationWatcher: Sendable {
    private struct State {
        var modified: Date?
        var serials: Set<String> = []
    }
    private let path: String?
    private let state = Mutex(State())

    init(path: String?) { self.path = path }

    func isRevoked(_ serial: String) -> Bool {
        guard let path else { return false }
        let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        return state.withLock { s in
            if s.modified != modified || modified == nil {
                s.modified = modified
                // An unreadable list refuses nobody new but keeps what it knew.
                if let list = try? RevocationList.load(path: path) { s.serials = list.serials }
            }
            return s.serials.contains(serial.lowercased())
        }
    }
}

import CustomerArchive
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Replication
import SyncProtocol
import Synchronization

/// What a branch knows about its link to headquarters; saved for `outpost status`.
public struct SyncState: Sendable, Codable, Equatable {
    public var role: String
    public var site: String
    public var hqAddress: String?
    public var connected = false
    public var lastSuccessMilliseconds: UInt64?
    public var lastError: String?
    public var lastErrorMilliseconds: UInt64?
    /// The end of HQ's change log as last reported by HQ.
    public var hqLastSequence: UInt64?
    /// HQ's clock minus this site's, at the last handshake.
    public var clockOffsetMilliseconds: Int64?
    /// Daemon process id and when the state was written.
    public var pid: Int32 = getpid()
    /// When this daemon started (a daemon that has not caught up yet is only stale once it
    /// has been trying for a while).
    public var startedMilliseconds: UInt64?
    public var updatedMilliseconds: UInt64 = 0
    /// At headquarters: every branch seen since the daemon started.
    public var branches: [BranchRegistry.Entry]?
    /// Why the daemon stopped syncing because of its disk or archive file, if it did.
    public var storageFault: StorageHealth.Fault?

    public init(role: String, site: String, hqAddress: String? = nil) {
        self.role = role
        self.site = site
        self.hqAddress = hqAddress
    }

    public static let fileName = "sync-state.json"

    /// Whether the process that wrote this state still runs (signal 0; EPERM means it runs as
    /// another user).
    public var isDaemonRunning: Bool { kill(pid, 0) == 0 || errno == EPERM }

    public static func path(inDataDirectory directory: String) -> String {
        (directory as NSString).appendingPathComponent(fileName)
    }

    public static func load(fromDataDirectory directory: String) -> SyncState? {
        guard let data = FileManager.default.contents(atPath: path(inDataDirectory: directory)) else { return nil }
        return try? JSONDecoder().decode(SyncState.self, from: data)
    }

    /// Writes the state whole (temporary file, then rename).
    public func save(toDataDirectory directory: String) {
        var copy = self
        copy.updatedMilliseconds = nowMilliseconds()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        guard let data = try? encoder.encode(copy) else { return }
        let path = Self.path(inDataDirectory: directory)
        let temporary = path + ".tmp"
        if FileManager.default.createFile(atPath: temporary, contents: data) {
            _ = rename(temporary, path)
        }
    }
}

/// The state file `outpost status` reads, kept in memory and written whole on each update.
///
/// Headquarters, where every acknowledgement from hundreds of branches is a change, marks it
/// dirty instead and lets a timer write it (``markDirty()`` / ``takeDirty()``).
public final class StateFile: Sendable {
    private let directory: String?
    private let state: Mutex<SyncState>
    private let dirty = Atomic(false)

    /// - Parameter directory: the data directory; nil keeps the state in memory only.
    public init(directory: String?, initial: SyncState) {
        self.directory = directory
        state = Mutex(initial)
        if let directory { initial.save(toDataDirectory: directory) }
    }

    public var current: SyncState { state.withLock { $0 } }

    public func markDirty() { dirty.store(true, ordering: .releasing) }

    public func takeDirty() -> Bool { dirty.exchange(false, ordering: .acquiringAndReleasing) }

    public func update(_ body: (inout SyncState) -> Void) {
        let snapshot = state.withLock { s -> SyncState in
            body(&s)
            return s
        }
        if let directory { snapshot.save(toDataDirectory: directory) }
    }
}

func nowMilliseconds() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

/// Progress of one exchange, for `outpost sync --once`.
public struct SyncProgress: Sendable {
    public var pushedChanges = 0
    public var pulledChanges = 0
    /// Sequences of HQ's log this branch has yet to receive (an upper bound: it counts the
    /// branch's own changes, which HQ skips).
    public var behind: UInt64 = 0
    public var pushCaughtUp = false
    public var pullCaughtUp = false
    /// A first bootstrap from a snapshot under way: customers of the scope received so far, and
    /// in the whole scope.
    public var snapshotSent = 0
    public var snapshotTotal: Int?
}

/// A branch's link to headquarters: one handshake, then pushing its own changes and pulling
/// everyone else's at the same time, each batch committed together with its cursor.
public final class BranchClient: Sendable {
    let archive: Archive
    let hq: HostPort
    let tls: TLSFiles
    let limits: SyncLimits
    let logger: Logger
    let watch: LogWatch
    let state: StateFile
    let metrics: SyncMetrics
    let health: StorageHealth
    public static let software = "outpost"

    public init(
        archive: Archive, hq: HostPort, tls: TLSFiles, limits: SyncLimits, watch: LogWatch, logger: Logger, dataDirectory: String?,
        metrics: SyncMetrics = SyncMetrics(), health: StorageHealth = StorageHealth()
    ) {
        self.metrics = metrics
        self.health = health
        self.archive = archive
        self.hq = hq
        self.tls = tls
        self.limits = limits
        self.watch = watch
        self.logger = logger
        var initial = dataDirectory.flatMap(SyncState.load(fromDataDirectory:)) ?? SyncState(role: "branch", site: archive.site.code)
        initial.role = "branch"
        initial.pid = getpid()
        initial.startedMilliseconds = nowMilliseconds()
        initial.site = archive.site.code
        initial.hqAddress = hq.description
        initial.connected = false
        initial.branches = nil
        state = StateFile(directory: dataDirectory, initial: initial)
    }

    public var currentState: SyncState { state.current }

    private func updateState(_ body: (inout SyncState) -> Void) { state.update(body) }

    // MARK: Running

    /// Keeps the link up until the task is cancelled: on any failure it records the error,
    /// waits (exponential backoff with jitter) and connects again. Local writes never wait
    /// for any of this.
    public func run() async {
        var failures = 0
        updateState { _ in }
        while !Task.isCancelled {
            // Nothing is sent from a damaged file or taken in that cannot be stored: wait
            // until the daemon finds room again (a damaged file waits for a restore).
            if let fault = health.fault {
                updateState {
                    $0.connected = false
                    $0.storageFault = fault
                }
                try? await Task.sleep(for: .seconds(2))
                continue
            }
            updateState { if $0.storageFault != nil { $0.storageFault = nil } }
            let started = ContinuousClock.now
            do {
                _ = try await exchange(follow: true, progress: nil)
                failures = 0
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled { break }
                if let fault = health.record(error) {
                    logger.error("stopped syncing: \(fault.detail)", metadata: ["reason": "\(fault.reason)"])
                    updateState {
                        $0.connected = false
                        $0.storageFault = fault
                        $0.lastError = fault.detail
                        $0.lastErrorMilliseconds = nowMilliseconds()
                    }
                    continue
                }
                let message = Self.describe(error)
                // A session that ran a while counts as a success: start the backoff afresh.
                if ContinuousClock.now - started > .seconds(30) { failures = 0 }
                failures += 1
                metrics.add(SyncMetrics.failures)
                if let rpc = error as? RPCError, let reason = Wire.reason(of: rpc) { metrics.refused(reason.metadataName) }
                logger.warning("sync with headquarters failed", metadata: ["hq": "\(hq)", "error": "\(message)", "attempt": "\(failures)"])
                updateState {
                    $0.connected = false
                    $0.lastError = message
                    $0.lastErrorMilliseconds = nowMilliseconds()
                }
            }
            updateState { $0.connected = false }
            let delay = backoff(failures: failures)
            try? await Task.sleep(for: .milliseconds(delay))
        }
        updateState { $0.connected = false }
    }

    /// Milliseconds to wait after `failures` failures in a row: doubling from the initial
    /// delay up to the maximum, then 50-100% of that at random.
    func backoff(failures: Int) -> Int {
        let exponent = min(max(failures - 1, 0), 20)
        let base = min(limits.retryMaximumMilliseconds, limits.retryInitialMilliseconds << exponent)
        return Int(Double(base) * Double.random(in: 0.5...1.0))
    }

    /// One connection: handshake, then push and pull together. With `follow` it runs until
    /// cancelled or the link fails; without, it returns once both directions are caught up.
    @discardableResult
    /// - Parameter pull: pull as well as push (off only for measuring HQ's intake).
    public func exchange(follow: Bool, pull: Bool = true, progress: (@Sendable (SyncProgress) -> Void)?) async throws -> SyncProgress {
        let transport = try makeTransport()
        return try await withGRPCClient(transport: transport) { client in
            try await session(WireSync.Client(wrapping: client), follow: follow, pull: pull, progress: progress)
        }
    }

    /// A mutual-TLS HTTP/2 transport to headquarters, with this site's certificate read now
    /// (a renewed certificate is used from the next connection on).
    private func makeTransport() throws -> HTTP2ClientTransport.Posix {
        let files = try tls.load()
        let target: any ResolvableTarget =
            hq.isIPAddress ? (hq.isIPv6 ? .ipv6(address: hq.host, port: hq.port) : .ipv4(address: hq.host, port: hq.port)) : .dns(host: hq.host, port: hq.port)
        let transport = try HTTP2ClientTransport.Posix(
            target: target,
            transportSecurity: .mTLS(
                certificateChain: [.bytes(files.certificate, format: .pem)], privateKey: .bytes(files.key, format: .pem)
            ) { config in
                config.trustRoots = .certificates([.bytes(files.ca, format: .pem)])
            },
            config: .defaults)
        return transport
    }

    /// Fetches a customer this branch does not hold (`outpost customer fetch`): headquarters
    /// counts it in the branch's scope, then one exchange brings it here with everything
    /// hanging off it. Needs the line to headquarters.
    /// - Returns: the customer's key and number.
    public func fetch(_ reference: String) async throws -> (customer: RecordKey, number: String) {
        let transport = try makeTransport()
        return try await withGRPCClient(transport: transport) { client in
            let sync = WireSync.Client(wrapping: client)
            var request = WireFetchRequest()
            request.reference = reference
            var options = CallOptions.defaults
            options.timeout = .seconds(15)
            options.waitForReady = false
            let answer = try await sync.fetch(request, options: options)
            guard answer.customer.count == 16 else {
                throw SyncError(.protocolViolation, "headquarters answered a fetch with a customer key that is not 16 bytes")
            }
            do {
                _ = try await session(sync, follow: false, pull: true, progress: nil)
            } catch {
                // This branch's daemon pulled the same batch first (a set is taken only in its
                // place): it brings the customer instead.
                logger.notice("the exchange after a fetch stopped; the daemon's pull brings the customer", metadata: ["error": "\(error)"])
            }
            return (try RecordKey(bytes: answer.customer), String(answer.number.prefix(64)))
        }
    }

    /// Headquarters' search (`outpost customer search --remote`): numbers, homes, and names
    /// and phones partly hidden; nothing is stored here.
    public func remoteSearch(_ text: String, limit: Int = 20) async throws -> [MaskedCustomer] {
        let transport = try makeTransport()
        return try await withGRPCClient(transport: transport) { client in
            var request = WireSearchRequest()
            request.text = text
            request.limit = UInt32(clamping: max(1, limit))
            var options = CallOptions.defaults
            options.timeout = .seconds(15)
            options.waitForReady = false
            let answer = try await WireSync.Client(wrapping: client).search(request, options: options)
            return answer.customers.prefix(50).map {
                MaskedCustomer(
                    number: String($0.number.prefix(64)), name: String($0.name.prefix(64)), phone: String($0.phone.prefix(32)),
                    homeBranch: String($0.homeBranch.prefix(12)))
            }
        }
    }

    /// What one handshake with headquarters tells (`outpost doctor`).
    public struct Probe: Sendable {
        /// Headquarters' clock minus this machine's, estimated at the middle of the round trip.
        public var clockOffsetMilliseconds: Int64
        public var roundTripMilliseconds: UInt64
        public var hqLastSequence: UInt64
        /// How much of this site's log headquarters holds.
        public var hqReceivedThrough: UInt64
    }

    /// Connects, says hello and disconnects: reachability, TLS and the clock offset.
    public func probe() async throws -> Probe {
        let transport = try makeTransport()
        return try await withGRPCClient(transport: transport) { client in
            let (welcome, offset, roundTrip) = try await hello(WireSync.Client(wrapping: client), timeout: .seconds(10))
            return Probe(
                clockOffsetMilliseconds: offset, roundTripMilliseconds: roundTrip, hqLastSequence: welcome.lastSequence,
                hqReceivedThrough: welcome.receivedThrough)
        }
    }

    /// The handshake: headquarters' answer, its clock minus this machine's (estimated at the
    /// middle of the round trip) and the round trip in milliseconds.
    private func hello(
        _ sync: WireSync.Client<HTTP2ClientTransport.Posix>, timeout: Duration
    ) async throws -> (WireHelloResponse, offset: Int64, roundTrip: UInt64) {
        var hello = WireHelloRequest()
        hello.protocolVersion = Wire.protocolVersion
        hello.schemaVersion = UInt32(Schema.version)
        hello.clockMs = nowMilliseconds()
        hello.software = Self.software
        var options = CallOptions.defaults
        options.timeout = timeout
        options.waitForReady = false
        let welcome = try await sync.hello(hello, options: options)
        let receivedAt = nowMilliseconds()
        return (
            welcome, Int64(bitPattern: welcome.clockMs &- (hello.clockMs / 2 + receivedAt / 2)),
            receivedAt >= hello.clockMs ? receivedAt - hello.clockMs : 0
        )
    }

    private func session(
        _ sync: WireSync.Client<HTTP2ClientTransport.Posix>, follow: Bool, pull: Bool, progress: (@Sendable (SyncProgress) -> Void)?
    ) async throws -> SyncProgress {
        let (welcome, offset, _) = try await hello(sync, timeout: .seconds(15))
        guard welcome.protocolVersion == Wire.protocolVersion else {
            throw SyncError(.version, "headquarters answered in sync protocol \(welcome.protocolVersion); this branch speaks \(Wire.protocolVersion)")
        }
        guard welcome.site == archive.site.code else {
            throw SyncError(
                .refused,
                "headquarters sees this connection as \(welcome.site), but this archive is \(archive.site): the certificate belongs to another site")
        }
        guard welcome.headquarters == archive.headquarters.code else {
            throw SyncError(.refused, "the server is site \(welcome.headquarters), but this archive's headquarters is \(archive.headquarters)")
        }
        if offset.magnitude > limits.maximumClockDriftMilliseconds {
            logger.warning(
                "this machine's clock differs from headquarters'; changes made here may be quarantined",
                metadata: ["offset_ms": "\(offset)"])
        }
        // Either side restored from an older backup shows as a cursor past a log's end.
        // Syncing on would skip changes silently; stop loudly instead. A branch restored with
        // 'outpost restore' from a backup older than an earlier restore reused that restore's
        // epoch: its changes since move past headquarters' cursor first.
        let (ownEnd, pulledThrough) = try await Blocking.run { [archive] in
            try archive.confirmEpoch(headquartersHolds: welcome.receivedThrough)
            return (try archive.lastSequence(), try archive.cursor(for: archive.headquarters).receivedThrough)
        }
        guard welcome.receivedThrough <= ownEnd else {
            throw SyncError(
                .refused,
                "headquarters holds this branch's log up to \(welcome.receivedThrough), but the log here ends at \(ownEnd): this archive was restored from an older backup by copying the file; restore backups with 'outpost restore FILE', which starts a new epoch of change numbers, or ask for help before syncing"
            )
        }
        guard pulledThrough <= welcome.lastSequence else {
            throw SyncError(
                .refused,
                "this branch holds headquarters' log up to \(pulledThrough), but it ends at \(welcome.lastSequence): headquarters was restored from an older backup; an operator must reconcile before syncing"
            )
        }
        // What HQ holds of this log it has: merged or refused, it is acknowledged (a lost
        // PushAck says no more). A snapshot merges again only what HQ has not seen.
        try await Blocking.run { [archive] in try archive.acknowledgeSent(to: archive.headquarters, through: welcome.receivedThrough) }
        logger.info("connected to headquarters", metadata: ["hq": "\(hq)", "hq_last_sequence": "\(welcome.lastSequence)"])
        updateState {
            $0.connected = true
            $0.clockOffsetMilliseconds = offset
            $0.hqLastSequence = welcome.lastSequence
        }
        let maxBytes = min(limits.batchMaximumBytes, Int(welcome.limits.maxChangeSetBytes == 0 ? UInt32.max : welcome.limits.maxChangeSetBytes) / 2)
        // One write is never split across sets, so a set can run a few changes past its cut:
        // cut at three quarters of HQ's limit to stay under it.
        let hqMaxChanges = Int(welcome.limits.maxChanges == 0 ? UInt32.max : welcome.limits.maxChanges)
        let maxChanges = max(1, min(limits.batchMaximumChanges, hqMaxChanges - hqMaxChanges / 4))
        let tracker = ProgressTracker(progress)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await self.push(sync, from: welcome.receivedThrough, follow: follow, maxBytes: maxBytes, maxChanges: maxChanges, tracker: tracker)
            }
            if pull {
                group.addTask {
                    try await self.bootstrapIfNeeded(sync, maxBytes: maxBytes, tracker: tracker)
                    try await self.pullLoop(sync, follow: follow, maxBytes: maxBytes, tracker: tracker)
                }
            } else {
                tracker.update { $0.pullCaughtUp = true }
            }
            if follow && pull {
                // HQ sends a batch at least every 15 s on a following pull. Nothing for 45 s
                // means the link died without a word (a NAT dropped it, HQ lost power):
                // reconnect rather than wait for TCP to give up.
                group.addTask {
                    while true {
                        try await Task.sleep(for: .seconds(5))
                        if tracker.secondsSinceLastBatch > 45 {
                            throw SyncError(.unreachable, "headquarters sent nothing for 45 s; reconnecting")
                        }
                    }
                }
            }
            if follow {
                // Following, the loops only end when the link does: one ending ends both.
                try await group.next()
                group.cancelAll()
            }
            try await group.waitForAll()
        }
        let final = tracker.value
        if !follow {
            updateState {
                $0.connected = false
                $0.lastSuccessMilliseconds = nowMilliseconds()
                $0.lastError = nil
            }
        }
        return final
    }

    // MARK: Push

    /// Refusals of a whole set that sending it again cannot cure: the set is split, and a
    /// single write HQ still refuses is set aside, so one bad write never holds back the rest.
    static let setAsideReasons: Set<Reason> = [.malformed, .tooLarge]

    /// The set on its way to headquarters and where headquarters' cursor stands, for when the
    /// push call ends with a refusal of that set.
    final class PushAttempt: Sendable {
        private let state = Mutex<(inFlight: ChangeSet?, held: UInt64)>((nil, 0))
        init(held: UInt64) { state.withLock { $0.held = held } }
        var inFlight: ChangeSet? { state.withLock { $0.inFlight } }
        var held: UInt64 { state.withLock { $0.held } }
        func sending(_ set: ChangeSet) { state.withLock { $0.inFlight = set } }
        func acknowledged(through: UInt64) { state.withLock { $0 = (nil, through) } }
    }

    /// Pushes this site's changes for the whole session. A set headquarters refuses as a
    /// whole (``setAsideReasons``) is cut in half and sent again; a single write it still
    /// refuses is set aside in the journal of refused changes (`outpost changes refused`),
    /// and pushing goes on after it.
    private func push(
        _ sync: WireSync.Client<HTTP2ClientTransport.Posix>, from start: UInt64, follow: Bool, maxBytes: Int, maxChanges: Int,
        tracker: ProgressTracker
    ) async throws {
        var held = start
        var splitter = PushSplitter(limit: maxChanges)
        while true {
            let attempt = PushAttempt(held: held)
            do {
                try await pushLoop(
                    sync, from: held, follow: follow, maxBytes: maxBytes, maxChanges: splitter.limit, tracker: tracker, attempt: attempt)
                return
            } catch let error as RPCError {
                guard let reason = Wire.reason(of: error), Self.setAsideReasons.contains(reason), let set = attempt.inFlight else { throw error }
                metrics.refused(reason.metadataName)
                held = attempt.held
                switch splitter.refused(set) {
                case .resend(let limit):
                    logger.notice(
                        "headquarters refused a change set whole; sending it in smaller sets",
                        metadata: ["reason": "\(reason.metadataName)", "changes": "\(set.changes.count)", "next_limit": "\(limit)"])
                case .setAside:
                    try await Blocking.run { [archive] in try archive.setAside(set, reason: reason.metadataName, message: error.message) }
                    let record = set.changes.first.map { "\($0.key)" } ?? "-"
                    logger.error(
                        "headquarters refused a write; it is set aside and the changes after it are pushed on",
                        metadata: ["record": "\(record)", "reason": "\(reason.metadataName)"])
                    updateState {
                        $0.lastError =
                            "headquarters refused a write to record \(record) (\(reason.metadataName)); it is set aside, see 'outpost changes refused'"
                        $0.lastErrorMilliseconds = nowMilliseconds()
                    }
                }
            }
        }
    }

    private func pushLoop(
        _ sync: WireSync.Client<HTTP2ClientTransport.Posix>, from start: UInt64, follow: Bool, maxBytes: Int, maxChanges: Int,
        tracker: ProgressTracker, attempt: PushAttempt
    ) async throws {
        let (acks, ackSink) = AsyncThrowingStream.makeStream(of: WirePushAck.self)
        let site = archive.site
        let hqSite = archive.headquarters
        try await sync.push(
            requestProducer: { [archive, watch, logger] writer in
                // HQ holds this site's log up to `held` (its word, from Hello and each ack);
                // nothing of this site's own lies in (held, scanned]. Changes pulled from HQ
                // grow the log too, but need no pushing: the range over them is claimed in the
                // next set that carries own changes, not sent alone (that would cost both
                // sides a commit per pulled batch).
                var held = start
                var scanned = start
                var pending = acks.makeAsyncIterator()
                while true {
                    try Task.checkCancellation()
                    let found = try await Blocking.run { [scanned] in
                        try archive.exportChanges(after: scanned, origin: site, limit: maxChanges, maxBytes: maxBytes)
                    }
                    if found.changes.isEmpty {
                        scanned = max(scanned, found.through)
                        tracker.update { $0.pushCaughtUp = true }
                        self.noteCaughtUp(tracker)
                        if !follow { return }
                        _ = await watch.wait(after: scanned, timeout: .seconds(30))
                        continue
                    }
                    var set = found
                    set.after = held
                    tracker.update { $0.pushCaughtUp = false }
                    var message = WirePushRequest()
                    message.changeSet = Data(try ChangeSetCodec.encode(set, level: Wire.compressionLevel))
                    attempt.sending(set)
                    try await writer.write(message)
                    guard let ack = try await pending.next() else {
                        throw SyncError(.protocolViolation, "headquarters closed the push stream without acknowledging")
                    }
                    for refusal in ack.refusals {
                        self.metrics.refused(refusal.reason.metadataName)
                        logger.warning(
                            "headquarters refused a change", metadata: ["record": "\(refusal.record)", "reason": "\(refusal.reason.metadataName)"])
                    }
                    if !ack.refusals.isEmpty {
                        self.updateState {
                            $0.lastError = "headquarters refused \(ack.refusals.count) change(s): \(ack.refusals[0].message)"
                            $0.lastErrorMilliseconds = nowMilliseconds()
                        }
                    }
                    let refusals = ack.refusals.map { (record: $0.record, reason: $0.reason.metadataName, message: $0.message, time: $0.hlc) }
                    let ownEnd = try await Blocking.run {
                        try archive.journalRefusals(refusals)
                        let end = try archive.lastSequence()
                        if ack.receivedThrough <= end { try archive.acknowledgeSent(to: hqSite, through: ack.receivedThrough) }
                        return end
                    }
                    // HQ's cursor past this log's end would stop every later push silently
                    // (they would all seem acknowledged): stop loudly instead.
                    guard ack.receivedThrough <= ownEnd else {
                        throw SyncError(
                            .refused,
                            "headquarters now holds this branch's log up to \(ack.receivedThrough), past its end \(ownEnd): headquarters' cursor for this branch is wrong; pushing stops until an operator reconciles it"
                        )
                    }
                    attempt.acknowledged(through: ack.receivedThrough)
                    tracker.update { $0.pushedChanges += set.changes.count }
                    self.metrics.add(SyncMetrics.sent, [:], set.changes.count)
                    // HQ's cursor is the truth: if it did not take the set as continuing from
                    // its cursor, everything after its cursor is sent again (harmless).
                    held = ack.receivedThrough
                    scanned = held >= set.through ? max(scanned, held) : held
                }
            },
            onResponse: { response in
                do {
                    for try await ack in response.messages { ackSink.yield(ack) }
                    ackSink.finish()
                } catch {
                    ackSink.finish(throwing: error)
                    throw error
                }
            })
    }

    // MARK: Snapshot

    /// A new branch (or one whose bootstrap a broken line interrupted) takes its scope from a
    /// snapshot, resuming after the last part it applied, before it follows the log from the
    /// first part's cut (protocols/README.md §5.8). Each part commits with its progress.
    private func bootstrapIfNeeded(
        _ sync: WireSync.Client<HTTP2ClientTransport.Posix>, maxBytes: Int, tracker: ProgressTracker
    ) async throws {
        // What headquarters acknowledged before it reads any part (the push runs beside this).
        let (needed, resume, acknowledged) = try await Blocking.run { [archive] in
            (try archive.needsSnapshot(), try archive.snapshotResumePoint(), try archive.acknowledgedByHeadquarters())
        }
        guard needed else { return }
        logger.notice(
            "bootstrapping this branch's customers from a snapshot at headquarters",
            metadata: ["after": "\(resume.map { "\($0)" } ?? "start")"])
        var request = WireSnapshotRequest()
        request.after = resume.map { Data($0.bytes) } ?? Data()
        request.maxChangeSetBytes = UInt32(maxBytes)
        let codecLimits = CodecLimits(maximumEncodedBytes: limits.maximumMessageBytes * 2, maximumBodyBytes: max(limits.batchMaximumBytes * 8, 32 << 20))
        var options = CallOptions.defaults
        options.maxResponseMessageBytes = limits.maximumMessageBytes * 2
        let hqSite = archive.headquarters
        try await sync.snapshot(request, options: options) { [self] response in
            var lastLogged = ContinuousClock.now
            for try await message in response.messages {
                tracker.batchArrived()
                guard message.customers.allSatisfy({ $0.count == 16 }), message.after.isEmpty || message.after.count == 16,
                    message.digest.count == 32
                else {
                    throw SyncError(.protocolViolation, "headquarters sent a snapshot part with a malformed key or digest")
                }
                let set = try ChangeSetCodec.decode([UInt8](message.changeSet), limits: codecLimits)
                guard set.producer == hqSite else {
                    throw SyncError(.protocolViolation, "a snapshot part's change set names \(set.producer) as its producer, not headquarters")
                }
                let part = SnapshotPart(
                    cut: message.cut, after: message.after.isEmpty ? nil : try RecordKey(bytes: message.after),
                    customers: try message.customers.map { try RecordKey(bytes: $0) }, set: set, sent: Int(clamping: message.sent),
                    total: Int(clamping: message.total), done: message.done, digest: [UInt8](message.digest),
                    refused: try message.refused.prefix(10_000).map(RefusedWrite.init(wire:)))
                let progress = try await Blocking.run { [archive] in try archive.applySnapshot(part, acknowledgedBeforeRead: acknowledged) }
                self.metrics.add(SyncMetrics.applied, ["direction": "pulled"], set.changes.count)
                tracker.update {
                    $0.pulledChanges += set.changes.count
                    $0.snapshotSent = progress.sent
                    $0.snapshotTotal = progress.total
                }
                if message.done || ContinuousClock.now - lastLogged > .seconds(5) {
                    lastLogged = ContinuousClock.now
                    logger.info(
                        message.done ? "bootstrapped this branch's customers from a snapshot" : "bootstrapping from a snapshot",
                        metadata: ["customers": "\(progress.sent)", "of": "\(progress.total)", "cut": "\(progress.cut)"])
                }
                if message.done { return }
            }
            throw SyncError(.unreachable, "headquarters ended the snapshot before its last part; it resumes on the next connection")
        }
    }

    // MARK: Pull

    private func pullLoop(
        _ sync: WireSync.Client<HTTP2ClientTransport.Posix>, follow: Bool, maxBytes: Int, tracker: ProgressTracker
    ) async throws {
        let hqSite = archive.headquarters
        // What headquarters had acknowledged before it reads any batch of this call: the push
        // runs beside the pull (ApplyOptions.acknowledgedBeforeRead).
        let (start, recovering, acknowledged) = try await Blocking.run { [archive] in
            (try archive.cursor(for: hqSite).receivedThrough, try archive.recoveringSince() != nil, try archive.acknowledgedByHeadquarters())
        }
        if recovering {
            logger.notice("restored from a backup: fetching back from headquarters what this site wrote after it", metadata: ["after": "\(start)"])
        }
        let (committed, commitSink) = AsyncStream.makeStream(of: UInt64.self)
        let codecLimits = CodecLimits(maximumEncodedBytes: limits.maximumMessageBytes * 2, maximumBodyBytes: max(limits.batchMaximumBytes * 8, 32 << 20))
        try await sync.pull(
            requestProducer: { writer in
                var first = WirePullRequest()
                var startMessage = WirePullStart()
                startMessage.after = start
                startMessage.follow = follow
                startMessage.maxChangeSetBytes = UInt32(maxBytes)
                startMessage.includeOwn = recovering
                first.start = startMessage
                try await writer.write(first)
                for await through in committed {
                    var ack = WirePullRequest()
                    var a = WirePullAck()
                    a.through = through
                    ack.ack = a
                    try await writer.write(ack)
                }
            },
            onResponse: { [archive, watch] response in
                defer { commitSink.finish() }
                // Decoding the next batch overlaps applying this one: a receiver decodes, an
                // applier commits. Two tokens bound what is decoded ahead, so memory stays flat
                // however far behind the branch is (HTTP/2 flow control holds HQ back).
                let (tokens, tokenSink) = AsyncStream.makeStream(of: Void.self)
                tokenSink.yield(())
                tokenSink.yield(())
                let (decoded, decodedSink) = AsyncThrowingStream.makeStream(of: (ChangeSet, WirePullBatch).self)
                // The receiver runs on its own: when applying fails (a full disk), the call must
                // end at once, and a read of the response stream waiting for headquarters'
                // next batch does not answer cancellation; ending the call (throwing here) does.
                let receiver = Task {
                    var permits = tokens.makeAsyncIterator()
                    do {
                        for try await batch in response.messages {
                            guard await permits.next() != nil else { break }
                            let set: ChangeSet
                            do {
                                set = try ChangeSetCodec.decode([UInt8](batch.changeSet), limits: codecLimits)
                            } catch {
                                throw SyncError(.protocolViolation, "headquarters sent a change set that does not decode: \(error)")
                            }
                            guard set.producer == hqSite else {
                                throw SyncError(.protocolViolation, "headquarters sent a change set produced by \(set.producer)")
                            }
                            guard batch.movedIn.allSatisfy({ $0.count == 16 }), batch.evicted.allSatisfy({ $0.count == 16 }) else {
                                throw SyncError(.protocolViolation, "headquarters sent a scope move that is not a 16-byte customer key")
                            }
                            guard batch.refused.allSatisfy({ $0.record.count == 16 && $0.customer.count == 16 && $0.table <= UInt8.max }) else {
                                throw SyncError(.protocolViolation, "headquarters sent a refusal whose record or customer is not a 16-byte key")
                            }
                            decodedSink.yield((set, batch))
                            if !follow && batch.caughtUp { break }
                        }
                        decodedSink.finish()
                    } catch {
                        decodedSink.finish(throwing: error)
                    }
                }
                defer {
                    receiver.cancel()
                    tokenSink.finish()
                }
                var recoveryOpen = recovering
                for try await (set, batch) in decoded {
                    let finishing = recoveryOpen && batch.caughtUp
                    let (report, cursor, end): (ApplyReport, UInt64, UInt64)
                    do {
                        (report, cursor, end) = try await Blocking.run {
                            // Checked as 16 bytes each when the batch arrived.
                            let moves = ScopeMoves(
                                movedIn: try batch.movedIn.map { try RecordKey(bytes: $0) }, evicted: try batch.evicted.map { try RecordKey(bytes: $0) },
                                refused: try batch.refused.map(RefusedWrite.init(wire:)))
                            let report = try archive.apply(
                                set, moves: moves,
                                options: ApplyOptions(
                                    checkDrift: true, batchSize: .max, advanceCursor: true, continuationOnly: true, acknowledgedBeforeRead: acknowledged))
                            let cursor = try archive.cursor(for: hqSite).receivedThrough
                            // Recovery ends once the log is pulled to its end with this
                            // site's own changes in it: nothing written here is missing.
                            if finishing && cursor >= set.through {
                                try archive.finishRecovery()
                            }
                            return (report, cursor, try archive.lastSequence())
                        }
                    } catch {
                        self.logger.debug("applying a batch from headquarters failed", metadata: ["error": "\(error)"])
                        throw error
                    }
                    if report.outOfOrder {
                        // HQ streams each batch from where the last ended: a gap or a repeat is a
                        // broken stream, and the next connection starts again from the cursor.
                        throw SyncError(.protocolViolation, "headquarters sent a batch from \(set.after), but this branch holds its log up to \(cursor)")
                    }
                    if recoveryOpen && batch.caughtUp && cursor >= set.through {
                        recoveryOpen = false
                        self.logger.notice("recovery after the restore is complete: every change of this site headquarters held is back")
                    }
                    tokenSink.yield(())
                    self.metrics.record(report, direction: "pulled")
                    for r in report.refusals { self.metrics.refused(r.kind.rawValue) }
                    if !report.refusals.isEmpty {
                        self.logger.warning("refused changes from headquarters", metadata: ["count": "\(report.refusals.count)"])
                    }
                    // Acknowledge what is committed: the cursor, which moved only if the
                    // set continued from it.
                    commitSink.yield(cursor)
                    watch.advance(to: end)
                    tracker.batchArrived()
                    tracker.update {
                        $0.pulledChanges += set.changes.count
                        $0.behind = batch.lastSequence > set.through ? batch.lastSequence - set.through : 0
                        $0.pullCaughtUp = batch.caughtUp
                    }
                    self.updateState { $0.hqLastSequence = batch.lastSequence }
                    if batch.caughtUp { self.noteCaughtUp(tracker) }
                    if !follow && batch.caughtUp { break }
                }
            })
    }

    private func noteCaughtUp(_ tracker: ProgressTracker) {
        let value = tracker.value
        if value.pushCaughtUp && value.pullCaughtUp {
            updateState {
                $0.lastSuccessMilliseconds = nowMilliseconds()
                $0.lastError = nil
            }
        }
    }

    /// One line for logs and `status`: gRPC codes and refusal reasons in plain words.
    public static func describe(_ error: any Error) -> String {
        if let rpc = error as? RPCError {
            if let reason = Wire.reason(of: rpc) {
                return "refused by headquarters (\(reason.metadataName)): \(rpc.message)"
            }
            switch rpc.code {
            case .unavailable:
                return "headquarters is unreachable: \(rpc.message)"
            case .deadlineExceeded:
                return "headquarters did not answer in time"
            default:
                return "\(rpc.code): \(rpc.message)"
            }
        }
        return "\(error)"
    }
}

/// Progress shared by the push and pull loops of one exchange.
final class ProgressTracker: Sendable {
    private let state = Mutex(SyncProgress())
    private let lastBatch = Mutex(ContinuousClock.now)

    func batchArrived() { lastBatch.withLock { $0 = .now } }

    var secondsSinceLastBatch: Int64 { lastBatch.withLock { (ContinuousClock.now - $0).components.seconds } }
    private let report: (@Sendable (SyncProgress) -> Void)?

    init(_ report: (@Sendable (SyncProgress) -> Void)?) { self.report = report }

    var value: SyncProgress { state.withLock { $0 } }

    func update(_ body: (inout SyncProgress) -> Void) {
        let v = state.withLock { s -> SyncProgress in
            body(&s)
            return s
        }
        report?(v)
    }
}

import Logging
import NIOCore
import NIOSSL
import NIOTLS
import Synchronization
import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Holds every connection headquarters accepted to the connection limits of ``SyncLimits``
/// and says in the log and in `outpost_refusals_total` when, and why, HQ turned a peer away.
/// (The cap on all connections is ``ListenerGuardHandler``'s.)
///
/// Sits right after the TLS handler. A peer that is not yet a known branch can hold a
/// connection only for the handshake deadline, and one that completed TLS only until the
/// first-call deadline, so idle sockets and stalled handshakes cannot pile up.
///
/// Refusals, by the reason they are counted under:
/// - `HANDSHAKE_TIMEOUT`: the TLS handshake did not complete within the deadline.
/// - `TLS_HANDSHAKE`: HQ failed the handshake (no client certificate, another authority, an
///   expired certificate, not TLS at all).
/// - `TLS_VERSION`: the handshake negotiated less than TLS 1.3; closed right after it.
/// - `SITE_CONNECTION_LIMIT`: the certificate's site already holds its share; closed right
///   after the handshake.
/// - `FIRST_CALL_TIMEOUT`: no call (HTTP/2 stream) within the deadline after the handshake.
/// - `IDLE_TIMEOUT`: the connection stayed without calls well past the transport's idle GOAWAY.
///
/// A peer that leaves on its own is not a refusal: EOF or a reset during the handshake, an
/// alert from the peer (it did not accept HQ's certificate), and any error after a completed
/// handshake, such as a disconnect without TLS close_notify.
final class ConnectionGuardHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    /// The deadlines, from the configuration.
    struct Settings: Sendable {
        var handshakeTimeout: TimeAmount
        var firstCallTimeout: TimeAmount
        /// When a connection without calls is closed outright. The transport's own idle
        /// timeout (GOAWAY, then a ping) ends a cooperating client's connection long before.
        var idleBackstop: TimeAmount

        init(_ limits: SyncLimits) {
            handshakeTimeout = .milliseconds(Int64(limits.handshakeTimeoutMilliseconds))
            firstCallTimeout = .milliseconds(Int64(limits.firstCallTimeoutMilliseconds))
            idleBackstop = .milliseconds(Int64(limits.idleTimeoutMilliseconds) + 10_000)
        }
    }

    private enum Phase {
        /// Added to the pipeline, not active yet.
        case accepted
        /// Waiting for the TLS handshake.
        case handshaking
        /// TLS 1.3 with a verified certificate, counted against its site.
        case established
        /// Being closed (by HQ or the peer): nothing more is counted.
        case closing
    }

    private let settings: Settings
    private let limiter: ConnectionLimiter
    private let logger: Logger
    private let metrics: SyncMetrics?
    private weak var tls: NIOSSLServerHandler?
    private var context: ChannelHandlerContext?
    private var phase = Phase.accepted
    /// The site this connection is counted against, once established.
    private var site: String?
    private var openCalls = 0
    private var deadline: Scheduled<Void>?

    private init(tls: NIOSSLServerHandler, settings: Settings, limiter: ConnectionLimiter, logger: Logger, metrics: SyncMetrics?) {
        self.tls = tls
        self.settings = settings
        self.limiter = limiter
        self.logger = logger
        self.metrics = metrics
    }

    /// Installs the guard on an accepted connection (for `onAcceptTCPConnection`).
    static func install(
        on channel: any Channel, settings: Settings, limiter: ConnectionLimiter, logger: Logger, metrics: SyncMetrics?
    ) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let tls = try channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            let handler = ConnectionGuardHandler(tls: tls, settings: settings, limiter: limiter, logger: logger, metrics: metrics)
            try channel.pipeline.syncOperations.addHandler(handler, position: .after(tls))
            // A branch whose line died without a word (a NAT dropped it) would hold its
            // connection, and a slot of its per-site share, until TCP gives up (~15 min): the
            // branch reconnects after 45 s, so a flapping line could lock it out. HQ writes to a
            // following pull every 15 s; data unacknowledged for 60 s closes the connection.
            #if os(Linux)
                let tcpUserTimeout: CInt = 18  // TCP_USER_TIMEOUT, <netinet/tcp.h>
                try? channel.syncOptions?.setOption(
                    ChannelOptions.Types.SocketOption(level: .tcp, name: .init(rawValue: tcpUserTimeout)), value: 60_000)
            #endif
        }
    }

    /// Tells the connection's guard that a call arrived (for `onAcceptHTTP2Stream`: a stream's
    /// parent is its connection, on the same event loop).
    static func callOpened(on stream: any Channel) -> EventLoopFuture<Void> {
        stream.eventLoop.makeCompletedFuture {
            guard let connection = stream.parent,
                let handler = try? connection.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self)
            else { return }
            handler.callOpened(stream)
        }
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if let site {
            limiter.release(site: site)
            self.site = nil
        }
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        // Later handlers see the connection active before any close we start.
        context.fireChannelActive()
        start(context)
    }

    private func start(_ context: ChannelHandlerContext) {
        guard case .accepted = phase else { return }
        phase = .handshaking
        schedule(context, after: settings.handshakeTimeout) { handler, context in
            guard case .handshaking = handler.phase else { return }
            handler.refuse(
                context, "HANDSHAKE_TIMEOUT", "closed a connection whose TLS handshake did not complete in time",
                ["timeout_ms": "\(handler.settings.handshakeTimeout.nanoseconds / 1_000_000)"])
        }
    }

    // MARK: Events

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event, case .handshaking = phase {
            phase = .established
            cancelDeadline()
            if let version = tls?.tlsVersion, version != .tlsv13 {
                refuse(
                    context, "TLS_VERSION", "refused a connection below TLS 1.3",
                    ["version": "\(version)", "site": "\(claimedSite ?? "-")"])
                return
            }
            // The chain is verified by now: the name is the one HQ's authority signed.
            let site = claimedSite ?? "-"
            guard limiter.admit(site: site) else {
                refuse(
                    context, "SITE_CONNECTION_LIMIT", "closed a connection over the site's connection limit",
                    ["site": "\(site)", "limit": "\(limiter.maximumPerSite)"])
                return
            }
            self.site = site
            if openCalls == 0 { scheduleFirstCall(context) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch phase {
        case .accepted, .handshaking:
            phase = .closing
            cancelDeadline()
            let detail = Self.summary(error)
            switch Self.handshakeFailure(error) {
            case .refused:
                metrics?.refused("TLS_HANDSHAKE")
                logger.warning(
                    "refused a TLS connection",
                    metadata: ["peer": "\(peer(context))", "site": "\(claimedSite ?? "-")", "reason": "TLS_HANDSHAKE", "detail": "\(detail)"])
            case .abandoned:
                // Typically a client that does not trust HQ's certificate (a wrong ca.pem).
                logger.info("a peer abandoned the TLS handshake", metadata: ["peer": "\(peer(context))", "detail": "\(detail)"])
            case .left:
                logger.debug("a peer left during the TLS handshake", metadata: ["peer": "\(peer(context))", "detail": "\(detail)"])
            }
        case .established:
            // Not a refusal: a branch that was killed or lost its link ends like this.
            logger.debug(
                "a connection ended with an error", metadata: ["peer": "\(peer(context))", "site": "\(site ?? "-")", "detail": "\(Self.summary(error))"])
        case .closing:
            break
        }
        context.fireErrorCaught(error)
    }

    // MARK: Calls

    private func callOpened(_ stream: any Channel) {
        openCalls += 1
        if case .established = phase { cancelDeadline() }
        stream.closeFuture.assumeIsolated().whenComplete { _ in self.callClosed() }
    }

    private func callClosed() {
        openCalls -= 1
        guard openCalls == 0, case .established = phase, let context else { return }
        schedule(context, after: settings.idleBackstop) { handler, context in
            guard case .established = handler.phase, handler.openCalls == 0 else { return }
            handler.refuse(
                context, "IDLE_TIMEOUT", "closed a connection that stayed idle after being asked to leave", ["site": "\(handler.site ?? "-")"])
        }
    }

    private func scheduleFirstCall(_ context: ChannelHandlerContext) {
        schedule(context, after: settings.firstCallTimeout) { handler, context in
            guard case .established = handler.phase, handler.openCalls == 0 else { return }
            handler.refuse(
                context, "FIRST_CALL_TIMEOUT", "closed a connection that made no call in time",
                ["site": "\(handler.site ?? "-")", "timeout_ms": "\(handler.settings.firstCallTimeout.nanoseconds / 1_000_000)"])
        }
    }

    // MARK: Helpers

    /// Closes the connection for `reason`: counted, and logged once with the peer's address.
    private func refuse(_ context: ChannelHandlerContext, _ reason: String, _ message: Logger.Message, _ extra: Logger.Metadata) {
        phase = .closing
        cancelDeadline()
        metrics?.refused(reason)
        var metadata: Logger.Metadata = ["peer": "\(peer(context))", "reason": "\(reason)"]
        metadata.merge(extra) { $1 }
        logger.warning(message, metadata: metadata)
        context.close(promise: nil)
    }

    private func schedule(
        _ context: ChannelHandlerContext, after delay: TimeAmount, _ action: @escaping (ConnectionGuardHandler, ChannelHandlerContext) -> Void
    ) {
        deadline?.cancel()
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in action(self, context) }
    }

    private func cancelDeadline() {
        deadline?.cancel()
        deadline = nil
    }

    private func peer(_ context: ChannelHandlerContext) -> String {
        context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
    }

    /// The site named by the certificate the peer presented (verified once the handshake has
    /// completed; before that only for the log line).
    private var claimedSite: String? {
        guard let certificate = tls?.peerCertificate, let der = try? certificate.toDERBytes(),
            let parsed = try? Certificate(derEncoded: der)
        else { return nil }
        return parsed.subject.commonName
    }

    /// What an error before the handshake completed means.
    enum HandshakeFailure {
        /// HQ refused the peer: no or a bad certificate, not TLS (1.3), …
        case refused
        /// The peer sent an alert: it refused HQ (BoringSSL names received alerts
        /// `SSLV3_ALERT_…` / `TLSV1_ALERT_…`).
        case abandoned
        /// EOF, a reset or another error that is not TLS's.
        case left
    }

    static func handshakeFailure(_ error: any Error) -> HandshakeFailure {
        guard error is NIOSSLError || error is BoringSSLError else { return .left }
        if case .handshakeFailed(let failure) = error as? NIOSSLError, case .sslError(let stack) = failure,
            stack.contains(.eofDuringHandshake) || stack.contains(.eofDuringAdditionalCertficiateChainValidation)
        {
            return .left
        }
        return summary(error).contains("_ALERT_") ? .abandoned : .refused
    }

    /// The BoringSSL reason in a few words, e.g. "CERTIFICATE_VERIFY_FAILED".
    static func summary(_ error: any Error) -> String {
        let text = "\(error)"
        for marker in ["OPENSSL_internal:", "SSL routines:"] {
            if let range = text.range(of: marker) {
                return String(text[range.upperBound...].prefix { $0 != " " && $0 != "]" && $0 != ")" })
            }
        }
        return String(text.prefix(120))
    }
}

/// Counts headquarters' connections from accept to close, in all and per site, against the
/// caps. One per server, shared by its event loops.
public final class ConnectionLimiter: Sendable {
    /// The most connections at once, after ``effectiveMaximum(configured:descriptorLimit:)``.
    public let maximum: Int
    /// The most connections at once with one site's certificate.
    public let maximumPerSite: Int

    private struct State {
        var open = 0
        var perSite: [String: Int] = [:]
    }

    private let state = Mutex(State())

    public init(maximum: Int, maximumPerSite: Int) {
        self.maximum = maximum
        self.maximumPerSite = maximumPerSite
    }

    /// Descriptors kept free of connections: the archive and its journal, the log, the
    /// operations endpoint and its clients, the event loops' own.
    public static let reservedDescriptors = 128

    /// `configured`, lowered so that the connections and the descriptors HQ needs otherwise
    /// stay below `descriptorLimit` (the soft RLIMIT_NOFILE). A full house is then refused at
    /// accept instead of making accept fail with EMFILE.
    public static func effectiveMaximum(configured: Int, descriptorLimit: Int?) -> Int {
        guard let limit = descriptorLimit else { return configured }
        let room = limit > 2 * reservedDescriptors ? limit - reservedDescriptors : limit / 2
        return max(1, min(configured, room))
    }

    /// Connections open now (accepted and not yet closed).
    public var open: Int { state.withLock { $0.open } }

    /// Counts a connection against ``maximum``; false when HQ already holds that many.
    func admit() -> Bool {
        state.withLock { s in
            guard s.open < maximum else { return false }
            s.open += 1
            return true
        }
    }

    func release() { state.withLock { $0.open -= 1 } }

    /// Counts a connection against `site`'s share; false when it already holds ``maximumPerSite``.
    func admit(site: String) -> Bool {
        state.withLock { s in
            let current = s.perSite[site, default: 0]
            guard current < maximumPerSite else { return false }
            s.perSite[site] = current + 1
            return true
        }
    }

    func release(site: String) {
        state.withLock { s in
            let left = s.perSite[site, default: 1] - 1
            s.perSite[site] = left > 0 ? left : nil
        }
    }
}

/// On the listening socket, before a connection gets a pipeline: counts it against
/// ``ConnectionLimiter/maximum`` until it closes, and closes one over the limit at once, so
/// HQ never holds more descriptors than it may. Also pauses accepting when accept fails.
///
/// A refused connection costs HQ an accept and a close, nothing more: no TLS state, no
/// HTTP/2 handler. Its log lines are rate-limited (a peer can reconnect as fast as it likes);
/// the refusal counter counts every one.
///
/// On accept failing for want of descriptors or memory the socket is not watched for a
/// second. NIO's `AcceptBackoffHandler`, which its async bootstrap installs already, delays
/// the next read, but the socket stays registered for readability after a failed accept, so
/// the event loop would retry accept in a tight loop (a core at 100%) until a descriptor frees
/// up; turning `autoRead` off unregisters it. The cap keeps connections below the descriptor
/// limit, so this is the safety net for descriptors used by something else.
final class ListenerGuardHandler: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let limiter: ConnectionLimiter
    private let logger: Logger
    private let metrics: SyncMetrics?
    private var paused = false
    /// Refusal log lines: at most `linesPerWindow` per 10 s, then one line with the rest.
    private var windowStart = NIODeadline.now()
    private var linesInWindow = 0
    private var unlogged = 0
    private static let linesPerWindow = 20

    private init(limiter: ConnectionLimiter, logger: Logger, metrics: SyncMetrics?) {
        self.limiter = limiter
        self.logger = logger
        self.metrics = metrics
    }

    /// Installs the handler on the listening channel (for `onBindTCPListener`).
    static func install(on channel: any Channel, limiter: ConnectionLimiter, logger: Logger, metrics: SyncMetrics?) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ListenerGuardHandler(limiter: limiter, logger: logger, metrics: metrics))
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let connection = Self.unwrapInboundIn(data)
        metrics?.add(SyncMetrics.connections)
        guard limiter.admit() else {
            metrics?.refused("CONNECTION_LIMIT")
            logRefusal(connection)
            connection.close(promise: nil)
            return
        }
        connection.closeFuture.whenComplete { [limiter] _ in limiter.release() }
        context.fireChannelRead(data)
    }

    private func logRefusal(_ connection: any Channel) {
        let now = NIODeadline.now()
        if now - windowStart >= .seconds(10) {
            if unlogged > 0 {
                logger.warning(
                    "closed more connections over the connection limit, not logged one by one",
                    metadata: ["connections": "\(unlogged)", "seconds": "10", "limit": "\(limiter.maximum)", "reason": "CONNECTION_LIMIT"])
            }
            windowStart = now
            linesInWindow = 0
            unlogged = 0
        }
        guard linesInWindow < Self.linesPerWindow else {
            unlogged += 1
            return
        }
        linesInWindow += 1
        logger.warning(
            "closed a connection over the connection limit",
            metadata: ["peer": "\(connection.remoteAddress.map { "\($0)" } ?? "unknown")", "limit": "\(limiter.maximum)", "reason": "CONNECTION_LIMIT"])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let io = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(io.errnoCode), !paused {
            paused = true
            logger.error(
                "accepting a connection failed: accepts paused for 1 s; lower sync.max_connections or raise LimitNOFILE",
                metadata: ["error": "\(io)"])
            try? context.channel.syncOptions?.setOption(.autoRead, value: false)
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) {
                self.paused = false
                try? context.channel.syncOptions?.setOption(.autoRead, value: true)
            }
        }
        context.fireErrorCaught(error)
    }
}

/// The process's limit on open file descriptors (RLIMIT_NOFILE).
public enum DescriptorLimit {
    /// Raises the soft limit to the hard limit and returns the soft limit now in force (nil
    /// if it cannot be read). Many systems start a process with a soft limit of 1,024.
    public static func raiseToHard() -> Int? {
        #if canImport(Glibc)
            let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
            let resource = RLIMIT_NOFILE
        #endif
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}

import Logging
import NIOCore
import NIOSSL
import NIOTLS
import X509

/// Sits right after headquarters' TLS handler on every accepted connection: refuses a
/// session that did not negotiate TLS 1.3, and logs every failed handshake (no client
/// certificate, another authority, an expired certificate) with the peer's address and the
/// site the presented certificate claims, so an operator sees who was turned away and why.
final class TLSGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let logger: Logger
    private let metrics: SyncMetrics?
    private weak var tls: NIOSSLServerHandler?
    private var reported = false

    init(tls: NIOSSLServerHandler, logger: Logger, metrics: SyncMetrics?) {
        self.tls = tls
        self.logger = logger
        self.metrics = metrics
    }

    /// Installs the guard on an accepted connection (for `onAcceptTCPConnection`).
    static func install(on channel: any Channel, logger: Logger, metrics: SyncMetrics? = nil) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            let tls = try channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            try channel.pipeline.syncOperations.addHandler(TLSGuardHandler(tls: tls, logger: logger, metrics: metrics), position: .after(tls))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event, let version = tls?.tlsVersion, version != .tlsv13 {
            metrics?.refused("TLS_VERSION")
            logger.warning(
                "refused a connection below TLS 1.3",
                metadata: ["peer": "\(peer(context))", "version": "\(version)", "site": "\(claimedSite ?? "-")", "reason": "UNAUTHENTICATED"])
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !reported, error is NIOSSLError || error is BoringSSLError {
            reported = true
            metrics?.refused("TLS_HANDSHAKE")
            logger.warning(
                "refused a TLS connection",
                metadata: ["peer": "\(peer(context))", "site": "\(claimedSite ?? "-")", "reason": "UNAUTHENTICATED", "detail": "\(Self.summary(error))"])
        }
        context.fireErrorCaught(error)
    }

    private func peer(_ context: ChannelHandlerContext) -> String {
        context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
    }

    /// The site named by the certificate the peer presented, verified or not (it is only
    /// for the log line).
    private var claimedSite: String? {
        guard let certificate = tls?.peerCertificate, let der = try? certificate.toDERBytes(),
            let parsed = try? Certificate(derEncoded: der)
        else { return nil }
        return parsed.subject.commonName
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

/// The entry point for the daemon (the handler type stays internal).
public enum TLSGuard {
    public static func install(on channel: any Channel, logger: Logger, metrics: SyncMetrics? = nil) -> EventLoopFuture<Void> {
        TLSGuardHandler.install(on: channel, logger: logger, metrics: metrics)
    }
}

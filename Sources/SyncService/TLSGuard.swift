import Logging
import NIOCore
import NIOSSL
import NIOTLS
import X509

/// Sits right after headquarters' TLS handler on every accepted connection: refuses a
/// session that did not negotiate TLS 1.3, and logs every handshake HQ failed (no client
/// certificate, another authority, an expired certificate) with the peer's address and the
/// site the presented certificate claims, so an operator sees who was turned away and why.
///
/// Only what HQ refused is counted as `TLS_HANDSHAKE`: not a peer that closed during the
/// handshake or sent an alert, and never an error after a completed handshake, such as a
/// branch that disconnects without a TLS close_notify (killed, or its link lost).
final class TLSGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let logger: Logger
    private let metrics: SyncMetrics?
    private weak var tls: NIOSSLServerHandler?
    private var handshakeCompleted = false
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
        if case TLSUserEvent.handshakeCompleted = event { handshakeCompleted = true }
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
        let detail = Self.summary(error)
        if handshakeCompleted {
            // Not a refusal: a branch that was killed or lost its link ends like this.
            logger.debug("a connection ended with an error", metadata: ["peer": "\(peer(context))", "detail": "\(detail)"])
        } else if !reported {
            reported = true
            switch Self.handshakeFailure(error) {
            case .refused:
                metrics?.refused("TLS_HANDSHAKE")
                logger.warning(
                    "refused a TLS connection",
                    metadata: ["peer": "\(peer(context))", "site": "\(claimedSite ?? "-")", "reason": "UNAUTHENTICATED", "detail": "\(detail)"])
            case .abandoned:
                // Typically a client that does not trust HQ's certificate (a wrong ca.pem).
                logger.info("a peer abandoned the TLS handshake", metadata: ["peer": "\(peer(context))", "detail": "\(detail)"])
            case .left:
                logger.debug("a peer left during the TLS handshake", metadata: ["peer": "\(peer(context))", "detail": "\(detail)"])
            }
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

/// The entry point for the daemon (the handler type stays internal).
public enum TLSGuard {
    public static func install(on channel: any Channel, logger: Logger, metrics: SyncMetrics? = nil) -> EventLoopFuture<Void> {
        TLSGuardHandler.install(on: channel, logger: logger, metrics: metrics)
    }
}

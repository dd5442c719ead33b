import GRPCCore
import GRPCNIOTransportHTTP2

extension HeadquartersService {
    /// A gRPC server for this service on `address`, with mutual TLS from `tls`: client
    /// certificates verified against the CA, and every connection held to the connection
    /// limits: the cap on all connections at accept (``ListenerGuardHandler``), then the
    /// handshake and first-call deadlines, the per-site cap, sessions below TLS 1.3 closed and
    /// failed handshakes logged (``ConnectionGuardHandler``). The transport
    /// payload limit is above the protocol's own, so an oversized set gets the protocol's clear
    /// refusal (and a log line naming the site) rather than a bare transport error.
    public func makeServer(address: HostPort, tls: TLSFiles) throws -> GRPCServer<HTTP2ServerTransport.Posix> {
        let pem = try tls.load()
        let socket: GRPCNIOTransportCore.SocketAddress =
            address.isIPv6 ? .ipv6(host: address.host, port: address.port) : .ipv4(host: address.host, port: address.port)
        let settings = ConnectionGuardHandler.Settings(limits)
        let transport = HTTP2ServerTransport.Posix(
            address: socket,
            transportSecurity: .mTLS(certificateChain: [.bytes(pem.certificate, format: .pem)], privateKey: .bytes(pem.key, format: .pem)) {
                $0.trustRoots = .certificates([.bytes(pem.ca, format: .pem)])
                $0.clientCertificateVerification = .noHostnameVerification
            },
            config: .defaults { [limits, logger, metrics, connections] config in
                config.rpc.maxRequestPayloadSize = limits.maximumMessageBytes * 2
                config.http2.maxConcurrentStreams = limits.maximumStreamsPerConnection
                // A connection without calls gets a GOAWAY; the guard closes it outright
                // should the peer not leave.
                config.connection.maxIdleTime = .milliseconds(limits.idleTimeoutMilliseconds)
                config.channelDebuggingCallbacks.onBindTCPListener = { channel in
                    ListenerGuardHandler.install(on: channel, limiter: connections, logger: logger, metrics: metrics)
                }
                config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                    ConnectionGuardHandler.install(on: channel, settings: settings, limiter: connections, logger: logger, metrics: metrics)
                }
                config.channelDebuggingCallbacks.onAcceptHTTP2Stream = { stream in
                    ConnectionGuardHandler.callOpened(on: stream)
                }
            })
        return GRPCServer(transport: transport, services: [self])
    }
}

import GRPCCore
import GRPCNIOTransportHTTP2

extension HeadquartersService {
    /// A gRPC server for this service on `address`, with mutual TLS from `tls`: client
    /// certificates verified against the CA, sessions below TLS 1.3 closed and failed
    /// handshakes logged (``TLSGuard``), and a transport payload limit above the protocol's
    /// own, so an oversized set gets the protocol's clear refusal (and a log line naming the
    /// site) rather than a bare transport error.
    public func makeServer(address: HostPort, tls: TLSFiles) throws -> GRPCServer<HTTP2ServerTransport.Posix> {
        let pem = try tls.load()
        let socket: GRPCNIOTransportCore.SocketAddress =
            address.isIPv6 ? .ipv6(host: address.host, port: address.port) : .ipv4(host: address.host, port: address.port)
        let transport = HTTP2ServerTransport.Posix(
            address: socket,
            transportSecurity: .mTLS(certificateChain: [.bytes(pem.certificate, format: .pem)], privateKey: .bytes(pem.key, format: .pem)) {
                $0.trustRoots = .certificates([.bytes(pem.ca, format: .pem)])
                $0.clientCertificateVerification = .noHostnameVerification
            },
            config: .defaults { [limits, logger, metrics] config in
                config.rpc.maxRequestPayloadSize = limits.maximumMessageBytes * 2
                config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                    TLSGuard.install(on: channel, logger: logger, metrics: metrics)
                }
            })
        return GRPCServer(transport: transport, services: [self])
    }
}

import NIOCore
import NIOHTTP1
import NIOPosix

/// A tiny HTTP/1.1 server for the operations endpoints (`/metrics`, `/healthz`, `/readyz`):
/// GET only, one response per connection, bound to a local address by default.
///
/// Answers are computed off the event loop (they read the archive), so a slow disk never
/// stalls the loop that serves the sync protocol.
public final class HTTPEndpoint: Sendable {
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var contentType: String
        public var body: String

        public init(status: HTTPResponseStatus = .ok, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    public typealias Responder = @Sendable (_ path: String) async -> Response

    private let channel: any Channel
    /// The bound address (the port is known here when 0 was asked for).
    public let address: String

    private init(channel: any Channel, address: String) {
        self.channel = channel
        self.address = address
    }

    /// Binds and starts answering.
    public static func start(host: String, port: Int, responder: @escaping Responder) async throws -> HTTPEndpoint {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Handler(responder: responder))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        let bound = channel.localAddress
        let shown: String
        if let bound, let ip = bound.ipAddress, let port = bound.port {
            shown = bound.protocol == .inet6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
        } else {
            shown = "\(host):\(port)"
        }
        return HTTPEndpoint(channel: channel, address: shown)
    }

    public func stop() async {
        try? await channel.close()
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        // @unchecked: used on its channel's event loop only; the responder's result is
        // carried back to the loop before touching the context.
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        private let responder: Responder
        private var head: HTTPRequestHead?

        init(responder: @escaping Responder) { self.responder = responder }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let head else { return }
                self.head = nil
                let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
                let method = head.method
                let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
                let responder = self.responder
                let promise = context.eventLoop.makePromise(of: Response.self)
                promise.completeWithTask {
                    guard method == .GET || method == .HEAD else {
                        return Response(status: .methodNotAllowed, body: "only GET\n")
                    }
                    return await responder(path)
                }
                promise.futureResult.whenSuccess { response in
                    Self.write(response, head: method == .HEAD, version: head.version, context: loopContext.value)
                }
            }
        }

        private static func write(_ response: Response, head onlyHead: Bool, version: HTTPVersion, context: ChannelHandlerContext) {
            var headers = HTTPHeaders()
            let body = ByteBuffer(string: response.body)
            headers.add(name: "Content-Type", value: response.contentType)
            headers.add(name: "Content-Length", value: "\(body.readableBytes)")
            headers.add(name: "Connection", value: "close")
            let head = HTTPResponseHead(version: version, status: response.status, headers: headers)
            context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
            if !onlyHead { context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(body))), promise: nil) }
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in context.close(promise: nil) }
        }
    }
}

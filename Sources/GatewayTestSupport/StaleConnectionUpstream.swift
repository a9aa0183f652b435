import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An upstream that answers the first request on each connection (keep-alive) and closes the
/// connection, without answering, when a second request arrives on it: what a client sees when it
/// reuses a pooled connection the server has just given up on.
public final class StaleConnectionUpstream: Sendable {
    private let answered = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)

    public init() {}

    /// Requests answered / requests dropped by closing the connection.
    public var answeredCount: Int { answered.load(ordering: .relaxed) }
    public var droppedCount: Int { dropped.load(ordering: .relaxed) }

    /// Starts on 127.0.0.1 port 0; returns the channel (close it to stop) and the port.
    public func start() async throws -> (channel: any Channel, port: Int) {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(owner: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (channel, channel.localAddress?.port ?? 0)
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let owner: StaleConnectionUpstream
        var requests = 0

        init(owner: StaleConnectionUpstream) { self.owner = owner }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            requests += 1
            if requests > 1 {
                owner.dropped.add(1, ordering: .relaxed)
                context.close(promise: nil)
                return
            }
            owner.answered.add(1, ordering: .relaxed)
            let body = ByteBuffer(string: "fresh")
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "\(body.readableBytes)")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

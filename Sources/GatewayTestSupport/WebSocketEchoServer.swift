import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// A WebSocket upstream on 127.0.0.1, port 0, built on NIO's own WebSocket server upgrade (not the
/// gateway's code): `GET /…` with a WebSocket handshake is switched, then every text or binary
/// frame comes back as it was sent, and a close frame is answered. A path containing `/refuse`
/// answers the handshake 403 with a small body instead; one containing `/hello` sends a text frame
/// `hello` right after its `101`. Counts handshakes and frames.
public final class WebSocketEchoServer: Sendable {
    private let group = MultiThreadedEventLoopGroup.singleton
    private let channel = Mutex<(any Channel)?>(nil)
    private let counts = Mutex((handshakes: 0, frames: 0, bytes: 0))

    public init() {}

    public var handshakes: Int { counts.withLock { $0.handshakes } }
    public var framesEchoed: Int { counts.withLock { $0.frames } }
    public var bytesEchoed: Int { counts.withLock { $0.bytes } }

    public func start() async throws -> Int {
        let server = self
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let upgrader = NIOWebSocketServerUpgrader(
                    shouldUpgrade: { channel, head in
                        channel.eventLoop.makeSucceededFuture(head.uri.contains("/refuse") ? nil : HTTPHeaders())
                    },
                    upgradePipelineHandler: { channel, head in
                        server.counts.withLock { $0.handshakes += 1 }
                        return channel.eventLoop.makeCompletedFuture {
                            let pipeline = channel.pipeline.syncOperations
                            pipeline.removeHandler(try pipeline.handler(type: Refusal.self), promise: nil)
                            try pipeline.addHandler(Echo(server: server, greet: head.uri.contains("/hello")))
                        }
                    })
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
                    try channel.pipeline.syncOperations.addHandler(Refusal())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        channel.withLock { $0 = bound }
        return bound.localAddress?.port ?? 0
    }

    public func stop() async {
        let bound = channel.withLock { $0 }
        try? await bound?.close()
    }

    /// Answers what the upgrader declined (a `/refuse` handshake, or a plain request): 403.
    final class Refusal: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let body = context.channel.allocator.buffer(string: "{\"error\":\"no websocket here\"}")
            var headers: HTTPHeaders = ["Content-Type": "application/json", "Content-Length": "\(body.readableBytes)"]
            headers.add(name: "X-Upstream", value: "refused")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .forbidden, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    final class Echo: ChannelInboundHandler {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame
        let server: WebSocketEchoServer
        let greet: Bool

        init(server: WebSocketEchoServer, greet: Bool) {
            self.server = server
            self.greet = greet
        }

        func handlerAdded(context: ChannelHandlerContext) {
            guard greet else { return }
            let hello = context.channel.allocator.buffer(string: "hello")
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: hello)), promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .text, .binary, .continuation:
                server.counts.withLock {
                    $0.frames += 1
                    $0.bytes += frame.unmaskedData.readableBytes
                }
                context.writeAndFlush(
                    wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
            case .connectionClose:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                    .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            case .ping:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            default:
                break
            }
        }
    }
}

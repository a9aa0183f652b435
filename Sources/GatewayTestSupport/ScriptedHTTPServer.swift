import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// An HTTP/1.1 server on 127.0.0.1 port 0 (optionally TLS) whose every answer is decided by a
/// closure: respond, close the connection without answering, or never answer. It counts the
/// connections it accepted, records the requests, and can close all its connections on demand.
public final class ScriptedHTTPServer: Sendable {
    public struct Request: Sendable {
        public let method: String
        public let uri: String
        public let headers: [(String, String)]
        public let body: [UInt8]
        /// 1 for the first connection the server accepted, 2 for the second, …
        public let connection: Int
        /// 1 for the first request on its connection.
        public let indexOnConnection: Int

        public func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    public enum Reply: Sendable, CustomStringConvertible {
        /// Answers with `Content-Length`, or chunked when `headers` say `Transfer-Encoding: chunked`.
        case respond(status: Int, headers: [(String, String)] = [], body: [UInt8] = [])
        /// Closes the connection without answering.
        case close
        /// Never answers (the connection stays open).
        case never
        /// Interim answers (1xx: status and fields), written and flushed first, then `final`.
        indirect case interim([(status: Int, headers: [(String, String)])], then: Reply)

        public var description: String {
            switch self {
            case .respond(let status, let headers, let body):
                return "HTTP \(status) \(headers.map { "\($0.0): \($0.1)" }) + \(body.count) bytes"
            case .close: return "close"
            case .never: return "never answer"
            case .interim(let heads, let final): return "\(heads.map(\.status)) then \(final)"
            }
        }

        public static func json(_ text: String, status: Int = 200) -> Reply {
            .respond(status: status, headers: [("Content-Type", "application/json")], body: Array(text.utf8))
        }
    }

    private struct State {
        var accepted = 0
        var open: [Int: any Channel] = [:]
        var requests: [Request] = []
        var server: (any Channel)?
    }

    private let state = Mutex(State())
    private let reply: @Sendable (Request) -> Reply
    private let tls: NIOSSLContext?

    /// With `certificateFile` and `keyFile` (PEM), the server speaks TLS.
    public init(certificateFile: String? = nil, keyFile: String? = nil, reply: @escaping @Sendable (Request) -> Reply) throws {
        self.reply = reply
        if let certificateFile, let keyFile {
            let configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem)))
            tls = try NIOSSLContext(configuration: configuration)
        } else {
            tls = nil
        }
    }

    /// Connections accepted so far.
    public var connectionCount: Int { state.withLock { $0.accepted } }
    /// Connections open now.
    public var openConnectionCount: Int { state.withLock { $0.open.count } }
    /// Requests received so far, in arrival order.
    public var requests: [Request] { state.withLock { $0.requests } }

    /// Starts listening; returns the port.
    public func start() async throws -> Int {
        let tls = self.tls
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let number = self.state.withLock { state in
                        state.accepted += 1
                        state.open[state.accepted] = channel
                        return state.accepted
                    }
                    channel.closeFuture.whenComplete { _ in self.state.withLock { _ = $0.open.removeValue(forKey: number) } }
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false)
                    try channel.pipeline.syncOperations.addHandler(Handler(owner: self, connection: number))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        state.withLock { $0.server = channel }
        return channel.localAddress?.port ?? 0
    }

    /// Closes every open connection and waits until they are closed.
    public func closeConnections() async {
        let open = state.withLock { Array($0.open.values) }
        for channel in open { try? await channel.close() }
    }

    /// Waits until every connection open now has been closed (by either side).
    public func waitUntilConnectionsClosed() async {
        let open = state.withLock { Array($0.open.values) }
        for channel in open { try? await channel.closeFuture.get() }
    }

    /// Stops listening and closes every connection.
    public func stop() async {
        let server = state.withLock { $0.server }
        try? await server?.close()
        await closeConnections()
    }

    private func record(_ request: Request) -> Reply {
        state.withLock { $0.requests.append(request) }
        return reply(request)
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let owner: ScriptedHTTPServer
        let connection: Int
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        var count = 0

        init(owner: ScriptedHTTPServer, connection: Int) {
            self.owner = owner
            self.connection = connection
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = []
            case .body(let buffer):
                body.append(contentsOf: buffer.readableBytesView)
            case .end:
                guard let head else { return }
                count += 1
                let request = Request(
                    method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) },
                    body: body, connection: connection, indexOnConnection: count)
                answer(owner.record(request), to: head, context: context)
            }
        }

        private func answer(_ reply: Reply, to head: HTTPRequestHead, context: ChannelHandlerContext) {
            switch reply {
            case .interim(let heads, let final):
                for (status, headers) in heads {
                    context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(
                        version: .http1_1, status: .init(statusCode: status), headers: HTTPHeaders(headers)))), promise: nil)
                }
                answer(final, to: head, context: context)
            case .never:
                break
            case .close:
                context.close(promise: nil)
            case .respond(let status, let headers, let body):
                var fields = HTTPHeaders(headers)
                let chunked = fields["transfer-encoding"].contains { $0.lowercased() == "chunked" }
                if !chunked { fields.replaceOrAdd(name: "Content-Length", value: String(body.count)) }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(
                    version: .http1_1, status: .init(statusCode: status), headers: fields))), promise: nil)
                var offset = 0
                while offset < body.count {
                    let end = min(offset + 65_536, body.count)
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body[offset..<end])))), promise: nil)
                    offset = end
                }
                let close = !head.isKeepAlive || fields["connection"].contains { $0.lowercased() == "close" }
                context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    if close { context.close(promise: nil) }
                }
            }
        }
    }
}

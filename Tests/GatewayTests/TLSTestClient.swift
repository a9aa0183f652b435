import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

/// An HTTP/1.1 client over TLS that verifies the gateway's certificate chain against a CA the
/// test made (NIOSSL, full verification, SNI and hostname check), for the live TLS tests. One
/// connection, requests one after another (keep-alive).
final class TLSTestConnection: @unchecked Sendable {
    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: String
    }

    /// What the handshake gave: the leaf the gateway served and the protocol ALPN chose.
    struct Handshake: Sendable {
        var serverSerial: String
        var alpn: String?
    }

    private let channel: any Channel
    private let collector: Collector
    let handshake: Handshake

    private init(channel: any Channel, collector: Collector, handshake: Handshake) {
        self.channel = channel
        self.collector = collector
        self.handshake = handshake
    }

    /// Connects to 127.0.0.1:`port`, naming `serverName`, trusting only `trustRoots` (PEM).
    static func connect(port: Int, trustRoots: [UInt8], serverName: String = "localhost", alpn: [String] = ["http/1.1"],
                        minimumVersion: TLSVersion = .tlsv1, maximumVersion: TLSVersion? = nil) async throws -> TLSTestConnection {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(trustRoots))
        configuration.certificateVerification = .fullVerification
        configuration.applicationProtocols = alpn
        configuration.minimumTLSVersion = minimumVersion
        configuration.maximumTLSVersion = maximumVersion
        let context = try NIOSSLContext(configuration: configuration)
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(try NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try sync.addHandler(HTTPRequestEncoder())
                    try sync.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes)))
                    try sync.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        do {
            let alpn = try await collector.handshakeCompleted(on: channel.eventLoop)
            let serial = try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate?.serialNumber ?? []
            }.get()
            return TLSTestConnection(channel: channel, collector: collector,
                                     handshake: Handshake(serverSerial: Self.hex(serial), alpn: alpn))
        } catch {
            try? await channel.close()
            throw error
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        // Serial numbers are positive DER integers: a leading zero byte only keeps the sign bit clear.
        let significant = bytes.count > 1 && bytes[0] == 0 ? Array(bytes.dropFirst()) : bytes
        return significant.map { byte in String(byte, radix: 16, uppercase: true).count == 1 ? "0" + String(byte, radix: 16, uppercase: true) : String(byte, radix: 16, uppercase: true) }.joined()
    }

    func get(_ path: String, host: String = "localhost") async throws -> Response {
        let response = channel.eventLoop.makePromise(of: Response.self)
        channel.eventLoop.execute { self.collector.expect(response) }
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "Host", value: host)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        return try await response.futureResult.get()
    }

    func close() async { try? await channel.close() }

    /// One request on a fresh connection.
    static func get(port: Int, path: String, trustRoots: [UInt8], serverName: String = "localhost") async throws -> (Response, Handshake) {
        let connection = try await connect(port: port, trustRoots: trustRoots, serverName: serverName)
        defer { Task { await connection.close() } }
        return (try await connection.get(path), connection.handshake)
    }

    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart

        private var handshake: EventLoopPromise<String?>?
        private var handshakeResult: Result<String?, any Error>?
        private var waiting: EventLoopPromise<Response>?
        private var current: Response?

        func handshakeCompleted(on loop: any EventLoop) async throws -> String? {
            try await loop.flatSubmit { () -> EventLoopFuture<String?> in
                if let result = self.handshakeResult { return loop.makeCompletedFuture(result) }
                let promise = loop.makePromise(of: String?.self)
                self.handshake = promise
                return promise.futureResult
            }.get()
        }

        func expect(_ promise: EventLoopPromise<Response>) { waiting = promise }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .handshakeCompleted(let negotiated) = event as? TLSUserEvent {
                handshakeResult = .success(negotiated)
                handshake?.succeed(negotiated)
                handshake = nil
            }
            context.fireUserInboundEventTriggered(event)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): current = Response(status: Int(head.status.code), headers: head.headers, body: "")
            case .body(let buffer): current?.body += String(buffer: buffer)
            case .end:
                if let current { waiting?.succeed(current) }
                waiting = nil
                current = nil
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            fail(ChannelError.eof)
            context.fireChannelInactive()
        }

        private func fail(_ error: any Error) {
            if handshakeResult == nil { handshakeResult = .failure(error) }
            handshake?.fail(error)
            handshake = nil
            waiting?.fail(error)
            waiting = nil
        }
    }
}

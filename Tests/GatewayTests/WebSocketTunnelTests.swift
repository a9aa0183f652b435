import Foundation
import Gateway
import GatewayTestSupport
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// WebSocket upgrades on free routes, proxied (issue 14 item 1), over real sockets: a raw client
/// that speaks the handshake and frames by hand, an upstream built on NIO's own WebSocket server.
@Suite("WebSocket pass-through", .timeLimit(.minutes(2)))
struct WebSocketTunnelTests {
    static func yaml(_ upstream: Int, idle: String = "60s") -> String {
        """
        listen: 127.0.0.1:0
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        upstreams:
          ws: { url: "http://127.0.0.1:\(upstream)", timeout: 2s }
        routes:
          - match: "/ws/*"
            upstream: ws
            free: true
          - match: "/paid/*"
            upstream: ws
            price: "$0.01"
        unmatched: deny
        limits: { idleTimeout: \(idle) }
        """
    }

    /// RFC 6455 §1.3's example key and the accept value it must produce.
    static let handshake = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    static let accept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    /// A client frame (masked, as clients must): FIN + opcode, then the payload.
    static func frame(_ payload: [UInt8], opcode: UInt8 = 0x1) -> [UInt8] {
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        var out: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            out.append(0x80 | UInt8(payload.count))
        } else {
            out.append(0x80 | 126)
            out += [UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        out += mask
        out += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        return out
    }

    /// The payloads of the complete unmasked server frames in `bytes` (short frames only).
    static func payloads(_ bytes: ArraySlice<UInt8>) -> [String] {
        var out: [String] = []
        var i = bytes.startIndex
        while i + 2 <= bytes.endIndex {
            let length = Int(bytes[i + 1] & 0x7F)
            guard length < 126, i + 2 + length <= bytes.endIndex else { break }
            out.append(String(decoding: bytes[(i + 2)..<(i + 2 + length)], as: UTF8.self))
            i += 2 + length
        }
        return out
    }

    static func split(_ bytes: [UInt8]) -> (head: String, rest: ArraySlice<UInt8>) {
        guard let end = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return (bytes.text, []) }
        return (String(decoding: bytes[..<end.upperBound], as: UTF8.self), bytes[end.upperBound...])
    }

    @Test("a handshake on a free route is switched by the upstream; frames go both ways; what the upstream sends right after its 101 arrives")
    func echo() async throws {
        let upstream = WebSocketEchoServer()
        let port = try await upstream.start()
        try await TestHarness.withGateway(yaml: Self.yaml(port)) { gw in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("GET /ws/hello HTTP/1.1\r\nHost: gw\r\n" + Self.handshake)
            let (opened, _) = try await socket.read { bytes in
                guard let end = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return false }
                return Self.payloads(bytes[end.upperBound...]).count == 1
            }
            let (head, rest) = Self.split(opened)
            #expect(head.hasPrefix("HTTP/1.1 101"), "\(head)")
            #expect(head.contains(Self.accept))
            #expect(head.contains("Upgrade: websocket") && head.contains("X-Request-Id: "))
            #expect(Self.payloads(rest) == ["hello"], "sent by the upstream with its 101")
            for n in 1...3 {
                try await socket.send(Self.frame(Array("message \(n)".utf8)))
                let (echoed, _) = try await socket.read { Self.payloads($0[...]).count == 1 }
                #expect(Self.payloads(echoed[...]) == ["message \(n)"])
            }
            #expect(upstream.framesEchoed == 3)
            #expect(gw.server.openConnections == 1, "the tunnel keeps its place under the connection limits")
            // The client closes: the upstream's side closes too, and the place is given back.
            _ = consume socket
            let deadline = ContinuousClock.now + .seconds(5)
            while gw.server.openConnections > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(gw.server.openConnections == 0)
        }
        await upstream.stop()
    }

    @Test("an upstream that refuses the handshake: its status, fields and body reach the client, then the close")
    func refused() async throws {
        let upstream = WebSocketEchoServer()
        let port = try await upstream.start()
        try await TestHarness.withGateway(yaml: Self.yaml(port)) { gw in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("GET /ws/refuse HTTP/1.1\r\nHost: gw\r\n" + Self.handshake)
            let (bytes, end) = try await socket.read()
            #expect(bytes.statusCode == 403, "\(bytes.text)")
            #expect(bytes.text.contains("X-Upstream: refused") && bytes.text.contains("no websocket here"))
            #expect(bytes.text.contains("Connection: close"))
            #expect(end == .closed)
            #expect(upstream.handshakes == 0)
        }
        await upstream.stop()
    }

    @Test("no upstream: 502; a priced route's unpaid handshake still gets its 402, never a tunnel")
    func failures() async throws {
        try await TestHarness.withGateway(yaml: Self.yaml(1)) { gw in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("GET /ws/x HTTP/1.1\r\nHost: gw\r\n" + Self.handshake)
            let (bytes, end) = try await socket.read()
            #expect(bytes.statusCode == 502, "\(bytes.text)")
            #expect(end == .closed)
            let paid = try RawSocket(port: gw.port)
            try await paid.send("GET /paid/x HTTP/1.1\r\nHost: gw\r\n" + Self.handshake)
            let (challenge, _) = try await paid.read()
            #expect(challenge.statusCode == 402)
        }
    }

    @Test("a tunnel quiet for idleTimeout is closed on both sides")
    func idle() async throws {
        let upstream = WebSocketEchoServer()
        let port = try await upstream.start()
        try await TestHarness.withGateway(yaml: Self.yaml(port, idle: "1s")) { gw in
            let socket = try RawSocket(port: gw.port, receiveTimeout: 10)
            try await socket.send("GET /ws/quiet HTTP/1.1\r\nHost: gw\r\n" + Self.handshake)
            let (opened, _) = try await socket.read(until: RawSocket.headEnd)
            #expect(opened.statusCode == 101)
            let started = ContinuousClock.now
            let (_, end) = try await socket.read()
            #expect(end == .closed)
            #expect(ContinuousClock.now - started < .seconds(5))
        }
        await upstream.stop()
    }

    @Test("back-pressure: an upstream that stops reading stops the gateway reading the client; memory stays flat")
    func backPressure() async throws {
        // An upstream that switches, then never reads again.
        let stalled = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SwitchThenStall())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        try await TestHarness.withGateway(yaml: Self.yaml(stalled.localAddress?.port ?? 0)) { gw in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("GET /ws/flood HTTP/1.1\r\nHost: gw\r\n" + Self.handshake)
            let (opened, _) = try await socket.read(until: RawSocket.headEnd)
            #expect(opened.statusCode == 101, "\(opened.text)")
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(socket.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let before = residentBytes()
            let chunk = Self.frame([UInt8](repeating: 0x61, count: 60_000), opcode: 0x2)
            var sent = 0
            while sent < 256 << 20 {
                guard try await socket.send(chunk) else { break }
                sent += chunk.count
            }
            let growth = residentBytes() - before
            #expect(sent < 64 << 20, "the client could send \(sent >> 20) MiB into a tunnel nobody reads")
            // The test process's RSS (other suites run alongside): catches the gateway keeping what
            // was sent (up to 256 MiB would be tried), not a few MiB of noise.
            #expect(growth < 48 << 20, "RSS grew by \(growth >> 20) MiB")
        }
        try await stalled.close()
    }

    /// Answers the first request with a 101 and never reads again.
    final class SwitchThenStall: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelActive(context: ChannelHandlerContext) {
            context.read()
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let answer = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: answer)), promise: nil)
        }
    }
}

import Foundation
import Gateway
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// The main listener's real pipeline (NIO's request decoder and `GatewayHandler`, built by
/// `GatewayServer.connectionHandlers`) around an `EmbeddedChannel`: no socket, and the idle timer
/// runs on the embedded loop's virtual clock (`advanceTime`), so nothing sleeps.
@Suite("Client connection over an embedded channel")
struct GatewayConnectionTests {
    static let yaml = """
        listen: 127.0.0.1:0
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        upstreams:
          api: { url: "http://127.0.0.1:1" }
        routes:
          - match: "/paid/*"
            price: "$0.01"
        unmatched: deny
        limits: { idleTimeout: 2s }
        """

    /// Counts the `read` events that get past `GatewayHandler` (it sits at the head of the pipeline).
    final class ReadCounter: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = ByteBuffer
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    /// Holds every write's promise until released: a socket whose peer stopped reading.
    final class StuckWrites: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var held: [EventLoopPromise<Void>] = []
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if let promise { held.append(promise) }
            context.write(data, promise: nil)
        }
    }

    struct Connection {
        let channel: EmbeddedChannel
        let reads: ReadCounter
        let loop: EmbeddedEventLoop

        func send(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
        }

        /// Everything written to the client so far, as text.
        func output() throws -> String {
            var text = ""
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
            return text
        }

        /// The status codes of the responses in `text`, in order.
        static func statuses(_ text: String) -> [Int] {
            text.components(separatedBy: "HTTP/1.1 ").dropFirst().compactMap { Int($0.prefix(3)) }
        }

        var isOpen: Bool { channel.isActive }
    }

    static func connection(yaml: String = Self.yaml, extra: [any ChannelHandler] = []) throws -> Connection {
        let config = try ConfigLoader.parse(yaml: yaml, file: "test.yaml", environment: [:])
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = GatewayServer(config: config, logger: logger)
        let loop = EmbeddedEventLoop()
        let reads = ReadCounter()
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(reads)
        try channel.pipeline.syncOperations.addHandlers(extra)
        try channel.pipeline.syncOperations.addHandlers(server.connectionHandlers(config)())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).wait()
        return Connection(channel: channel, reads: reads, loop: loop)
    }

    @Test("pipelined requests are answered in order and Connection: close ends the connection")
    func pipelined() throws {
        let c = try Self.connection()
        try c.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n"
                   + "POST /paid/b HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"
                   + "GET /paid/c HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\nGET /paid/never HTTP/1.1\r\nHost: gw\r\n\r\n")
        let out = try c.output()
        #expect(Connection.statuses(out) == [402, 404, 402, 402])
        #expect(out.components(separatedBy: "Connection: close").count == 2)
        #expect(!c.isOpen)
    }

    @Test("HTTP/1.0 without keep-alive is answered and the connection closed once the answer is written")
    func http10Closes() throws {
        let c = try Self.connection()
        try c.send("GET /paid/a HTTP/1.0\r\nHost: gw\r\n\r\n")
        let out = try c.output()
        #expect(Connection.statuses(out) == [402])
        #expect(out.contains("Connection: close"))
        #expect(!c.isOpen)
    }

    @Test("a close waiting on a write the client never takes is ended by the idle timeout, not kept forever")
    func stuckCloseEndsAtTheIdleTimeout() throws {
        let stuck = StuckWrites()
        let c = try Self.connection(extra: [stuck])
        try c.send("GET /paid/a HTTP/1.0\r\nHost: gw\r\n\r\n")
        #expect(Connection.statuses(try c.output()) == [402])
        #expect(c.isOpen, "the close waits for the last write")
        c.loop.advanceTime(by: .milliseconds(1_900))
        #expect(c.isOpen)
        c.loop.advanceTime(by: .milliseconds(200))
        #expect(!c.isOpen)
        for promise in stuck.held { promise.succeed() }
    }

    @Test("a client that pipelines and half-closes gets every answer, then the close")
    func halfCloseAfterPipelining() throws {
        let c = try Self.connection()
        try c.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n")
        c.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(Connection.statuses(try c.output()) == [402, 404])
        #expect(!c.isOpen)
    }

    @Test("a client that half-closes in the middle of a request body is closed: that request can never end")
    func halfCloseMidBody() throws {
        let c = try Self.connection()
        try c.send("POST /paid/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nab")
        c.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!c.isOpen)
    }

    @Test("a half-closed idle connection is closed at once")
    func halfCloseIdle() throws {
        let c = try Self.connection()
        c.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!c.isOpen)
    }

    @Test("the idle timeout ends a client that stops sending in the middle of a request")
    func idleMidRequest() throws {
        let c = try Self.connection()
        c.loop.advanceTime(by: .seconds(1))
        try c.send("POST /paid/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\nabc")
        c.loop.advanceTime(by: .milliseconds(1_900))
        #expect(c.isOpen, "2 s after the last bytes, not after the connection opened")
        c.loop.advanceTime(by: .milliseconds(200))
        #expect(!c.isOpen)
        #expect(try c.output().isEmpty)
    }

    @Test("an idle keep-alive connection is closed after the idle timeout; activity pushes it back")
    func idleKeepAlive() throws {
        let c = try Self.connection()
        c.loop.advanceTime(by: .milliseconds(1_500))
        try c.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        #expect(Connection.statuses(try c.output()) == [402])
        c.loop.advanceTime(by: .milliseconds(1_900))
        #expect(c.isOpen)
        c.loop.advanceTime(by: .milliseconds(200))
        #expect(!c.isOpen)
    }

    @Test("graceful shutdown closes an idle connection at once, a busy one right after its answer")
    func quiescing() throws {
        let idle = try Self.connection()
        idle.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(!idle.isOpen)

        let busy = try Self.connection()
        try busy.send("POST /paid/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nab")
        busy.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(busy.isOpen)
        try busy.send("cdGET /paid/b HTTP/1.1\r\nHost: gw\r\n\r\n")
        let out = try busy.output()
        #expect(Connection.statuses(out) == [402], "the request behind it is not started")
        #expect(out.contains("Connection: close"))
        #expect(!busy.isOpen)
    }

    @Test("reading stops while the client is not reading its answers and resumes when it is")
    func clientBackPressure() throws {
        let c = try Self.connection()
        c.channel.read()
        #expect(c.reads.reads == 1)
        c.channel.isWritable = false
        c.channel.pipeline.fireChannelWritabilityChanged()
        c.channel.read()
        #expect(c.reads.reads == 1, "held")
        c.channel.isWritable = true
        c.channel.pipeline.fireChannelWritabilityChanged()
        #expect(c.reads.reads == 2, "the held read is issued")
    }

    @Test("a request body is read while the client is not writable (no deadlock with a client that writes before reading)")
    func bodyReadDespiteClientBackPressure() throws {
        let c = try Self.connection()
        try c.send("POST /paid/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nab")
        c.channel.isWritable = false
        c.channel.pipeline.fireChannelWritabilityChanged()
        c.channel.read()
        #expect(c.reads.reads == 1)
    }

    @Test("a closed connection with a request in flight writes nothing more")
    func closedWithARequestInFlight() throws {
        let c = try Self.connection()
        try c.send("POST /paid/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nab")
        try c.channel.close().wait()
        #expect(try c.output().isEmpty)
        c.loop.advanceTime(by: .seconds(10))
        #expect(try c.output().isEmpty)
    }

    @Test("a request the decoder cannot read gets a JSON 400 and the connection closes")
    func malformed() throws {
        let c = try Self.connection()
        try? c.send("GET /paid/a HTTP/1.1\r\nHost gw\r\n\r\n")
        let out = try c.output()
        #expect(Connection.statuses(out) == [400])
        #expect(out.contains("\"error\":\"bad_request\""))
        #expect(!c.isOpen)
    }
}

import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// `limits.headerTimeout`, `maxHeaderCount`, `maxConnections` and `maxConnectionsPerClient` on the
/// main listener's real pipeline around `EmbeddedChannel`s (virtual time, no socket); the live
/// versions over real sockets are in `ConnectionLimitsLiveTests`.
@Suite("Connection limits over embedded channels")
struct ConnectionLimitsTests {
    typealias Connection = GatewayConnectionTests.Connection

    static func yaml(limits: String) -> String {
        GatewayConnectionTests.yaml.replacingOccurrences(of: "limits: { idleTimeout: 2s }", with: "limits: { \(limits) }")
    }

    /// One gateway and a way to open connections to it from a given address.
    struct Listener {
        let server: GatewayServer
        let config: GatewayConfig
        let loop = EmbeddedEventLoop()

        init(limits: String) throws {
            let text = ConnectionLimitsTests.yaml(limits: limits)
            #expect(text.contains(limits))
            config = try ConfigLoader.parse(yaml: text, file: "test.yaml", environment: [:])
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            server = GatewayServer(config: config, logger: logger)
        }

        func connect(from address: String = "127.0.0.1") throws -> Connection {
            let channel = EmbeddedChannel(loop: loop)
            let reads = GatewayConnectionTests.ReadCounter()
            try channel.pipeline.syncOperations.addHandler(reads)
            try channel.pipeline.syncOperations.addHandlers(server.connectionHandlers(config)())
            // An embedded channel's remote address is the one it "connects" to: the client's here.
            try channel.connect(to: SocketAddress(ipAddress: address, port: 50_000)).wait()
            return Connection(channel: channel, reads: reads, loop: loop)
        }
    }

    @Test("a head trickled in is answered 408 headerTimeout after its first byte and the connection closes")
    func slowHead() throws {
        let gw = try Listener(limits: "idleTimeout: 60s, headerTimeout: 3s")
        let c = try gw.connect()
        gw.loop.advanceTime(by: .seconds(20))  // idle keep-alive time does not count
        #expect(c.isOpen)
        try c.send("GET /paid/a HTTP/1.1\r\n")
        gw.loop.advanceTime(by: .seconds(2))
        try c.send("Host: gw\r\n")  // still trickling: the deadline does not move
        gw.loop.advanceTime(by: .milliseconds(900))
        #expect(c.isOpen)
        #expect(try c.output().isEmpty)
        gw.loop.advanceTime(by: .milliseconds(200))
        let out = try c.output()
        #expect(Connection.statuses(out) == [408])
        #expect(out.contains("\"error\":\"header_timeout\""))
        #expect(out.contains("Connection: close"))
        #expect(!c.isOpen)
    }

    @Test("the header deadline starts again for each request on a kept-alive connection")
    func deadlinePerRequest() throws {
        let gw = try Listener(limits: "idleTimeout: 60s, headerTimeout: 3s")
        let c = try gw.connect()
        for _ in 0..<3 {
            try c.send("GET /paid/a HTTP/1.1\r\n")
            gw.loop.advanceTime(by: .milliseconds(2_500))
            try c.send("Host: gw\r\n\r\n")
            #expect(Connection.statuses(try c.output()) == [402])
            gw.loop.advanceTime(by: .seconds(10))  // idle between requests: not the head's time
        }
        #expect(c.isOpen)
    }

    @Test("more header fields than maxHeaderCount: 431 and the connection closes; at the limit it is served")
    func headerCount() throws {
        let gw = try Listener(limits: "maxHeaderCount: 5")
        let atLimit = try gw.connect()
        try atLimit.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n")
        #expect(Connection.statuses(try atLimit.output()) == [402])
        #expect(atLimit.isOpen)
        let over = try gw.connect()
        try over.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n")
        let out = try over.output()
        #expect(Connection.statuses(out) == [431])
        #expect(out.contains("\"error\":\"too_many_headers\""))
        #expect(!over.isOpen)
    }

    @Test("beyond maxConnections a connection gets 503 with Retry-After and closes; a closed one frees its place")
    func instanceLimit() throws {
        let gw = try Listener(limits: "maxConnections: 2")
        let a = try gw.connect(from: "10.0.0.1")
        let b = try gw.connect(from: "10.0.0.2")
        let c = try gw.connect(from: "10.0.0.3")
        try c.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        let out = try c.output()
        #expect(Connection.statuses(out) == [503])
        #expect(out.contains("Retry-After: 1"))
        #expect(out.contains("\"error\":\"too_many_connections\""))
        #expect(!c.isOpen)
        try a.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        #expect(Connection.statuses(try a.output()) == [402])
        _ = try b.channel.finish()
        let d = try gw.connect(from: "10.0.0.4")
        try d.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        #expect(Connection.statuses(try d.output()) == [402])
        #expect(gw.server.openConnections == 2)
    }

    @Test("maxConnectionsPerClient counts an IPv4 address and an IPv6 /64; other clients are not affected")
    func perClientLimit() throws {
        let gw = try Listener(limits: "maxConnectionsPerClient: 2")
        var open: [Connection] = []
        for address in ["192.0.2.7", "192.0.2.7", "2001:db8:1:2::1", "2001:db8:1:2:ffff::9"] { open.append(try gw.connect(from: address)) }
        for (address, expected) in [("192.0.2.7", 503), ("2001:db8:1:2:abcd::1", 503), ("192.0.2.8", 402), ("2001:db8:1:3::1", 402)] {
            let c = try gw.connect(from: address)
            try c.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\n")
            let out = try c.output()
            #expect(Connection.statuses(out) == [expected], "\(address)")
            if expected == 503 { #expect(out.contains("too_many_connections_from_client")) }
        }
        _ = try open[0].channel.finish()
        let again = try gw.connect(from: "192.0.2.7")
        try again.send("GET /paid/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        #expect(Connection.statuses(try again.output()) == [402])
    }

    @Test("the limits are checked by the loader with positions")
    func loaderErrors() throws {
        for (limits, message) in [
            ("maxConnections: 0", "limits.maxConnections must be off or a whole number of connections between 1 and 10000000, not \"0\""),
            ("maxConnectionsPerClient: lots", "limits.maxConnectionsPerClient must be off or a whole number of connections"),
            ("maxHeaderCount: 0", "limits.maxHeaderCount must be a whole number between 1 and 10000"),
            ("headerTimeout: soon", "limits.headerTimeout must be a positive duration"),
        ] {
            #expect(throws: (any Error).self) { try ConfigLoader.parse(yaml: Self.yaml(limits: limits), file: "t.yaml", environment: [:]) }
            do {
                _ = try ConfigLoader.parse(yaml: Self.yaml(limits: limits), file: "t.yaml", environment: [:])
            } catch {
                #expect("\(error)".contains(message), "\(error)")
                #expect("\(error)".contains("t.yaml:10:"), "\(error)")
            }
        }
        let off = try ConfigLoader.parse(yaml: Self.yaml(limits: "maxConnections: off, maxConnectionsPerClient: 8"), file: "t.yaml", environment: [:])
        #expect(off.limits.maxConnections == nil)
        #expect(off.limits.maxConnectionsPerClient == 8)
        let defaults = try ConfigLoader.parse(yaml: Self.yaml(limits: "idleTimeout: 2s"), file: "t.yaml", environment: [:])
        #expect(defaults.limits.maxConnections == 16_384)
        #expect(defaults.limits.maxConnectionsPerClient == nil)
        #expect(defaults.limits.headerTimeout == .seconds(10))
        #expect(defaults.limits.maxHeaderCount == 100)
    }
}

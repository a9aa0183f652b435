import Foundation
import Gateway
import GatewayTestSupport
import Testing

/// The connection limits over real sockets (issue 14): a slowloris head, a header flood, and the
/// per-instance and per-client connection caps. Virtual-time versions: `ConnectionLimitsTests`.
@Suite("Connection limits over real sockets", .timeLimit(.minutes(2)))
struct ConnectionLimitsLiveTests {
    static func yaml(_ limits: String) -> String {
        """
        listen: 127.0.0.1:0
        upstreams:
          api: { url: "{{UPSTREAM}}", timeout: 5s }
        routes:
          - match: "/free/*"
            free: true
        unmatched: deny
        limits: { \(limits) }
        """
    }

    @Test("a client trickling a head a byte at a time gets 408 about headerTimeout after its first byte, then the close")
    func slowloris() async throws {
        try await TestHarness.withGateway(yaml: Self.yaml("headerTimeout: 1s, idleTimeout: 30s")) { gw in
            let socket = try RawSocket(port: gw.port, receiveTimeout: 10)
            let start = ContinuousClock.now
            var closedEarly = false
            for byte in Array("GET /free/a HTTP/1.1\r\nHost: gw\r\nX-Slow: ".utf8) {
                // A byte every 100 ms: always active, never complete.
                guard try await socket.send([byte]) else { closedEarly = true; break }
                try await Task.sleep(for: .milliseconds(100))
                if ContinuousClock.now - start > .seconds(3) { break }
            }
            let (bytes, end) = try await socket.read()
            let waited = ContinuousClock.now - start
            #expect(bytes.statusCode == 408, "\(bytes.text)")
            #expect(bytes.text.contains("header_timeout"))
            #expect(end == .closed)
            #expect(closedEarly || waited < .seconds(5))
            #expect(waited >= .milliseconds(900), "not before the deadline")
            #expect(gw.upstream.requests.isEmpty)
            // A well-behaved client on the same gateway is served.
            #expect(try await gw.get("/free/ok").status == 200)
        }
    }

    @Test("a request with more header fields than maxHeaderCount is answered 431 and never forwarded")
    func headerFlood() async throws {
        try await TestHarness.withGateway(yaml: Self.yaml("maxHeaderCount: 20")) { gw in
            let many = (0..<21).map { ("X-F\($0)", "v") }
            let r = try await gw.get("/free/a", headers: many)
            #expect(r.status == 431)
            #expect(gw.upstream.requests.isEmpty)
            #expect(try await gw.get("/free/a", headers: Array(many.prefix(18))).status == 200)
        }
    }

    @Test("beyond maxConnections the next connection gets 503 and closes; once one closes a new one is served")
    func instanceCap() async throws {
        try await TestHarness.withGateway(yaml: Self.yaml("maxConnections: 3")) { gw in
            var held: [RawSocket] = []
            for _ in 0..<3 {
                let socket = try RawSocket(port: gw.port)
                try await socket.send("GET /free/a HTTP/1.1\r\nHost: gw\r\n\r\n")
                let (bytes, _) = try await socket.read(until: RawSocket.headEnd)
                #expect(bytes.statusCode == 200)
                held.append(socket)
            }
            #expect(gw.server.openConnections == 3)
            let extra = try RawSocket(port: gw.port)
            try await extra.send("GET /free/a HTTP/1.1\r\nHost: gw\r\n\r\n")
            let (refused, end) = try await extra.read()
            #expect(refused.statusCode == 503, "\(refused.text)")
            #expect(refused.text.contains("Retry-After: 1"))
            #expect(end == .closed)
            #expect(gw.upstream.requests.count == 3)
            held.removeLast()  // closes its socket
            try await waitUntil { gw.server.openConnections == 2 }
            #expect(try await gw.get("/free/b").status == 200)
        }
    }

    @Test("maxConnectionsPerClient refuses the client over it with its own code")
    func perClientCap() async throws {
        try await TestHarness.withGateway(yaml: Self.yaml("maxConnectionsPerClient: 2")) { gw in
            let held = try (0..<2).map { _ in try RawSocket(port: gw.port) }
            try await waitUntil { gw.server.openConnections == 2 }
            let r = try await gw.get("/free/a")
            #expect(r.status == 503)
            #expect(r.bodyText.contains("too_many_connections_from_client"))
            _ = held
        }
    }

    /// Polls `condition` every 10 ms for up to 5 s.
    func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else { Issue.record("condition not met in 5 s"); return }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

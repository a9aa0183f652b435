import GatewayTestSupport
import Testing

/// Interim answers (1xx) from the upstream through the NIO-level proxy: `103 Early Hints` and
/// `100 Continue` reach an HTTP/1.1 client before the final answer, never an HTTP/1.0 one.
@Suite("Interim answers from the upstream", .timeLimit(.minutes(1)))
struct InterimAnswerTests {
    static func yaml(port: Int) -> String {
        """
        listen: 127.0.0.1:0
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        upstreams:
          api: { url: "http://127.0.0.1:\(port)", timeout: 5s }
        routes:
          - match: "/*"
            free: true
        """
    }

    /// Runs `body` with a gateway in front of an upstream that sends 103 and 100 before every answer.
    static func withUpstream(_ body: @Sendable (LiveGateway, ScriptedHTTPServer) async throws -> Void) async throws {
        let upstream = try Self.upstream()
        let port = try await upstream.start()
        do {
            try await TestHarness.withGateway(yaml: Self.yaml(port: port)) { try await body($0, upstream) }
        } catch {
            await upstream.stop()
            throw error
        }
        await upstream.stop()
    }

    static func upstream() throws -> ScriptedHTTPServer {
        try ScriptedHTTPServer { _ in
            .interim([
                (status: 103, headers: [("Link", "</style.css>; rel=preload; as=style"), ("Connection", "X-Hint"), ("X-Hint", "hop")]),
                (status: 100, headers: []),
            ], then: .respond(status: 200, headers: [("Content-Type", "text/plain")], body: Array("final".utf8)))
        }
    }

    @Test("103 Early Hints and 100 Continue are relayed to an HTTP/1.1 client, fields filtered, before the final answer")
    func relayed() async throws {
        try await Self.withUpstream { gw, upstream in
            let responses = try await RawHTTP.exchange(port: gw.port, raw: "GET /page HTTP/1.1\r\nHost: gw\r\n\r\n"
                + "GET /again HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            #expect(responses.map(\.status) == [103, 100, 200, 103, 100, 200])
            #expect(responses[0].header("Link") == "</style.css>; rel=preload; as=style")
            #expect(responses[0].header("X-Hint") == nil, "a Connection-listed field is hop-by-hop")
            #expect(responses[0].header("Connection") == nil)
            #expect(responses[2].bodyText == "final")
            #expect(responses[5].bodyText == "final")
        }
    }

    @Test("a client that asked for 100-continue gets the gateway's 100 once, then the hints and the answer")
    func continueOnce() async throws {
        try await Self.withUpstream { gw, upstream in
            let responses = try await RawHTTP.exchange(port: gw.port, raw:
                "POST /upload HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            #expect(responses.map(\.status) == [100, 103, 200])
            #expect(upstream.requests.first?.body == Array("hello".utf8))
        }
    }

    @Test("an HTTP/1.0 client gets no interim answer (RFC 9110 §15.2), only the final one")
    func notToHTTP10() async throws {
        try await Self.withUpstream { gw, upstream in
            let responses = try await RawHTTP.exchange(port: gw.port, raw: "GET /page HTTP/1.0\r\nHost: gw\r\n\r\n")
            #expect(responses.map(\.status) == [200])
            #expect(responses.first?.bodyText == "final")
        }
    }
}

import GatewayTestSupport
import Testing

/// The gateway answers a free request before the client has sent all of its body: the rest of the
/// body must still be read (and dropped) so that the connection goes on to its next request.
@Suite("Free requests answered before their body ends", .timeLimit(.minutes(1)))
struct ProxyEarlyAnswerTests {
    @Test("an upload to an upstream that refuses connections gets 502, its body is drained and the next request is served")
    func uploadToADownUpstream() async throws {
        // Reads stop while the upstream connection is being made; the 502 must release them. (It
        // did not: the body's rest was never read, and the connection hung until the idle timeout.)
        let yaml = """
            listen: 127.0.0.1:0
            payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
            network: eip155:84532
            upstreams:
              api: { url: "http://127.0.0.1:1", timeout: 5s }
            routes:
              - match: "/*"
                free: true
            limits: { idleTimeout: 30s }
            """
        try await TestHarness.withGateway(yaml: yaml) { gw in
            let started = ContinuousClock.now
            let body = String(repeating: "u", count: 2_000_000)
            let responses = try await RawHTTP.exchange(port: gw.port, raw:
                "POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                + "GET /next HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            #expect(responses.map(\.status) == [502, 502])
            #expect(ContinuousClock.now - started < .seconds(20))
        }
    }
}

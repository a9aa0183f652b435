import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import Testing

/// `https` upstreams (issue 13): TLS to the upstream with the chain checked against `caFile` (or
/// the system's roots) and the name against the URL's host, over real sockets. The upstream is a
/// TLS server with the committed test certificates (Fixtures/README.md).
@Suite("https upstreams", .timeLimit(.minutes(2)))
struct HTTPSUpstreamTests {
    static func yaml(url: String, caFile: String?) -> String {
        """
        listen: 127.0.0.1:0
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        upstreams:
          plain: { url: "{{UPSTREAM}}" }
          secure: { url: "\(url)", timeout: 5s\(caFile.map { ", caFile: \"\($0)\"" } ?? "") }
        routes:
          - match: "/secure/*"
            upstream: secure
            free: true
        unmatched: deny
        """
    }

    /// A TLS upstream presenting the fixture certificate `name` that answers every request with its path.
    static func withTLSUpstream<T>(certificate name: String, _ body: (ScriptedHTTPServer, Int) async throws -> T) async throws -> T {
        try await FacilitatorClientTests.withServer(certificate: name, { request in .json("{\"path\":\"\(request.uri)\"}") }, body)
    }

    @Test("an https upstream trusted through caFile is proxied over TLS, its Host set, its connection reused")
    func trusted() async throws {
        try await Self.withTLSUpstream(certificate: "localhost") { upstream, port in
            let yaml = Self.yaml(url: "https://localhost:\(port)/base", caFile: try FacilitatorClientTests.fixture("localhost-cert"))
            try await TestHarness.withGateway(yaml: yaml) { gw in
                // Three requests on one client connection (one event loop: one upstream pool).
                let raw = (0..<3).map { "GET /secure/item/\($0) HTTP/1.1\r\nHost: gw\r\n\($0 == 2 ? "Connection: close\r\n" : "")\r\n" }.joined()
                let responses = try await RawHTTP.exchange(port: gw.port, raw: raw)
                #expect(responses.map(\.status) == [200, 200, 200])
                #expect(responses.map(\.bodyText) == (0..<3).map { "{\"path\":\"/base/secure/item/\($0)\"}" })
                #expect(upstream.requests.count == 3)
                #expect(upstream.requests.first?.header("host") == "localhost:\(port)")
                #expect(upstream.connectionCount == 1, "one kept-alive TLS connection")
            }
        }
    }

    @Test("a paid route to an https upstream: verified, forwarded over TLS, settled, delivered")
    func paid() async throws {
        try await Self.withTLSUpstream(certificate: "localhost") { upstream, port in
            let yaml = Self.yaml(url: "https://localhost:\(port)", caFile: try FacilitatorClientTests.fixture("localhost-cert"))
                .replacingOccurrences(of: "upstreams:", with: "facilitator: { url: \"{{FACILITATOR}}\" }\nupstreams:")
                .replacingOccurrences(of: "unmatched: deny", with: "  - match: \"/paid/*\"\n    upstream: secure\n    price: \"$0.01\"\nunmatched: deny")
            #expect(yaml.contains("facilitator:") && yaml.contains("/paid/*"))
            try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
                let r = try await pay(gw, "/paid/report", try await signedHeader(gw, "/paid/report", TestPayer()))
                #expect(r.status == 200)
                #expect(r.bodyText == "{\"path\":\"/paid/report\"}")
                #expect(r.header("PAYMENT-RESPONSE") != nil)
                #expect(fac.settleCalls == 1)
                #expect(upstream.requests.count == 1)
            }
        }
    }

    @Test("an upstream whose certificate another CA signed is refused: 502, nothing reaches it")
    func otherCA() async throws {
        try await Self.withTLSUpstream(certificate: "other-ca-localhost") { upstream, port in
            let yaml = Self.yaml(url: "https://localhost:\(port)", caFile: try FacilitatorClientTests.fixture("localhost-cert"))
            try await TestHarness.withGateway(yaml: yaml) { gw in
                let r = try await gw.get("/secure/x")
                #expect(r.status == 502)
                #expect(r.bodyText.contains("upstream_unavailable"))
                #expect(upstream.requests.isEmpty)
            }
        }
    }

    @Test("without caFile the system's roots decide: a self-signed upstream is refused (502)")
    func systemRoots() async throws {
        try await Self.withTLSUpstream(certificate: "localhost") { upstream, port in
            try await TestHarness.withGateway(yaml: Self.yaml(url: "https://localhost:\(port)", caFile: nil)) { gw in
                let r = try await gw.get("/secure/x")
                #expect(r.status == 502)
                #expect(upstream.requests.isEmpty)
            }
        }
    }

    @Test("a certificate for another name is refused: the URL's host 127.0.0.1 is not the certificate's localhost")
    func wrongName() async throws {
        try await Self.withTLSUpstream(certificate: "localhost") { upstream, port in
            let yaml = Self.yaml(url: "https://127.0.0.1:\(port)", caFile: try FacilitatorClientTests.fixture("localhost-cert"))
            try await TestHarness.withGateway(yaml: yaml) { gw in
                let r = try await gw.get("/secure/x")
                #expect(r.status == 502)
                #expect(upstream.requests.isEmpty)
            }
        }
    }

    @Test("the loader takes https upstreams and checks caFile with its position")
    func loader() throws {
        let ca = try FacilitatorClientTests.fixture("localhost-cert")
        func yaml(_ url: String, _ caFile: String?) -> String {
            Self.yaml(url: url, caFile: caFile).replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:1")
        }
        let ok = try ConfigLoader.parse(yaml: yaml("https://api.example.com/v1", ca), file: "t.yaml", environment: [:])
        let secure = try #require(ok.upstreams["secure"])
        #expect(secure.tls && secure.port == 443 && secure.host == "api.example.com" && secure.basePath == "/v1" && secure.caFile == ca)
        #expect(secure.hostHeader == "api.example.com")
        for (url, caFile, message) in [
            ("http://api.example.com", ca, "t.yaml:6:65: upstreams.secure.caFile applies to https upstreams only"),
            ("https://api.example.com", "/nonexistent/ca.pem", "t.yaml:6:66: upstreams.secure.caFile: cannot read PEM certificates"),
            ("ftp://api.example.com", nil, "t.yaml:6:18: upstream \"secure\" url must be http(s)://host[:port][/base/path]"),
            // A query behind a combining mark: one Character with the `?`, but the byte is there.
            ("https://api.example.com/v1?\u{0598}x=1", nil, "t.yaml:6:18: upstream \"secure\" url must be http(s)://host[:port][/base/path]"),
        ] as [(String, String?, String)] {
            do {
                _ = try ConfigLoader.parse(yaml: yaml(url, caFile), file: "t.yaml", environment: [:])
                Issue.record("\(url) accepted")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}

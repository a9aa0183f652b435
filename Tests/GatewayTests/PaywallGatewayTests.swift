import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import Testing
import X402

let browserHeaders = [
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
]

func paywallYAML(_ extra: String = "") -> String {
    liveYAML.replacingOccurrences(of: "unmatched: pass", with: "unmatched: pass\n" + extra)
}

/// The nonce of a `Content-Security-Policy` value's `script-src`.
func scriptNonce(_ csp: String) -> String? {
    guard let start = csp.range(of: "script-src 'nonce-") else { return nil }
    let rest = csp[start.upperBound...]
    return rest.firstIndex(of: "'").map { String(rest[..<$0]) }
}

@Suite("Browser paywall through the live gateway")
struct PaywallGatewayTests {
    @Test("a browser gets the HTML paywall with a per-response CSP nonce, and still the PAYMENT-REQUIRED header")
    func browserGetsPage() async throws {
        try await TestHarness.withGateway(yaml: paywallYAML("paywall: { appName: Acme }")) { gw in
            let api = try await gw.get("/paid/report?city=Paris")
            let r = try await gw.get("/paid/report?city=Paris", headers: browserHeaders)
            #expect(r.status == 402)
            #expect(r.header("Content-Type") == "text/html; charset=utf-8")
            #expect(r.header("Cache-Control") == "no-store")
            #expect(r.header("X-Content-Type-Options") == "nosniff")
            #expect(r.header("Referrer-Policy") == "no-referrer")
            #expect(r.header("PAYMENT-REQUIRED") == api.header("PAYMENT-REQUIRED"))
            #expect(r.header("Access-Control-Expose-Headers")?.contains("PAYMENT-REQUIRED") == true)
            let csp = try #require(r.header("Content-Security-Policy"))
            let nonce = try #require(scriptNonce(csp))
            #expect(csp.contains("style-src 'nonce-\(nonce)'") && csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"))
            let html = r.bodyText
            #expect(html.hasPrefix("<!doctype html>"))
            #expect(html.components(separatedBy: "nonce=\"\(nonce)\"").count - 1 == 4)
            #expect(html.contains("<span>Acme</span>"))
            #expect(html.contains("http://gateway.test/paid/report?city=Paris"))
            #expect(r.body.count <= 40 * 1024)

            let again = try await gw.get("/paid/report?city=Paris", headers: browserHeaders)
            #expect(scriptNonce(again.header("Content-Security-Policy") ?? "") != nonce)
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("API clients get the JSON 402 byte for byte as without the paywall", arguments: [
        [(String, String)](),
        [("Accept", "application/json"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0")],
        [("Accept", "text/html"), ("User-Agent", "curl/8.5.0")],
        [("Accept", "*/*"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0")],
        [("Accept", "application/json"), ("User-Agent", "python-httpx/0.27.0")],
    ])
    func apiClientsUnchanged(_ headers: [(String, String)]) async throws {
        let reference = try await TestHarness.withGateway(yaml: paywallYAML("paywall: { enabled: false }")) { gw in
            try await gw.get("/paid/report?city=Paris", headers: browserHeaders)
        }
        try await TestHarness.withGateway(yaml: paywallYAML()) { gw in
            let r = try await gw.get("/paid/report?city=Paris", headers: headers)
            #expect(r.status == 402)
            #expect(r.header("Content-Type") == "application/json")
            #expect(r.header("Content-Security-Policy") == nil)
            #expect(r.body == reference.body)
            #expect(r.header("PAYMENT-REQUIRED") == reference.header("PAYMENT-REQUIRED"))
            #expect(r.headers.map(\.0).sorted() == reference.headers.map(\.0).sorted())
            let v1 = try JSONDecoder().decode(PaymentRequiredV1.self, from: Data(r.body))
            #expect(v1.accepts.first?.maxAmountRequired == "10000")
        }
    }

    @Test("a browser's refused payment comes back on the page, with the reason in the data and the header")
    func refusedInBrowser() async throws {
        try await TestHarness.withGateway(yaml: paywallYAML()) { gw in
            let r = try await gw.get("/paid/x", headers: browserHeaders + [("PAYMENT-SIGNATURE", "bm90IGpzb24=")])
            #expect(r.status == 402)
            #expect(r.header("Content-Type") == "text/html; charset=utf-8")
            let header = try HeaderCodec.decode(PaymentRequired.self, from: try #require(r.header("PAYMENT-REQUIRED")))
            #expect(header.error == RefusalReason.malformed.rawValue)
            #expect(r.bodyText.contains("\"error\":\"invalid_payload\""))

            let api = try await gw.get("/paid/x", headers: [("PAYMENT-SIGNATURE", "bm90IGpzb24=")])
            #expect(api.header("Content-Type") == "application/json")
            #expect(try JSONDecoder().decode(PaymentRequiredV1.self, from: Data(api.body)).error == "invalid_payload")
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("HEAD from a browser gets the page's headers and length without a body")
    func head() async throws {
        try await TestHarness.withGateway(yaml: paywallYAML()) { gw in
            let get = try await gw.get("/paid/x", headers: browserHeaders)
            let head = try await gw.get("/paid/x", method: "HEAD", headers: browserHeaders)
            #expect(head.status == 402)
            #expect(head.body.isEmpty)
            #expect(head.header("Content-Type") == "text/html; charset=utf-8")
            #expect(head.header("Content-Length") == String(get.body.count))
        }
    }

    @Test("free routes and unmatched paths are not affected by browser headers")
    func freeRoutes() async throws {
        try await TestHarness.withGateway(yaml: paywallYAML()) { gw in
            let r = try await gw.get("/free/x", headers: browserHeaders)
            #expect(r.status == 200)
            #expect(r.header("Content-Security-Policy") == nil)
            #expect(gw.upstream.count == 1)
        }
    }
}

@Suite("paywall configuration")
struct PaywallConfigTests {
    @Test("the paywall block loads: switch, name, logo and colours")
    func loads() throws {
        let yaml = ConfigLoaderTests.valid + """

            paywall:
              enabled: true
              appName: Acme Weather
              appLogo: https://acme.example.com/logo.svg
              colors: { accent: "#0052ff", background: "#fafafa", text: "#111" }
            """
        let c = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: ConfigLoaderTests.env)
        #expect(c.paywall == PaywallConfig(enabled: true, appName: "Acme Weather", appLogo: "https://acme.example.com/logo.svg",
                                           colors: PaywallColors(accent: "#0052ff", background: "#fafafa", text: "#111")))
        let plain = try ConfigLoader.parse(yaml: ConfigLoaderTests.valid, file: "g.yaml", environment: ConfigLoaderTests.env)
        #expect(plain.paywall == PaywallConfig())
    }

    @Test("paywall mistakes are reported with their position", arguments: [
        ("paywall: { appNme: Acme }", "g.yaml:20:12: unknown key \"appNme\" in paywall (did you mean \"appName\"?)"),
        ("paywall: { appLogo: \"javascript:alert(1)\" }",
         "g.yaml:20:21: paywall.appLogo must be an https:// URL or a base64 data:image/(png|jpeg|gif|webp|svg+xml) URL, not \"javascript:alert(1)\""),
        ("paywall: { appLogo: \"http://acme.example.com/logo.png\" }",
         "g.yaml:20:21: paywall.appLogo must be an https:// URL or a base64 data:image/(png|jpeg|gif|webp|svg+xml) URL, not \"http://acme.example.com/logo.png\""),
        ("paywall: { colors: { accent: \"red\" } }", "g.yaml:20:30: paywall.colors.accent must be a hex colour like \"#0052ff\" or \"#05f\", not \"red\""),
        ("paywall:\n  colors:\n    accent: #0052ff", "g.yaml:22:12: paywall.colors.accent is empty: quote the colour, \"#0052ff\" (an unquoted # starts a YAML comment)"),
        ("paywall: { colors: { acent: \"#fff\" } }", "g.yaml:20:22: unknown key \"acent\" in paywall.colors (did you mean \"accent\"?)"),
        ("paywall: { enabled: sometimes }", "g.yaml:20:21: paywall.enabled must be true or false, not \"sometimes\""),
    ])
    func mistakes(_ block: String, _ expected: String) {
        let yaml = ConfigLoaderTests.valid + "\n" + block
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: ConfigLoaderTests.env)
            Issue.record("no error for \(block)")
        } catch {
            #expect(error.diagnostics.map(\.description) == [expected])
        }
    }
}

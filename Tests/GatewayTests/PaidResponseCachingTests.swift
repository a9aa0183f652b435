import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import NIOHTTP1
import Testing
import X402

let cachingYAML = """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 2s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 3s }
    routes:
      - match: "GET /paid/*"
        price: "$0.01"
        paymentIdentifier: optional
      - match: "GET /shared/*"
        price: "$0.01"
        cache: upstream
      - match: "GET /stream/*"
        price: "$0.01"
        settlement: before
      - match: "GET /status/*"
        price: "$0.01"
      - match: "GET /public/*"
        free: true
    unmatched: pass
    """

/// The query that makes the recording upstream answer with a CDN's favourite caching fields.
let cacheableQuery = "h=Cache-Control:%20public,%20max-age%3D3600&h=Surrogate-Control:%20max-age%3D3600"
    + "&h=CDN-Cache-Control:%20max-age%3D600&h=Cloudflare-CDN-Cache-Control:%20max-age%3D600"
    + "&h=Expires:%20Thu,%2001%20Jan%202037%2000:00:00%20GMT&h=Vary:%20Accept-Encoding&h=X-Accel-Expires:%203600"

let sharedCachingFields = ["Cache-Control", "Surrogate-Control", "CDN-Cache-Control", "Cloudflare-CDN-Cache-Control", "Expires", "X-Accel-Expires"]

extension RawHTTPResponse {
    /// Every value of `name`, in order.
    func values(_ name: String) -> [String] { headers.filter { $0.0.lowercased() == name.lowercased() }.map(\.1) }

    /// The comma-separated tokens of every `name` field.
    func tokens(_ name: String) -> [String] {
        values(name).flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
    }
}

/// A paid answer that must not be stored by a shared cache.
func expectPrivate(_ r: RawHTTPResponse, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    #expect(r.values("Cache-Control") == ["private, no-store"], sourceLocation: sourceLocation)
    for name in sharedCachingFields.dropFirst() { #expect(r.values(name).isEmpty, "\(name)", sourceLocation: sourceLocation) }
    let vary = r.tokens("Vary").map { $0.lowercased() }
    #expect(vary.contains("payment-signature") && vary.contains("x-payment"), sourceLocation: sourceLocation)
}

@Suite("Paid answers and shared caches (live)")
struct PaidResponseCachingTests {
    let payer = TestPayer()

    @Test("a paid answer is private, no-store: the upstream's public max-age, Surrogate-Control, CDN fields and Expires are gone")
    func paidAnswerIsPrivate() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, fac in
            let path = "/paid/report.pdf?" + cacheableQuery
            let r = try await pay(gw, path, try await signedHeader(gw, path, payer))
            #expect(r.status == 200)
            #expect(r.header("PAYMENT-RESPONSE") != nil)
            expectPrivate(r)
            #expect(r.tokens("Vary") == ["Accept-Encoding", "PAYMENT-SIGNATURE", "X-PAYMENT"])
            #expect(r.bodyText.contains("/paid/report.pdf"))
            #expect(fac.settleCalls == 1)

            // No caching fields at all from the upstream (a CDN caching by extension): private all the same.
            let plain = try await pay(gw, "/paid/movie.mp4", try await signedHeader(gw, "/paid/movie.mp4", payer))
            #expect(plain.status == 200)
            expectPrivate(plain)
        }
    }

    @Test("the same upstream answer on a free route keeps the upstream's caching fields untouched")
    func freeRouteKeepsHeaders() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, _ in
            for path in ["/public/report.pdf?", "/unmatched/report.pdf?"] {
                let r = try await gw.get(path + cacheableQuery)
                #expect(r.status == 200)
                #expect(r.values("Cache-Control") == ["public, max-age=3600"])
                #expect(r.values("Surrogate-Control") == ["max-age=3600"])
                #expect(r.values("CDN-Cache-Control") == ["max-age=600"])
                #expect(r.values("Cloudflare-CDN-Cache-Control") == ["max-age=600"])
                #expect(r.values("Expires") == ["Thu, 01 Jan 2037 00:00:00 GMT"])
                #expect(r.values("Vary") == ["Accept-Encoding"])
                #expect(r.values("Access-Control-Allow-Origin").isEmpty)
            }
        }
    }

    @Test("cache: upstream keeps the upstream's caching fields on a priced route, and the receipt is still exposed")
    func optOutKeepsHeaders() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, _ in
            let path = "/shared/report.pdf?" + cacheableQuery
            let r = try await pay(gw, path, try await signedHeader(gw, path, payer))
            #expect(r.status == 200)
            #expect(r.values("Cache-Control") == ["public, max-age=3600"])
            #expect(r.values("Surrogate-Control") == ["max-age=3600"])
            #expect(r.values("Expires") == ["Thu, 01 Jan 2037 00:00:00 GMT"])
            #expect(r.tokens("Vary") == ["Accept-Encoding"])
            #expect(r.tokens("Access-Control-Expose-Headers") == ["PAYMENT-RESPONSE"])
        }
    }

    @Test("settlement: before, a v1 payment, HEAD, and an unsettled upstream error are private too")
    func everyPaidShape() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, fac in
            let streamed = "/stream/x?" + cacheableQuery
            let before = try await pay(gw, streamed, try await signedHeader(gw, streamed, payer))
            #expect(before.status == 200 && before.header("PAYMENT-RESPONSE") != nil)
            expectPrivate(before)

            let v1Path = "/paid/v1?" + cacheableQuery
            let accepted = try await offer(gw, v1Path)
            let v1 = try await pay(gw, v1Path, payer.headerV1(network: "base-sepolia", payload: payer.authorization(for: accepted, now: now)),
                                   name: "X-PAYMENT")
            #expect(v1.status == 200 && v1.header("X-PAYMENT-RESPONSE") != nil)
            expectPrivate(v1)
            #expect(v1.tokens("Access-Control-Expose-Headers") == ["X-PAYMENT-RESPONSE"])

            let headPath = "/paid/head?" + cacheableQuery
            let head = try await gw.get(headPath, method: "HEAD", headers: [("PAYMENT-SIGNATURE", try await signedHeader(gw, headPath, payer))])
            #expect(head.status == 200 && head.header("PAYMENT-RESPONSE") != nil)
            expectPrivate(head)

            let failed = try await pay(gw, "/status/500", try await signedHeader(gw, "/status/500", payer))
            #expect(failed.status == 500 && failed.header("PAYMENT-RESPONSE") == nil)
            expectPrivate(failed)
            #expect(fac.settleCalls == 3)
        }
    }

    @Test("an answer replayed for a payment identifier gets the same treatment as the first")
    func replayIsPrivate() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, fac in
            let path = "/paid/x?" + cacheableQuery
            let (header, _) = try await identified(gw, path, payer, id: freshID())
            let first = try await pay(gw, path, header)
            let again = try await pay(gw, path, header)
            #expect(first.status == 200 && again.status == 200)
            #expect(fac.settleCalls == 1 && gw.upstream.count == 1)
            expectPrivate(first)
            expectPrivate(again)
            #expect(again.header("PAYMENT-RESPONSE") == first.header("PAYMENT-RESPONSE"))
            #expect(again.tokens("Vary") == first.tokens("Vary"))
            #expect(again.tokens("Access-Control-Expose-Headers") == ["PAYMENT-RESPONSE"])
        }
    }

    @Test("every 402 says Cache-Control: no-store: unpaid, HEAD, the browser page, a refused payment, a refused settlement")
    func challengesAreNoStore() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, fac in
            let path = "/paid/x?" + cacheableQuery
            var answers = [try await gw.get(path), try await gw.get(path, method: "HEAD"), try await gw.get(path, headers: browserHeaders)]
            answers.append(try await pay(gw, path, "not base64!"))
            answers.append(try await gw.get(path, headers: browserHeaders + [("PAYMENT-SIGNATURE", "not base64!")]))
            fac.setFault(.settleRefuses("insufficient_funds"))
            answers.append(try await pay(gw, path, try await signedHeader(gw, path, payer)))
            for r in answers {
                #expect(r.status == 402)
                #expect(r.values("Cache-Control") == ["no-store"])
            }
            #expect(answers[2].header("Content-Type") == "text/html; charset=utf-8")
            #expect(answers[4].header("Content-Type") == "text/html; charset=utf-8")
        }
    }
}

@Suite("Paid answers across origins (live)")
struct PaidResponseCORSTests {
    let payer = TestPayer()

    @Test("the upstream allows the origin: its CORS fields stay and PAYMENT-RESPONSE joins its Expose-Headers once")
    func upstreamCORS() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, _ in
            let path = "/paid/x?h=Access-Control-Allow-Origin:%20https://app.example&h=Access-Control-Expose-Headers:%20X-Quota,%20payment-response"
                + "&h=Access-Control-Expose-Headers:%20X-Trace&h=Vary:%20Origin"
            let r = try await pay(gw, path, try await signedHeader(gw, path, payer))
            #expect(r.status == 200)
            #expect(r.values("Access-Control-Allow-Origin") == ["https://app.example"])
            #expect(r.tokens("Access-Control-Expose-Headers") == ["X-Quota", "payment-response", "X-Trace"])
            #expect(r.tokens("Vary") == ["Origin", "PAYMENT-SIGNATURE", "X-PAYMENT"])
        }
    }

    @Test("the upstream says nothing: the gateway's cors.allowOrigin applies (default *) and the receipt is exposed")
    func gatewayCORS() async throws {
        try await TestHarness.withPaidGateway(yaml: cachingYAML) { gw, _ in
            let r = try await pay(gw, "/paid/x", try await signedHeader(gw, "/paid/x", payer))
            #expect(r.status == 200)
            #expect(r.values("Access-Control-Allow-Origin") == ["*"])
            #expect(r.tokens("Access-Control-Expose-Headers") == ["PAYMENT-RESPONSE"])
            #expect(!r.tokens("Vary").contains("Origin"))
        }
        let configured = cachingYAML.replacingOccurrences(of: "unmatched: pass", with: "unmatched: pass\ncors: { allowOrigin: \"https://shop.example\" }")
        try await TestHarness.withPaidGateway(yaml: configured) { gw, _ in
            let r = try await pay(gw, "/paid/x", try await signedHeader(gw, "/paid/x", payer))
            #expect(r.values("Access-Control-Allow-Origin") == ["https://shop.example"])
            #expect(r.tokens("Vary") == ["PAYMENT-SIGNATURE", "X-PAYMENT", "Origin"])
            // Free routes stay as the upstream sent them.
            #expect(try await gw.get("/public/x").values("Access-Control-Allow-Origin").isEmpty)
        }
    }
}

@Suite("cache: in the configuration")
struct PaidResponseCachingConfigTests {
    @Test("check: cache takes private or upstream, on priced routes only, reported at its position")
    func configChecks() throws {
        let problems = ConfigProblems.of
        let base = ConfigProblems.head
        #expect(problems(base + "  - match: /a\n    price: $0.01\n    cache: public\n")
            == "g.yaml:7:12: cache must be \"private\" or \"upstream\", not \"public\"")
        #expect(problems(base + "  - match: /a\n    free: true\n    cache: upstream\n")
            == "g.yaml:7:5: a free route cannot have cache (its answers are relayed as the upstream sent them)")
        #expect(problems("cache: upstream\n" + base + "  - { match: /a, price: $0.01 }\n").contains("g.yaml:1:1:"))
        let config = try ConfigLoader.parse(yaml: base + """
              - { match: /a, price: $0.01 }
              - { match: /b, price: $0.01, cache: upstream }
              - { match: /c, price: $0.01, cache: private, settlement: before }
              - { match: /d, free: true }

            """, file: "g.yaml", environment: [:])
        #expect(config.routes.map(\.cache) == [.private, .upstream, .private, .private])
    }
}

@Suite("PaidResponseHeaders")
struct PaidResponseHeadersTests {
    func rewrite(_ fields: [(String, String)], extra: [(String, String)] = [("PAYMENT-RESPONSE", "receipt")],
                 caching: PaidResponseCaching = .private, allowOrigin: String = "*") -> [String] {
        PaidResponseHeaders.rewrite(HTTPHeaders(fields), extra: extra, caching: caching, allowOrigin: allowOrigin)
            .map { "\($0.name): \($0.value)" }
    }

    @Test("private: caching fields replaced, others kept in order, Vary merged once, receipt exposed")
    func privateAnswer() {
        #expect(rewrite([
            ("Content-Type", "application/pdf"), ("cache-control", "public, s-maxage=600"), ("Cache-Control", "max-age=60"),
            ("EXPIRES", "0"), ("Surrogate-Control", "max-age=1"), ("CDN-Cache-Control", "max-age=1"),
            ("Cloudflare-CDN-Cache-Control", "max-age=1"), ("X-Accel-Expires", "60"), ("Vary", "Accept-Encoding, payment-signature"),
            ("vary", "Accept-Language"), ("ETag", "\"abc\""), ("Content-Length", "3"),
        ]) == [
            "Content-Type: application/pdf", "ETag: \"abc\"", "Content-Length: 3", "PAYMENT-RESPONSE: receipt",
            "Cache-Control: private, no-store", "Access-Control-Allow-Origin: *",
            "Vary: Accept-Encoding, payment-signature, Accept-Language, X-PAYMENT",
            "Access-Control-Expose-Headers: PAYMENT-RESPONSE",
        ])
    }

    @Test("cache: upstream leaves every caching field alone")
    func upstreamCaching() {
        let fields = [("Cache-Control", "public, max-age=3600"), ("Surrogate-Control", "max-age=3600"), ("Expires", "0"), ("Vary", "Accept")]
        #expect(rewrite(fields, caching: .upstream) == [
            "Cache-Control: public, max-age=3600", "Surrogate-Control: max-age=3600", "Expires: 0", "PAYMENT-RESPONSE: receipt",
            "Access-Control-Allow-Origin: *", "Vary: Accept", "Access-Control-Expose-Headers: PAYMENT-RESPONSE",
        ])
    }

    @Test("the gateway's receipt replaces an upstream field of the same name; only the receipt present is exposed")
    func receipts() {
        #expect(rewrite([("payment-response", "forged"), ("Access-Control-Allow-Origin", "https://a.example")], caching: .upstream)
            == ["Access-Control-Allow-Origin: https://a.example", "PAYMENT-RESPONSE: receipt", "Access-Control-Expose-Headers: PAYMENT-RESPONSE"])
        #expect(rewrite([("Access-Control-Allow-Origin", "https://a.example")], extra: [("X-PAYMENT-RESPONSE", "v1")], caching: .upstream)
            == ["Access-Control-Allow-Origin: https://a.example", "X-PAYMENT-RESPONSE: v1", "Access-Control-Expose-Headers: X-PAYMENT-RESPONSE"])
        // A replayed answer carries its receipt among the stored fields, with no extra.
        #expect(rewrite([("PAYMENT-RESPONSE", "stored")], extra: [], caching: .upstream)
            == ["PAYMENT-RESPONSE: stored", "Access-Control-Allow-Origin: *", "Access-Control-Expose-Headers: PAYMENT-RESPONSE"])
        // An unsettled upstream error has no receipt: nothing to expose.
        #expect(rewrite([("Access-Control-Allow-Origin", "*")], extra: [], caching: .upstream) == ["Access-Control-Allow-Origin: *"])
    }

    @Test("a configured origin adds Vary: Origin; an upstream Expose-Headers is merged without duplicates")
    func cors() {
        #expect(rewrite([("Vary", "origin")], caching: .upstream, allowOrigin: "https://shop.example") == [
            "PAYMENT-RESPONSE: receipt", "Access-Control-Allow-Origin: https://shop.example", "Vary: origin",
            "Access-Control-Expose-Headers: PAYMENT-RESPONSE",
        ])
        #expect(rewrite([("Access-Control-Allow-Origin", "https://a.example"), ("Access-Control-Expose-Headers", "X-A, Payment-Response,,"),
                         ("Access-Control-Expose-Headers", "x-a, X-B")], caching: .upstream) == [
            "Access-Control-Allow-Origin: https://a.example", "PAYMENT-RESPONSE: receipt",
            "Access-Control-Expose-Headers: X-A, Payment-Response, X-B",
        ])
    }

    @Test("an upstream naming Cache-Control or Vary in Connection cannot make the relay drop the gateway's fields")
    func connectionListed() {
        #expect(rewrite([("Connection", "keep-alive, Cache-Control, Vary"), ("Cache-Control", "public"), ("Vary", "Accept")]) == [
            "PAYMENT-RESPONSE: receipt", "Cache-Control: private, no-store", "Access-Control-Allow-Origin: *",
            "Vary: PAYMENT-SIGNATURE, X-PAYMENT", "Access-Control-Expose-Headers: PAYMENT-RESPONSE",
        ])
    }

    @Test("rewriting twice gives the same fields as once (order aside)")
    func idempotent() {
        let once = PaidResponseHeaders.rewrite(
            HTTPHeaders([("Cache-Control", "public"), ("Vary", "Accept"), ("Access-Control-Expose-Headers", "X-A")]),
            extra: [("PAYMENT-RESPONSE", "r")], caching: .private, allowOrigin: "https://shop.example")
        let twice = PaidResponseHeaders.rewrite(once, extra: [], caching: .private, allowOrigin: "https://shop.example")
        #expect(twice.map { "\($0.name): \($0.value)" }.sorted() == once.map { "\($0.name): \($0.value)" }.sorted())
    }
}

import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import Synchronization
import Testing
import X402

/// Dynamic prices over real sockets: rule prices in the 402s, payments matched, verified and
/// settled at the request's price, and the pricing endpoint (a real HTTP server on port 0) asked,
/// cached and failing closed.
@Suite("dynamic prices, live")
struct DynamicPriceGatewayTests {
    let payer = TestPayer()

    static let head = """
        listen: 127.0.0.1:0
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        facilitator: { url: "{{FACILITATOR}}", timeout: 3s }
        upstreams:
          api: { url: "{{UPSTREAM}}", timeout: 5s }

        """

    static let rulesYAML = head + """
        routes:
          - match: "POST /v1/chat"
            price:
              rules:
                - { when: { body: model, is: "gpt-4*" }, price: "$0.03" }
                - { when: { query: tier, is: premium }, price: "$0.02" }
                - { when: { header: X-Size, is: "large" }, price: "$0.01" }
              default: "$0.005"
          - match: "GET /report"
            price:
              rules:
                - { when: { query: tier, is: premium }, price: "$0.02" }
              default: "$0.005"
        """

    static func endpointYAML(_ pricer: String, timeout: String = "2s", extra: String = "") -> String {
        head + """
        routes:
          - match: "POST /v1/chat"
            id: chat
            price:
              endpoint: "\(pricer)"
              key: [query.tier, body.model]
              max: "$0.10"
              timeout: \(timeout)
        \(extra)
        """
    }

    static func post(_ gw: LiveGateway, _ target: String, body: String, headers: [(String, String)] = []) async throws -> RawHTTPResponse {
        var raw = "POST \(target) HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\nContent-Type: application/json\r\n"
        for (n, v) in headers { raw += "\(n): \(v)\r\n" }
        raw += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        return try await gw.send(raw)
    }

    /// The 402's v2 offer.
    static func offered(_ r: RawHTTPResponse) throws -> PaymentRequirements {
        #expect(r.status == 402, "\(r.status) \(r.bodyText)")
        let header = try #require(r.header("PAYMENT-REQUIRED"))
        return try #require(try HeaderCodec.decode(PaymentRequired.self, from: header).accepts.first)
    }

    func payment(for accepted: PaymentRequirements) -> String {
        payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: UInt64(Date().timeIntervalSince1970)))
    }

    @Test("the 402's amount follows the query, a header and a JSON body field; first match wins; else the default")
    func ruleAmounts() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.rulesYAML) { gw, fac in
            func amount(_ target: String, _ body: String, _ headers: [(String, String)] = []) async throws -> String {
                try Self.offered(try await Self.post(gw, target, body: body, headers: headers)).amount
            }
            do { let got = try await amount("/v1/chat", "{}"); #expect(got == "5000") }
            do { let got = try await amount("/v1/chat", "not json"); #expect(got == "5000") }
            do { let got = try await amount("/v1/chat?tier=premium", "{}"); #expect(got == "20000") }
            do { let got = try await amount("/v1/chat", "{}", [("X-Size", "large")]); #expect(got == "10000") }
            do { let got = try await amount("/v1/chat", #"{"model":"gpt-4o-mini"}"#); #expect(got == "30000") }
            do { let got = try await amount("/v1/chat?tier=premium", #"{"model":"gpt-4o"}"#, [("X-Size", "large")]); #expect(got == "30000") }
            do { let got = try await amount("/v1/chat?tier=premium", #"{"model":"claude"}"#); #expect(got == "20000") }
            // Head-only rules answer without reading a body.
            do { let got = try Self.offered(try await gw.get("/report")).amount; #expect(got == "5000") }
            do { let got = try Self.offered(try await gw.get("/report?tier=premium")).amount; #expect(got == "20000") }
            do { let got = try Self.offered(try await gw.get("/report?tier=Premium")).amount; #expect(got == "5000") }
            #expect(gw.upstream.requests.isEmpty && fac.verifyCalls == 0)
        }
    }

    @Test("a payment at the request's rule price is verified and settled for exactly that amount; the upstream gets the body")
    func paysRulePrice() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.rulesYAML) { gw, fac in
            let body = #"{"model":"gpt-4o","prompt":"hi"}"#
            let accepted = try Self.offered(try await Self.post(gw, "/v1/chat", body: body))
            #expect(accepted.amount == "30000")
            let r = try await Self.post(gw, "/v1/chat", body: body, headers: [("PAYMENT-SIGNATURE", payment(for: accepted))])
            #expect(r.status == 200, "\(r.bodyText)")
            #expect(r.header("PAYMENT-RESPONSE") != nil)
            #expect(fac.settledAmounts == ["30000"])
            #expect(gw.upstream.requests.count == 1)
            #expect(gw.upstream.requests.first?.bodyBytes == body.utf8.count)
            // A head-only rule route too.
            let report = try Self.offered(try await gw.get("/report?tier=premium"))
            let paid = try await gw.get("/report?tier=premium", headers: [("PAYMENT-SIGNATURE", payment(for: report))])
            #expect(paid.status == 200)
            #expect(fac.settledAmounts == ["30000", "20000"])
        }
    }

    @Test("a payment at the cheaper default for a request the rules price higher is refused with the request's 402; nothing settles")
    func cheaperPaymentRefused() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.rulesYAML) { gw, fac in
            let cheap = try Self.offered(try await Self.post(gw, "/v1/chat", body: "{}"))
            #expect(cheap.amount == "5000")
            let premium = #"{"model":"gpt-4-turbo"}"#
            let r = try await Self.post(gw, "/v1/chat", body: premium, headers: [("PAYMENT-SIGNATURE", payment(for: cheap))])
            do { let got = try Self.offered(r).amount; #expect(got == "30000") }
            let challenge = try HeaderCodec.decode(PaymentRequired.self, from: try #require(r.header("PAYMENT-REQUIRED")))
            #expect(challenge.error == "invalid_exact_evm_payload_authorization_value_mismatch")
            // The same on a head-only rule.
            let report = try Self.offered(try await gw.get("/report"))
            let refused = try await gw.get("/report?tier=premium", headers: [("PAYMENT-SIGNATURE", payment(for: report))])
            do { let got = try Self.offered(refused).amount; #expect(got == "20000") }
            #expect(fac.verifyCalls == 0 && fac.settleCalls == 0 && fac.settledAmounts.isEmpty)
            #expect(gw.upstream.requests.isEmpty)
        }
    }

    /// A pricing endpoint on port 0 answering `price(request body)`, counting its calls.
    static func pricer(_ price: @escaping @Sendable (String) -> ScriptedHTTPServer.Reply) async throws -> (ScriptedHTTPServer, String) {
        let server = try ScriptedHTTPServer { request in price(String(decoding: request.body, as: UTF8.self)) }
        let port = try await server.start()
        return (server, "http://127.0.0.1:\(port)/price")
    }

    @Test("the endpoint is asked with the route and key values; its answers are cached by key; the paid retry settles its price")
    func endpointPricesAndCaches() async throws {
        let (pricer, url) = try await Self.pricer { body in
            body.contains(#""body.model":"big""#) ? .json(#"{"price":"$0.04"}"#) : .json(#"{"amount":"7000"}"#)
        }
        defer { Task { await pricer.stop() } }
        try await TestHarness.withPaidGateway(yaml: Self.endpointYAML(url)) { gw, fac in
            let big = #"{"model":"big"}"#
            let first = try Self.offered(try await Self.post(gw, "/v1/chat?tier=gold", body: big))
            #expect(first.amount == "40000")
            #expect(pricer.requests.count == 1)
            let sent = try JSONReader.parse(pricer.requests[0].body)
            #expect(sent["route"] == .string("chat"))
            #expect(sent["key"]?["query.tier"] == .string("gold") && sent["key"]?["body.model"] == .string("big"))
            #expect(pricer.requests[0].method == "POST" && pricer.requests[0].uri == "/price")
            // Same key: from the cache, for the 402 and for the paid retry.
            do { let got = try Self.offered(try await Self.post(gw, "/v1/chat?tier=gold", body: #"{"model":"big","n":2}"#)).amount; #expect(got == "40000") }
            let r = try await Self.post(gw, "/v1/chat?tier=gold", body: big, headers: [("PAYMENT-SIGNATURE", payment(for: first))])
            #expect(r.status == 200, "\(r.bodyText)")
            #expect(fac.settledAmounts == ["40000"])
            #expect(pricer.requests.count == 1)
            // Another key: asked again; a missing field is sent as null.
            do { let got = try Self.offered(try await Self.post(gw, "/v1/chat", body: "{}")).amount; #expect(got == "7000") }
            #expect(pricer.requests.count == 2)
            let second = try JSONReader.parse(pricer.requests[1].body)
            #expect(second["key"]?["query.tier"] == .null && second["key"]?["body.model"] == .null)
        }
    }

    @Test("an endpoint that times out, is down, fails or answers outside min…max: 503, nothing forwarded, verified or settled",
          arguments: ["timeout", "down", "status500", "tooHigh", "garbage"])
    func endpointFailsClosed(failure: String) async throws {
        let (pricer, url) = try await Self.pricer { _ in
            switch failure {
            case "timeout": .never
            case "status500": .json(#"{"price":"$0.01"}"#, status: 500)
            case "tooHigh": .json(#"{"price":"$0.11"}"#)
            case "garbage": .json(#"{"cost":1}"#)
            default: .json(#"{"price":"$0.01"}"#)
            }
        }
        defer { Task { await pricer.stop() } }
        // Down: port 9 (discard), where nothing listens; not a port just closed, which another
        // test's server may take meanwhile.
        let endpoint = failure == "down" ? "http://127.0.0.1:9/price" : url
        // Timeouts long enough for a loaded test run: each request must reach the endpoint (and be
        // counted), and elsewhere than the timeout case its answer must arrive.
        try await TestHarness.withPaidGateway(yaml: Self.endpointYAML(endpoint, timeout: failure == "timeout" ? "1s" : "2s")) { gw, fac in
            let started = ContinuousClock.now
            let r = try await Self.post(gw, "/v1/chat", body: "{}")
            #expect(r.status == 503)
            #expect(r.bodyText.contains("pricing_unavailable"))
            #expect(r.header("PAYMENT-REQUIRED") == nil)
            // Promptly, not after the client gave up: 3 s failed at 3.05–3.25 s in loaded runs.
            #expect(ContinuousClock.now - started < .seconds(8))
            // A payment does not get through either (an offer of the route's maximum, as discovery lists it).
            let accepted = PaymentRequirements(
                scheme: "exact", network: "eip155:84532", amount: "100000", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", maxTimeoutSeconds: 60,
                extra: ["name": .string("USDC"), "version": .string("2")])
            let paid = try await Self.post(gw, "/v1/chat", body: "{}", headers: [("PAYMENT-SIGNATURE", payment(for: accepted))])
            #expect(paid.status == 503)
            #expect(gw.upstream.requests.isEmpty)
            #expect(fac.verifyCalls == 0 && fac.settleCalls == 0)
            // Failures are not cached: the endpoint was asked each time.
            if failure != "down" { #expect(pricer.requests.count == 2) }
        }
    }

    @Test("an endpoint answer that changed since the 402 (cache expired): the payment is refused with a fresh 402 at the new price")
    func endpointPriceChanged() async throws {
        let price = Atomic<Int>(20_000)
        let (pricer, url) = try await Self.pricer { _ in .json(#"{"amount":"\#(price.load(ordering: .relaxed))"}"#) }
        defer { Task { await pricer.stop() } }
        try await TestHarness.withPaidGateway(yaml: Self.endpointYAML(url, extra: "      cacheFor: 1s")) { gw, fac in
            let first = try Self.offered(try await Self.post(gw, "/v1/chat", body: "{}"))
            #expect(first.amount == "20000")
            price.store(25_000, ordering: .relaxed)
            try await Task.sleep(for: .milliseconds(1200))  // the cached answer expires
            let r = try await Self.post(gw, "/v1/chat", body: "{}", headers: [("PAYMENT-SIGNATURE", payment(for: first))])
            do { let got = try Self.offered(r).amount; #expect(got == "25000") }
            #expect(fac.settleCalls == 0 && gw.upstream.requests.isEmpty)
        }
    }

    @Test("a browser gets the paywall page at the request's price, on head-only and body rules alike")
    func paywallAtRulePrice() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.rulesYAML) { gw, _ in
            let page = try await gw.get("/report?tier=premium", headers: browserHeaders)
            #expect(page.status == 402 && page.header("Content-Type") == "text/html; charset=utf-8")
            do { let got = try Self.offered(page).amount; #expect(got == "20000") }
            #expect(page.bodyText.contains("0.02") && !page.bodyText.contains("0.005"))
            let cheap = try await gw.get("/report", headers: browserHeaders)
            #expect(cheap.bodyText.contains("0.005") && !cheap.bodyText.contains("0.02"))
            let body = try await Self.post(gw, "/v1/chat", body: #"{"model":"gpt-4"}"#, headers: browserHeaders)
            #expect(body.header("Content-Type") == "text/html; charset=utf-8")
            do { let got = try Self.offered(body).amount; #expect(got == "30000") }
            #expect(body.bodyText.contains("0.03"))
        }
    }

    @Test("a free allowance counted in a store that fails falls to the 402 at the body's price")
    func allowanceThenBodyPrice() async throws {
        let yaml = Self.rulesYAML.replacingOccurrences(of: "      default: \"$0.005\"\n  - match: \"GET /report\"",
                                                       with: "      default: \"$0.005\"\n    freePerClient: { requests: 3, per: 1d }\n  - match: \"GET /report\"")
        #expect(yaml.contains("freePerClient"))
        try await TestHarness.withPaidGateway(yaml: yaml, counters: RequestLimitLiveTests.BrokenCounters()) { gw, fac in
            let r = try await Self.post(gw, "/v1/chat", body: #"{"model":"gpt-4o"}"#)
            do { let got = try Self.offered(r).amount; #expect(got == "30000") }
            #expect(gw.upstream.requests.isEmpty && fac.verifyCalls == 0)
            let text = RequestLimitLiveTests.metrics(gw)
            #expect(text.contains("x402_free_allowance_requests_total{route=\"POST /v1/chat\",result=\"unavailable\"} 1"), "\(text)")
            #expect(text.contains("x402_dynamic_prices_total{route=\"POST /v1/chat\",result=\"rules\"} 1"))
        }
    }
}

import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayTestSupport
import Synchronization
import Testing
import X402

let identifierYAML = """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 2s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 3s }
    paymentIdentifier: optional
    routes:
      - match: "GET /paid/*"
        price: "$0.01"
      - match: "GET /required/*"
        price: "$0.01"
        paymentIdentifier: required
      - match: "GET /plain/*"
        price: "$0.01"
        paymentIdentifier: "off"
      - match: "GET /slow/*"
        price: "$0.01"
      - match: "GET /status/*"
        price: "$0.01"
      - match: "GET /bytes/:n"
        price: "$0.01"
      - match: "POST /echo"
        price: "$0.01"
      - match: "GET /stream/*"
        price: "$0.01"
        settlement: before
    unmatched: pass
    """

/// A payment for `path`'s offer carrying `id` (a fixed payment when `payload` is given).
func identified(_ gw: LiveGateway, _ path: String, _ payer: TestPayer, id: String, payload: ExactEVMPayload? = nil,
                validBefore: UInt64? = nil) async throws -> (header: String, payload: ExactEVMPayload) {
    let accepted = try await offer(gw, path)
    let payload = payload ?? payer.authorization(for: accepted, now: now, validBefore: validBefore)
    return (payer.header(accepted: accepted, payload: payload, extensions: TestPayer.identifier(id)), payload)
}

func errorCode(_ r: RawHTTPResponse) -> String? {
    (try? JSONSerialization.jsonObject(with: Data(r.bodyText.utf8)) as? [String: Any])?["error"] as? String
}

func freshID() -> String { "pay_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased() }

@Suite("payment-identifier through the gateway")
struct PaymentIdentifierGatewayTests {
    let payer = TestPayer()

    @Test("the 402 declares the extension (required or not) on the routes offering it, and not elsewhere")
    func declared() async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, _ in
            func declaration(_ path: String) async throws -> JSONValue? {
                let header = try #require(try await gw.get(path).header("PAYMENT-REQUIRED"))
                return try HeaderCodec.decode(PaymentRequired.self, from: header).extensions?["payment-identifier"]
            }
            let optional = try await declaration("/paid/x"), required = try await declaration("/required/x")
            #expect(optional?["info"]?["required"] == .bool(false))
            #expect(required?["info"]?["required"] == .bool(true))
            #expect(optional?["schema"]?["properties"]?["id"]?["pattern"] == .string("^[a-zA-Z0-9_-]+$"))
            let plain = try await declaration("/plain/x"), streamed = try await declaration("/stream/x")
            #expect(plain == nil)
            #expect(streamed == nil)  // `before` routes do not inherit the default
        }
    }

    @Test("a retry with the same id and payment gets the stored answer (status, headers, PAYMENT-RESPONSE, body); nothing is verified, forwarded or settled again")
    func replay() async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, fac in
            let id = freshID()
            let (header, _) = try await identified(gw, "/paid/x?q=1", payer, id: id)
            let first = try await pay(gw, "/paid/x?q=1", header)
            #expect(first.status == 200)
            #expect(try await gw.payments().first?.paymentIdentifier == id, "the ledger row names the id its answer is stored under")
            let receipt = try #require(first.header("PAYMENT-RESPONSE"))
            for _ in 0..<3 {
                let again = try await pay(gw, "/paid/x?q=1", header)
                #expect(again.status == 200)
                #expect(again.bodyText == first.bodyText)
                #expect(again.header("PAYMENT-RESPONSE") == receipt)
                #expect(again.header("Content-Type") == first.header("Content-Type"))
                #expect(again.header("Content-Length") == first.header("Content-Length"))
                #expect(again.header("X-Request-Id") != first.header("X-Request-Id"))
                #expect(again.header("X-Upstream-Hop") == nil)  // named in the upstream's Connection: never relayed, never stored
            }
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 1)
            #expect(gw.upstream.count == 1)
        }
    }

    @Test("the same id with a different payment gets 409, and that payment stays unused")
    func differentPayment() async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, fac in
            let id = freshID()
            let (first, _) = try await identified(gw, "/paid/x", payer, id: id)
            #expect(try await pay(gw, "/paid/x", first).status == 200)
            let (second, payload) = try await identified(gw, "/paid/x", payer, id: id)
            let conflict = try await pay(gw, "/paid/x", second)
            #expect(conflict.status == 409)
            #expect(errorCode(conflict) == "payment_identifier_conflict")
            #expect(conflict.header("PAYMENT-RESPONSE") == nil && conflict.header("Retry-After") == nil)
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 1 && gw.upstream.count == 1)
            // Not claimed: with an id of its own the same payment goes through.
            let (fresh, _) = try await identified(gw, "/paid/x", payer, id: freshID(), payload: payload)
            #expect(try await pay(gw, "/paid/x", fresh).status == 200)
        }
    }

    @Test("the same id and payment for another request (path, query, body) gets 409", arguments: ["/paid/y", "/paid/x?other"])
    func differentRequest(path: String) async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, fac in
            let (header, _) = try await identified(gw, "/paid/x", payer, id: freshID())
            #expect(try await pay(gw, "/paid/x", header).status == 200)
            let moved = try await pay(gw, path, header)
            #expect(moved.status == 409)
            #expect(errorCode(moved) == "payment_identifier_request_mismatch")
            #expect(fac.verifyCalls == 1 && gw.upstream.count == 1)
        }
    }

    @Test("a POST retried with another body is another request: 409")
    func differentBody() async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, _ in
            let challenge = try #require(try await gw.get("/echo", method: "POST").header("PAYMENT-REQUIRED"))
            let accepted = try #require(try HeaderCodec.decode(PaymentRequired.self, from: challenge).accepts.first)
            let header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now),
                                      extensions: TestPayer.identifier(freshID()))
            func post(_ body: String) async throws -> RawHTTPResponse {
                try await gw.send("POST /echo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nPAYMENT-SIGNATURE: \(header)\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
            }
            let first = try await post("hello")
            #expect(first.status == 200 && first.bodyText == "hello")
            #expect(try await post("hello").bodyText == "hello")
            #expect(try await post("hullo").status == 409)
            #expect(gw.upstream.count == 1)
        }
    }

    @Test("required: a payment without an id gets 400; a malformed id gets 400 with the reason; nothing reaches the facilitator")
    func requiredAndInvalid() async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, fac in
            let missing = try await pay(gw, "/required/x", try await signedHeader(gw, "/required/x", payer))
            #expect(missing.status == 400)
            #expect(errorCode(missing) == "payment_identifier_required")
            let (bad, _) = try await identified(gw, "/paid/x", payer, id: "not ok!")
            let invalid = try await pay(gw, "/paid/x", bad)
            #expect(invalid.status == 400)
            #expect(errorCode(invalid) == "invalid_payment_identifier")
            #expect(invalid.bodyText.contains("16 to 128 characters"))
            // A route that does not offer the extension ignores it, even malformed.
            let (ignored, _) = try await identified(gw, "/plain/x", payer, id: "not ok!")
            #expect(try await pay(gw, "/plain/x", ignored).status == 200)
            #expect(fac.verifyCalls == 1)
            let (good, _) = try await identified(gw, "/required/x", payer, id: freshID())
            #expect(try await pay(gw, "/required/x", good).status == 200)
        }
    }

    @Test("while the first request is in flight, a retry gets 409 with Retry-After; once answered, the retry replays")
    func inFlight() async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, fac in
            let (header, _) = try await identified(gw, "/slow/800", payer, id: freshID())
            async let first = pay(gw, "/slow/800", header)
            while gw.upstream.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
            let busy = try await pay(gw, "/slow/800", header)
            #expect(busy.status == 409)
            #expect(errorCode(busy) == "payment_identifier_in_flight")
            #expect(busy.header("Retry-After") == "2")
            let answered = try await first
            #expect(answered.status == 200)
            let replayed = try await pay(gw, "/slow/800", header)
            #expect(replayed.status == 200 && replayed.bodyText == answered.bodyText)
            #expect(fac.settleCalls == 1 && gw.upstream.count == 1)
        }
    }

    @Test("answers where nothing was charged are not stored: the same id and payment are processed again")
    func unchargedNotStored() async throws {
        try await TestHarness.withPaidGateway(yaml: identifierYAML) { gw, fac in
            let (failing, _) = try await identified(gw, "/status/500", payer, id: freshID())
            #expect(try await pay(gw, "/status/500", failing).status == 500)
            #expect(try await pay(gw, "/status/500", failing).status == 500)
            #expect(gw.upstream.count == 2 && fac.settleCalls == 0)

            let (header, _) = try await identified(gw, "/paid/x", payer, id: freshID())
            fac.setFault(.settleRefuses("insufficient_funds"))
            #expect(try await pay(gw, "/paid/x", header).status == 402)
            fac.setFault(.none)
            let paid = try await pay(gw, "/paid/x", header)
            #expect(paid.status == 200 && paid.header("PAYMENT-RESPONSE") != nil)
            #expect(try await pay(gw, "/paid/x", header).bodyText == paid.bodyText)
        }
    }

    @Test("a paid answer over limits.maxStoredResponse is not replayed: a retry gets 409 with the receipt")
    func tooLargeToStore() async throws {
        let yaml = identifierYAML.replacingOccurrences(of: "paymentIdentifier: optional\n", with: "paymentIdentifier: optional\nlimits: { maxStoredResponse: 1KiB }\n")
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            let (small, _) = try await identified(gw, "/bytes/1024", payer, id: freshID())
            #expect(try await pay(gw, "/bytes/1024", small).status == 200)
            #expect(try await pay(gw, "/bytes/1024", small).bodyText.count == 1024)
            let (large, _) = try await identified(gw, "/bytes/1025", payer, id: freshID())
            let paid = try await pay(gw, "/bytes/1025", large)
            #expect(paid.status == 200 && paid.bodyText.count == 1025)
            let retry = try await pay(gw, "/bytes/1025", large)
            #expect(retry.status == 409)
            #expect(errorCode(retry) == "payment_identifier_response_not_stored")
            #expect(retry.header("PAYMENT-RESPONSE") == paid.header("PAYMENT-RESPONSE"))
            #expect(fac.settleCalls == 2 && gw.upstream.count == 2)
        }
    }

    @Test("after its authorization expired, the same payment and id still get the stored answer; an unknown id gets the expiry refusal")
    func replayAfterExpiry() async throws {
        let skew = Atomic<UInt64>(0)
        try await TestHarness.withPaidGateway(yaml: identifierYAML, clock: { UInt64(Date().timeIntervalSince1970) + skew.load(ordering: .relaxed) }) { gw, fac in
            let (header, payload) = try await identified(gw, "/paid/x", payer, id: freshID(), validBefore: now + 30)
            let first = try await pay(gw, "/paid/x", header)
            #expect(first.status == 200)
            skew.store(60, ordering: .relaxed)
            let replayed = try await pay(gw, "/paid/x", header)
            #expect(replayed.status == 200 && replayed.bodyText == first.bodyText)
            let (unknown, _) = try await identified(gw, "/paid/x", payer, id: freshID(), payload: payload)
            let refused = try await pay(gw, "/paid/x", unknown)
            #expect(refused.status == 402)
            #expect(try HeaderCodec.decode(PaymentRequired.self, from: try #require(refused.header("PAYMENT-REQUIRED"))).error
                == RefusalReason.expired.rawValue)
            #expect(fac.settleCalls == 1)
        }
    }

    @Test("check: paymentIdentifier takes optional, required or off, on priced after-success routes only")
    func configChecks() throws {
        let problems = ConfigProblems.of
        let base = ConfigProblems.head
        #expect(problems(base + "  - { match: /a, price: $0.01, paymentIdentifier: sometimes }\n").contains("paymentIdentifier must be \"optional\", \"required\" or \"off\""))
        #expect(problems(base + "  - { match: /a, free: true, paymentIdentifier: optional }\n").contains("a free route cannot offer paymentIdentifier"))
        #expect(problems(base + "  - { match: /a, price: $0.01, settlement: before, paymentIdentifier: required }\n")
            .contains("paymentIdentifier needs settlement: after-success"))
        #expect(problems("paymentIdentifier: maybe\n" + base + "  - { match: /a, price: $0.01 }\n").contains("paymentIdentifier must be"))
        #expect(problems("limits: { maxStoredResponse: 16MiB }\n" + base + "  - { match: /a, price: $0.01 }\n")
            .contains("cannot exceed limits.maxBufferedResponse"))
        #expect(problems("limits: { storedResponseRetention: 5s }\n" + base + "  - { match: /a, price: $0.01 }\n").contains("at least 1m"))
        let config = try ConfigLoader.parse(yaml: "paymentIdentifier: required\nlimits: { maxStoredResponse: 1MiB, storedResponseRetention: 1h }\n" + base + """
              - { match: /a, price: $0.01 }
              - { match: /b, price: $0.01, paymentIdentifier: optional }
              - { match: /c, price: $0.01, paymentIdentifier: "off" }
              - { match: /d, price: $0.01, settlement: before }
              - { match: /e, free: true }

            """, file: "g.yaml", environment: [:])
        #expect(config.routes.map(\.paymentIdentifier) == [.required, .optional, nil, nil, nil])
        #expect(config.limits.maxStoredResponseBytes == 1024 * 1024)
        #expect(config.limits.storedResponseRetention == .seconds(3600))
    }
}

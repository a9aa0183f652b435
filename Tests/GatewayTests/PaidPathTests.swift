import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import HTTPTypes
import NIOCore
import NIOPosix
import Testing
import X402

let paidYAML = """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 3s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 5s }
    routes:
      - match: "GET /paid/*"
        price: "$0.01"
      - match: "GET /cheap/*"
        price: "$0.001"
      - match: "GET /status/*"
        price: "$0.01"
      - match: "GET /bytes/:n"
        price: "$0.01"
        settlement: before
    unmatched: pass
    """

let now = UInt64(Date().timeIntervalSince1970)

/// The route's v2 offer, read from its 402 like a client would.
func offer(_ gw: LiveGateway, _ path: String) async throws -> PaymentRequirements {
    let r = try await gw.get(path)
    let header = try #require(r.header("PAYMENT-REQUIRED"))
    return try #require(try HeaderCodec.decode(PaymentRequired.self, from: header).accepts.first)
}

/// A fresh, valid payment for `path`'s offer.
func signedHeader(_ gw: LiveGateway, _ path: String, _ payer: TestPayer) async throws -> String {
    let accepted = try await offer(gw, path)
    return payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now))
}

func pay(_ gw: LiveGateway, _ path: String, _ header: String, name: String = "PAYMENT-SIGNATURE") async throws -> RawHTTPResponse {
    try await gw.get(path, headers: [(name, header)])
}

@Suite("Paid path")
struct PaidPathTests {
    let payer = TestPayer()

    @Test("a valid v2 payment is verified, forwarded with the payer, settled, and answered with PAYMENT-RESPONSE")
    func paysV2() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let header = try await signedHeader(gw, "/paid/x", payer)
            let r = try await pay(gw, "/paid/x", header)
            #expect(r.status == 200)
            #expect(r.bodyText.contains("/paid/x"))
            let settlement = try HeaderCodec.decode(SettleResponse.self, from: try #require(r.header("PAYMENT-RESPONSE")))
            #expect(settlement.success)
            #expect(settlement.network == "eip155:84532")
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 1)
            let seen = try #require(gw.upstream.requests.first)
            #expect(seen.headers[.init("X-Payment-Payer")!] == payer.address)
            #expect(seen.headers[.init("PAYMENT-SIGNATURE")!] == nil)
        }
    }

    @Test("a v1 X-PAYMENT is accepted and answered with X-PAYMENT-RESPONSE in v1 network names")
    func paysV1() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let accepted = try await offer(gw, "/paid/x")
            let header = payer.headerV1(network: "base-sepolia", payload: payer.authorization(for: accepted, now: now))
            let r = try await pay(gw, "/paid/x", header, name: "X-PAYMENT")
            #expect(r.status == 200)
            let settlement = try HeaderCodec.decode(SettleResponse.self, from: try #require(r.header("X-PAYMENT-RESPONSE")))
            #expect(settlement.success && settlement.network == "base-sepolia")
            #expect(fac.settleCalls == 1)
        }
    }

    enum Bad: String, CaseIterable, Sendable {
        case cheaperRoute, amount, payee, network, asset, scheme, expired, notYetValid, badSignature, wrongSigner, notBase64, notJSON
    }

    @Test("bad payments are refused locally with a precise reason, before the facilitator or upstream", arguments: Bad.allCases)
    func refusals(bad: Bad) async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            var accepted = try await offer(gw, "/paid/x")
            let cheap = try await offer(gw, "/cheap/x")
            var header: String
            let expected: String
            switch bad {
            case .cheaperRoute:
                header = payer.header(accepted: cheap, payload: payer.authorization(for: cheap, now: now))
                expected = "invalid_exact_evm_payload_authorization_value_mismatch"
            case .amount:
                header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now, value: "9999"))
                expected = "invalid_exact_evm_payload_authorization_value_mismatch"
            case .payee:
                header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now, to: payer.address))
                expected = "invalid_exact_evm_payload_recipient_mismatch"
            case .network:
                accepted.network = "eip155:8453"
                header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now))
                expected = "invalid_network"
            case .asset:
                accepted.asset = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
                header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now))
                expected = "invalid_exact_evm_asset_mismatch"
            case .scheme:
                accepted.scheme = "upto"
                header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now))
                expected = "unsupported_scheme"
            case .expired:
                header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now, validBefore: now + 3))
                expected = "invalid_exact_evm_payload_authorization_valid_before"
            case .notYetValid:
                header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now, validAfter: now + 120))
                expected = "invalid_exact_evm_payload_authorization_valid_after"
            case .badSignature:
                var payload = payer.authorization(for: accepted, now: now)
                payload.signature = String(payload.signature.dropLast(4)) + (payload.signature.hasSuffix("1b") ? "001c" : "001b")
                header = payer.header(accepted: accepted, payload: payload)
                expected = "invalid_exact_evm_payload_signature"
            case .wrongSigner:
                var payload = TestPayer(privateKey: Array(repeating: 7, count: 32)).authorization(for: accepted, now: now)
                payload.authorization.from = payer.address
                header = payer.header(accepted: accepted, payload: payload)
                expected = "invalid_exact_evm_payload_signature"
            case .notBase64:
                header = "not base64!"
                expected = "invalid_payload"
            case .notJSON:
                header = Base64.encode(Array("{\"x402Version\":2,".utf8))
                expected = "invalid_payload"
            }
            let r = try await pay(gw, "/paid/x", header)
            #expect(r.status == 402)
            let challenge = try HeaderCodec.decode(PaymentRequired.self, from: try #require(r.header("PAYMENT-REQUIRED")))
            #expect(challenge.error == expected)
            #expect(fac.verifyCalls == 0)
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("requests pipelined behind a paid request wait for its answer: order and framing kept")
    func pipelinedBehindPayment() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let header = try await signedHeader(gw, "/paid/x", payer)
            let raw = "GET /paid/x HTTP/1.1\r\nHost: gw\r\nPAYMENT-SIGNATURE: \(header)\r\n\r\n"
                + "GET /paid/y HTTP/1.1\r\nHost: gw\r\n\r\n"
                + "GET /free/z HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
            let responses = try await RawHTTP.exchange(port: gw.port, raw: raw)
            try #require(responses.map(\.status) == [200, 402, 200])
            #expect(responses[0].header("PAYMENT-RESPONSE") != nil)
            #expect(responses[0].bodyText.contains("/paid/x"))
            #expect(responses[2].bodyText.contains("/free/z"))
            #expect(fac.settleCalls == 1)
        }
    }

    @Test("a payment header with a number Foundation's JSONDecoder traps on is refused, and the gateway keeps serving")
    func hostileNumber() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let json = "{\"x402Version\":9007199254740993" + String(repeating: "0", count: 150) + "e-150}"
            let r = try await pay(gw, "/paid/x", Base64.encode(Array(json.utf8)))
            #expect(r.status == 402)
            let challenge = try HeaderCodec.decode(PaymentRequired.self, from: try #require(r.header("PAYMENT-REQUIRED")))
            #expect(challenge.error == "invalid_payload")
            #expect(try await gw.get("/paid/x").status == 402)
            #expect(fac.verifyCalls == 0)
        }
    }

    @Test("a payment is used once: a replay after success is refused without reaching anything")
    func replaySequential() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let header = try await signedHeader(gw, "/paid/x", payer)
            #expect(try await pay(gw, "/paid/x", header).status == 200)
            let again = try await pay(gw, "/paid/y", header)
            #expect(again.status == 402)
            let challenge = try #require(again.header("PAYMENT-REQUIRED"))
            #expect(try HeaderCodec.decode(PaymentRequired.self, from: challenge).error == "payment_already_used")
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 1)
            #expect(gw.upstream.count == 1)
        }
    }

    @Test("200 concurrent requests carrying one payment: exactly one reaches the upstream and one settles")
    func replayConcurrent() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let header = try await signedHeader(gw, "/paid/x", payer)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<200 { group.addTask { try await pay(gw, "/paid/x", header).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 200 }.count == 1)
            #expect(statuses.filter { $0 == 402 }.count == 199)
            #expect(gw.upstream.count == 1)
            #expect(fac.settleCalls == 1)
        }
    }

    @Test("facilitator faults fail closed: nothing forwarded, 502/504 with a JSON reason", arguments: [
        (FakeFacilitator.Fault.verifyStatus(500), 502), (.verifyGarbage, 502), (.verifySlow(milliseconds: 4000), 504),
    ])
    func verifyFaults(fault: FakeFacilitator.Fault, status: Int) async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let accepted = try await offer(gw, "/paid/x")
            fac.setFault(fault)
            let r = try await pay(gw, "/paid/x", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(r.status == status)
            #expect(r.bodyText.contains("facilitator_"))
            #expect(gw.upstream.count == 0 && fac.settleCalls == 0)
        }
    }

    @Test("an unreachable facilitator fails closed with 502")
    func facilitatorDown() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "url: \"{{FACILITATOR}}\"", with: "url: \"http://127.0.0.1:1\"")
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, _ in
            let accepted = try await offer(gw, "/paid/x")
            let r = try await pay(gw, "/paid/x", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(r.status == 502)
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("a facilitator that says isValid:false gets a 402 carrying its reason, and nothing is forwarded")
    func verifyInvalid() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let accepted = try await offer(gw, "/paid/x")
            fac.setFault(.verifyRefuses("invalid_exact_evm_insufficient_balance"))
            let header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now))
            let r = try await pay(gw, "/paid/x", header)
            #expect(r.status == 402)
            let challenge = try HeaderCodec.decode(PaymentRequired.self, from: try #require(r.header("PAYMENT-REQUIRED")))
            #expect(challenge.error == "invalid_exact_evm_insufficient_balance")
            #expect(gw.upstream.count == 0 && fac.settleCalls == 0)
            // Not charged, so the claim was released: once funded, the same payment goes through.
            fac.setFault(.none)
            #expect(try await pay(gw, "/paid/x", header).status == 200)
        }
    }

    @Test("a refused settlement withholds the content and answers 402 with PAYMENT-RESPONSE")
    func settleRefused() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let accepted = try await offer(gw, "/paid/x")
            fac.setFault(.settleRefuses("insufficient_funds"))
            let r = try await pay(gw, "/paid/x", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(r.status == 402)
            #expect(!r.bodyText.contains("/paid/x"))
            let settlement = try HeaderCodec.decode(SettleResponse.self, from: try #require(r.header("PAYMENT-RESPONSE")))
            #expect(!settlement.success && settlement.errorReason == "insufficient_funds")
            #expect(r.header("PAYMENT-REQUIRED") == nil)
        }
    }

    @Test("an ambiguous settlement (500 or timeout) is never answered with a fresh 402", arguments: [
        (FakeFacilitator.Fault.settleStatus(500), 502), (.settleSlow(milliseconds: 4000), 504),
    ])
    func settleUnknown(fault: FakeFacilitator.Fault, status: Int) async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let accepted = try await offer(gw, "/paid/x")
            fac.setFault(fault)
            let header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now))
            let r = try await pay(gw, "/paid/x", header)
            #expect(r.status == status)
            #expect(r.header("PAYMENT-REQUIRED") == nil)
            #expect(!r.bodyText.contains("/paid/x"))
            // Retrying the same payment, as the answer says: if the first settlement did not happen it
            // is served and settled now; if it did (the slow facilitator finished it), the outcome is
            // still unknown to the gateway: 502 again, never a 402 that would invite a second payment.
            if status == 504 {
                // The slow facilitator completes the first settlement after the gateway gave up on it.
                #expect(try await eventually(within: .seconds(3)) { fac.settledCount == 1 })
            }
            fac.setFault(.none)
            let retry = try await pay(gw, "/paid/x", header)
            if status == 502 {
                #expect(retry.status == 200)
                #expect(retry.header("PAYMENT-RESPONSE") != nil)
                #expect(gw.upstream.count == 2)
                // Now spent for good.
                #expect(try await pay(gw, "/paid/x", header).status == 402)
            } else {
                #expect(retry.status == 502)
                #expect(retry.header("PAYMENT-REQUIRED") == nil)
                #expect(gw.upstream.count == 1)
                #expect(fac.settledCount == 1)
            }
        }
    }

    @Test("an upstream error under after-success is passed through and never settled; the payment stays usable")
    func upstreamErrorNoSettle() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let header = try await signedHeader(gw, "/status/500", payer)
            let r = try await pay(gw, "/status/500", header)
            #expect(r.status == 500)
            #expect(fac.settleCalls == 0)
            #expect(r.header("PAYMENT-RESPONSE") == nil)
        }
    }

    @Test("one payer's upstream runs left unsettled are bounded: past limits.unsettledRunsPerPayer its requests there are settled first")
    func unsettledRunsPerPayer() async throws {
        let yaml = paidYAML + "\nlimits: { unsettledRunsPerPayer: 2 }\n"
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            // The same payment, presented again and again on a route whose upstream fails: each run
            // is unsettled (nothing charged, the payment stays usable) until the bound.
            let header = try await signedHeader(gw, "/status/500", payer)
            for run in 1...2 {
                let r = try await pay(gw, "/status/500", header)
                #expect(r.status == 500 && r.header("PAYMENT-RESPONSE") == nil)
                #expect(gw.upstream.count == run && fac.settleCalls == 0)
            }
            // Third time: settled before the upstream runs; the upstream's failure comes after the money.
            let settledFirst = try await pay(gw, "/status/500", header)
            #expect(settledFirst.status == 500)
            #expect(settledFirst.header("PAYMENT-RESPONSE") != nil)
            #expect(fac.settleCalls == 1 && gw.upstream.count == 3)
            // Spent: the same payment cannot make the upstream run again.
            #expect(try await pay(gw, "/status/500", header).status == 402)
            #expect(gw.upstream.count == 3)
            // A fresh payment from the same payer on this route is settled first too; elsewhere it is not.
            let fresh = try await pay(gw, "/status/200", try await signedHeader(gw, "/status/200", payer))
            #expect(fresh.status == 200 && fac.settleCalls == 2)
            let elsewhere = try await pay(gw, "/paid/x", try await signedHeader(gw, "/paid/x", payer))
            #expect(elsewhere.status == 200 && fac.settleCalls == 3)
            // Another payer on the same route is not affected.
            // Hardhat's test key #1.
            let other = TestPayer(privateKey: Hex.decode("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", prefixed: true)!)
            let theirs = try await pay(gw, "/status/500", try await signedHeader(gw, "/status/500", other))
            #expect(theirs.status == 500 && theirs.header("PAYMENT-RESPONSE") == nil && fac.settleCalls == 3)
            let exposition = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(exposition.split(separator: "\n").contains("x402_payments_settled_first_total 2"), "\(exposition.split(separator: "\n").filter { $0.contains("settled_first") })")
        }
    }

    @Test("check: limits.unsettledRunsPerPayer takes off or a number of runs, limits.unsettledRunsWindow a duration")
    func unsettledRunsConfig() throws {
        let route = ConfigProblems.head + "  - { match: /a, price: $0.01 }\n"
        #expect(ConfigProblems.of("limits: { unsettledRunsPerPayer: 0 }\n" + route)
            .contains("limits.unsettledRunsPerPayer must be off or a whole number of runs between 1 and 10000, not \"0\""))
        #expect(ConfigProblems.of("limits: { unsettledRunsPerPayer: lots }\n" + route).contains("limits.unsettledRunsPerPayer must be off"))
        #expect(ConfigProblems.of("limits: { unsettledRunsWindow: 0s }\n" + route).contains("limits.unsettledRunsWindow must be a positive duration"))
        let defaults = try ConfigLoader.parse(yaml: route, file: "g.yaml", environment: [:])
        #expect(defaults.limits.unsettledRunsPerPayer == 3 && defaults.limits.unsettledRunsWindow == .seconds(600))
        let set = try ConfigLoader.parse(yaml: "limits: { unsettledRunsPerPayer: 10, unsettledRunsWindow: 1h }\n" + route,
                                         file: "g.yaml", environment: [:])
        #expect(set.limits.unsettledRunsPerPayer == 10 && set.limits.unsettledRunsWindow == .seconds(3600))
        for off in ["off", "\"off\""] {
            let config = try ConfigLoader.parse(yaml: "limits: { unsettledRunsPerPayer: \(off) }\n" + route, file: "g.yaml", environment: [:])
            #expect(config.limits.unsettledRunsPerPayer == nil)
        }
    }

    @Test("a client that leaves before settlement is not charged, and its payment stays usable")
    func clientGoneBeforeSettlement() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "unmatched: pass", with: """
              - match: "GET /slow/*"
                price: "$0.01"
            unmatched: pass
            """)
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            let header = try await signedHeader(gw, "/slow/500", payer)
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: gw.port).get()
            try await channel.writeAndFlush(ByteBuffer(string: "GET /slow/500 HTTP/1.1\r\nHost: gw\r\nPAYMENT-SIGNATURE: \(header)\r\n\r\n"))
            // Leave once the upstream is working on it.
            #expect(try await eventually(within: .seconds(3)) { gw.upstream.count == 1 })
            try await channel.close()
            #expect(try await eventually(within: .seconds(3)) {
                String(decoding: gw.server.metrics.exposition(), as: UTF8.self).split(separator: "\n").contains { line in
                    line.hasPrefix("x402_requests_total{") && line.contains("outcome=\"client_gone\"") && line.hasSuffix(" 1")
                }
            })
            #expect(fac.settleCalls == 0)
            // The claim was released: the same payment buys the next request.
            let r = try await pay(gw, "/slow/1", header)
            #expect(r.status == 200)
            #expect(fac.settleCalls == 1)
        }
    }

    @Test("after-success: a response over limits.maxBufferedResponse fails closed (502), unsettled; the payment stays usable")
    func responseTooLargeToHold() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "    settlement: before\n", with: "") + "\nlimits: { maxBufferedResponse: 10KiB }\n"
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            let header = try await signedHeader(gw, "/bytes/200000", payer)
            let r = try await pay(gw, "/bytes/200000", header)
            #expect(r.status == 502)
            #expect(r.header("PAYMENT-RESPONSE") == nil)
            #expect(fac.settleCalls == 0)
            let small = try await pay(gw, "/bytes/5000", header)
            #expect(small.status == 200)
            #expect(small.bodyByteCount == 5000)
            #expect(fac.settleCalls == 1)
        }
    }

    @Test("settlement: before, an upstream dropping mid-body: the client connection closes short (no hang); the gateway keeps serving")
    func paidUpstreamAbortsMidBody() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "unmatched: pass", with: """
              - match: "GET /abort/:n"
                price: "$0.01"
                settlement: before
            unmatched: pass
            """)
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            for size in [1_000, 300_000] {  // held whole before the relay starts, and relayed past the hold limit
                let header = try await signedHeader(gw, "/abort/\(size)", payer)
                let r = try await gw.send("GET /abort/\(size) HTTP/1.1\r\nHost: gw\r\nPAYMENT-SIGNATURE: \(header)\r\n\r\n",
                                          discardBody: true)
                #expect(r.status == 200)
                #expect(r.header("Content-Length") == String(2 * size))
                #expect(r.bodyByteCount < 2 * size)
            }
            #expect(fac.settleCalls == 2)
            #expect(try await gw.get("/paid/x").status == 402)
        }
    }

    @Test("settlement: before, then the upstream is unreachable: 502 that says the payment was settled, with PAYMENT-RESPONSE")
    func settledThenUpstreamDown() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:1")  // nothing listens there
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            let accepted = try await offer(gw, "/bytes/10")  // settlement: before
            let r = try await pay(gw, "/bytes/10", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(r.status == 502)
            #expect(r.bodyText.contains("settled"))
            #expect(!r.bodyText.contains("nothing was charged"))
            #expect(r.header("PAYMENT-RESPONSE") != nil)
            #expect(fac.settleCalls == 1)
        }
    }

    @Test("an upstream that does not answer within its timeout gets 504 on a paid request, and no settlement")
    func paidUpstreamTimeout() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "timeout: 5s", with: "timeout: 300ms")
            .replacingOccurrences(of: "unmatched: pass", with: """
                  - match: "GET /slow/*"
                    price: "$0.01"
                unmatched: pass
                """)
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            let header = try await signedHeader(gw, "/slow/2000", payer)
            let r = try await pay(gw, "/slow/2000", header)
            #expect(r.status == 504)
            #expect(fac.settleCalls == 0)
        }
    }

    @Test("a body over limits.maxPaidRequestBody on a priced route gets 413: nothing verified, forwarded or charged")
    func paidBodyTooLarge() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML + "\nlimits: { maxPaidRequestBody: 1KiB }\n") { gw, fac in
            let header = try await signedHeader(gw, "/paid/x", payer)
            let body = String(repeating: "x", count: 2048)
            let r = try await gw.send(
                "GET /paid/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nPAYMENT-SIGNATURE: \(header)\r\nContent-Length: 2048\r\n\r\n\(body)")
            #expect(r.status == 413)
            #expect(r.bodyText.contains("body_too_large"))
            #expect(fac.verifyCalls == 0 && fac.settleCalls == 0)
            #expect(gw.upstream.count == 0)
            // The same payment with a small body still works: nothing was claimed.
            let ok = try await gw.send(
                "GET /paid/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nPAYMENT-SIGNATURE: \(header)\r\nContent-Length: 3\r\n\r\nabc")
            #expect(ok.status == 200)
            #expect(gw.upstream.requests.first?.bodyBytes == 3)
        }
    }

    @Test("an unreachable upstream gets 502 and no settlement")
    func upstreamDownNoSettle() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "url: \"{{UPSTREAM}}\"", with: "url: \"http://127.0.0.1:1\"")
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            let accepted = try await offer(gw, "/paid/x")
            let r = try await pay(gw, "/paid/x", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(r.status == 502)
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 0)
        }
    }

    @Test("settlement: before settles first, then streams the upstream body")
    func settleBefore() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let accepted = try await offer(gw, "/bytes/300000")
            let r = try await pay(gw, "/bytes/300000", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(r.status == 200)
            #expect(r.body.count == 300_000)
            #expect(r.header("PAYMENT-RESPONSE") != nil)
            #expect(fac.settleCalls == 1)
        }
    }
}

import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayTestSupport
import HTTPTypes
import Logging
import Testing
import X402

/// A deferred route (`verify: local` unless told), its risk budget, and workers that poll and retry
/// fast enough for a test.
func deferredYAML(verify: String = "local", perPayer: String = "$0.03", total: String = "$1.00", extra: String = "") -> String {
    """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 10s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 5s }
    deferredSettlement: { poll: 50ms, refresh: 200ms, retry: { initial: 100ms, max: 200ms }, margin: 6s, lease: 20s }
    routes:
      - match: "GET /deferred/*"
        price: "$0.01"
        settlement: deferred
        verify: \(verify)
        riskBudget: { perPayer: "\(perPayer)", total: "\(total)" }
      - match: "GET /headers/*"
        price: "$0.01"
        settlement: after-headers
      - match: "GET /sync/*"
        price: "$0.01"
    \(extra)
    unmatched: pass
    """
}

/// Polls `condition` until it holds or `timeout` passes (background settlement has no event a test can await).
func eventually(_ what: String, within timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting: \(what)")
}

func receipt(_ r: RawHTTPResponse, _ name: String = "PAYMENT-RESPONSE") throws -> SettleResponse {
    try HeaderCodec.decode(SettleResponse.self, from: try #require(r.header(name)))
}

func ledgerRow(_ gw: LiveGateway, payer: TestPayer, _ header: String) async throws -> PaymentRecord {
    let payload = try HeaderCodec.decode(PaymentPayload.self, from: header)
    let nonce = payload.payload.nonce.lowercased()
    return try #require(try await gw.payments(PaymentQuery(payer: payer.address, limit: 1000)).first { $0.key.nonce == nonce })
}

@Suite("Deferred settlement through the live gateway")
struct DeferredSettlementTests {
    let payer = TestPayer()
    let other = TestPayer(privateKey: Hex.decode("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", prefixed: true)!)

    @Test("served with a pending PAYMENT-RESPONSE before its settlement, which the worker then makes; no /verify with verify: local")
    func servedThenSettled() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleSlow(milliseconds: 6000))  // under facilitator.timeout (10 s)
        try await TestHarness.withPaidGateway(yaml: deferredYAML(), facilitator: facilitator) { gw, fac in
            let header = try await signedHeader(gw, "/deferred/a", payer)
            let started = ContinuousClock.now
            let r = try await pay(gw, "/deferred/a", header)
            let took = ContinuousClock.now - started
            #expect(r.status == 200)
            #expect(r.bodyText.contains("/deferred/a"))
            // Before the settlement could have ended (the margin is for a loaded machine).
            #expect(took < .milliseconds(5000), "answered in \(took), before a 6 s settlement could end")
            let pending = try receipt(r)
            #expect(!pending.success && pending.errorReason == "settlement_pending" && pending.transaction.isEmpty)
            #expect(pending.payer?.lowercased() == payer.address.lowercased() && pending.network == "eip155:84532")
            #expect(fac.verifyCalls == 0)
            #expect(fac.settledCount == 0)
            #expect(gw.upstream.requests.first?.headers[.init("X-Payment-Payer")!] == payer.address)
            // Durable before the answer: queued (its hand-over, with the upstream's status, follows).
            #expect(try await ledgerRow(gw, payer: payer, header).state == .settlementPending)
            try await eventually("the worker settles the payment", within: .seconds(20)) { try await ledgerRow(gw, payer: payer, header).state == .settled }
            let row = try await ledgerRow(gw, payer: payer, header)
            #expect(row.deferred && row.upstreamStatus == 200)
            #expect(row.transaction == "0x" + String(repeating: "ab", count: 32))
            #expect(fac.settledCount == 1 && fac.settleCalls == 1)
            // Spent: the same payment is not served again.
            #expect(try await pay(gw, "/deferred/a", header).status == 402)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("x402_deferred_settlements_total{outcome=\"settled\"} 1"))
            #expect(metrics.contains("x402_requests_total{route=\"GET /deferred/*\",outcome=\"deferred\"} 1"))
        }
    }

    @Test("verify: facilitator calls /verify before serving, then settles in the background")
    func facilitatorVerified() async throws {
        try await TestHarness.withPaidGateway(yaml: deferredYAML(verify: "facilitator")) { gw, fac in
            let header = try await signedHeader(gw, "/deferred/v", payer)
            let r = try await pay(gw, "/deferred/v", header)
            #expect(r.status == 200)
            #expect(try receipt(r).errorReason == "settlement_pending")
            #expect(fac.verifyCalls == 1)
            try await eventually("settled") { try await ledgerRow(gw, payer: payer, header).state == .settled }
            let row = try await ledgerRow(gw, payer: payer, header)
            #expect(row.verifiedPayer == payer.address.lowercased() && row.verifiedAt != nil)
            // A payment the facilitator refuses at /verify is refused before anything is served.
            fac.setFault(.verifyRefuses("insufficient_funds"))
            let refused = try await pay(gw, "/deferred/v2", try await signedHeader(gw, "/deferred/v2", payer))
            #expect(refused.status == 402)
            #expect(gw.upstream.count == 1)
        }
    }

    @Test("past riskBudget.perPayer a payer is served after-success (settled first); other payers are still deferred")
    func perPayerBudget() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleStatus(503))  // nothing settles (tried again and again) until the fault goes
        try await TestHarness.withPaidGateway(yaml: deferredYAML(perPayer: "$0.02"), facilitator: facilitator) { gw, fac in
            for i in 0..<2 {
                let r = try await pay(gw, "/deferred/\(i)", try await signedHeader(gw, "/deferred/\(i)", payer))
                #expect((try receipt(r)).errorReason == "settlement_pending")
            }
            // The third would pass $0.02 unsettled: it is served after-success, so /verify, then
            // /settle before the answer, which the facilitator's 503 makes an unknown outcome (502).
            let third = try await pay(gw, "/deferred/2", try await signedHeader(gw, "/deferred/2", payer))
            #expect(third.status == 502)
            #expect(third.header("PAYMENT-RESPONSE") == nil)
            #expect(fac.verifyCalls == 1)  // deferred payments with verify: local never call it
            let another = try await pay(gw, "/deferred/3", try await signedHeader(gw, "/deferred/3", other))
            #expect((try receipt(another)).errorReason == "settlement_pending")
            // Once the first two are settled, the payer is deferred again.
            fac.setFault(.none)
            try await eventually("the queue drains") { fac.settledCount == 3 }
            let again = try await pay(gw, "/deferred/4", try await signedHeader(gw, "/deferred/4", payer))
            #expect((try receipt(again)).errorReason == "settlement_pending")
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("x402_deferrals_declined_total{reason=\"over_payer_budget\"} 1"))
        }
    }

    @Test("past riskBudget.total every payer is served after-success")
    func totalBudget() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleStatus(503))
        try await TestHarness.withPaidGateway(yaml: deferredYAML(perPayer: "$0.02", total: "$0.02"), facilitator: facilitator) { gw, fac in
            let first = try await pay(gw, "/deferred/0", try await signedHeader(gw, "/deferred/0", payer))
            let second = try await pay(gw, "/deferred/1", try await signedHeader(gw, "/deferred/1", other))
            #expect(try receipt(first).errorReason == "settlement_pending")
            #expect(try receipt(second).errorReason == "settlement_pending")
            let third = try await pay(gw, "/deferred/2", try await signedHeader(gw, "/deferred/2", other))
            #expect(third.status == 502 && third.header("PAYMENT-RESPONSE") == nil)  // after-success, settled first (503)
            #expect(fac.verifyCalls == 1)
        }
    }

    @Test("a refused settlement after delivery is recorded with the facilitator's reason, and the payer is no longer deferred")
    func failedAfterDelivery() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleRefuses("invalid_exact_evm_insufficient_balance"))
        try await TestHarness.withPaidGateway(yaml: deferredYAML(), facilitator: facilitator) { gw, fac in
            let header = try await signedHeader(gw, "/deferred/f", payer)
            let r = try await pay(gw, "/deferred/f", header)
            #expect(r.status == 200)
            #expect(try receipt(r).errorReason == "settlement_pending")
            try await eventually("the settlement fails") {
                try await ledgerRow(gw, payer: payer, header).state == .settleFailedAfterDelivery
            }
            #expect(try await ledgerRow(gw, payer: payer, header).reason == "invalid_exact_evm_insufficient_balance")
            #expect(fac.settleCalls == 1)  // a refusal is final: no retry
            // The payer is settled first now: the refusal withholds the content (402 with the receipt).
            let next = try await pay(gw, "/deferred/g", try await signedHeader(gw, "/deferred/g", payer))
            #expect(next.status == 402)
            #expect((try receipt(next)).errorReason == "invalid_exact_evm_insufficient_balance")
            #expect(gw.upstream.count == 2)  // after-success forwarded it, then withheld the body
            // Another payer is still deferred.
            let another = try await pay(gw, "/deferred/h", try await signedHeader(gw, "/deferred/h", other))
            #expect((try receipt(another)).errorReason == "settlement_pending")
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("x402_deferred_settlements_total{outcome=\"failed\"} "))
            #expect(metrics.contains("x402_deferrals_declined_total{reason=\"payer_failed\"} 1"))
            try await eventually("the ledger's failures reach the metrics") {
                String(decoding: gw.server.metrics.exposition(), as: UTF8.self).contains("x402_deferred_failures 2")
            }
        }
    }

    @Test("an upstream error under deferred settlement is relayed unsettled and its payment released; nothing is settled",
          arguments: [404, 500])
    func upstreamErrorReleased(status: Int) async throws {
        try await TestHarness.withPaidGateway(yaml: deferredYAML().replacingOccurrences(of: "GET /deferred/*", with: "GET /status/*")) { gw, fac in
            let header = try await signedHeader(gw, "/status/\(status)", payer)
            let r = try await pay(gw, "/status/\(status)", header)
            #expect(r.status == status)
            #expect(r.header("PAYMENT-RESPONSE") == nil)
            let row = try await ledgerRow(gw, payer: payer, header)
            #expect(row.state == .released && row.upstreamStatus == status)
            try await Task.sleep(for: .milliseconds(200))
            #expect(fac.settleCalls == 0)
        }
    }

    @Test("no clear answer from /settle is tried again with backoff until it settles; a refusal after one is unknown, never failed")
    func retries() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleStatus(503))
        try await TestHarness.withPaidGateway(yaml: deferredYAML(), facilitator: facilitator) { gw, fac in
            let header = try await signedHeader(gw, "/deferred/r", payer)
            #expect(try await pay(gw, "/deferred/r", header).status == 200)
            try await eventually("three attempts") { fac.settleCalls >= 3 }
            #expect(try await ledgerRow(gw, payer: payer, header).state == .settlementPending)
            fac.setFault(.none)
            try await eventually("settled") { try await ledgerRow(gw, payer: payer, header).state == .settled }
            let row = try await ledgerRow(gw, payer: payer, header)
            #expect(row.settleAttempts >= 4)

            fac.setFault(.settleStatus(502))
            let second = try await signedHeader(gw, "/deferred/s", payer)
            #expect(try await pay(gw, "/deferred/s", second).status == 200)
            try await eventually("an attempt without an answer") {
                try await ledgerRow(gw, payer: payer, second).reason == "facilitator_unavailable"
            }
            fac.setFault(.settleRefuses("invalid_exact_evm_nonce_already_used"))
            try await eventually("unknown") { try await ledgerRow(gw, payer: payer, second).state == .unknown }
            #expect(try await ledgerRow(gw, payer: payer, second).reason == "invalid_exact_evm_nonce_already_used")
        }
    }

    @Test("a settlement that gets no answer before validBefore minus the margin is left unknown, for reconciliation")
    func deadline() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleStatus(503))
        try await TestHarness.withPaidGateway(yaml: deferredYAML(), facilitator: facilitator) { gw, fac in
            let accepted = try await offer(gw, "/deferred/d")
            let now = UInt64(Date().timeIntervalSince1970)
            let header = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now, validBefore: now + 10))
            #expect(try await pay(gw, "/deferred/d", header).status == 200)
            try await eventually("unknown at the deadline", within: .seconds(10)) { try await ledgerRow(gw, payer: payer, header).state == .unknown }
            let row = try await ledgerRow(gw, payer: payer, header)
            // The last try's backoff reached past the deadline, or the row was taken again only after it
            // (the worker polls): either way unknown, as every earlier attempt went unanswered.
            #expect(["facilitator_unavailable", "deadline_passed"].contains(row.reason))
            #expect(fac.settleCalls >= 1)
            #expect(row.finishedAt! <= Int64(now + 10 - 6) * 1000 + 1000)
        }
    }

    @Test("queued settlements survive a restart: the next run settles them")
    func survivesRestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-deferred-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let storage = StorageConfig(backend: .sqlite(path: dir + "/ledger.db"), lease: .seconds(30))
        let logger = Logger(label: "test")
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleStatus(503))
        let headers = try await TestHarness.withPaidGateway(
            yaml: deferredYAML(perPayer: "$0.10"), facilitator: facilitator, store: try await PaymentStoreOpener.open(storage, logger: logger).store
        ) { gw, fac in
            var headers: [String] = []
            for i in 0..<5 {
                let header = try await signedHeader(gw, "/deferred/\(i)", payer)
                let r = try await pay(gw, "/deferred/\(i)", header)
                #expect(r.status == 200, "\(r.bodyText)")
                headers.append(header)
            }
            try await eventually("an attempt for each") { fac.settleCalls >= 5 }
            return headers
        }
        facilitator.setFault(.none)
        // The first run is over (its store closed with it); a new one opens the same file.
        try await TestHarness.withPaidGateway(
            yaml: deferredYAML(), facilitator: facilitator, store: try await PaymentStoreOpener.open(storage, logger: logger).store
        ) { gw, fac in
            try await eventually("every queued payment settled") { fac.settledCount == 5 }
            // The worker records `settled` once the facilitator's answer is back: a loaded run reads the row before.
            try await eventually("every row settled") {
                for header in headers where try await ledgerRow(gw, payer: payer, header).state != .settled { return false }
                return true
            }
            #expect(fac.settlesByPayment.values.allSatisfy { $0 >= 2 })
        }
    }

    @Test("the admin /payments/deferred and the metrics show what is pending, unknown and failed, and the exposure per route")
    func ledgerViews() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleRefuses("invalid_exact_evm_insufficient_balance"))
        try await TestHarness.withPaidGateway(yaml: deferredYAML(extra: "admin: { listen: \"127.0.0.1:0\" }"), facilitator: facilitator) { gw, fac in
            let failed = try await signedHeader(gw, "/deferred/f", other)
            #expect(try await pay(gw, "/deferred/f", failed).status == 200)
            try await eventually("failed") { try await ledgerRow(gw, payer: other, failed).state == .settleFailedAfterDelivery }
            fac.setFault(.settleStatus(503))  // these two stay queued
            for i in 0..<2 { #expect(try await pay(gw, "/deferred/\(i)", try await signedHeader(gw, "/deferred/\(i)", payer)).status == 200) }
            try await eventually("the two queued payments in the metrics (read back every 200 ms)") {
                String(decoding: gw.server.metrics.exposition(), as: UTF8.self).contains("x402_deferred_pending 2")
            }
            let admin = try #require(gw.adminPort)
            let r = try await RawHTTP.send(port: admin, raw: "GET /payments/deferred HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            #expect(r.status == 200)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.bodyText.utf8)) as? [String: Any])
            #expect(json["pending"] as? Int == 2 && json["unknown"] as? Int == 0 && json["failures"] as? Int == 1)
            #expect((json["oldestPendingSeconds"] as? Double ?? 0) > 0)
            let routes = try #require(json["routes"] as? [[String: Any]])
            #expect(routes.count == 1 && routes[0]["route"] as? String == "GET /deferred/*" && routes[0]["exposure"] as? String == "20000")
            let payers = try #require(json["failedPayers"] as? [[String: Any]])
            #expect(payers.map { $0["payer"] as? String } == [other.address.lowercased()])
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metrics.contains("x402_deferred_pending 2"))
            #expect(metrics.contains("x402_deferred_failures 1"))
            #expect(metrics.contains("x402_deferred_exposure{route=\"GET /deferred/*\"} 20000"))
            let oldest = metrics.split(separator: "\n").first { $0.hasPrefix("x402_deferred_oldest_pending_seconds ") }
            #expect((oldest?.split(separator: " ").last.flatMap { Double($0) } ?? 0) > 0)
            // The rows themselves, filtered by the new states.
            let rows = try await RawHTTP.send(port: admin, raw: "GET /payments?state=settlement_pending HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            #expect(rows.bodyText.components(separatedBy: "\"deferred\":true").count == 3)
        }
    }

    @Test("after-headers: settled on the upstream's head, then the body streams (larger than any hold-back buffer)")
    func afterHeadersStreams() async throws {
        try await TestHarness.withPaidGateway(yaml: deferredYAML().replacingOccurrences(of: "GET /headers/*", with: "GET /bytes/:n")) { gw, fac in
            let size = 20 * 1024 * 1024  // over limits.maxBufferedResponse (8 MiB): after-success could not hold it
            let header = try await signedHeader(gw, "/bytes/\(size)", payer)
            let r = try await gw.get("/bytes/\(size)", headers: [("PAYMENT-SIGNATURE", header)], discardBody: true)
            #expect(r.status == 200)
            #expect((try receipt(r)).success)
            #expect(r.header("Content-Length") == String(size))
            #expect(fac.settledCount == 1)
        }
    }

    @Test("after-headers: a refused settlement answers 402 with PAYMENT-RESPONSE and none of the upstream's body")
    func afterHeadersRefused() async throws {
        let facilitator = FakeFacilitator()
        facilitator.setFault(.settleRefuses("invalid_exact_evm_insufficient_balance"))
        let yaml = deferredYAML().replacingOccurrences(of: "GET /headers/*", with: "GET /bytes/:n")
        try await TestHarness.withPaidGateway(yaml: yaml, facilitator: facilitator) { gw, _ in
            let size = 4 * 1024 * 1024
            let r = try await pay(gw, "/bytes/\(size)", try await signedHeader(gw, "/bytes/\(size)", payer))
            #expect(r.status == 402)
            #expect(r.bodyText == "{}")
            #expect(try receipt(r).errorReason == "invalid_exact_evm_insufficient_balance")
            #expect(gw.upstream.count == 1)
            // The upstream's answer, still streaming, was dropped with its connection: the next request gets a new one.
            let port = gw.upstream.requests.last?.peerPort
            _ = try await gw.get("/public/next")
            #expect(gw.upstream.requests.last?.peerPort != port)
        }
    }
}

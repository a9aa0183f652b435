import BigInt
import Foundation
import GatewayCore
import Testing
import X402

private let valid = VerifyResponse(isValid: true, payer: "0xpayer")
private let settled = SettleResponse(success: true, payer: "0xpayer", transaction: "0xabc", network: "eip155:84532")
private let refusedSettle = SettleResponse(success: false, errorReason: "insufficient_funds", transaction: "", network: "eip155:84532")

/// `settlement: deferred` and `settlement: after-headers` in the payment flow, without sockets.
@Suite("Payment flow state machine: deferred and after-headers settlement")
struct DeferredPaymentFlowTests {
    let now: UInt64 = 1_800_000_000

    func started(_ policy: SettlementPolicy, verify: Deferral.Verification = .local) throws -> (PaymentFlow, PaymentFlow.Action) {
        let compiled = CompiledRoute(config: try route("GET /paid"))
        var flow = PaymentFlow(policy: policy, verification: verify)
        let action = flow.start(try signedPayment(for: compiled.offers[0].offer, now: now), offers: compiled.offers, now: now)
        return (flow, action)
    }

    @Test("deferred, verified locally: claimed straight into the queue → forward → hand over → deliver pending; no facilitator call")
    func deferredLocal() throws {
        var (flow, action) = try started(.deferred)
        #expect(action == .claimPending)
        #expect(flow.claimed(.pending) == .forward)
        #expect(flow.claim == .release)  // released unless handed over
        #expect(flow.upstreamResponded(status: 200) == .handOver)
        #expect(flow.claim == .release)
        #expect(flow.handedOver() == .deliverPending)
        #expect(flow.claim == .queued)
        #expect(flow.settlement == nil && flow.payer == nil)
    }

    @Test("deferred, verified locally, when the queue claim could not be made: the ordinary claim, then the queue write")
    func deferredLocalFallback() throws {
        var (flow, _) = try started(.deferred)
        #expect(flow.claimed(.fresh) == .recordPending)
        #expect(flow.pendingRecorded() == .forward)
        #expect(flow.upstreamResponded(status: 204) == .handOver)
        #expect(flow.handedOver() == .deliverPending)
        #expect(flow.claim == .queued)

        var (taken, _) = try started(.deferred)
        #expect(taken.claimed(.taken) == .refuse(.alreadyUsed, detail: nil))
        #expect(taken.claim == .none)
    }

    @Test("deferred, verified by the facilitator: claim → verify → queue → forward → hand over → deliver pending")
    func deferredFacilitator() throws {
        var (flow, action) = try started(.deferred, verify: .facilitator)
        #expect(action == .claim)
        #expect(flow.claimed(.fresh) == .verify)
        #expect(flow.verified(.success(valid)) == .recordPending)
        #expect(flow.payer == "0xpayer")
        #expect(flow.pendingRecorded() == .forward)
        #expect(flow.upstreamResponded(status: 200) == .handOver)
        #expect(flow.handedOver() == .deliverPending)
        #expect(flow.claim == .queued)

        var (refused, _) = try started(.deferred, verify: .facilitator)
        _ = refused.claimed(.fresh)
        #expect(refused.verified(.success(VerifyResponse(isValid: false, invalidReason: "insufficient_funds")))
            == .refuse(.facilitatorRefused, detail: "insufficient_funds"))
        #expect(refused.claim == .release)
        var (down, _) = try started(.deferred, verify: .facilitator)
        _ = down.claimed(.fresh)
        #expect(down.verified(.failure(.timeout)) == .failClosed(.timeout, stage: .verify))
        #expect(down.claim == .release)
    }

    @Test("deferred: an upstream status ≥ 400 is relayed unsettled and the queued payment released", arguments: [400, 404, 500, 503])
    func deferredUpstreamError(status: Int) throws {
        var (flow, _) = try started(.deferred)
        _ = flow.claimed(.pending)
        #expect(flow.upstreamResponded(status: status) == .deliverUnsettled)
        #expect(flow.claim == .release)
    }

    @Test("deferred: an unreachable upstream fails closed and releases the queued payment")
    func deferredUpstreamDown() throws {
        var (flow, _) = try started(.deferred)
        _ = flow.claimed(.pending)
        #expect(flow.upstreamFailed(.timeout) == .failClosed(.timeout, stage: .upstream))
        #expect(flow.claim == .release)
    }

    @Test("deferred: a client gone before the hand-over is not charged")
    func deferredClientGone() throws {
        var (flow, _) = try started(.deferred)
        _ = flow.claimed(.pending)
        _ = flow.upstreamResponded(status: 200)
        #expect(flow.clientGone() == .abandon)
        #expect(flow.claim == .release)
    }

    @Test("deferred: a store failure fails closed at the claim, the queue write and the hand-over, never queueing the payment")
    func deferredStorageFailure() throws {
        var (claiming, _) = try started(.deferred)
        #expect(claiming.storageFailed() == .failClosed(.unavailable, stage: .storage))
        #expect(claiming.claim == .none)
        var (queueing, _) = try started(.deferred, verify: .facilitator)
        _ = queueing.claimed(.fresh)
        _ = queueing.verified(.success(valid))
        #expect(queueing.storageFailed() == .failClosed(.unavailable, stage: .storage))
        #expect(queueing.claim == .release)
        var (handing, _) = try started(.deferred)
        _ = handing.claimed(.pending)
        _ = handing.upstreamResponded(status: 200)
        #expect(handing.storageFailed() == .failClosed(.unavailable, stage: .storage))
        #expect(handing.claim == .release)
    }

    @Test("deferred: a retry of a payment whose settlement outcome is unknown is never deferred: it goes on as after-success")
    func deferredRetryAfterUnknown() throws {
        for verify in Deferral.Verification.allCases {
            var (flow, _) = try started(.deferred, verify: verify)
            #expect(flow.claimed(.afterUnknownOutcome) == .verify)
            #expect(flow.policy == .afterSuccess)
            #expect(flow.claim == .unknown)
            #expect(flow.verified(.success(valid)) == .forward)
            #expect(flow.upstreamResponded(status: 200) == .settle)
            #expect(flow.settled(.success(settled)) == .deliver(settled))
            #expect(flow.claim == .spend)
        }
    }

    @Test("after-headers: claim → verify → forward → settle on the head → deliver (streamed); the claim is spent")
    func afterHeadersHappyPath() throws {
        var (flow, action) = try started(.afterHeaders)
        #expect(action == .claim)
        #expect(flow.claimed(.fresh) == .verify)
        #expect(flow.verified(.success(valid)) == .forward)
        #expect(flow.upstreamResponded(status: 200) == .settle)
        #expect(flow.settled(.success(settled)) == .deliver(settled))
        #expect(flow.claim == .spend)
        #expect(flow.identifierDisposition == .none)
    }

    @Test("after-headers: an error head is relayed unsettled; a refused settlement answers 402; no answer is unknown")
    func afterHeadersOutcomes() throws {
        var (error, _) = try started(.afterHeaders)
        _ = error.claimed(.fresh)
        _ = error.verified(.success(valid))
        #expect(error.upstreamResponded(status: 502) == .deliverUnsettled)
        #expect(error.claim == .release)

        var (refused, _) = try started(.afterHeaders)
        _ = refused.claimed(.fresh)
        _ = refused.verified(.success(valid))
        _ = refused.upstreamResponded(status: 200)
        #expect(refused.settled(.success(refusedSettle)) == .settlementFailed(refusedSettle))
        #expect(refused.claim == .release)

        var (silent, _) = try started(.afterHeaders)
        _ = silent.claimed(.fresh)
        _ = silent.verified(.success(valid))
        _ = silent.upstreamResponded(status: 200)
        #expect(silent.settled(.failure(.timeout)) == .failClosed(.timeout, stage: .settle))
        #expect(silent.claim == .unknown)
    }

    @Test("the pending PAYMENT-RESPONSE is the x402 pending status: success false, settlement_pending, no transaction")
    func pendingResponse() throws {
        let pending = SettleResponse.pending(payer: "0xAbC", network: "eip155:84532")
        #expect(!pending.success)
        #expect(pending.errorReason == "settlement_pending")
        #expect(pending.transaction == "" && pending.payer == "0xAbC" && pending.network == "eip155:84532")
        let json = try JSONDecoder().decode(SettleResponse.self, from: Data(pending.compactJSON.utf8))
        #expect(json == pending)
    }
}

@Suite("Deferred exposure and risk budget")
struct DeferralExposureTests {
    let budget = Deferral(verify: .local, perPayer: 3000, total: 5000)
    let hour: Int64 = 3_600_000

    @Test("a payer is deferred up to perPayer, the route up to total; another payer or route is counted apart")
    func budgets() {
        var exposure = DeferralExposure()
        for _ in 0..<3 { #expect(exposure.admit(route: "r", payer: "0xA", amount: 1000, budget: budget, now: 0, failedPayerHold: hour) == .deferred) }
        #expect(exposure.admit(route: "r", payer: "0xa", amount: 1000, budget: budget, now: 0, failedPayerHold: hour) == .overPayerBudget)
        #expect(exposure.admit(route: "other", payer: "0xA", amount: 1000, budget: budget, now: 0, failedPayerHold: hour) == .deferred)
        #expect(exposure.admit(route: "r", payer: "0xB", amount: 2000, budget: budget, now: 0, failedPayerHold: hour) == .deferred)
        #expect(exposure.admit(route: "r", payer: "0xC", amount: 1, budget: budget, now: 0, failedPayerHold: hour) == .overTotalBudget)
        #expect(exposure.exposure(.init(route: "r", payer: nil)) == 5000)
        #expect(exposure.exposure(.init(route: "r", payer: "0XA")) == 3000)
        // A settlement frees its amount.
        exposure.release(route: "r", payer: "0xA", amount: 1000)
        #expect(exposure.admit(route: "r", payer: "0xC", amount: 1000, budget: budget, now: 0, failedPayerHold: hour) == .deferred)
        #expect(exposure.admit(route: "r", payer: "0xA", amount: 1000, budget: budget, now: 0, failedPayerHold: hour) == .overTotalBudget)
    }

    @Test("a payer whose deferred settlement failed is not deferred for the hold, then is again; with no hold, always")
    func failedPayer() {
        var exposure = DeferralExposure()
        exposure.failed(payer: "0xA", at: 10_000)
        #expect(exposure.admit(route: "r", payer: "0xa", amount: 1, budget: budget, now: 10_000 + hour - 1, failedPayerHold: hour) == .payerFailed)
        #expect(exposure.admit(route: "r", payer: "0xB", amount: 1, budget: budget, now: 10_000, failedPayerHold: hour) == .deferred)
        #expect(exposure.admit(route: "r", payer: "0xA", amount: 1, budget: budget, now: 10_000 + hour, failedPayerHold: hour) == .deferred)
        exposure.failed(payer: "0xC", at: 5)
        #expect(exposure.admit(route: "r", payer: "0xC", amount: 1, budget: budget, now: 6, failedPayerHold: nil) == .deferred)
    }

    @Test("a read of the ledger replaces what it covers and keeps what changed after it began")
    func ledgerReads() {
        var exposure = DeferralExposure()
        #expect(exposure.admit(route: "r", payer: "0xA", amount: 1000, budget: budget, now: 0, failedPayerHold: nil) == .deferred)
        let mark = exposure.beginRead()
        // Meanwhile: one more admitted here, one settled here.
        #expect(exposure.admit(route: "r", payer: "0xA", amount: 1000, budget: budget, now: 0, failedPayerHold: nil) == .deferred)
        exposure.release(route: "r", payer: "0xB", amount: 500)
        // The ledger (every instance) had A's first payment and two of B's, one of them settled since.
        exposure.read(mark, unsettled: [("r", "0xa", 1000), ("r", "0xB", 1000)], failedPayers: ["0xd": 7])
        #expect(exposure.exposure(.init(route: "r", payer: "0xA")) == 2000)
        #expect(exposure.exposure(.init(route: "r", payer: "0xB")) == 500)
        #expect(exposure.exposure(.init(route: "r", payer: nil)) == 2500)
        #expect(exposure.admit(route: "r", payer: "0xD", amount: 1, budget: budget, now: 8, failedPayerHold: hour) == .payerFailed)
        // The next read alone decides.
        exposure.read(exposure.beginRead(), unsettled: [], failedPayers: [:])
        #expect(exposure.exposure(.init(route: "r", payer: nil)) == 0)
        exposure.forgetFailures(before: 8)
        #expect(exposure.admit(route: "r", payer: "0xD", amount: 1, budget: budget, now: 8, failedPayerHold: hour) == .deferred)
    }

    @Test("amounts are exact beyond 64 bits")
    func bigAmounts() {
        let huge = BigUInt(1) << 200
        let wide = Deferral(verify: .local, perPayer: huge * 2, total: huge * 3)
        var exposure = DeferralExposure()
        #expect(exposure.admit(route: "r", payer: "0xA", amount: huge, budget: wide, now: 0, failedPayerHold: nil) == .deferred)
        #expect(exposure.admit(route: "r", payer: "0xA", amount: huge, budget: wide, now: 0, failedPayerHold: nil) == .deferred)
        #expect(exposure.admit(route: "r", payer: "0xA", amount: 1, budget: wide, now: 0, failedPayerHold: nil) == .overPayerBudget)
        #expect(exposure.exposure(.init(route: "r", payer: "0xa")) == huge * 2)
    }
}

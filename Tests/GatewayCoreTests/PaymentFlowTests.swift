import Foundation
import GatewayCore
import Testing
import X402
import X402Crypto

/// A signed payment for the test route's offer, built from scratch (Hardhat key #0).
func signedPayment(for offer: Offer, now: UInt64, value: String? = nil) throws -> PresentedPayment {
    let key = Hex.decode("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", prefixed: true)!
    let from = EIP55.checksummed(try Secp256k1.shared.address(ofPrivateKey: key))
    let auth = EIP3009Authorization(
        from: from, to: offer.payTo, value: value ?? String(offer.amount), validAfter: String(now - 60),
        validBefore: String(now + 300), nonce: "0x" + Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255) }))
    let digest = try EIP3009.digest(
        auth, name: "USDC", version: "2", chainId: offer.network.chainId, verifyingContract: EVMAddress(hex: offer.asset)!)
    let signature = try Secp256k1.shared.sign(digest: digest, privateKey: key)
    let payload = PaymentPayload(resource: nil, accepted: offer.requirements,
                                 payload: ExactEVMPayload(signature: "0x" + Hex.encode(signature), authorization: auth))
    return try PresentedPayment.decode(header: try HeaderCodec.encode(payload), headerVersion: 2)
}

private let settled = SettleResponse(success: true, payer: "0xpayer", transaction: "0xabc", network: "eip155:84532")
private let refusedSettle = SettleResponse(success: false, errorReason: "insufficient_funds", transaction: "", network: "eip155:84532")
private let valid = VerifyResponse(isValid: true, payer: "0xpayer")

@Suite("Payment flow state machine")
struct PaymentFlowTests {
    let now: UInt64 = 1_800_000_000

    func started(_ policy: SettlementPolicy) throws -> (PaymentFlow, PaymentFlow.Action) {
        let compiled = CompiledRoute(config: try route("GET /paid"))
        var flow = PaymentFlow(policy: policy)
        let action = flow.start(try signedPayment(for: compiled.offers[0].offer, now: now), offers: compiled.offers, now: now)
        return (flow, action)
    }

    @Test("after-success: claim → verify → forward → settle → deliver; the claim is spent")
    func afterSuccessHappyPath() throws {
        var (flow, action) = try started(.afterSuccess)
        #expect(action == .claim)
        #expect(flow.claimed(.fresh) == .verify)
        #expect(flow.claim == .release)
        #expect(flow.verified(.success(valid)) == .forward)
        #expect(flow.payer == "0xpayer")
        #expect(flow.upstreamResponded(status: 200) == .settle)
        #expect(flow.settled(.success(settled)) == .deliver(settled))
        #expect(flow.claim == .spend)
    }

    @Test("before: claim → verify → settle → forward → deliver")
    func beforeHappyPath() throws {
        var (flow, _) = try started(.before)
        _ = flow.claimed(.fresh)
        #expect(flow.verified(.success(valid)) == .settle)
        #expect(flow.settled(.success(settled)) == .forward)
        #expect(flow.claim == .spend)
        #expect(flow.upstreamResponded(status: 500) == .deliver(settled))
    }

    @Test("an upstream status ≥ 400 under after-success is relayed unsettled and the claim released", arguments: [400, 404, 500, 503])
    func upstreamErrorNoCharge(status: Int) throws {
        var (flow, _) = try started(.afterSuccess)
        _ = flow.claimed(.fresh)
        _ = flow.verified(.success(valid))
        #expect(flow.upstreamResponded(status: status) == .deliverUnsettled)
        #expect(flow.claim == .release)
    }

    @Test("a client gone before settlement is not settled: claim released, or held as unknown on a retry")
    func clientGone() throws {
        for policy in [SettlementPolicy.afterSuccess, .afterHeaders, .before] {  // deferred: DeferredPaymentFlowTests
            var (flow, _) = try started(policy)
            _ = flow.claimed(.fresh)
            let next = flow.verified(.success(valid))
            if policy != .before { #expect(flow.upstreamResponded(status: 200) == .settle) } else { #expect(next == .settle) }
            #expect(flow.clientGone() == .abandon)
            #expect(flow.claim == .release)
        }
        var (retry, _) = try started(.afterSuccess)
        _ = retry.claimed(.afterUnknownOutcome)
        _ = retry.verified(.success(valid))
        _ = retry.upstreamResponded(status: 200)
        #expect(retry.clientGone() == .abandon)
        #expect(retry.claim == .unknown)
    }

    @Test("a payment store failure before the settlement fails closed at any step: nothing settled, the claim let go")
    func storageFailure() throws {
        var (claiming, _) = try started(.afterSuccess)
        #expect(claiming.storageFailed() == .failClosed(.unavailable, stage: .storage))
        #expect(claiming.claim == .none)
        for policy in [SettlementPolicy.afterSuccess, .afterHeaders, .before] {  // deferred: DeferredPaymentFlowTests
            var (flow, _) = try started(policy)
            _ = flow.claimed(.fresh)
            let next = flow.verified(.success(valid))
            #expect(next == (policy == .before ? .settle : .forward))
            #expect(flow.storageFailed() == .failClosed(.unavailable, stage: .storage))
            #expect(flow.claim == .release)
        }
        var (retry, _) = try started(.before)
        _ = retry.claimed(.afterUnknownOutcome)
        _ = retry.verified(.success(valid))
        #expect(retry.storageFailed() == .failClosed(.unavailable, stage: .storage))
        #expect(retry.claim == .unknown)
    }

    @Test("an unreachable or slow upstream fails closed; nothing charged under after-success")
    func upstreamUnreachable() throws {
        var (flow, _) = try started(.afterSuccess)
        _ = flow.claimed(.fresh)
        _ = flow.verified(.success(valid))
        #expect(flow.upstreamFailed(.timeout) == .failClosed(.timeout, stage: .upstream))
        #expect(flow.claim == .release)
    }

    @Test("a taken replay claim is refused as payment_already_used before any call")
    func replayRefused() throws {
        var (flow, _) = try started(.afterSuccess)
        #expect(flow.claimed(.taken) == .refuse(.alreadyUsed, detail: nil))
        #expect(flow.claim == PaymentFlow.ClaimDisposition.none)
    }

    @Test("verify: transport failure fails closed, isValid:false refuses with the facilitator's reason; claim released")
    func verifyOutcomes() throws {
        var (a, _) = try started(.afterSuccess)
        _ = a.claimed(.fresh)
        #expect(a.verified(.failure(.unavailable)) == .failClosed(.unavailable, stage: .verify))
        #expect(a.claim == .release)
        var (b, _) = try started(.afterSuccess)
        _ = b.claimed(.fresh)
        #expect(b.verified(.success(VerifyResponse(isValid: false, invalidReason: "insufficient_funds"))) ==
            .refuse(.facilitatorRefused, detail: "insufficient_funds"))
        #expect(b.claim == .release)
    }

    @Test("settle: no answer holds the claim as unknown and fails closed (never a fresh 402); a refusal withholds content")
    func settleOutcomes() throws {
        var (a, _) = try started(.afterSuccess)
        _ = a.claimed(.fresh)
        _ = a.verified(.success(valid))
        _ = a.upstreamResponded(status: 200)
        #expect(a.settled(.failure(.timeout)) == .failClosed(.timeout, stage: .settle))
        #expect(a.claim == .unknown)
        var (b, _) = try started(.afterSuccess)
        _ = b.claimed(.fresh)
        _ = b.verified(.success(valid))
        _ = b.upstreamResponded(status: 200)
        #expect(b.settled(.success(refusedSettle)) == .settlementFailed(refusedSettle))
        #expect(b.claim == .release)
    }

    @Test("a retry after an unknown outcome: delivered when it settles now; any refusal or failure stays unknown, never a 402 or \"nothing charged\"")
    func retryAfterUnknownOutcome() throws {
        var ok = try started(.afterSuccess).0
        _ = ok.claimed(.afterUnknownOutcome)
        #expect(ok.isRetryAfterUnknownOutcome)
        _ = ok.verified(.success(valid))
        _ = ok.upstreamResponded(status: 200)
        #expect(ok.settled(.success(settled)) == .deliver(settled))
        #expect(ok.claim == .spend)

        var verifyRefused = try started(.afterSuccess).0
        _ = verifyRefused.claimed(.afterUnknownOutcome)
        #expect(verifyRefused.verified(.success(VerifyResponse(isValid: false, invalidReason: "nonce_used"))) ==
            .failClosed(.unavailable, stage: .settle))
        #expect(verifyRefused.claim == .unknown)

        var settleRefused = try started(.afterSuccess).0
        _ = settleRefused.claimed(.afterUnknownOutcome)
        _ = settleRefused.verified(.success(valid))
        _ = settleRefused.upstreamResponded(status: 200)
        #expect(settleRefused.settled(.success(refusedSettle)) == .failClosed(.unavailable, stage: .settle))
        #expect(settleRefused.claim == .unknown)

        var upstreamFailed = try started(.afterSuccess).0
        _ = upstreamFailed.claimed(.afterUnknownOutcome)
        _ = upstreamFailed.verified(.success(valid))
        #expect(upstreamFailed.upstreamResponded(status: 503) == .deliverUnsettled)
        #expect(upstreamFailed.claim == .unknown)  // the earlier transfer may have gone through

        var verifyTimedOut = try started(.before).0
        _ = verifyTimedOut.claimed(.afterUnknownOutcome)
        #expect(verifyTimedOut.verified(.failure(.timeout)) == .failClosed(.timeout, stage: .verify))
        #expect(verifyTimedOut.claim == .unknown)
    }

    @Test("a payment that does not match the offer or fails pre-verification is refused at start")
    func refusedAtStart() throws {
        let compiled = CompiledRoute(config: try route("GET /paid"))
        var flow = PaymentFlow(policy: .afterSuccess)
        let cheap = try signedPayment(for: compiled.offers[0].offer, now: now, value: "1")
        #expect(flow.start(cheap, offers: compiled.offers, now: now) == .refuse(.amountMismatch, detail: nil))
        var late = PaymentFlow(policy: .afterSuccess)
        let payment = try signedPayment(for: compiled.offers[0].offer, now: now)
        #expect(late.start(payment, offers: compiled.offers, now: now + 296) == .refuse(.expired, detail: nil))
    }
}

@Suite("Fail-closed answers")
struct FailClosedAnswerTests {
    @Test("each failure's status, code and message: never an invitation to pay again when money may have moved")
    func answers() {
        let storage = FailClosedAnswer(.unavailable, stage: .storage, settled: false, retryAfterUnknownOutcome: false)
        #expect((storage.status, storage.code) == (503, "storage_unavailable") && storage.message.contains("nothing was charged"))
        let verify = FailClosedAnswer(.timeout, stage: .verify, settled: false, retryAfterUnknownOutcome: false)
        #expect((verify.status, verify.code) == (504, "facilitator_timeout") && verify.message.contains("nothing was charged"))
        let settle = FailClosedAnswer(.unavailable, stage: .settle, settled: false, retryAfterUnknownOutcome: false)
        #expect((settle.status, settle.code) == (502, "facilitator_unavailable") && settle.message.contains("outcome is unknown"))
        let retry = FailClosedAnswer(.unavailable, stage: .verify, settled: false, retryAfterUnknownOutcome: true)
        #expect(retry.message.contains("outcome is unknown") && !retry.message.contains("nothing was charged"))
        let upstream = FailClosedAnswer(.unavailable, stage: .upstream, settled: false, retryAfterUnknownOutcome: false)
        #expect((upstream.status, upstream.code, upstream.carriesReceipt) == (502, "upstream_unavailable", false))
        let afterSettled = FailClosedAnswer(.timeout, stage: .upstream, settled: true, retryAfterUnknownOutcome: false)
        #expect((afterSettled.status, afterSettled.code, afterSettled.carriesReceipt) == (504, "upstream_timeout", true))
        #expect(afterSettled.message.contains("was settled") && afterSettled.message.contains("do not pay again"))
    }
}

@Suite("Paid response bodies before the settlement")
struct PaidBodyHandlingTests {
    @Test("after-success holds the body (whole, or its tail when streamed upto); every other policy and any status ≥ 400 relays it")
    func handling() {
        #expect(PaidBodyHandling(policy: .afterSuccess, status: 200, holdBack: nil, bufferLimit: 4096) == .holdWhole(limit: 4096))
        #expect(PaidBodyHandling(policy: .afterSuccess, status: 399, holdBack: 1024, bufferLimit: 4096) == .holdTail(holdBack: 1024))
        #expect(PaidBodyHandling(policy: .afterSuccess, status: 400, holdBack: nil, bufferLimit: 4096) == .relay)
        #expect(PaidBodyHandling(policy: .afterSuccess, status: 503, holdBack: 1024, bufferLimit: 4096) == .relay)
        for policy in [SettlementPolicy.before, .afterHeaders, .deferred] {
            #expect(PaidBodyHandling(policy: policy, status: 200, holdBack: nil, bufferLimit: 4096) == .relay)
        }
    }
}

import Foundation
import Synchronization
import Testing
import X402
import X402Facilitator

/// `FacilitatorGroup`'s rules with scripted members and a virtual clock (no sockets): verify fails
/// over, settle goes to one member only, kinds route, resting members are asked last. The live
/// version, with real facilitators over sockets, is in `FacilitatorFailoverTests`.
@Suite("Facilitator group")
struct FacilitatorGroupTests {
    /// A member whose answers are scripted; counts its calls.
    final class Member: Facilitator, @unchecked Sendable {
        let lock = NSLock()
        var verifyFailure: FacilitatorFailure?
        var settleFailure: FacilitatorFailure?
        var supportedFailure: FacilitatorFailure?
        var isValid = true
        var networks: [String]
        /// The `upto` facilitator address it announces for its networks (nil: no `upto`).
        var uptoAddress: String?
        var verifyCalls = 0
        var settleCalls = 0
        var supportedCalls = 0
        let name: String

        init(_ name: String, networks: [String] = ["eip155:84532"]) {
            self.name = name
            self.networks = networks
        }

        func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse {
            let (failure, valid) = lock.withLock { verifyCalls += 1; return (verifyFailure, isValid) }
            if let failure { throw failure }
            return VerifyResponse(isValid: valid, invalidReason: valid ? nil : "insufficient_funds", payer: name)
        }

        func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse {
            let failure = lock.withLock { settleCalls += 1; return settleFailure }
            if let failure { throw failure }
            return SettleResponse(success: true, payer: name, transaction: "0x" + name, network: "eip155:84532")
        }

        func supported() async throws(FacilitatorFailure) -> SupportedResponse {
            let (failure, networks, upto) = lock.withLock { supportedCalls += 1; return (supportedFailure, self.networks, uptoAddress) }
            if let failure { throw failure }
            var kinds = networks.map { SupportedResponse.Kind(x402Version: 2, scheme: "exact", network: $0) }
            if let upto {
                kinds += networks.map { .init(x402Version: 2, scheme: "upto", network: $0, extra: ["facilitatorAddress": .string(upto)]) }
            }
            return SupportedResponse(kinds: kinds)
        }
    }

    final class Clock: Sendable {
        let instant = Mutex(ContinuousClock.now)
        func advance(_ d: Duration) { instant.withLock { $0 += d } }
        var now: @Sendable () -> ContinuousClock.Instant { { self.instant.withLock { $0 } } }
    }

    static func requirements(_ network: String = "eip155:84532") -> [UInt8] {
        Array(#"{"scheme":"exact","network":"\#(network)","amount":"10000"}"#.utf8)
    }

    /// A group whose members' kinds are known (as after the gateway's start-up `/supported`).
    static func group(_ members: [Member], clock: Clock) async throws -> FacilitatorGroup {
        let group = FacilitatorGroup(members: members.map { .init(name: $0.name, facilitator: $0) }, baseRest: .seconds(5),
                                     maxRest: .seconds(60), now: clock.now)
        _ = try await group.supported()
        return group
    }

    static func payload(_ n: Int) -> [UInt8] { Array("payment-\(n)".utf8) }

    @Test("verify fails over to the next member; the failed one rests (doubling), then is asked first again")
    func verifyFailover() async throws {
        let (a, b, clock) = (Member("a"), Member("b"), Clock())
        let group = try await Self.group([a, b], clock: clock)
        a.verifyFailure = .unreachable("connection refused")
        let first = try await group.verify(version: 2, paymentPayload: Self.payload(1), requirements: Self.requirements())
        #expect(first.payer == "b")
        #expect(a.verifyCalls == 1 && b.verifyCalls == 1)
        #expect(group.status().map(\.resting) == ["facilitator unreachable: connection refused", nil])
        // Resting: not asked while b answers.
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(2), requirements: Self.requirements())
        #expect(a.verifyCalls == 1 && b.verifyCalls == 2)
        clock.advance(.seconds(5))
        // Awake again and still failing: asked, fails, rests twice as long.
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(3), requirements: Self.requirements())
        #expect(a.verifyCalls == 2 && b.verifyCalls == 3)
        clock.advance(.seconds(9))
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(4), requirements: Self.requirements())
        #expect(a.verifyCalls == 2, "10 s rest after the second failure")
        clock.advance(.seconds(1))
        a.verifyFailure = nil
        let back = try await group.verify(version: 2, paymentPayload: Self.payload(5), requirements: Self.requirements())
        #expect(back.payer == "a")
        #expect(group.status().map(\.resting) == [nil, nil])
    }

    @Test("an answer ends the search: isValid false from the first member is the answer")
    func refusalIsAnAnswer() async throws {
        let (a, b, clock) = (Member("a"), Member("b"), Clock())
        a.isValid = false
        let answer = try await Self.group([a, b], clock: clock).verify(version: 2, paymentPayload: Self.payload(1), requirements: Self.requirements())
        #expect(!answer.isValid && answer.invalidReason == "insufficient_funds")
        #expect(b.verifyCalls == 0)
    }

    @Test("settle goes to the member that verified the payment, and a failed settlement is never sent to another")
    func settleOnce() async throws {
        let (a, b, clock) = (Member("a"), Member("b"), Clock())
        let group = try await Self.group([a, b], clock: clock)
        a.verifyFailure = .timeout
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(1), requirements: Self.requirements())
        a.verifyFailure = nil
        clock.advance(.seconds(60))  // a is awake again and first in order
        let settled = try await group.settle(version: 2, paymentPayload: Self.payload(1), requirements: Self.requirements())
        #expect(settled.transaction == "0xb")
        #expect(a.settleCalls == 0 && b.settleCalls == 1)

        // A settlement that fails is the caller's unknown outcome: no second member is asked.
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(2), requirements: Self.requirements())
        #expect(a.verifyCalls == 2, "a verified payment 2")
        a.settleFailure = .unreachable("connection reset")
        await #expect(throws: FacilitatorFailure.unreachable("connection reset")) {
            try await group.settle(version: 2, paymentPayload: Self.payload(2), requirements: Self.requirements())
        }
        #expect(a.settleCalls == 1 && b.settleCalls == 1)
        // Not verified here (deferred, or another instance verified it): the first awake member serving it.
        _ = try await group.settle(version: 2, paymentPayload: Self.payload(3), requirements: Self.requirements())
        #expect(b.settleCalls == 2, "a rests after its failure")
    }

    @Test("kinds route: each payment goes to the members whose /supported lists its network")
    func kindsRoute() async throws {
        let (a, b, clock) = (Member("a", networks: ["eip155:8453"]), Member("b", networks: ["eip155:84532"]), Clock())
        let group = try await Self.group([a, b], clock: clock)
        let union = try await group.supported()
        #expect(union.kinds.map(\.network) == ["eip155:8453", "eip155:84532"])
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(1), requirements: Self.requirements("eip155:84532"))
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(2), requirements: Self.requirements("eip155:8453"))
        #expect(a.verifyCalls == 1 && b.verifyCalls == 1)
        #expect(try await group.settle(version: 2, paymentPayload: Self.payload(9), requirements: Self.requirements("eip155:8453")).transaction == "0xa")
        // Nobody serves it: refused without a call.
        await #expect(throws: FacilitatorFailure.self) {
            try await group.verify(version: 2, paymentPayload: Self.payload(3), requirements: Self.requirements("eip155:1"))
        }
        #expect(a.verifyCalls == 1 && b.verifyCalls == 1)
    }

    @Test("an upto payment goes only to the member announcing the facilitator address it is bound to, verify and settle")
    func uptoBoundToItsFacilitator() async throws {
        let (a, b, c, clock) = (Member("a"), Member("b"), Member("c"), Clock())
        a.uptoAddress = "0x1111111111111111111111111111111111111111"
        b.uptoAddress = "0x2222222222222222222222222222222222222222"
        let group = try await Self.group([a, b, c], clock: clock)
        let bound = Array(#"{"scheme":"upto","network":"eip155:84532","amount":"5","extra":{"facilitatorAddress":"0x2222222222222222222222222222222222222222"}}"#.utf8)
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(1), requirements: bound)
        #expect(a.verifyCalls == 0 && b.verifyCalls == 1 && c.verifyCalls == 0)
        // Even with b resting (failed), a never gets it: a could not settle it.
        b.verifyFailure = .unreachable("down")
        await #expect(throws: FacilitatorFailure.self) {
            try await group.verify(version: 2, paymentPayload: Self.payload(2), requirements: bound)
        }
        #expect(a.verifyCalls == 0 && c.verifyCalls == 0)
        #expect(try await group.settle(version: 2, paymentPayload: Self.payload(3), requirements: bound).transaction == "0xb")
        #expect(a.settleCalls == 0 && c.settleCalls == 0)
        // exact payments still go to the first member.
        _ = try await group.verify(version: 2, paymentPayload: Self.payload(4), requirements: Self.requirements())
        #expect(a.verifyCalls == 1)
    }

    @Test("when every member serving a kind rests they are still tried, in order; /supported leaves out the unreachable")
    func allResting() async throws {
        let (a, b, clock) = (Member("a"), Member("b"), Clock())
        let group = try await Self.group([a, b], clock: clock)
        a.verifyFailure = .timeout
        b.verifyFailure = .httpStatus(503)
        await #expect(throws: FacilitatorFailure.httpStatus(503)) {
            try await group.verify(version: 2, paymentPayload: Self.payload(1), requirements: Self.requirements())
        }
        b.verifyFailure = nil
        let answer = try await group.verify(version: 2, paymentPayload: Self.payload(2), requirements: Self.requirements())
        #expect(answer.payer == "b")
        #expect(a.verifyCalls == 2 && b.verifyCalls == 2)
        a.supportedFailure = .timeout
        #expect(try await group.supported().kinds.count == 1, "b answers")
        b.supportedFailure = .httpStatus(502)
        await #expect(throws: FacilitatorFailure.httpStatus(502)) { try await group.supported() }
    }
}

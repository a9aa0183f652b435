import GatewayCore
import Testing

@Suite("Reconciliation decision")
struct ReconciliationTests {
    /// Wall clock of the tests (unix ms) and an authorization valid until 10 minutes later.
    static let now: Int64 = 1_800_000_000_000
    static let validBefore: UInt64 = 1_800_000_600
    static let grace: Duration = .seconds(120)

    static func decide(_ reading: Reconciliation.Reading, unknownFor seconds: Int64, validBefore: UInt64 = validBefore)
        -> Reconciliation.Decision
    {
        Reconciliation.decide(reading, validBefore: validBefore, unknownSince: now - seconds * 1000, now: now, grace: grace)
    }

    @Test("an authorization used on chain is settled, with the transaction when the logs named one", arguments: [
        (String?.some("0xaa"), Int64(0)), (nil, 0), ("0xbb", 3600),
    ])
    func used(transaction: String?, unknownFor: Int64) {
        #expect(Self.decide(.used(transaction: transaction), unknownFor: unknownFor) == .settled(transaction: transaction))
    }

    @Test("an authorization the payer canceled is unsettled at once: no transfer can follow")
    func canceled() {
        #expect(Self.decide(.canceled, unknownFor: 0) == .unsettled(.canceled))
    }

    @Test("unused at a block at or past validBefore is unsettled at once, grace or not", arguments: [
        validBefore, validBefore + 1, validBefore + 86_400,
    ])
    func expiredOnChain(blockTimestamp: UInt64) {
        #expect(Self.decide(.unused(blockTimestamp: blockTimestamp), unknownFor: 0) == .unsettled(.expired))
    }

    @Test("validBefore is judged by the block read, not by our clock: a lagging node waits for the grace")
    func expiryByChainTime() {
        // Our clock is an hour past validBefore, but the node's head is older than validBefore.
        let decision = Reconciliation.decide(.unused(blockTimestamp: Self.validBefore - 1), validBefore: Self.validBefore,
                                             unknownSince: Int64(Self.validBefore) * 1000 + 3_600_000 - 1000,
                                             now: Int64(Self.validBefore) * 1000 + 3_600_000, grace: Self.grace)
        #expect(decision == .pending)
    }

    @Test("unused and still valid: pending inside the grace, unsettled once it has elapsed", arguments: [
        (Int64(0), Reconciliation.Decision.pending), (60, .pending), (119, .pending),
        (120, .unsettled(.graceElapsed)), (121, .unsettled(.graceElapsed)), (86_400, .unsettled(.graceElapsed)),
    ])
    func grace(unknownFor: Int64, expected: Reconciliation.Decision) {
        let block = UInt64(Self.now / 1000) - 2
        #expect(Self.decide(.unused(blockTimestamp: block), unknownFor: unknownFor) == expected)
    }

    @Test("a chain that could not be read leaves the row for the next round, however old", arguments: [Int64(0), 120, 86_400])
    func failed(unknownFor: Int64) {
        #expect(Self.decide(.failed, unknownFor: unknownFor) == .error)
        #expect(Self.decide(.failed, unknownFor: unknownFor, validBefore: 1) == .error)
    }

    @Test("decisions carry their metric label")
    func labels() {
        let pairs: [(Reconciliation.Decision, String)] = [
            (.settled(transaction: nil), "settled"), (.unsettled(.expired), "unsettled"), (.unsettled(.graceElapsed), "unsettled"),
            (.unsettled(.canceled), "unsettled"), (.pending, "pending"), (.error, "error"),
        ]
        for (decision, label) in pairs { #expect(decision.outcome == label) }
    }
}

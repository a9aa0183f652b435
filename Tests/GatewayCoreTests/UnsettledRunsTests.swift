import GatewayCore
import Testing
import TestScheduling

@Suite("Unsettled upstream runs per payer")
struct UnsettledRunsTests {
    let key = UnsettledRuns.Key(route: "generate", payer: "0xAbC0000000000000000000000000000000000001")

    @Test("a payer reaches the limit with its runs inside the window, and leaves it as they age out")
    func slidingWindow() {
        var runs = UnsettledRuns()
        #expect(!runs.mustSettleFirst(key, limit: 3, window: 600, now: 1_000))
        runs.record(key, limit: 3, window: 600, now: 1_000)
        runs.record(key, limit: 3, window: 600, now: 1_100)
        #expect(runs.count(key, window: 600, now: 1_100) == 2)
        #expect(!runs.mustSettleFirst(key, limit: 3, window: 600, now: 1_100))
        runs.record(key, limit: 3, window: 600, now: 1_200)
        #expect(runs.mustSettleFirst(key, limit: 3, window: 600, now: 1_200))
        // The first run leaves the window at 1 600: two left.
        #expect(runs.mustSettleFirst(key, limit: 3, window: 600, now: 1_599))
        #expect(!runs.mustSettleFirst(key, limit: 3, window: 600, now: 1_600))
        #expect(runs.count(key, window: 600, now: 1_600) == 2)
        // A shorter window (a reload) applies to what was counted at once.
        #expect(runs.count(key, window: 200, now: 1_300) == 1)
    }

    @Test("payers are told apart by route and address, whatever the address's case")
    func keys() {
        var runs = UnsettledRuns()
        runs.record(key, limit: 1, window: 60, now: 10)
        #expect(runs.mustSettleFirst(UnsettledRuns.Key(route: "generate", payer: "0xabc0000000000000000000000000000000000001"),
                                     limit: 1, window: 60, now: 10))
        #expect(!runs.mustSettleFirst(UnsettledRuns.Key(route: "other", payer: key.payer), limit: 1, window: 60, now: 10))
        #expect(!runs.mustSettleFirst(UnsettledRuns.Key(route: "generate", payer: "0xabc0000000000000000000000000000000000002"),
                                      limit: 1, window: 60, now: 10))
    }

    @Test("memory stays bounded: a key keeps at most `limit` times, expired keys are dropped, and a full table counts no new payer", .cpuHeavy)
    func bounded() {
        var runs = UnsettledRuns()
        for i in 0..<50 { runs.record(key, limit: 3, window: 600, now: 1_000 + UInt64(i)) }
        #expect(runs.count(key, window: 600, now: 1_049) == 3)
        var many = UnsettledRuns()
        for i in 0..<UnsettledRuns.maximumKeys {
            many.record(UnsettledRuns.Key(route: "r", payer: "0x\(i)"), limit: 3, window: 60, now: 100)
        }
        #expect(many.keyCount == UnsettledRuns.maximumKeys)
        let late = UnsettledRuns.Key(route: "r", payer: "0xlate")
        many.record(late, limit: 3, window: 60, now: 120)  // all still live: not counted
        #expect(many.keyCount == UnsettledRuns.maximumKeys && many.count(late, window: 60, now: 120) == 0)
        many.record(late, limit: 3, window: 60, now: 200)  // all expired: dropped, then counted
        #expect(many.keyCount == 1 && many.count(late, window: 60, now: 200) == 1)
    }
}

import BigInt
import Foundation
import GatewayStorage
import Testing

/// The time a seeded row's steps happen at: each seeding task sets its own.
enum SeedTime {
    @TaskLocal static var now: Int64?
}

/// The revenue aggregation against every backend, on a ledger of thousands of rows written through
/// the store's own claims and steps: each summary must equal what the test computes itself from the
/// rows it wrote (BigUInt sums, its own grouping), for every dashboard window.
@Suite("Revenue aggregation")
struct RevenueAggregationTests {
    static let now: Int64 = 1_800_000_000_000
    static let lease: Int64 = 300_000
    static let hour: Int64 = 3_600_000
    static let day: Int64 = 86_400_000
    static let uint256Max = "115792089237316195423570985008687907853269984665640564039457584007913129639935"

    /// What the test wrote, and so what it expects.
    struct Seeded: Sendable {
        enum Fate: Sendable, CaseIterable {
            case settled, refusedAtVerify, refusedAtSettle, releasedUnsettled, releasedClientGone, unknown, reconciledSettled,
                 reconciledUnsettled, settlingLive, claimed
        }

        var key: PaymentKey
        var route: String
        var amount: String
        var claimedAt: Int64
        var fate: Fate
        /// settling → settled (ms), for `settled` rows.
        var latency: Int64
        var reason: String?

        var isSpent: Bool { fate == .settled || fate == .reconciledSettled }
        var state: PaymentState {
            switch fate {
            case .settled: .settled
            case .refusedAtVerify, .refusedAtSettle: .refused
            case .releasedUnsettled, .releasedClientGone: .released
            case .unknown: .unknown
            case .reconciledSettled: .reconciledSettled
            case .reconciledUnsettled: .reconciledUnsettled
            case .settlingLive: .settling
            case .claimed: .claimed
            }
        }
        var afterSettling: Bool {
            switch fate {
            case .settled, .refusedAtSettle, .unknown, .reconciledSettled, .reconciledUnsettled, .settlingLive: true
            default: false
            }
        }
    }

    /// A small deterministic generator (SplitMix64): the same ledger every run.
    struct Generator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    static let usdc = (network: "eip155:84532", asset: "0x036cbd53842c5426634e7929541ec2318f3dcf7e")
    static let wei = (network: "eip155:1", asset: "0x00000000000000000000000000000000000000ee")
    static let routes = ["GET /weather", "GET /dear", "<b>\"route\" & 'id'</b>", "GET /boom"]

    /// 3 000 rows over the last 35 days (some outside every window), of every fate, in two assets
    /// (6 and 18 decimals), with one uint256 amount, and rows exactly on window bounds.
    static func plan() -> [Seeded] {
        var random = Generator(state: 402)
        var rows: [Seeded] = []
        let payers = (0..<40).map { String(format: "0x%040x", 0xA000 + $0) }
        let fates = Seeded.Fate.allCases
        let reasons = ["insufficient_funds", "invalid_exact_evm_payload_signature", "<script>alert(1)</script>"]
        for i in 0..<3000 {
            let (network, asset) = random.below(5) == 0 ? wei : usdc
            // Mostly settled, then every other fate.
            let fate = random.below(2) == 0 ? .settled : fates[random.below(fates.count)]
            var claimedAt = now - Int64(random.next() % UInt64(35 * day))
            if fate == .settlingLive { claimedAt = now - Int64(random.next() % UInt64(lease)) }  // its lease still runs
            let routeIndex = random.below(routes.count)
            // Half the rows at their route's fixed price (the database counts them per amount), half at random amounts.
            let fixed = random.below(2) == 0
            let amount = network == wei.network
                ? (fixed ? String(1_000_000_000_000_000_000 + routeIndex) : String(random.next() % 1_000_000_000_000_000_000))
                : (fixed ? ["1000", "10000", "2000", "1"][routeIndex] : String(random.next() % 100_000_000 + 1))
            let reason: String? = switch fate {
            case .refusedAtVerify, .refusedAtSettle: reasons[random.below(reasons.count)]
            case .releasedUnsettled: "unsettled"
            case .releasedClientGone: "client_gone"
            case .unknown, .reconciledSettled, .reconciledUnsettled: "settlement_timeout"
            default: nil
            }
            rows.append(Seeded(
                key: PaymentKey(network: network, asset: asset, payer: payers[random.below(payers.count)], nonce: String(format: "0x%064x", i)),
                route: routes[routeIndex], amount: amount, claimedAt: claimedAt, fate: fate,
                latency: Int64(random.below(5000)), reason: reason))
        }
        // A uint256 amount beside an ordinary one in the same bucket, route and asset; bounds of the 1 h window.
        (rows[0].amount, rows[0].reason) = (uint256Max, nil)
        (rows[0].fate, rows[0].claimedAt, rows[0].key.network, rows[0].key.asset) = (.settled, now - 10 * 60_000, usdc.network, usdc.asset)
        (rows[1].fate, rows[1].claimedAt, rows[1].route) = (.settled, now - 10 * 60_000, rows[0].route)
        (rows[1].key.network, rows[1].key.asset, rows[1].reason) = (usdc.network, usdc.asset, nil)
        (rows[2].fate, rows[2].claimedAt, rows[2].reason) = (.settled, now - hour, nil)  // included in the 1 h window
        (rows[3].fate, rows[3].claimedAt, rows[3].reason) = (.settled, now - hour - 1, nil)  // just outside it
        return rows
    }

    /// Writes `row` through the store, each step at its own time.
    static func write(_ row: Seeded, to store: any PaymentStore) async throws {
        let t = row.claimedAt
        let request = ClaimRequest(
            key: row.key, offer: PaymentOffer(scheme: "exact", network: row.key.network, asset: row.key.asset, amount: row.amount,
                                              payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c"),
            routeID: row.route, method: "GET", path: "/x", requestID: "r-\(row.key.nonce.suffix(6))", validBefore: 1_900_000_000)
        try await SeedTime.$now.withValue(t) {
            guard case .claimed(let ticket) = try await store.claim(request) else { throw StorageError(.outOfOrder, "not claimed") }
            let verified = PaymentStep(.verified(payer: row.key.payer), at: t + 1)
            let forwarded = PaymentStep(.forwarded(upstreamStatus: 200), at: t + 2)
            let settling = PaymentStep(.settling, at: t + 3)
            switch row.fate {
            case .claimed: break
            case .settled:
                try await store.record(ticket, [verified, forwarded, settling])
                try await store.record(ticket, [PaymentStep(.settled(transaction: "0x" + String(repeating: "ab", count: 32)), at: t + 3 + row.latency)])
            case .refusedAtVerify:
                try await store.record(ticket, [PaymentStep(.refused(reason: row.reason!), at: t + 1)])
            case .refusedAtSettle:
                try await store.record(ticket, [verified, forwarded, settling, PaymentStep(.refused(reason: row.reason!), at: t + 9)])
            case .releasedUnsettled, .releasedClientGone:
                try await store.record(ticket, [verified, PaymentStep(.forwarded(upstreamStatus: 500), at: t + 2),
                                                PaymentStep(.released(reason: row.reason!), at: t + 3)])
            case .unknown, .reconciledSettled, .reconciledUnsettled, .settlingLive:
                try await store.record(ticket, [verified, forwarded, settling])
                guard row.fate != .settlingLive else { break }
                try await store.record(ticket, [PaymentStep(.unknown(reason: row.reason!), at: t + 30_000)])
                if row.fate == .reconciledSettled {
                    #expect(try await store.reconcile(row.key, attempt: ticket.attempt, .settled(transaction: nil)))
                } else if row.fate == .reconciledUnsettled {
                    #expect(try await store.reconcile(row.key, attempt: ticket.attempt, .unsettled))
                }
            }
        }
    }

    /// A fresh store of `backend` holding the planned rows (written 32 at a time).
    static func seeded(_ backend: Backend, _ rows: [Seeded], _ body: (any PaymentStore) async throws -> Void) async throws {
        let shared = try await backend.makeShared()
        do {
            let store = try await shared.open(StoreSettings(instanceID: "a", leaseMilliseconds: lease, clock: { SeedTime.now ?? now }))
            for start in stride(from: 0, to: rows.count, by: 32) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for row in rows[start..<min(rows.count, start + 32)] { group.addTask { try await write(row, to: store) } }
                    try await group.waitForAll()
                }
            }
            try await body(store)
        } catch {
            await shared.cleanup()
            throw error
        }
        await shared.cleanup()
    }

    /// The dashboard's windows: (length, bucket).
    static let windows: [(Int64, Int64)] = [(hour, 60_000), (day, 30 * 60_000), (7 * day, 4 * hour), (30 * day, day)]

    /// The expected series, computed here with BigUInt: (bucket, route, network, asset, count, total).
    static func expectedSeries(_ rows: [Seeded], from: Int64, to: Int64, bucket: Int64) -> [String] {
        var groups: [String: (Int, BigUInt)] = [:]
        for row in rows where row.isSpent && row.claimedAt >= from && row.claimedAt < to {
            let key = "\(row.claimedAt / bucket * bucket) \(row.route) \(row.key.network) \(row.key.asset)"
            let (count, total) = groups[key] ?? (0, 0)
            groups[key] = (count + 1, total + BigUInt(row.amount)!)
        }
        return groups.map { "\($0.key) \($0.value.0) \($0.value.1)" }.sorted()
    }

    static func described(_ summary: RevenueSummary) -> [String] {
        summary.revenue.map { "\($0.bucketStart) \($0.routeID) \($0.network) \($0.asset) \($0.payments) \($0.total)" }.sorted()
    }

    @Test("windows, buckets, grouping and exact sums (a uint256 amount included) agree with the rows written", arguments: Backend.all)
    func aggregates(_ backend: Backend) async throws {
        let rows = Self.plan()
        try await Self.seeded(backend, rows) { store in
            for (length, bucket) in Self.windows {
                let query = RevenueQuery(from: Self.now - length, to: Self.now + 1, bucketMilliseconds: bucket, topPayers: 5)
                let summary = try await store.revenue(query)
                let expected = Self.expectedSeries(rows, from: query.from, to: query.to, bucket: bucket)
                #expect(!expected.isEmpty)
                #expect(Self.described(summary) == expected, "window \(length / 60_000) min")
                // Every bucket starts on a multiple of its width, inside the window's buckets.
                #expect(summary.revenue.allSatisfy { $0.bucketStart % bucket == 0 && $0.bucketStart >= query.from - bucket })

                // Outcomes: every row claimed in the window, by state, reason and whether it reached settling.
                var outcomes: [String: Int] = [:]
                for row in rows where row.claimedAt >= query.from && row.claimedAt < query.to {
                    outcomes["\(row.state.rawValue) \(row.reason ?? "-") \(row.afterSettling)", default: 0] += 1
                }
                #expect(Dictionary(uniqueKeysWithValues: summary.outcomes.map { ("\($0.state.rawValue) \($0.reason ?? "-") \($0.afterSettling)", $0.payments) })
                        == outcomes)

                // Top payers per asset, exact.
                var payers: [String: [String: (Int, BigUInt)]] = [:]
                for row in rows where row.isSpent && row.claimedAt >= query.from && row.claimedAt < query.to {
                    let asset = "\(row.key.network) \(row.key.asset)"
                    let (count, total) = payers[asset]?[row.key.payer] ?? (0, 0)
                    payers[asset, default: [:]][row.key.payer] = (count + 1, total + BigUInt(row.amount)!)
                }
                let expectedPayers = payers.keys.sorted().flatMap { asset in
                    payers[asset]!.sorted { $0.value.1 != $1.value.1 ? $0.value.1 > $1.value.1 : $0.key < $1.key }.prefix(5)
                        .map { "\(asset) \($0.key) \($0.value.0) \($0.value.1)" }
                }
                #expect(summary.payers.map { "\($0.network) \($0.asset) \($0.payer) \($0.payments) \($0.total)" } == expectedPayers)

                // Settlement latency, nearest rank.
                let latencies = rows.filter { $0.fate == .settled && $0.claimedAt >= query.from && $0.claimedAt < query.to }.map(\.latency).sorted()
                func rank(_ p: Int) -> Int64 { latencies[(p * latencies.count + 99) / 100 - 1] }
                #expect(summary.latency == RevenueSummary.SettlementLatency(count: latencies.count, p50: rank(50), p90: rank(90), p99: rank(99),
                                                                            max: latencies.last))
            }
            // The 1 h window holds the uint256 amount plus its neighbour, in one bucket.
            let hourly = try await store.revenue(RevenueQuery(from: Self.now - Self.hour, to: Self.now + 1, bucketMilliseconds: 60_000))
            let big = try #require(hourly.revenue.first { $0.bucketStart == (Self.now - 10 * 60_000) / 60_000 * 60_000 && $0.routeID == rows[0].route
                && $0.asset == Self.usdc.asset })
            #expect(big.total.description == String(BigUInt(Self.uint256Max)! + BigUInt(rows[1].amount)! + rows.dropFirst(2).filter {
                $0.isSpent && $0.route == rows[0].route && $0.key.asset == Self.usdc.asset && $0.claimedAt / 60_000 == (Self.now - 10 * 60_000) / 60_000
            }.map { BigUInt($0.amount)! }.reduce(0, +)))
            #expect(hourly.revenue.contains { $0.bucketStart == (Self.now - Self.hour) / 60_000 * 60_000 })
            #expect(!hourly.revenue.contains { $0.bucketStart < Self.now - Self.hour })

            // Unknown outcomes, of any age: `unknown` rows, and `settling` rows past their lease (none here).
            var attention: [String: (Int, BigUInt, Int64)] = [:]
            for row in rows where row.fate == .unknown {
                let asset = "\(row.key.network) \(row.key.asset)"
                let (count, total, oldest) = attention[asset] ?? (0, 0, row.claimedAt)
                attention[asset] = (count + 1, total + BigUInt(row.amount)!, min(oldest, row.claimedAt))
            }
            let summary = try await store.revenue(RevenueQuery(from: Self.now - Self.hour, to: Self.now + 1, bucketMilliseconds: 60_000))
            #expect(summary.attention.map { "\($0.network) \($0.asset) \($0.payments) \($0.total) \($0.oldestClaimedAt)" }
                    == attention.keys.sorted().map { "\($0) \(attention[$0]!.0) \(attention[$0]!.1) \(attention[$0]!.2)" })

            // The store's SQL agrees with the reference aggregation over its own rows, whole.
            let all = try await store.payments(PaymentQuery(limit: 100_000))
            #expect(all.count == rows.count)
            for (length, bucket) in Self.windows {
                let query = RevenueQuery(from: Self.now - length, to: Self.now + 1, bucketMilliseconds: bucket, topPayers: 7)
                #expect(try await store.revenue(query) == RevenueSummary(records: all, query: query, now: Self.now))
            }
        }
    }

    @Test("a settling row counts as an unknown outcome once its lease has ended, and not before", arguments: Backend.all)
    func staleSettling(_ backend: Backend) async throws {
        var row = Self.plan()[5]
        (row.fate, row.claimedAt, row.reason) = (.settlingLive, Self.now - Self.lease + 10, nil)
        var old = Self.plan()[6]
        (old.fate, old.claimedAt, old.reason) = (.settlingLive, Self.now - 2 * Self.lease, nil)
        try await Self.seeded(backend, [row, old]) { store in
            let summary = try await store.revenue(RevenueQuery(from: 0, to: Self.now + 1, bucketMilliseconds: Self.day))
            #expect(summary.attention.map(\.payments) == [1])
            #expect(summary.attention.first?.oldestClaimedAt == old.claimedAt)
            #expect(summary.attention.first?.total == DecimalSum(old.amount))
            #expect(summary.outcomes == [RevenueSummary.OutcomeLine(state: .settling, reason: nil, afterSettling: true, payments: 2)])
            #expect(summary.revenue.isEmpty && summary.payers.isEmpty && summary.latency.count == 0)
        }
    }

    @Test("an empty ledger aggregates to nothing", arguments: Backend.all)
    func empty(_ backend: Backend) async throws {
        try await Self.seeded(backend, []) { store in
            let summary = try await store.revenue(RevenueQuery(from: 0, to: Self.now, bucketMilliseconds: 60_000))
            #expect(summary == RevenueSummary())
        }
    }
}

@Suite("Exact decimal sums")
struct DecimalSumTests {
    @Test("sums of random amounts up to uint256 equal BigUInt's, in text and in order")
    func againstBigUInt() {
        var random = RevenueAggregationTests.Generator(state: 7)
        var sum = DecimalSum(), reference = BigUInt(0)
        var previous = DecimalSum()
        for i in 0..<2000 {
            let digits = 1 + random.below(78)
            var text = String(1 + random.below(9))
            for _ in 1..<digits { text += String(random.below(10)) }
            if i % 100 == 0 { text = RevenueAggregationTests.uint256Max }
            let added = sum.add(text)
            #expect(added)
            reference += BigUInt(text)!
            #expect(sum.description == String(reference))
            #expect(previous < sum && !(sum < previous))
            previous = sum
        }
    }

    @Test("an amount counted n times: the same as adding it n times, up to counts over 2³²")
    func multiples() {
        for (amount, count) in [("1000", 3), (RevenueAggregationTests.uint256Max, 7), ("999999999", 5_000_000_000), ("0", 9), ("12", 0)] {
            var sum = DecimalSum("5")!
            sum.add(DecimalSum(amount)!, times: count)
            #expect(sum.description == String(BigUInt(amount)! * BigUInt(count) + 5))
        }
    }

    @Test("slices of any 64-bit size carry into the right places")
    func slices() {
        var sum = DecimalSum()
        sum.add(slice: UInt64.max, at: 0)
        sum.add(slice: 999_999_999, at: 2)
        sum.add(slice: 1, at: 8)
        let expected = BigUInt(UInt64.max) + BigUInt(999_999_999) * BigUInt(10).power(18) + BigUInt(10).power(72)
        #expect(sum.description == String(expected))
    }

    @Test("zero, leading zeros, and text that is no decimal number", arguments: ["", "-1", "1.5", "0x10", " 1", "１"])
    func refusals(_ text: String) {
        #expect(DecimalSum(text) == nil)
        #expect(DecimalSum().description == "0" && DecimalSum().isZero)
        #expect(DecimalSum("000000000000000000000042")?.description == "42")
        #expect(DecimalSum("0")?.isZero == true)
    }
}

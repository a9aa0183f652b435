import GatewayCore
import PropertyBased
import Testing
import TestScheduling

/// Rate limits and free allowances as values, on virtual time: the token bucket (refill, burst,
/// debt from other instances), the windows of free allowances, bounded memory, and how clients are
/// keyed (payer or address, IPv6 /64, trusted proxies).
@Suite("Request limits as values")
struct RequestLimitTests {
    static let ms: Int64 = 1_000_000
    static let second: Int64 = 1_000_000_000

    // MARK: Token bucket

    @Test("a bucket allows a burst, then one request per interval, and says when the next token comes")
    func burstThenRefill() {
        var table = RateLimitTable<String>(maxKeys: 100)
        let limit = RateLimit(requests: 10, per: .seconds(1), burst: 20)
        let t0: Int64 = 5 * Self.second
        for i in 0..<20 { #expect(table.take("a", limit, now: t0) == .allowed, "request \(i)") }
        #expect(table.take("a", limit, now: t0) == .limited(retryAfter: 100 * Self.ms))
        #expect(table.take("a", limit, now: t0 + 40 * Self.ms) == .limited(retryAfter: 60 * Self.ms))
        #expect(table.take("a", limit, now: t0 + 100 * Self.ms) == .allowed)
        #expect(table.take("a", limit, now: t0 + 100 * Self.ms) == .limited(retryAfter: 100 * Self.ms))
        // After a full second, ten more (not twenty: the bucket refills at the rate).
        let t1 = t0 + 1100 * Self.ms
        var allowed = 0
        for _ in 0..<30 where table.take("a", limit, now: t1) == .allowed { allowed += 1 }
        #expect(allowed == 10)
        // After the refill time of a whole burst, the bucket is full again.
        let t2 = t1 + 2 * Self.second
        allowed = 0
        for _ in 0..<30 where table.take("a", limit, now: t2) == .allowed { allowed += 1 }
        #expect(allowed == 20)
        #expect(table.tokens("a", limit, now: t2) == 0)
    }

    @Test("burst defaults to requests; a burst of one spaces every request by the interval; keys are independent")
    func burstDefaults() {
        #expect(RateLimit(requests: 7, per: .seconds(1)).burst == 7)
        var table = RateLimitTable<String>(maxKeys: 100)
        let limit = RateLimit(requests: 4, per: .seconds(1), burst: 1)
        #expect(table.take("a", limit, now: 0) == .allowed)
        #expect(table.take("a", limit, now: 0) == .limited(retryAfter: 250 * Self.ms))
        #expect(table.take("b", limit, now: 0) == .allowed)
        #expect(table.take("a", limit, now: 250 * Self.ms) == .allowed)
        #expect(table.take("a", limit, now: 499 * Self.ms) == .limited(retryAfter: 1 * Self.ms))
        // One per day, burst 3: the fourth waits a day.
        let daily = RateLimit(requests: 1, per: .seconds(86_400), burst: 3)
        for _ in 0..<3 { #expect(table.take("c", daily, now: 0) == .allowed) }
        #expect(table.take("c", daily, now: 0) == .limited(retryAfter: 86_400 * Self.second))
        #expect(daily.refillsInTime)
        #expect(!RateLimit(requests: 1, per: .seconds(86_400), burst: 367).refillsInTime)
        #expect(!RateLimit(requests: 1, per: .seconds(366 * 86_400), burst: 1_000_000).refillsInTime)
    }

    @Test("full buckets are dropped by a sweep (nothing is forgotten), partly used ones are kept")
    func sweepDropsFullBuckets() {
        var table = RateLimitTable<String>(maxKeys: 100)
        let limit = RateLimit(requests: 10, per: .seconds(1), burst: 10)
        _ = table.take("idle", limit, now: 0)
        for _ in 0..<10 { _ = table.take("busy", limit, now: 900 * Self.ms) }
        #expect(table.sweep(now: 1 * Self.second) == 1)
        #expect(table.count == 1)
        #expect(table.tokens("busy", limit, now: 1 * Self.second) == 1)
        #expect(table.evictions == 0)
    }

    @Test("a full table makes room: full buckets first, then the eighth seen longest ago; the count never passes maxKeys", .cpuHeavy)
    func keyEviction() {
        var table = RateLimitTable<Int>(maxKeys: 16)
        let limit = RateLimit(requests: 1, per: .seconds(60), burst: 2)
        for key in 0..<16 { _ = table.take(key, limit, now: Int64(key) * Self.ms) }
        #expect(table.count == 16)
        _ = table.take(100, limit, now: 20 * Self.ms)
        #expect(table.count == 15)  // 16 - 2 oldest + the new one
        #expect(table.evictions == 2)
        // Keys 0 and 1 were forgotten: they start again with a full bucket; key 2 was not.
        #expect(table.tokens(0, limit, now: 21 * Self.ms) == 2)
        #expect(table.tokens(2, limit, now: 21 * Self.ms) == 1)
        for key in 200..<10_000 { _ = table.take(key, limit, now: Int64(key) * Self.ms) }
        #expect(table.count <= 16)
        // Once the buckets are full again they go first, and no live count is forgotten.
        let evicted = table.evictions
        let later = 10_000 * Self.ms + 2 * 60 * Self.second
        _ = table.take(-1, limit, now: later)
        _ = table.take(-2, limit, now: later)
        #expect(table.evictions == evicted)
        #expect(table.count == 2)
    }

    // MARK: Shared through a store

    /// Instances' tables sharing buckets through a dictionary, as the counters table does.
    struct Cluster {
        var tables: [RateLimitTable<String>]
        var shared: [String: Int64] = [:]

        init(instances: Int = 2) {
            tables = (0..<instances).map { _ in RateLimitTable<String>(maxKeys: 100, tracksSync: true) }
        }

        mutating func sync(_ i: Int, limit: RateLimit, now: Int64) {
            for (key, spend) in tables[i].drainSync(now: now) {
                let tat = max(shared[key] ?? 0, spend.since) + Int64(spend.taken) * limit.interval
                shared[key] = tat
                tables[i].synced(key, taken: spend.taken, sharedTAT: tat, limit: limit, now: now)
            }
        }
    }

    @Test("an instance that sees a client learns at its next sync what the others took: its bucket becomes as empty as the shared one")
    func sharedBucket() {
        let hour = 3600 * Self.second
        let limit = RateLimit(requests: 1, per: .seconds(3600), burst: 3)
        var cluster = Cluster()
        for _ in 0..<3 { #expect(cluster.tables[0].take("c", limit, now: 0) == .allowed) }
        #expect(cluster.tables[0].take("c", limit, now: 0) == .limited(retryAfter: hour))
        cluster.sync(0, limit: limit, now: 10 * Self.ms)
        #expect(cluster.shared["c"] == 3 * hour)
        // Instance 1 has not seen the client: its own bucket serves one, and its sync learns the rest.
        #expect(cluster.tables[1].take("c", limit, now: 20 * Self.ms) == .allowed)
        cluster.sync(1, limit: limit, now: 30 * Self.ms)
        #expect(cluster.shared["c"] == 4 * hour)
        #expect(cluster.tables[1].take("c", limit, now: 40 * Self.ms) == .limited(retryAfter: 2 * hour - 40 * Self.ms))
        #expect(cluster.tables[1].tokens("c", limit, now: 40 * Self.ms) == -1)
    }

    @Test("a client spreading 100 requests a second over two instances for 20 s gets about the rate, not twice it")
    func sharedRateOverTime() {
        let limit = RateLimit(requests: 10, per: .seconds(1), burst: 10)
        var cluster = Cluster()
        var allowed = 0
        var now: Int64 = 0
        var i = 0
        while now < 20 * Self.second {
            if cluster.tables[i % 2].take("c", limit, now: now) == .allowed { allowed += 1 }
            i += 1
            now += 10 * Self.ms
            if now % (500 * Self.ms) == 0 {
                cluster.sync(0, limit: limit, now: now)
                cluster.sync(1, limit: limit, now: now)
            }
        }
        // The rate (200 in 20 s) and the burst, plus at most what the second instance allows
        // before its first sync; unshared, the two would allow 420.
        #expect(allowed >= 200 && allowed <= 200 + 2 * 10, "allowed \(allowed)")
    }

    @Test("one instance sharing its bucket decides exactly as without sharing (the shared bucket never holds more than it took)", arguments: [1, 2, 3])
    func sharingAloneChangesNothing(seed: UInt64) {
        var generator = Xoshiro(seed: (seed, seed &* 31, seed &* 17, 7))
        let limit = RateLimit(requests: 5, per: .seconds(1), burst: 4)
        var cluster = Cluster(instances: 1)
        var alone = RateLimitTable<String>(maxKeys: 100)
        var now: Int64 = 0
        for step in 0..<2000 {
            now += Int64.random(in: 0...(400 * Self.ms), using: &generator)
            let key = ["a", "b"].randomElement(using: &generator)!
            #expect(cluster.tables[0].take(key, limit, now: now) == alone.take(key, limit, now: now), "step \(step)")
            if step % 7 == 0 { cluster.sync(0, limit: limit, now: now) }
        }
    }

    @Test("debt stops one burst below empty; a refused request is read at the next sync; a failed sync keeps the tokens and the bucket")
    func syncEdges() {
        let limit = RateLimit(requests: 10, per: .seconds(1), burst: 10)
        var table = RateLimitTable<String>(maxKeys: 100, tracksSync: true)
        _ = table.take("k", limit, now: 0)
        var batch = table.drainSync(now: 5 * Self.ms)
        #expect(batch.count == 1 && batch[0].spend == .init(taken: 1, since: 0))
        table.synced("k", taken: 1, sharedTAT: 100 * Self.ms, limit: limit, now: 5 * Self.ms)
        #expect(table.tokens("k", limit, now: 5 * Self.ms) == 9)
        // Thirty more elsewhere: debt, but never more than one burst.
        _ = table.take("k", limit, now: 10 * Self.ms)
        batch = table.drainSync(now: 10 * Self.ms)
        table.synced("k", taken: 1, sharedTAT: 3200 * Self.ms, limit: limit, now: 10 * Self.ms)
        #expect(table.tokens("k", limit, now: 10 * Self.ms) == -10)
        #expect(table.take("k", limit, now: 10 * Self.ms) == .limited(retryAfter: 1100 * Self.ms))
        // A refused request still counts as seen: the key is read at the next sync.
        #expect(table.drainSync(now: 20 * Self.ms).map(\.spend) == [.init(taken: 0, since: 20 * Self.ms)])
        // A reload that removed the limit: only the count is noted.
        table.synced("k", taken: 0, sharedTAT: 100 * Self.second, limit: nil, now: 20 * Self.ms)
        #expect(table.tokens("k", limit, now: 20 * Self.ms) == -10)
        // A failed sync: the tokens stay unshared, the bucket is kept even when full, and come again.
        _ = table.take("n", limit, now: 10 * Self.second)
        _ = table.drainSync(now: 10 * Self.second)
        table.syncFailed("n")
        #expect(table.sweep(now: 100 * Self.second) == 1)  // "k" went, "n" stays
        #expect(table.drainSync(now: 100 * Self.second).map(\.spend) == [.init(taken: 1, since: 10 * Self.second)])
        // Without sharing nothing is tracked.
        var local = RateLimitTable<String>(maxKeys: 10)
        _ = local.take("x", limit, now: 0)
        #expect(local.drainSync(now: 0).isEmpty)
    }

    // MARK: Free allowances

    @Test("an allowance counts per window aligned on the epoch, and starts again in the next window")
    func allowanceWindows() {
        var table = FreeAllowanceTable<String>(maxKeys: 10)
        let daily = FreeAllowance(requests: 3, per: 86_400)
        let day: UInt64 = 20_000 * 86_400
        #expect(table.take("a", daily, now: day + 10) == .free(remaining: 2))
        #expect(table.take("a", daily, now: day + 20) == .free(remaining: 1))
        #expect(table.take("b", daily, now: day + 20) == .free(remaining: 2))
        #expect(table.take("a", daily, now: day + 86_399) == .free(remaining: 0))
        #expect(table.take("a", daily, now: day + 86_399) == .exhausted)
        #expect(table.take("a", daily, now: day + 86_400) == .free(remaining: 2))
        // A reload changing the window starts the count again.
        #expect(table.take("b", FreeAllowance(requests: 3, per: 3600), now: day + 30) == .free(remaining: 2))
        #expect(daily.windowStart(now: day + 5) == day)
    }

    @Test("a full allowance table drops ended windows, and refuses a new client rather than forget a live count")
    func allowanceMemoryBound() {
        var table = FreeAllowanceTable<Int>(maxKeys: 2)
        let hourly = FreeAllowance(requests: 1, per: 3600)
        #expect(table.take(1, hourly, now: 0) == .free(remaining: 0))
        #expect(table.take(2, hourly, now: 0) == .free(remaining: 0))
        #expect(table.take(3, hourly, now: 10) == .full)
        #expect(table.take(1, hourly, now: 10) == .exhausted)
        #expect(table.take(3, hourly, now: 3600) == .free(remaining: 0))
        #expect(table.count == 1)
    }

    @Test("the cache of used-up allowances: exact within the window, gone after it, ignored for a larger allowance, bounded")
    func exhaustedCache() {
        var cache = FreeAllowanceTable<Int>(maxKeys: 8)
        let daily = FreeAllowance(requests: 3, per: 86_400)
        #expect(!cache.isExhausted(1, daily, now: 100))
        cache.markExhausted(1, daily, now: 100)
        #expect(cache.isExhausted(1, daily, now: 86_399))
        #expect(!cache.isExhausted(1, daily, now: 86_400))
        #expect(!cache.isExhausted(1, FreeAllowance(requests: 4, per: 86_400), now: 100))
        for key in 2...20 { cache.markExhausted(key, daily, now: 100) }
        #expect(cache.count <= 8)
        #expect(cache.evictions > 0)
        #expect(cache.isExhausted(20, daily, now: 100))
    }

    // MARK: Keys

    static func key(_ text: String, v4: Int = 32, v6: Int = 64) -> ClientKey {
        .address(MaskedAddress(bytes: IPRange.parseAddress(text)!, ipv4Prefix: v4, ipv6Prefix: v6)!)
    }

    @Test("an IPv6 /64 is one client, an IPv4 address another; prefixes are configurable; mapped IPv4 is IPv4")
    func addressGrouping() {
        #expect(Self.key("2001:db8:1:2::1") == Self.key("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        #expect(Self.key("2001:db8:1:2::1") != Self.key("2001:db8:1:3::1"))
        #expect(Self.key("192.0.2.7") != Self.key("192.0.2.8"))
        #expect(Self.key("192.0.2.7", v4: 24) == Self.key("192.0.2.200", v4: 24))
        #expect(Self.key("192.0.2.7", v4: 24) != Self.key("192.0.3.7", v4: 24))
        #expect(Self.key("2001:db8:1:2::1", v6: 48) == Self.key("2001:db8:1:9::1", v6: 48))
        #expect(Self.key("2001:db8:1:2::1", v6: 128) != Self.key("2001:db8:1:2::2", v6: 128))
        #expect(Self.key("2001:db8:1:2:3:4:5:6", v6: 96) == Self.key("2001:db8:1:2:3:4:ffff:6", v6: 96))
        #expect(Self.key("2001:db8:1:2:3:4:5:6", v6: 96) != Self.key("2001:db8:1:2:3:5:5:6", v6: 96))
        #expect(Self.key("::ffff:192.0.2.7") == Self.key("192.0.2.7"))
        #expect(Self.key("192.0.2.7").description == "192.0.2.7/32")
        #expect(Self.key("192.0.2.7", v4: 24).description == "192.0.2.0/24")
        #expect(Self.key("2001:db8:1:2:aaaa::1").description == "2001:db8:1:2:0:0:0:0/64")
    }

    @Test("a payer key is the address in lower case and never equals an address key")
    func payerKeys() {
        let payer = ClientKey.payer(address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
        #expect(payer == .payer(address: "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"))
        #expect(payer.description == "0x70997970c51812dc3a010c7d01b50e0d17dc79c8")
        #expect(payer != Self.key("192.0.2.7"))
        var table = RateLimitTable<ClientKey>(maxKeys: 10)
        let limit = RateLimit(requests: 1, per: .seconds(60))
        #expect(table.take(payer, limit, now: 0) == .allowed)
        #expect(table.take(Self.key("192.0.2.7"), limit, now: 0) == .allowed)
        #expect(table.take(.payer(address: "0x70997970C51812DC3A010C7D01B50E0D17DC79C8"), limit, now: 0) != .allowed)
    }

    @Test("the client address: the peer, or through trusted proxies the rightmost X-Forwarded-For entry that is not one")
    func clientAddress() {
        let trusted = [IPRange("10.0.0.0/8")!, IPRange("2001:db8:ffff::/48")!]
        func resolve(_ peer: String, _ xff: [String]) -> String? {
            ClientAddress.resolve(peer: peer, forwardedFor: xff, trusted: trusted).map { bytes in
                MaskedAddress(bytes: bytes, ipv4Prefix: 32, ipv6Prefix: 128)!.description
            }
        }
        #expect(resolve("198.51.100.1", ["203.0.113.9"]) == "198.51.100.1/32")  // untrusted peer: its header is ignored
        #expect(resolve("10.0.0.1", ["203.0.113.9"]) == "203.0.113.9/32")
        #expect(resolve("10.0.0.1", ["1.1.1.1, 203.0.113.9, 10.0.0.2"]) == "203.0.113.9/32")  // spoofed left entry ignored
        #expect(resolve("10.0.0.1", ["1.1.1.1", "203.0.113.9, 10.0.0.2"]) == "203.0.113.9/32")  // several fields
        #expect(resolve("10.0.0.1", ["10.0.0.3, 10.0.0.2"]) == "10.0.0.3/32")  // only proxies: the leftmost
        #expect(resolve("10.0.0.1", ["203.0.113.9, garbage"]) == "10.0.0.1/32")  // the hop before the garbage
        #expect(resolve("10.0.0.1", ["203.0.113.9:4711"]) == "203.0.113.9/32")
        #expect(resolve("10.0.0.1", ["[2001:db8::5]:443"]) == "2001:db8:0:0:0:0:0:5/128")
        #expect(resolve("2001:db8:ffff::1", ["2001:db8::7"]) == "2001:db8:0:0:0:0:0:7/128")
        #expect(resolve("10.0.0.1", []) == "10.0.0.1/32")
        #expect(ClientAddress.resolve(peer: nil, forwardedFor: [], trusted: trusted) == nil)
        #expect(ClientAddress.resolve(peer: "10.0.0.1", forwardedFor: ["203.0.113.9"], trusted: []) == IPRange.parseAddress("10.0.0.1"))
    }
}

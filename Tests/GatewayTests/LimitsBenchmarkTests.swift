import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayStoragePostgres
import GatewayStorageSQLite
import Logging
import NIOCore
import NIOPosix
import Testing

/// A benchmark, not a timed test: with `X402_LIMITS_BENCH=1`, prints what a limit costs per request
/// (the rate-limit check and the in-memory allowance count, one and two threads, 10 000 clients),
/// one allowance count in SQLite and in PostgreSQL (`X402_TEST_POSTGRES_URL`), and one sync round
/// of 1 000 buckets in PostgreSQL. Numbers depend on the build (`-c release` for real ones) and on
/// the machine's load; nothing is asserted but that every call was counted.
@Suite("Limits cost (X402_LIMITS_BENCH=1)", .serialized, .enabled(if: ProcessInfo.processInfo.environment["X402_LIMITS_BENCH"] != nil))
struct LimitsBenchmarkTests {
    static let clients: [ClientKey] = (0..<10_000).map { (i: Int) -> ClientKey in
        let bytes: [UInt8] = [10, 0, UInt8(truncatingIfNeeded: i >> 8), UInt8(truncatingIfNeeded: i)]
        return .address(MaskedAddress(bytes: bytes, ipv4Prefix: 32, ipv6Prefix: 64)!)
    }

    static func limiter(store: (any LimitCounterStore)? = nil) -> RequestLimiter {
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        return RequestLimiter(store: store, maxKeys: 100_000, metrics: GatewayMetrics(), logger: logger)
    }

    static func report(_ what: String, calls: Int, _ elapsed: Duration) {
        let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        print("limits bench: \(what): \(calls) calls in \(elapsed), \(String(format: "%.0f", nanoseconds / Double(calls))) ns per call")
    }

    @Test("the rate-limit check and the in-memory allowance, one and two threads")
    func inMemory() async throws {
        let limiter = Self.limiter()
        let limit = RateLimit(requests: 1000, per: .seconds(1), burst: 1000)
        let allowance = FreeAllowance(requests: 1_000_000, per: 86_400)
        let calls = 1_000_000
        var allowed = 0
        var started = ContinuousClock.now
        for i in 0..<calls where limiter.takeRate(route: "GET /free/*", client: Self.clients[i % 10_000], limit: limit) == .allowed {
            allowed += 1
        }
        Self.report("takeRate, 1 thread", calls: calls, ContinuousClock.now - started)
        #expect(allowed > 0)
        started = ContinuousClock.now
        var free = 0
        for i in 0..<calls where limiter.takeFree(route: "GET /trial/*", client: Self.clients[i % 10_000], allowance: allowance, now: 1_800_000_000) == .free {
            free += 1
        }
        Self.report("takeFree in memory, 1 thread", calls: calls, ContinuousClock.now - started)
        #expect(free == calls)
        started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for thread in 0..<2 {
                group.addTask {
                    try await NIOThreadPool.singleton.runIfActive {
                        for i in 0..<calls / 2 {
                            _ = limiter.takeRate(route: "GET /free/*", client: Self.clients[(i * 2 + thread) % 10_000], limit: limit)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        Self.report("takeRate, 2 threads", calls: calls, ContinuousClock.now - started)
    }

    static func countFree(_ limiter: RequestLimiter, _ what: String, calls: Int) async {
        let allowance = FreeAllowance(requests: 1_000_000, per: 86_400)
        let started = ContinuousClock.now
        var free = 0
        for i in 0..<calls {
            let result = await limiter.takeFreeFromStore(route: "GET /trial/*", client: Self.clients[i % 10_000], allowance: allowance,
                                                         now: 1_800_000_000)
            if result == .free { free += 1 }
        }
        report(what, calls: calls, ContinuousClock.now - started)
        #expect(free == calls)
    }

    @Test("one allowance count in SQLite (synchronous = FULL: one fsync each)")
    func sqlite() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("x402-limits-bench-\(UUID().uuidString).db").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let database = try SQLiteDatabase(path: path)
        _ = try await SQLPaymentStore(database: database, settings: StoreSettings(instanceID: "bench"))
        await Self.countFree(Self.limiter(store: SQLLimitCounters(database: database, shared: false)), "takeFreeFromStore, SQLite", calls: 2000)
    }

    @Test("one allowance count and one sync round of 1 000 buckets in PostgreSQL")
    func postgres() async throws {
        guard let server = SharedLimitsPostgresTests.server else { return }
        try await SharedLimitsPostgresTests.withFreshDatabase(server) { url in
            try await PostgresDatabase.withDatabase(url: url, poolSize: 4) { database in
                _ = try await SQLPaymentStore(database: database, settings: StoreSettings(instanceID: "bench"))
                let counters = SQLLimitCounters(database: database, shared: true)
                let limiter = Self.limiter(store: counters)
                await Self.countFree(limiter, "takeFreeFromStore, PostgreSQL", calls: 2000)
                let limit = RateLimit(requests: 1000, per: .seconds(1))
                for client in Self.clients.prefix(1000) { _ = limiter.takeRate(route: "GET /free/*", client: client, limit: limit) }
                let started = ContinuousClock.now
                await limiter.sync(["GET /free/*": limit])
                Self.report("one sync round of 1 000 buckets, PostgreSQL", calls: 1, ContinuousClock.now - started)
            }
        }
    }
}

import Foundation
import GatewayStorage
import GatewayStoragePostgres
import GatewayStorageSQLite
import Testing

/// The counters of rate limits and free allowances (`x402_limit_counters`, migration 3) on SQLite
/// and PostgreSQL (when `X402_TEST_POSTGRES_URL` is set), two instances on one database: allowance
/// takes are atomic, bucket spends follow the token bucket, expired rows are purged.
@Suite("Limit counters on the SQL backends")
struct LimitCounterStoreTests {
    static var backends: [Backend] { [.sqlite] + PostgresBackend.all }

    /// The counters of `store`'s database, as the gateway opens them.
    static func counters(_ store: any PaymentStore) throws -> any LimitCounterStore {
        if let store = store as? SQLPaymentStore<SQLiteDatabase> { return SQLLimitCounters(database: store.database, shared: false) }
        if let store = store as? SQLPaymentStore<PostgresDatabase> { return SQLLimitCounters(database: store.database, shared: true) }
        throw StorageError(.unavailable, "not a SQL store")
    }

    /// Two instances' counters on one fresh database.
    static func withInstances(_ backend: Backend, _ body: ([any LimitCounterStore]) async throws -> Void) async throws {
        let shared = try await backend.makeShared()
        do {
            let stores = [try await shared.open(StoreSettings(instanceID: "a")), try await shared.open(StoreSettings(instanceID: "b"))]
            try await body(try stores.map(counters))
        } catch {
            await shared.cleanup()
            throw error
        }
        await shared.cleanup()
    }

    static let day = LimitCounter(scope: "free/86400/GET /a", client: "192.0.2.7/32", window: 1_800_000_000 / 86_400 * 86_400,
                                  expiresAt: 1_800_100_000_000)

    @Test("of 40 concurrent takes from two instances on an allowance of 3, exactly 3 are counted (1, 2, 3)", arguments: backends)
    func takesAreAtomic(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { instances in
            let counts = try await withThrowingTaskGroup(of: Int?.self, returning: [Int?].self) { group in
                for i in 0..<40 { group.addTask { try await instances[i % 2].takeOne(Self.day, limit: 3) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(counts.compactMap { $0 }.sorted() == [1, 2, 3])
            #expect(try await instances[1].takeOne(Self.day, limit: 3) == nil)
            // A larger allowance (a reload) counts on from there; another window, client or scope starts at one.
            #expect(try await instances[0].takeOne(Self.day, limit: 4) == 4)
            var next = Self.day
            next.window += 86_400
            #expect(try await instances[0].takeOne(next, limit: 3) == 1)
            var other = Self.day
            other.client = "192.0.2.8/32"
            #expect(try await instances[1].takeOne(other, limit: 3) == 1)
            other.scope = "free/3600/GET /a"
            #expect(try await instances[1].takeOne(other, limit: 3) == 1)
        }
    }

    @Test("a bucket spend: since + cost at first, then max(old + cost, since + cost); many buckets in one call", arguments: backends)
    func bucketSpends(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { instances in
            let bucket = BucketKey(scope: "rate/GET /a", client: "0xabc")
            let t: Int64 = 1_800_000_000_000_000_000
            #expect(try await instances[0].spend([BucketSpend(bucket: bucket, since: t, cost: 3_000)]) == [bucket: t + 3_000])
            // Spent from the other instance, while the bucket is not full: the cost adds to it.
            #expect(try await instances[1].spend([BucketSpend(bucket: bucket, since: t + 1_000, cost: 1_000)]) == [bucket: t + 4_000])
            // Full again by then: counted from `since`.
            #expect(try await instances[0].spend([BucketSpend(bucket: bucket, since: t + 10_000, cost: 500)]) == [bucket: t + 10_500])
            // Only read (nothing spent here): its state as it is.
            #expect(try await instances[1].spend([BucketSpend(bucket: bucket, since: t + 10_100, cost: 0)]) == [bucket: t + 10_500])
            // 1 200 buckets in one call (more than one statement's worth), concurrently from both instances.
            let many = (0..<1200).map { BucketSpend(bucket: BucketKey(scope: "rate/GET /b", client: "c\($0)"), since: t, cost: 7) }
            async let first = instances[0].spend(many)
            async let second = instances[1].spend(many)
            let (a, b) = try await (first, second)
            #expect(a.count == 1200 && b.count == 1200)
            let finals = many.map { max(a[$0.bucket]!, b[$0.bucket]!) }
            #expect(finals.allSatisfy { $0 == t + 14 })
        }
    }

    @Test("purge deletes the rows that expired, and only those", arguments: backends)
    func purge(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { instances in
            var old = Self.day
            old.expiresAt = 1_000
            var young = Self.day
            young.client = "192.0.2.9/32"
            young.expiresAt = 3_000
            _ = try await instances[0].takeOne(old, limit: 3)
            _ = try await instances[0].takeOne(young, limit: 3)
            let bucket = BucketKey(scope: "rate/GET /a", client: "x")
            _ = try await instances[0].spend([BucketSpend(bucket: bucket, since: 1_000_000_000, cost: 1_000_000_000)])  // expires at 62 000 ms
            try await instances[1].purge(now: 2_000)
            #expect(try await instances[0].takeOne(old, limit: 3) == 1)  // gone: counted from one again
            #expect(try await instances[0].takeOne(young, limit: 3) == 2)
            #expect(try await instances[0].spend([BucketSpend(bucket: bucket, since: 0, cost: 0)]) == [bucket: 2_000_000_000])
            try await instances[1].purge(now: 62_000)
            #expect(try await instances[0].spend([BucketSpend(bucket: bucket, since: 5, cost: 0)]) == [bucket: 5])
        }
    }
}

/// The state of rate limits and free allowances shared through the database (SQLite for one
/// instance, PostgreSQL for several), in `x402_limit_counters`: one row per scope (a route's
/// allowance or rate limit), client and window, which expires.
///
/// Contract, kept by every backend:
/// - ``takeOne(_:limit:)`` is atomic across every process sharing the store: of any number of
///   concurrent takes on one allowance row with `limit`, exactly `limit` succeed (minus what was
///   counted before), and a take that fails counts nothing.
/// - ``spend(_:)`` applies each spend to its shared token bucket atomically and returns each
///   bucket's state after it.
/// - Rows whose `expiresAt` has passed are deleted by ``purge(now:)``: an allowance's row after its
///   window, a bucket's once it is full again (plus a minute).
public protocol LimitCounterStore: Sendable {
    /// Whether several instances share the store (PostgreSQL): rate limits are then synchronised
    /// through it. One instance (SQLite) keeps its rate limits in memory, and only its allowances here.
    var isShared: Bool { get }
    /// Counts one request in the allowance row `counter` unless `limit` are counted already.
    /// Returns the count after it, or nil when the limit had been reached (nothing counted).
    func takeOne(_ counter: LimitCounter, limit: Int) async throws -> Int?
    /// Spends tokens from shared buckets: each bucket's full-again time becomes
    /// `max(itself, since) + cost`. Returns each bucket's full-again time after (unix ns), by key.
    func spend(_ spends: [BucketSpend]) async throws -> [BucketKey: Int64]
    /// Deletes the rows that expired at or before `now` (unix ms).
    func purge(now: Int64) async throws
}

/// One allowance row of `x402_limit_counters`: requests counted in a window.
public struct LimitCounter: Sendable, Hashable {
    /// `free/<window seconds>/<route id>`.
    public var scope: String
    /// A client address with its prefix (``ClientKey`` in GatewayCore).
    public var client: String
    /// The window's start (unix seconds).
    public var window: Int64
    /// When the row may be deleted (unix ms).
    public var expiresAt: Int64

    public init(scope: String, client: String, window: Int64, expiresAt: Int64) {
        self.scope = scope
        self.client = client
        self.window = window
        self.expiresAt = expiresAt
    }
}

/// A shared token bucket: `rate/<route id>` and a client (a payer address, or an address with its prefix).
public struct BucketKey: Sendable, Hashable {
    public var scope: String
    public var client: String

    public init(scope: String, client: String) {
        self.scope = scope
        self.client = client
    }
}

/// Tokens spent from a shared bucket: `cost` nanoseconds (tokens × interval) from `since` (unix ns,
/// when the first was taken).
public struct BucketSpend: Sendable, Equatable {
    public var bucket: BucketKey
    public var since: Int64
    public var cost: Int64

    public init(bucket: BucketKey, since: Int64, cost: Int64) {
        self.bucket = bucket
        self.since = since
        self.cost = cost
    }
}

/// The counters over any ``SQLDatabase`` (the ledger's database: the table comes with its
/// migrations).
public final class SQLLimitCounters<Database: SQLDatabase>: LimitCounterStore {
    public let database: Database
    public let isShared: Bool

    public init(database: Database, shared: Bool) {
        self.database = database
        self.isShared = shared
    }

    public func takeOne(_ counter: LimitCounter, limit: Int) async throws -> Int? {
        try await database.query(LimitSQL.takeOne(counter, limit: limit)).first?.first?.integer.map { Int($0) }
    }

    public func spend(_ spends: [BucketSpend]) async throws -> [BucketKey: Int64] {
        var out: [BucketKey: Int64] = [:]
        var start = spends.startIndex
        while start < spends.endIndex {
            let end = min(start + LimitSQL.bucketsPerStatement, spends.endIndex)
            for row in try await database.query(LimitSQL.spend(spends[start..<end])) {
                guard row.count == 3, let scope = row[0].text, let client = row[1].text, let tat = row[2].integer
                else { throw StorageError(.corrupt, "x402_limit_counters returned an unexpected row") }
                out[BucketKey(scope: scope, client: client)] = tat
            }
            start = end
        }
        return out
    }

    public func purge(now: Int64) async throws {
        _ = try await database.query(LimitSQL.purge(now: now))
    }
}

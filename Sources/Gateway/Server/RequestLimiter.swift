import Foundation
import GatewayCore
import GatewayStorage
import Logging
import NIOCore
import Synchronization

/// The routes' rate limits and free allowances, for the whole process (kept across reloads: a
/// bucket or a count belongs to a route id and a client, whatever the configuration serving).
///
/// - Rate limits are always decided here, in memory, without I/O: a token bucket per (route,
///   client) in ``RateLimitTable``s, split in shards under their own locks. With a shared store
///   (PostgreSQL) each instance adds the tokens it handed out to the client's bucket in the table
///   every `clientLimits.sync`, and makes its own bucket at least as empty as the shared one (see
///   ``RateLimitTable``): no request waits on the database. If the store cannot be reached the
///   buckets go on alone (each instance then keeps the rate by itself).
/// - Free allowances are counted here when there is no database (``FreeAllowanceTable``, bounded:
///   when full a new client gets no free request), else in the database, one atomic statement per
///   free request (``LimitCounterStore/takeOne(_:limit:)``), with the allowances known to be used up
///   cached here until their window ends. A count that cannot be recorded serves nothing free.
package final class RequestLimiter: Sendable {
    package struct Key: Hashable, Sendable {
        var route: String
        var client: ClientKey
    }

    package enum RateCheck: Equatable, Sendable {
        case allowed
        /// Answer 429 with `Retry-After` in whole seconds (at least 1).
        case limited(retryAfter: Int)
    }

    package enum FreeCheck: Equatable, Sendable {
        /// Counted: forward it without a payment.
        case free
        /// Used up in this window: the 402.
        case exhausted
        /// Not counted (the store failed, or too many clients in memory): the 402, fail closed.
        case unavailable
        /// Ask the store (``takeFreeFromStore(route:client:allowance:now:)``).
        case askStore
    }

    private static let shards = 16
    private let rate: [Shard<RateLimitTable<Key>>]
    /// The counts (no store), or the allowances known to be used up (with a store).
    private let free: [Shard<FreeAllowanceTable<Key>>]
    let store: (any LimitCounterStore)?
    private let metrics: GatewayMetrics
    private let logger: Logger
    /// Nanoseconds of a monotonic clock.
    private let nanoseconds: @Sendable () -> Int64
    /// Unix nanoseconds (shared buckets are kept in wall-clock time, the same on every instance).
    private let wallNanoseconds: @Sendable () -> Int64
    /// The last store failure logged (unix seconds): at most one line a minute.
    private let lastFailureLogged = Atomic<Int64>(0)

    package init(store: (any LimitCounterStore)?, maxKeys: Int, metrics: GatewayMetrics, logger: Logger,
                 nanoseconds: @escaping @Sendable () -> Int64 = { Int64(NIODeadline.now().uptimeNanoseconds) },
                 wallNanoseconds: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1_000_000_000) }) {
        let perShard = Self.perShard(maxKeys)
        let shared = store?.isShared ?? false
        self.rate = (0..<Self.shards).map { _ in Shard(RateLimitTable(maxKeys: perShard, tracksSync: shared)) }
        self.free = (0..<Self.shards).map { _ in Shard(FreeAllowanceTable(maxKeys: perShard)) }
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.nanoseconds = nanoseconds
        self.wallNanoseconds = wallNanoseconds
    }

    private static func perShard(_ maxKeys: Int) -> Int { max(1, maxKeys / shards) }

    private func shard(_ key: Key) -> Int { key.hashValue & (Self.shards - 1) }

    // MARK: Decisions

    /// Takes a token for `client` on `route` under `limit`.
    package func takeRate(route: String, client: ClientKey, limit: RateLimit) -> RateCheck {
        let key = Key(route: route, client: client)
        let now = nanoseconds()
        switch rate[shard(key)].withLock({ $0.take(key, limit, now: now) }) {
        case .allowed: return .allowed
        case .limited(let retryAfter): return .limited(retryAfter: Int(max(1, (retryAfter + 999_999_999) / 1_000_000_000)))
        }
    }

    /// Counts a free request of `client` on `route` at `now` (unix seconds), or says to ask the store.
    package func takeFree(route: String, client: ClientKey, allowance: FreeAllowance, now: UInt64) -> FreeCheck {
        let key = Key(route: route, client: client)
        if store != nil {
            return free[shard(key)].withLock { $0.isExhausted(key, allowance, now: now) } ? .exhausted : .askStore
        }
        switch free[shard(key)].withLock({ $0.take(key, allowance, now: now) }) {
        case .free: return .free
        case .exhausted: return .exhausted
        case .full: return .unavailable
        }
    }

    /// Counts a free request in the store. Fails closed: a count that cannot be recorded is `.unavailable`.
    package func takeFreeFromStore(route: String, client: ClientKey, allowance: FreeAllowance, now: UInt64) async -> FreeCheck {
        guard let store else { return .unavailable }
        let key = Key(route: route, client: client)
        let window = allowance.windowStart(now: now)
        // Kept a minute past the window's end: an instance whose clock is a little behind still finds it.
        let counter = LimitCounter(scope: "free/\(allowance.per)/\(route)", client: client.description, window: Int64(window),
                                   expiresAt: Int64(window + allowance.per) * 1000 + 60_000)
        do {
            let count = try await store.takeOne(counter, limit: allowance.requests)
            if count == nil || count == allowance.requests {
                free[shard(key)].withLock { $0.markExhausted(key, allowance, now: now) }
            }
            return count == nil ? .exhausted : .free
        } catch {
            metrics.limitStoreError(operation: "free")
            logFailure("free allowance not counted: the store failed; no free request is served without its count", error, now: now)
            return .unavailable
        }
    }

    private func logFailure(_ message: Logger.Message, _ error: any Error, now: UInt64) {
        let last = lastFailureLogged.load(ordering: .relaxed)
        guard Int64(now) - last >= 60, lastFailureLogged.compareExchange(expected: last, desired: Int64(now), ordering: .relaxed).exchanged
        else { return }
        logger.error(message, metadata: ["error": "\(error)"])
    }

    // MARK: Background work

    /// The routes' current limits and the client settings, read from the configuration serving.
    package struct Settings: Sendable {
        var clientLimits: ClientLimitsConfig
        var rateLimits: [String: RateLimit]
    }

    /// Until cancelled: shares rate-limit counts through a shared store every `clientLimits.sync`,
    /// drops full buckets and ended windows every few seconds (reporting the tables' sizes), and
    /// purges expired rows from the store every minute. `clock`: unix seconds.
    package func run(settings: @escaping @Sendable () -> Settings, clock: @escaping @Sendable () -> UInt64) async throws {
        var lastSweep = nanoseconds()
        var lastPurge: UInt64 = 0
        while true {
            let current = settings()
            let shared = store?.isShared ?? false
            try await Task.sleep(for: shared ? current.clientLimits.sync : .seconds(1))
            if shared { await sync(current.rateLimits) }
            let now = nanoseconds()
            if now - lastSweep >= 5_000_000_000 {
                lastSweep = now
                sweep(maxKeys: current.clientLimits.maxKeys, now: now, unix: clock())
            }
            if let store, clock() >= lastPurge + 60 {
                lastPurge = clock()
                do {
                    try await store.purge(now: Int64(lastPurge) * 1000)
                } catch {
                    metrics.limitStoreError(operation: "purge")
                    logFailure("expired limit counters could not be purged", error, now: lastPurge)
                }
            }
        }
    }

    /// Adds the tokens taken here since the last round to the shared buckets and makes the
    /// buckets here at least as empty as the shared ones (which hold every instance's tokens).
    package func sync(_ limits: [String: RateLimit]) async {
        guard let store, store.isShared else { return }
        let now = nanoseconds()
        let offset = wallNanoseconds() - now  // this table's time → unix ns
        var batch: [(key: Key, spend: RateLimitTable<Key>.Spend)] = []
        for table in rate { batch += table.withLock { $0.drainSync(now: now) } }
        guard !batch.isEmpty else { return }
        let spends = batch.map { entry in
            BucketSpend(bucket: BucketKey(scope: "rate/\(entry.key.route)", client: entry.key.client.description),
                        since: entry.spend.since + offset, cost: Int64(entry.spend.taken) * (limits[entry.key.route]?.interval ?? 0))
        }
        do {
            let shared = try await store.spend(spends)
            let done = nanoseconds()
            for (entry, spend) in zip(batch, spends) {
                rate[shard(entry.key)].withLock { table in
                    if let tat = shared[spend.bucket] {
                        table.synced(entry.key, taken: entry.spend.taken, sharedTAT: tat - offset, limit: limits[entry.key.route], now: done)
                    } else {
                        table.syncFailed(entry.key)
                    }
                }
            }
        } catch {
            for entry in batch { rate[shard(entry.key)].withLock { $0.syncFailed(entry.key) } }
            metrics.limitStoreError(operation: "sync")
            logFailure("rate limits not shared this round: the store failed; each instance keeps its own buckets meanwhile", error,
                       now: UInt64(max(0, (now + offset) / 1_000_000_000)))
        }
    }

    /// Drops full buckets and ended windows, applies `maxKeys`, reports sizes and evictions.
    package func sweep(maxKeys: Int, now: Int64, unix: UInt64) {
        let perShard = Self.perShard(maxKeys)
        var rateKeys = 0, freeKeys = 0, rateEvictions = 0, freeEvictions = 0
        for table in rate {
            table.withLock { table in
                table.maxKeys = perShard
                table.sweep(now: now)
                rateKeys += table.count
                rateEvictions += table.evictions
            }
        }
        for table in free {
            table.withLock { table in
                table.maxKeys = perShard
                table.sweep(now: unix)
                freeKeys += table.count
                freeEvictions += table.evictions
            }
        }
        metrics.limitKeys(table: "rate", count: rateKeys)
        metrics.limitKeys(table: "free", count: freeKeys)
        let (newRate, newFree) = reportedEvictions.withLock { reported in
            defer { reported = (rateEvictions, freeEvictions) }
            return (rateEvictions - reported.rate, freeEvictions - reported.free)
        }
        metrics.limitEvictions(table: "rate", count: newRate)
        metrics.limitEvictions(table: "free", count: newFree)
    }

    /// The tables' evictions reported so far (they count from the start).
    private let reportedEvictions = Mutex((rate: 0, free: 0))
}

/// One shard of a table, under its own lock.
private final class Shard<Table: Sendable>: Sendable {
    private let table: Mutex<Table>

    init(_ table: Table) { self.table = Mutex(table) }

    func withLock<Result>(_ body: (inout Table) -> Result) -> Result { table.withLock { body(&$0) } }
}

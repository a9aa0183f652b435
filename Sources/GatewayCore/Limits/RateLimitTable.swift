/// Token buckets, one per key, as a value: no lock, no clock (time is passed in, in nanoseconds of
/// a monotonic clock), so every rule is tested with virtual time.
///
/// A bucket is kept in the virtual-scheduling form of the token bucket (GCRA): one number, the
/// time `tat` at which the bucket will be full again. Taking a token moves it on by the limit's
/// interval (`per / requests`); a request is allowed while `tat - now` stays within
/// `(burst - 1) × interval`, i.e. while at least one token is left. A bucket whose `tat` has passed
/// is full, the same as no bucket at all, and may be dropped.
///
/// Memory is bounded: at most ``maxKeys`` buckets. A new key finding the table full first drops
/// every full bucket; if that frees nothing, the eighth of the buckets seen longest ago is dropped
/// (their clients start again with a full bucket: a flood of fresh keys can only make the limiter
/// forget, never refuse a client it should not).
///
/// Shared across instances (``tracksSync``): the store keeps one bucket per key for the whole
/// cluster, in the same form (the time it is full again). Each bucket here also counts the tokens
/// taken here and not yet added to it, and when the first was taken; ``drainSync(now:)`` hands
/// those out, the store adds them (`max(shared, since) + taken × interval`), and
/// ``synced(_:taken:sharedTAT:limit:now:)`` makes the bucket here at least as empty as the shared
/// one, which holds every instance's tokens (into debt of at most one burst). A client spreading
/// requests over instances thus gets the rate, plus at most what each instance allows between two
/// synchronisations. A bucket with tokens not yet shared is never dropped.
public struct RateLimitTable<Key: Hashable & Sendable>: Sendable {
    public enum Decision: Equatable, Sendable {
        case allowed
        /// No token left: the next one comes in this many nanoseconds.
        case limited(retryAfter: Int64)
    }

    struct Bucket: Sendable {
        /// When the bucket is full again (ns).
        var tat: Int64
        var lastSeen: Int64
        /// Tokens taken here since the last synchronisation.
        var unsynced: Int = 0
        /// When the first of the `unsynced` tokens was taken.
        var since: Int64?
        /// Seen (allowed or refused) since the last synchronisation.
        var touched = false
    }

    public var maxKeys: Int
    public let tracksSync: Bool
    private var buckets: [Key: Bucket] = [:]
    /// Buckets dropped to make room while none was full (their clients' counts were forgotten).
    public private(set) var evictions = 0

    public init(maxKeys: Int, tracksSync: Bool = false) {
        self.maxKeys = max(1, maxKeys)
        self.tracksSync = tracksSync
    }

    public var count: Int { buckets.count }

    /// Takes one token from `key`'s bucket under `limit` at `now`.
    public mutating func take(_ key: Key, _ limit: RateLimit, now: Int64) -> Decision {
        let interval = limit.interval
        let tolerance = interval * Int64(limit.burst - 1)
        if let index = buckets.index(forKey: key) {
            let tat = max(buckets.values[index].tat, now)
            buckets.values[index].lastSeen = now
            if tracksSync { buckets.values[index].touched = true }
            if tat - now > tolerance { return .limited(retryAfter: tat - tolerance - now) }
            buckets.values[index].tat = tat + interval
            if tracksSync {
                buckets.values[index].unsynced += 1
                if buckets.values[index].since == nil { buckets.values[index].since = now }
            }
            return .allowed
        }
        if buckets.count >= maxKeys { makeRoom(now: now) }
        buckets[key] = Bucket(tat: now + interval, lastSeen: now, unsynced: tracksSync ? 1 : 0, since: tracksSync ? now : nil,
                              touched: tracksSync)
        return .allowed
    }

    /// Tokens left in `key`'s bucket at `now` (whole tokens; negative in debt).
    public func tokens(_ key: Key, _ limit: RateLimit, now: Int64) -> Int64 {
        guard let bucket = buckets[key] else { return Int64(limit.burst) }
        let used = max(0, bucket.tat - now)
        return Int64(limit.burst) - (used + limit.interval - 1) / limit.interval
    }

    private func isIdle(_ bucket: Bucket, now: Int64) -> Bool {
        bucket.tat <= now && bucket.unsynced == 0
    }

    /// Drops every full bucket (nothing is forgotten: a full bucket is the same as none). Returns
    /// how many were dropped.
    @discardableResult
    public mutating func sweep(now: Int64) -> Int {
        let before = buckets.count
        buckets = buckets.filter { !isIdle($0.value, now: now) }
        return before - buckets.count
    }

    private mutating func makeRoom(now: Int64) {
        sweep(now: now)
        let target = maxKeys - max(1, maxKeys / 8)
        guard buckets.count > target else { return }
        let excess = buckets.count - target
        let oldest = buckets.filter { $0.value.unsynced == 0 }.sorted { $0.value.lastSeen < $1.value.lastSeen }.prefix(excess)
        for (key, _) in oldest { buckets[key] = nil }
        evictions += oldest.count
    }

    // MARK: Sharing through a store

    /// What to add to the shared bucket of a key: the tokens taken here and not yet shared, from
    /// the time of the first of them (or, with none, the time of the call: the key is only read).
    public struct Spend: Sendable, Equatable {
        public var taken: Int
        public var since: Int64

        public init(taken: Int, since: Int64) {
            self.taken = taken
            self.since = since
        }
    }

    /// The keys seen since the last call, with what to add to their shared buckets. Each is
    /// reported back with ``synced(_:taken:sharedTAT:limit:now:)`` or ``syncFailed(_:)``; until
    /// then its bucket is not dropped.
    public mutating func drainSync(now: Int64) -> [(key: Key, spend: Spend)] {
        guard tracksSync else { return [] }
        var out: [(key: Key, spend: Spend)] = []
        for index in buckets.indices where buckets.values[index].touched {
            let bucket = buckets.values[index]
            out.append((buckets.keys[index], Spend(taken: bucket.unsynced, since: bucket.since ?? now)))
            buckets.values[index].touched = false
        }
        return out
    }

    /// The shared bucket of `key`, after `taken` more from here, is full again at `sharedTAT` (this
    /// table's time): it holds every instance's tokens, so this bucket becomes at least as empty
    /// (into debt of at most one burst). `limit`: the route's limit now (nil when a reload removed
    /// it: only the count is noted).
    public mutating func synced(_ key: Key, taken: Int, sharedTAT: Int64, limit: RateLimit?, now: Int64) {
        guard let index = buckets.index(forKey: key) else { return }
        buckets.values[index].unsynced -= taken
        // Tokens taken while the store answered are dated now (a little late: never more debit than there was).
        buckets.values[index].since = buckets.values[index].unsynced > 0 ? now : nil
        guard let limit else { return }
        let shared = min(sharedTAT, now + 2 * limit.refill)  // -burst tokens at most
        if shared > buckets.values[index].tat { buckets.values[index].tat = shared }
    }

    /// The store could not be reached: the tokens (still counted as not shared) are reported again
    /// with the next synchronisation.
    public mutating func syncFailed(_ key: Key) {
        guard let index = buckets.index(forKey: key) else { return }
        buckets.values[index].touched = true
    }
}

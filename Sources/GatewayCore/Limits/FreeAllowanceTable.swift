/// Free allowances counted per key and window, as a value: no lock, no clock (unix seconds are
/// passed in), tested with virtual time.
///
/// Two uses:
/// - the count itself (``take(_:_:now:)``), when the gateway keeps its state in memory: a key
///   counts its requests in the current window (``FreeAllowance/windowStart(now:)``) and starts
///   again in the next. Memory is bounded by ``maxKeys``: counters of past windows are dropped to
///   make room, and when every counter is live a new key is refused (``Decision/full``) rather than
///   a live count forgotten — forgetting one would give its client the allowance again.
/// - a cache of the allowances known to be used up (``markExhausted(_:_:now:)``,
///   ``isExhausted(_:_:now:)``) when a database holds the counts: a client that has had its free
///   requests gets its 402 without a database round trip until the window ends. Counts only grow
///   within a window, so the cache cannot be wrong about it; when it is full, entries are dropped
///   (that costs one more round trip, never a free request).
public struct FreeAllowanceTable<Key: Hashable & Sendable>: Sendable {
    public enum Decision: Equatable, Sendable {
        /// Counted: forward it for free; `remaining` more in this window.
        case free(remaining: Int)
        /// The window's allowance is used up.
        case exhausted
        /// Too many clients are counted already: fail closed (no free request).
        case full
    }

    struct Counter: Sendable {
        var windowStart: UInt64
        var per: UInt64
        var used: Int
        var windowEnd: UInt64 { windowStart + per }
    }

    public var maxKeys: Int
    private var counters: [Key: Counter] = [:]
    /// Live entries dropped from the cache to make room.
    public private(set) var evictions = 0

    public init(maxKeys: Int) {
        self.maxKeys = max(1, maxKeys)
    }

    public var count: Int { counters.count }

    /// Counts one request of `key` under `allowance` at `now`, if its window's allowance is not used up.
    public mutating func take(_ key: Key, _ allowance: FreeAllowance, now: UInt64) -> Decision {
        let window = allowance.windowStart(now: now)
        if let index = counters.index(forKey: key) {
            var counter = counters.values[index]
            if counter.windowStart != window || counter.per != allowance.per {
                counter = Counter(windowStart: window, per: allowance.per, used: 0)
            }
            guard counter.used < allowance.requests else {
                counters.values[index] = counter
                return .exhausted
            }
            counter.used += 1
            counters.values[index] = counter
            return .free(remaining: allowance.requests - counter.used)
        }
        guard allowance.requests > 0 else { return .exhausted }
        if counters.count >= maxKeys {
            sweep(now: now)
            guard counters.count < maxKeys else { return .full }
        }
        counters[key] = Counter(windowStart: window, per: allowance.per, used: 1)
        return .free(remaining: allowance.requests - 1)
    }

    /// Whether `key` is known to have used up `allowance` in the window of `now`.
    public func isExhausted(_ key: Key, _ allowance: FreeAllowance, now: UInt64) -> Bool {
        guard let counter = counters[key] else { return false }
        return counter.per == allowance.per && counter.windowStart == allowance.windowStart(now: now)
            && counter.used >= allowance.requests
    }

    /// Notes that `key` has used up `allowance` in the window of `now` (the database said so).
    public mutating func markExhausted(_ key: Key, _ allowance: FreeAllowance, now: UInt64) {
        if counters[key] == nil, counters.count >= maxKeys {
            sweep(now: now)
            if counters.count >= maxKeys {
                let drop = max(1, maxKeys / 8)
                for key in counters.keys.prefix(drop) { counters[key] = nil }
                evictions += drop
            }
        }
        counters[key] = Counter(windowStart: allowance.windowStart(now: now), per: allowance.per, used: allowance.requests)
    }

    /// Drops the counters of windows that have ended. Returns how many were dropped.
    @discardableResult
    public mutating func sweep(now: UInt64) -> Int {
        let before = counters.count
        counters = counters.filter { $0.value.windowEnd > now }
        return before - counters.count
    }
}

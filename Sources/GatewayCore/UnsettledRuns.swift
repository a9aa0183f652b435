/// How many times each verified payer made a priced route's upstream run without paying for it
/// (the upstream answered ≥ 400, the client left before settlement, the settlement was refused,
/// the answer was too large to hold), over a sliding window.
///
/// Under `after-success` the upstream runs before the payment is settled, so a payer whose runs
/// keep ending unsettled gets the upstream's work for free, and signing fresh authorizations
/// costs nothing. Past `limit` such runs within the window, that payer's requests on that route
/// are settled before they are forwarded (`limits.unsettledRunsPerPayer`, `limits.unsettledRunsWindow`:
/// passed to each call, so a reload applies at once and keeps what was counted).
///
/// A value type (the gateway keeps one per process behind a lock): times are the caller's, in
/// seconds, and memory is bounded (``maximumKeys`` payers × routes; expired ones are dropped first).
public struct UnsettledRuns: Sendable {
    public struct Key: Hashable, Sendable {
        public var route: String
        /// Lower-cased.
        public var payer: String

        public init(route: String, payer: String) {
            self.route = route
            self.payer = payer.lowercased()
        }
    }

    public static let maximumKeys = 100_000
    /// Runs kept per key: no limit is set above this.
    public static let maximumLimit = 10_000
    /// The times of each key's unsettled runs, oldest first.
    private var runs: [Key: [UInt64]] = [:]
    private var recordsSincePrune = 0
    /// The longest window asked for: what pruning keeps.
    private var longestWindow: UInt64 = 1

    public init() {}

    /// Whether `key` has had `limit` unsettled runs within `window` seconds of `now`: its next
    /// request is to be settled before it is forwarded.
    public func mustSettleFirst(_ key: Key, limit: Int, window: UInt64, now: UInt64) -> Bool {
        count(key, window: window, now: now) >= limit
    }

    /// Unsettled runs of `key` within `window` seconds of `now`.
    public func count(_ key: Key, window: UInt64, now: UInt64) -> Int {
        guard let times = runs[key] else { return 0 }
        return times.reduce(0) { $0 + (Self.isLive($1, window: window, now: now) ? 1 : 0) }
    }

    /// One more unsettled run of `key` at `now`; only the last `limit` within `window` are kept.
    public mutating func record(_ key: Key, limit: Int, window: UInt64, now: UInt64) {
        longestWindow = max(longestWindow, window)
        recordsSincePrune += 1
        if recordsSincePrune >= 1_024 || (runs[key] == nil && runs.count >= Self.maximumKeys) { prune(now: now) }
        guard runs[key] != nil || runs.count < Self.maximumKeys else { return }  // full of live payers: not counted
        var times = (runs[key] ?? []).filter { Self.isLive($0, window: window, now: now) }
        times.append(now)
        let keep = min(max(limit, 1), Self.maximumLimit)
        if times.count > keep { times.removeFirst(times.count - keep) }
        runs[key] = times
    }

    /// Payers × routes tracked.
    public var keyCount: Int { runs.count }

    private static func isLive(_ time: UInt64, window: UInt64, now: UInt64) -> Bool { time + window > now }

    private mutating func prune(now: UInt64) {
        recordsSincePrune = 0
        let window = longestWindow
        runs = runs.filter { _, times in times.last.map { Self.isLive($0, window: window, now: now) } ?? false }
    }
}

/// A route's rate limit (`rateLimit: { requests: 10, per: 1s, burst: 20 }`): a token bucket per
/// client that holds `burst` tokens and gains `requests` every `per`; each request takes one, and a
/// request finding the bucket empty is answered 429 with `Retry-After`.
public struct RateLimit: Sendable, Hashable {
    public var requests: Int
    public var per: Duration
    public var burst: Int

    /// Longest time (ns) a bucket may take to refill from empty to full (`burst × per / requests`):
    /// it bounds every time the limiter computes, so none overflows.
    public static let longestRefill: Int64 = 366 * 86_400 * 1_000_000_000

    public init(requests: Int, per: Duration, burst: Int? = nil) {
        self.requests = requests
        self.per = per
        self.burst = burst ?? requests
    }

    /// Nanoseconds between two tokens (`per / requests`), at least 1.
    public var interval: Int64 {
        let (seconds, attoseconds) = per.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        return max(1, nanoseconds / Int64(requests))
    }

    /// Nanoseconds to refill a whole burst (valid when ``refillsInTime``).
    public var refill: Int64 { interval * Int64(burst) }

    /// Whether a whole burst refills within ``longestRefill`` (the loader refuses other limits).
    public var refillsInTime: Bool {
        let (product, overflow) = interval.multipliedReportingOverflow(by: Int64(burst))
        return !overflow && product <= Self.longestRefill
    }
}

/// A priced route's free allowance (`freePerClient: { requests: 3, per: 1d }`): the first
/// `requests` requests of each client in each window of `per` are forwarded without a payment.
/// Windows are aligned on the unix epoch (`per: 1d`: midnight UTC to midnight UTC), so every
/// instance counts in the same window.
public struct FreeAllowance: Sendable, Hashable {
    public var requests: Int
    /// Whole seconds.
    public var per: UInt64

    public static let longestWindow: UInt64 = 366 * 86_400

    public init(requests: Int, per: UInt64) {
        self.requests = requests
        self.per = per
    }

    /// The start (unix seconds) of the window holding `now`.
    public func windowStart(now: UInt64) -> UInt64 { now - now % per }
}

/// How clients are told apart for rate limits and free allowances (`clientLimits:`), and how many
/// the gateway keeps track of.
public struct ClientLimitsConfig: Sendable, Hashable {
    /// Addresses sharing this many leading bits are one client (32: each IPv4 address).
    public var ipv4Prefix: Int = 32
    /// 64: one IPv6 /64, which one host or one home network usually holds whole.
    public var ipv6Prefix: Int = 64
    /// Most clients tracked in memory per table (rate-limit buckets; allowance counters, or with a
    /// database the allowances known to be used up); bounds the memory an address flood can take.
    public var maxKeys: Int = 100_000
    /// How often an instance shares its rate-limit counts through PostgreSQL.
    public var sync: Duration = .milliseconds(500)

    public init() {}
}

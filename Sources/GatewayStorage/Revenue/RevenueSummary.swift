/// What the ledger says about a window of time, aggregated by the store (in SQL for the SQL
/// ledgers): the time series of revenue, every outcome, the top payers, settlement latency, and
/// the payments whose settlement outcome is unknown. Amounts are exact sums in atomic units.
///
/// "Revenue" is what was charged: rows `settled` or `reconciled_settled`, summed by `charged_amount` (the
/// amount an `upto` settlement moved), or `amount` where no charge is recorded. Every
/// list is in one canonical order, so that summaries of the same rows from different backends are equal.
public struct RevenueSummary: Sendable, Equatable {
    /// Settled payments of one route in one asset, in one time bucket.
    public struct RevenueLine: Sendable, Hashable {
        /// The bucket's start (unix ms; see ``RevenueQuery/bucketStart(_:)``).
        public var bucketStart: Int64
        public var routeID: String
        public var network: String
        public var asset: String
        public var payments: Int
        public var total: DecimalSum

        public init(bucketStart: Int64, routeID: String, network: String, asset: String, payments: Int, total: DecimalSum) {
            self.bucketStart = bucketStart
            self.routeID = routeID
            self.network = network
            self.asset = asset
            self.payments = payments
            self.total = total
        }
    }

    /// How many rows are in one state with one reason (all routes and assets together).
    public struct OutcomeLine: Sendable, Hashable {
        public var state: PaymentState
        public var reason: String?
        /// Whether the row got as far as `settling` (a refusal then is a failed settlement).
        public var afterSettling: Bool
        public var payments: Int

        public init(state: PaymentState, reason: String?, afterSettling: Bool, payments: Int) {
            self.state = state
            self.reason = reason
            self.afterSettling = afterSettling
            self.payments = payments
        }
    }

    /// What one payer paid in one asset.
    public struct PayerLine: Sendable, Hashable {
        public var payer: String
        public var network: String
        public var asset: String
        public var payments: Int
        public var total: DecimalSum

        public init(payer: String, network: String, asset: String, payments: Int, total: DecimalSum) {
            self.payer = payer
            self.network = network
            self.asset = asset
            self.payments = payments
            self.total = total
        }
    }

    /// Payments whose settlement outcome is unknown (`unknown`, or `settling` past its lease), of
    /// any age: they need the seller (or reconciliation) whatever the window.
    public struct AttentionLine: Sendable, Hashable {
        public var network: String
        public var asset: String
        public var payments: Int
        public var total: DecimalSum
        /// The oldest one's claim (unix ms).
        public var oldestClaimedAt: Int64

        public init(network: String, asset: String, payments: Int, total: DecimalSum, oldestClaimedAt: Int64) {
            self.network = network
            self.asset = asset
            self.payments = payments
            self.total = total
            self.oldestClaimedAt = oldestClaimedAt
        }
    }

    /// Time from `settling` (just before `/settle`) to `settled`, over the rows settled directly
    /// (not through reconciliation); nearest-rank percentiles, in milliseconds.
    public struct SettlementLatency: Sendable, Hashable {
        public var count: Int
        public var p50: Int64?
        public var p90: Int64?
        public var p99: Int64?
        public var max: Int64?

        public init(count: Int = 0, p50: Int64? = nil, p90: Int64? = nil, p99: Int64? = nil, max: Int64? = nil) {
            self.count = count
            self.p50 = p50
            self.p90 = p90
            self.p99 = p99
            self.max = max
        }

        /// The 1-based rank of the `percent` percentile among `count` sorted values (nearest rank).
        public static func rank(percent: Int, count: Int) -> Int {
            Swift.max(1, (percent * count + 99) / 100)
        }
    }

    /// By bucket, route, network, asset.
    public var revenue: [RevenueLine]
    /// By state, reason (none first), then without settling first.
    public var outcomes: [OutcomeLine]
    /// By network and asset; within one, largest total first (then payer), at most the query's `topPayers`.
    public var payers: [PayerLine]
    public var latency: SettlementLatency
    /// By network, asset.
    public var attention: [AttentionLine]

    public init(revenue: [RevenueLine] = [], outcomes: [OutcomeLine] = [], payers: [PayerLine] = [],
                latency: SettlementLatency = SettlementLatency(), attention: [AttentionLine] = []) {
        self.revenue = revenue.sorted(by: Self.order)
        self.outcomes = outcomes.sorted(by: Self.order)
        self.payers = payers.sorted(by: Self.order)
        self.latency = latency
        self.attention = attention.sorted { ($0.network, $0.asset) < ($1.network, $1.asset) }
    }

    static func order(_ a: RevenueLine, _ b: RevenueLine) -> Bool {
        (a.bucketStart, a.routeID, a.network, a.asset) < (b.bucketStart, b.routeID, b.network, b.asset)
    }

    static func order(_ a: OutcomeLine, _ b: OutcomeLine) -> Bool {
        if a.state != b.state { return a.state.rawValue < b.state.rawValue }
        switch (a.reason, b.reason) {
        case (nil, _?): return true
        case (_?, nil): return false
        case let (x?, y?) where x != y: return x < y
        default: return !a.afterSettling && b.afterSettling
        }
    }

    static func order(_ a: PayerLine, _ b: PayerLine) -> Bool {
        if (a.network, a.asset) != (b.network, b.asset) { return (a.network, a.asset) < (b.network, b.asset) }
        if a.total != b.total { return a.total > b.total }
        return a.payer < b.payer
    }

    /// Keeps the `limit` largest payers of each (network, asset), in ``order(_:_:)-swift.type.method``.
    static func topPayers(_ lines: [PayerLine], limit: Int) -> [PayerLine] {
        var kept: [PayerLine] = []
        var taken: [String: Int] = [:]
        for line in lines.sorted(by: order) {
            let asset = line.network + " " + line.asset
            let count = taken[asset, default: 0]
            guard count < limit else { continue }
            taken[asset] = count + 1
            kept.append(line)
        }
        return kept
    }
}

/// Which ledger rows to aggregate for the revenue dashboard and `/revenue`: those claimed in
/// `[from, to)` (unix ms), cut into time buckets of `bucketMilliseconds` aligned on the epoch (so a
/// bucket keeps its bounds from one refresh to the next).
public struct RevenueQuery: Sendable, Equatable {
    /// Claimed at or after (unix ms).
    public var from: Int64
    /// Claimed strictly before (unix ms).
    public var to: Int64
    /// The width of one bucket of the time series (ms, at least 1).
    public var bucketMilliseconds: Int64
    /// How many payers to rank per (network, asset).
    public var topPayers: Int

    public init(from: Int64, to: Int64, bucketMilliseconds: Int64, topPayers: Int = 10) {
        self.from = from
        self.to = to
        self.bucketMilliseconds = max(1, bucketMilliseconds)
        self.topPayers = max(0, topPayers)
    }

    /// The start (unix ms) of the bucket holding `time`.
    public func bucketStart(_ time: Int64) -> Int64 {
        time / bucketMilliseconds * bucketMilliseconds
    }
}

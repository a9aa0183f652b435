import GatewayStorage

/// The windows the dashboard and `/revenue` offer, each with the width of its chart's buckets.
public enum DashboardWindow: String, Sendable, CaseIterable {
    case hour = "1h", day = "24h", week = "7d", month = "30d"

    static let minute: Int64 = 60_000

    /// The window's length (ms).
    public var milliseconds: Int64 {
        switch self {
        case .hour: 60 * Self.minute
        case .day: 24 * 60 * Self.minute
        case .week: 7 * 24 * 60 * Self.minute
        case .month: 30 * 24 * 60 * Self.minute
        }
    }

    /// One bar of the chart (ms): 60, 48, 42 and 30 bars (one more when the window starts inside one).
    public var bucketMilliseconds: Int64 {
        switch self {
        case .hour: Self.minute
        case .day: 30 * Self.minute
        case .week: 4 * 60 * Self.minute
        case .month: 24 * 60 * Self.minute
        }
    }

    /// The query for the window ending at `now` (unix ms), `now` included.
    public func query(now: Int64, topPayers: Int = 10) -> RevenueQuery {
        RevenueQuery(from: now - milliseconds, to: now + 1, bucketMilliseconds: bucketMilliseconds, topPayers: topPayers)
    }

    /// The window named `text` (`1h`, `24h` or `1d`, `7d`, `30d`); `fallback` when there is no
    /// text; nil for anything else.
    public static func parse(_ text: String?, fallback: DashboardWindow = .day) -> DashboardWindow? {
        guard let text else { return fallback }
        return text == "1d" ? .day : DashboardWindow(rawValue: text)
    }
}

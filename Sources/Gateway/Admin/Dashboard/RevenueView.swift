import BigInt
import GatewayStorage
import X402

/// The dashboard's content, computed from a ``RevenueSummary`` without any I/O: totals per asset,
/// a chart per asset with the largest routes stacked, outcomes grouped, the top routes and payers,
/// and the unknown outcomes. Amounts are BigUInt, exact.
package struct RevenueView: Sendable {
    package struct AssetTotal: Sendable, Equatable {
        package var network: String
        package var asset: String
        package var payments: Int
        package var total: BigUInt
    }

    /// One stacked series of a chart: a route (nil: the other routes together) and its amount per bucket.
    package struct Series: Sendable, Equatable {
        package var routeID: String?
        package var total: BigUInt
        package var buckets: [BigUInt]
    }

    package struct Chart: Sendable, Equatable {
        package var total: AssetTotal
        package var series: [Series]
    }

    package struct RouteLine: Sendable, Equatable {
        package var routeID: String
        package var network: String
        package var asset: String
        package var payments: Int
        package var total: BigUInt
    }

    package struct OutcomeGroup: Sendable, Equatable {
        package var category: OutcomeCategory
        package var payments: Int
        /// Reason (nil: none recorded) and count, most frequent first.
        package var reasons: [(reason: String?, payments: Int)]

        package static func == (a: OutcomeGroup, b: OutcomeGroup) -> Bool {
            a.category == b.category && a.payments == b.payments
                && a.reasons.map { "\($0.reason ?? "")|\($0.payments)" } == b.reasons.map { "\($0.reason ?? "")|\($0.payments)" }
        }
    }

    /// The series drawn separately per chart; the rest are added up as "other routes".
    static let chartedRoutes = 5

    package let window: DashboardWindow
    package let query: RevenueQuery
    /// Bucket starts (unix ms), oldest first, covering the window.
    package let buckets: [Int64]
    package let totals: [AssetTotal]
    package let charts: [Chart]
    package let routes: [RouteLine]
    package let outcomes: [OutcomeGroup]
    package let summary: RevenueSummary

    package init(summary: RevenueSummary, window: DashboardWindow, query: RevenueQuery) {
        self.window = window
        self.query = query
        self.summary = summary
        let first = query.bucketStart(query.from), last = query.bucketStart(query.to - 1)
        let buckets = Array(stride(from: first, through: last, by: Int(query.bucketMilliseconds)))
        self.buckets = buckets

        struct AssetKey: Hashable { var network: String, asset: String }
        struct RouteKey: Hashable { var route: String, network: String, asset: String }
        var totals: [AssetKey: AssetTotal] = [:]
        var routes: [RouteKey: RouteLine] = [:]
        for line in summary.revenue {
            let amount = BigUInt(line.total.description) ?? 0
            let asset = AssetKey(network: line.network, asset: line.asset)
            totals[asset, default: AssetTotal(network: line.network, asset: line.asset, payments: 0, total: 0)].payments += line.payments
            totals[asset]!.total += amount
            let route = RouteKey(route: line.routeID, network: line.network, asset: line.asset)
            routes[route, default: RouteLine(routeID: line.routeID, network: line.network, asset: line.asset, payments: 0, total: 0)]
                .payments += line.payments
            routes[route]!.total += amount
        }
        let byTotal: (AssetTotal, AssetTotal) -> Bool = { a, b in
            a.total != b.total ? a.total > b.total : (a.network, a.asset) < (b.network, b.asset)
        }
        let sortedTotals = totals.values.sorted(by: byTotal)
        let sortedRoutes = routes.values.sorted { a, b in
            (a.network, a.asset) != (b.network, b.asset) ? (a.network, a.asset) < (b.network, b.asset)
                : a.total != b.total ? a.total > b.total : a.routeID < b.routeID
        }
        self.totals = sortedTotals
        self.routes = sortedRoutes

        let index = Dictionary(uniqueKeysWithValues: buckets.enumerated().map { ($1, $0) })
        self.charts = sortedTotals.map { total in
            let lines = sortedRoutes.filter { $0.network == total.network && $0.asset == total.asset }
            let named = Array(lines.prefix(Self.chartedRoutes).map(\.routeID))
            var series = named.map { Series(routeID: $0, total: 0, buckets: Array(repeating: 0, count: buckets.count)) }
            var other = Series(routeID: nil, total: 0, buckets: Array(repeating: 0, count: buckets.count))
            for line in summary.revenue where line.network == total.network && line.asset == total.asset {
                guard let slot = index[line.bucketStart] else { continue }
                let amount = BigUInt(line.total.description) ?? 0
                if let i = named.firstIndex(of: line.routeID) {
                    series[i].buckets[slot] += amount
                    series[i].total += amount
                } else {
                    other.buckets[slot] += amount
                    other.total += amount
                }
            }
            if other.total > 0 { series.append(other) }
            return Chart(total: total, series: series)
        }

        var groups: [OutcomeCategory: [String?: Int]] = [:]
        for line in summary.outcomes {
            groups[OutcomeCategory(line), default: [:]][line.reason, default: 0] += line.payments
        }
        self.outcomes = OutcomeCategory.allCases.compactMap { category in
            guard let reasons = groups[category] else { return nil }
            let sorted = reasons.map { (reason: $0.key, payments: $0.value) }.sorted { a, b in
                a.payments != b.payments ? a.payments > b.payments : (a.reason ?? "") < (b.reason ?? "")
            }
            return OutcomeGroup(category: category, payments: reasons.values.reduce(0, +), reasons: sorted)
        }
    }

    package func payments(_ category: OutcomeCategory) -> Int {
        outcomes.first { $0.category == category }?.payments ?? 0
    }

    /// Unknown outcomes of any age, all assets.
    var attentionPayments: Int { summary.attention.map(\.payments).reduce(0, +) }
}

extension RevenueSummary {
    /// The summary of `rows` (every row of the ledger, or more), computed in Swift: what the
    /// in-memory store answers, and what the SQL statements of ``LedgerSQL`` must agree with.
    /// `now` (unix ms) decides which `settling` rows are past their lease.
    public init(records rows: [PaymentRecord], query: RevenueQuery, now: Int64) {
        struct SeriesKey: Hashable { var bucket: Int64, route: String, network: String, asset: String }
        struct OutcomeKey: Hashable { var state: PaymentState, reason: String?, afterSettling: Bool }
        struct PayerKey: Hashable { var payer: String, network: String, asset: String }
        struct AssetKey: Hashable { var network: String, asset: String }
        var series: [SeriesKey: (Int, DecimalSum)] = [:]
        var outcomes: [OutcomeKey: Int] = [:]
        var payers: [PayerKey: (Int, DecimalSum)] = [:]
        var attention: [AssetKey: (Int, DecimalSum, Int64)] = [:]
        var latencies: [Int64] = []
        for row in rows {
            let amount = DecimalSum(row.revenueAmount) ?? DecimalSum()
            if row.state == .unknown || (row.state == .settling && row.leaseUntil <= now) {
                let key = AssetKey(network: row.key.network, asset: row.key.asset)
                let (count, total, oldest) = attention[key] ?? (0, DecimalSum(), row.claimedAt)
                attention[key] = (count + 1, total + amount, min(oldest, row.claimedAt))
            }
            guard row.claimedAt >= query.from, row.claimedAt < query.to else { continue }
            outcomes[OutcomeKey(state: row.state, reason: row.reason, afterSettling: row.settlingAt != nil), default: 0] += 1
            guard row.state.isSpent else { continue }
            let seriesKey = SeriesKey(bucket: query.bucketStart(row.claimedAt), route: row.routeID, network: row.key.network,
                                      asset: row.key.asset)
            let (count, total) = series[seriesKey] ?? (0, DecimalSum())
            series[seriesKey] = (count + 1, total + amount)
            let payerKey = PayerKey(payer: row.key.payer, network: row.key.network, asset: row.key.asset)
            let (paid, sum) = payers[payerKey] ?? (0, DecimalSum())
            payers[payerKey] = (paid + 1, sum + amount)
            if row.state == .settled, let settling = row.settlingAt, let finished = row.finishedAt {
                latencies.append(finished - settling)
            }
        }
        latencies.sort()
        func percentile(_ percent: Int) -> Int64? {
            latencies.isEmpty ? nil : latencies[SettlementLatency.rank(percent: percent, count: latencies.count) - 1]
        }
        self.init(
            revenue: series.map { key, value in
                RevenueLine(bucketStart: key.bucket, routeID: key.route, network: key.network, asset: key.asset,
                            payments: value.0, total: value.1)
            },
            outcomes: outcomes.map { OutcomeLine(state: $0.key.state, reason: $0.key.reason, afterSettling: $0.key.afterSettling, payments: $0.value) },
            payers: Self.topPayers(payers.map { key, value in
                PayerLine(payer: key.payer, network: key.network, asset: key.asset, payments: value.0, total: value.1)
            }, limit: query.topPayers),
            latency: SettlementLatency(count: latencies.count, p50: percentile(50), p90: percentile(90), p99: percentile(99),
                                       max: latencies.last),
            attention: attention.map { key, value in
                AttentionLine(network: key.network, asset: key.asset, payments: value.0, total: value.1, oldestClaimedAt: value.2)
            })
    }
}

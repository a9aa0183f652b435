/// The revenue aggregation in SQL, shared by SQLite and PostgreSQL.
///
/// Amounts are decimal strings of up to 78 digits (uint256), which no SQL integer holds and a float
/// would round. Each amount is padded to 81 digits and cut into nine slices of nine digits; each
/// slice is summed as an ordinary 64-bit integer (SQLite raises an error rather than wrap on
/// overflow; PostgreSQL's sum is a numeric, cast back to `BIGINT`, which also fails rather than
/// wrap: 9·10⁹ rows per group before either happens), and ``DecimalSum`` adds the nine sums at
/// their places in Swift. The result is exact, and the grouping runs in the database.
///
/// Rows are chosen by `claimed_at` (the `x402_payments_claimed` index); the unknown outcomes by
/// state (the partial `x402_payments_unsettled` index). No index is added: every index on `state`
/// would be rewritten by every step of every paid request.
extension LedgerSQL {
    /// Slices of an amount (digits only, at most 81): `SUM` of each is one column of an aggregate.
    static let sliceCount = 9

    /// The amount as 81 digits, zero-padded on the left (`substr` and `length` mean the same in both dialects).
    private static let paddedAmount = "substr('\(String(repeating: "0", count: 81))' || amount, length(amount) + 1, 81)"

    /// `CAST(SUM(slice) AS BIGINT)` for each slice of the subquery's column `p`.
    private static let sliceSums = (0..<sliceCount).map { i in
        "CAST(SUM(CAST(substr(p, \(i * 9 + 1), 9) AS BIGINT)) AS BIGINT)"
    }.joined(separator: ", ")

    private static let spent = "state IN ('settled', 'reconciled_settled')"
    private static let window = "claimed_at >= $1 AND claimed_at < $2"

    /// Settled revenue per bucket, route, network, asset: `bucket, route_id, network, asset, count, slices…`.
    public static func revenueSeries(_ q: RevenueQuery) -> SQLStatement {
        SQLStatement("""
            SELECT b, route_id, network, asset, COUNT(*), \(sliceSums)
            FROM (SELECT claimed_at / $3 AS b, route_id, network, asset, \(paddedAmount) AS p
                  FROM x402_payments WHERE \(window) AND \(spent)) AS spent
            GROUP BY b, route_id, network, asset
            """, [.integer(q.from), .integer(q.to), .integer(q.bucketMilliseconds)])
    }

    /// Rows per state, reason and whether they reached settling: `state, reason, after_settling, count`.
    public static func revenueOutcomes(_ q: RevenueQuery) -> SQLStatement {
        SQLStatement("""
            SELECT state, reason, after_settling, COUNT(*)
            FROM (SELECT state, reason, CASE WHEN settling_at IS NULL THEN 0 ELSE 1 END AS after_settling
                  FROM x402_payments WHERE \(window)) AS outcomes
            GROUP BY state, reason, after_settling
            """, [.integer(q.from), .integer(q.to)])
    }

    /// How many payers per (network, asset) are fetched to be ranked exactly in Swift: the database
    /// orders them by a floating-point estimate of their total (never shown, never summed into
    /// anything), so a few more than asked are taken and the exact sums decide.
    static func payerCandidates(_ topPayers: Int) -> Int { topPayers == 0 ? 0 : topPayers * 2 + 10 }

    /// The largest payers per (network, asset): `payer, network, asset, count, slices…`.
    public static func revenuePayers(_ q: RevenueQuery) -> SQLStatement {
        SQLStatement("""
            SELECT payer, network, asset, n, \((0..<sliceCount).map { "s\($0)" }.joined(separator: ", "))
            FROM (SELECT payer, network, asset, COUNT(*) AS n,
                         \((0..<sliceCount).map { i in "CAST(SUM(CAST(substr(p, \(i * 9 + 1), 9) AS BIGINT)) AS BIGINT) AS s\(i)" }.joined(separator: ", ")),
                         ROW_NUMBER() OVER (PARTITION BY network, asset
                                            ORDER BY SUM(CAST(amount AS DOUBLE PRECISION)) DESC, payer) AS rn
                  FROM (SELECT payer, network, asset, amount, \(paddedAmount) AS p
                        FROM x402_payments WHERE \(window) AND \(spent)) AS spent
                  GROUP BY payer, network, asset) AS ranked
            WHERE rn <= $3
            """, [.integer(q.from), .integer(q.to), .integer(Int64(payerCandidates(q.topPayers)))])
    }

    private static let latencyRows = """
        FROM x402_payments WHERE claimed_at >= $1 AND claimed_at < $2 AND state = 'settled'
          AND settling_at IS NOT NULL AND finished_at IS NOT NULL
        """

    /// How many rows have a settlement latency.
    public static func latencyCount(_ q: RevenueQuery) -> SQLStatement {
        SQLStatement("SELECT COUNT(*) \(latencyRows)", [.integer(q.from), .integer(q.to)])
    }

    /// The latencies at the given 1-based ranks (one column each), in one statement.
    public static func latencies(_ q: RevenueQuery, ranks: [Int]) -> SQLStatement {
        let columns = ranks.indices.map { i in
            "(SELECT finished_at - settling_at AS d \(latencyRows) ORDER BY d LIMIT 1 OFFSET $\(i + 3))"
        }
        return SQLStatement("SELECT " + columns.joined(separator: ", "),
                            [.integer(q.from), .integer(q.to)] + ranks.map { .integer(Int64($0 - 1)) })
    }

    /// Payments whose settlement outcome is unknown, of any age: `network, asset, count, oldest, slices…`.
    public static func revenueAttention(now: Int64) -> SQLStatement {
        SQLStatement("""
            SELECT network, asset, COUNT(*), MIN(claimed_at), \(sliceSums)
            FROM (SELECT network, asset, claimed_at, \(paddedAmount) AS p FROM x402_payments
                  WHERE state IN ('unknown', 'settling') AND (state = 'unknown' OR lease_until <= $1)) AS unknown
            GROUP BY network, asset
            """, [.integer(now)])
    }

    // MARK: Reading

    /// The exact total of the slice sums in `row[from..<from + sliceCount]`.
    static func sum(_ row: [SQLValue], from: Int) throws(StorageError) -> DecimalSum {
        var total = DecimalSum()
        for i in 0..<sliceCount {
            guard from + i < row.count, let slice = row[from + i].integer, slice >= 0 else {
                throw StorageError(.corrupt, "x402_payments: an amount that is not a decimal number")
            }
            total.add(slice: UInt64(slice), at: sliceCount - 1 - i)
        }
        return total
    }

    static func revenueText(_ row: [SQLValue], _ i: Int) throws(StorageError) -> String {
        guard i < row.count, let value = row[i].text else { throw StorageError(.corrupt, "revenue: column \(i) is not text") }
        return value
    }

    static func revenueInteger(_ row: [SQLValue], _ i: Int) throws(StorageError) -> Int64 {
        guard i < row.count, let value = row[i].integer else { throw StorageError(.corrupt, "revenue: column \(i) is not an integer") }
        return value
    }

    public static func revenueLine(_ row: [SQLValue], query: RevenueQuery) throws(StorageError) -> RevenueSummary.RevenueLine {
        RevenueSummary.RevenueLine(
            bucketStart: try revenueInteger(row, 0) * query.bucketMilliseconds, routeID: try revenueText(row, 1), network: try revenueText(row, 2),
            asset: try revenueText(row, 3), payments: Int(try revenueInteger(row, 4)), total: try sum(row, from: 5))
    }

    public static func outcomeLine(_ row: [SQLValue]) throws(StorageError) -> RevenueSummary.OutcomeLine {
        guard let state = PaymentState(rawValue: try revenueText(row, 0)) else { throw StorageError(.corrupt, "x402_payments: unknown state") }
        return RevenueSummary.OutcomeLine(state: state, reason: row.count > 1 ? row[1].text : nil,
                                          afterSettling: try revenueInteger(row, 2) != 0, payments: Int(try revenueInteger(row, 3)))
    }

    public static func payerLine(_ row: [SQLValue]) throws(StorageError) -> RevenueSummary.PayerLine {
        RevenueSummary.PayerLine(payer: try revenueText(row, 0), network: try revenueText(row, 1), asset: try revenueText(row, 2),
                                 payments: Int(try revenueInteger(row, 3)), total: try sum(row, from: 4))
    }

    public static func attentionLine(_ row: [SQLValue]) throws(StorageError) -> RevenueSummary.AttentionLine {
        RevenueSummary.AttentionLine(network: try revenueText(row, 0), asset: try revenueText(row, 1), payments: Int(try revenueInteger(row, 2)),
                                     total: try sum(row, from: 4), oldestClaimedAt: try revenueInteger(row, 3))
    }
}

extension SQLPaymentStore {
    public func revenue(_ query: RevenueQuery) async throws -> RevenueSummary {
        let current = self.now()
        let series = try await database.query(LedgerSQL.revenueSeries(query)).map { row throws(StorageError) in
            try LedgerSQL.revenueLine(row, query: query)
        }
        let outcomes = try await database.query(LedgerSQL.revenueOutcomes(query)).map { row throws(StorageError) in
            try LedgerSQL.outcomeLine(row)
        }
        var payers: [RevenueSummary.PayerLine] = []
        if query.topPayers > 0 {
            payers = try await database.query(LedgerSQL.revenuePayers(query)).map { row throws(StorageError) in try LedgerSQL.payerLine(row) }
        }
        var latency = RevenueSummary.SettlementLatency()
        let count = try await database.query(LedgerSQL.latencyCount(query)).first.map { row throws(StorageError) in
            try LedgerSQL.revenueInteger(row, 0)
        } ?? 0
        if count > 0 {
            let n = Int(count)
            let ranks = [50, 90, 99].map { RevenueSummary.SettlementLatency.rank(percent: $0, count: n) } + [n]
            let values = try await database.query(LedgerSQL.latencies(query, ranks: ranks)).first ?? []
            let read = values.map(\.integer)
            if read.count == 4 { latency = .init(count: n, p50: read[0], p90: read[1], p99: read[2], max: read[3]) }
        }
        let attention = try await database.query(LedgerSQL.revenueAttention(now: current)).map { row throws(StorageError) in
            try LedgerSQL.attentionLine(row)
        }
        return RevenueSummary(revenue: series, outcomes: outcomes, payers: RevenueSummary.topPayers(payers, limit: query.topPayers),
                              latency: latency, attention: attention)
    }
}

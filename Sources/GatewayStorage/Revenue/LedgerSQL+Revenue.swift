/// The revenue aggregation in SQL, shared by SQLite and PostgreSQL.
///
/// Amounts are decimal strings of up to 78 digits (uint256), which no SQL integer holds and a float
/// would round. So the database never adds amounts: it groups the window's rows by what the
/// dashboard shows *and by amount*, and counts them; ``DecimalSum`` then adds `amount × count`
/// exactly in Swift. Routes are priced, so a group holds few distinct amounts and the rows that
/// come back are few (a bucket × route × price); with every amount different it degrades to one
/// row per payment, still exact. No floating point is involved anywhere, the top payers included
/// (ranked in Swift from their exact totals).
///
/// Rows are chosen by `claimed_at` (the `x402_payments_claimed` index); the unknown outcomes by
/// state (the partial `x402_payments_unsettled` index). No index is added: every index on `state`
/// would be rewritten by every step of every paid request.
extension LedgerSQL {
    private static let spent = "state IN ('settled', 'reconciled_settled')"
    private static let window = "claimed_at >= $1 AND claimed_at < $2"
    /// What a payment moved (`upto`: the charge, not the maximum), named `amount`.
    private static let charged = "COALESCE(charged_amount, amount) AS amount"

    /// Settled payments per bucket, route, network, asset and amount: `bucket, route_id, network, asset, amount, count`.
    public static func revenueSeries(_ q: RevenueQuery) -> SQLStatement {
        SQLStatement("""
            SELECT b, route_id, network, asset, amount, COUNT(*)
            FROM (SELECT claimed_at / $3 AS b, route_id, network, asset, \(charged)
                  FROM x402_payments WHERE \(window) AND \(spent)) AS spent
            GROUP BY b, route_id, network, asset, amount
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

    /// Settled payments per payer, network, asset and amount: `payer, network, asset, amount, count`.
    public static func revenuePayers(_ q: RevenueQuery) -> SQLStatement {
        SQLStatement("""
            SELECT payer, network, asset, amount, COUNT(*)
            FROM (SELECT payer, network, asset, \(charged) FROM x402_payments WHERE \(window) AND \(spent)) AS spent
            GROUP BY payer, network, asset, amount
            """, [.integer(q.from), .integer(q.to)])
    }

    /// The settlement latencies (ms) at the nearest ranks of p50, p90, p99 and the largest, in one
    /// sort: `rank, latency, count` for each of those ranks (none when nothing settled).
    public static func revenueLatencies(_ q: RevenueQuery) -> SQLStatement {
        SQLStatement("""
            SELECT r, d, n FROM (
              SELECT finished_at - settling_at AS d, ROW_NUMBER() OVER (ORDER BY finished_at - settling_at) AS r, COUNT(*) OVER () AS n
              FROM x402_payments WHERE \(window) AND state = 'settled' AND settling_at IS NOT NULL AND finished_at IS NOT NULL
            ) AS ranked
            WHERE r = (50 * n + 99) / 100 OR r = (90 * n + 99) / 100 OR r = (99 * n + 99) / 100 OR r = n
            """, [.integer(q.from), .integer(q.to)])
    }

    /// Payments whose settlement outcome is unknown, of any age: `network, asset, amount, count, oldest`.
    public static func revenueAttention(now: Int64) -> SQLStatement {
        SQLStatement("""
            SELECT network, asset, amount, COUNT(*), MIN(claimed_at)
            FROM (SELECT network, asset, \(charged), claimed_at FROM x402_payments
                  WHERE state IN ('unknown', 'settling') AND (state = 'unknown' OR lease_until <= $1)) AS unknown
            GROUP BY network, asset, amount
            """, [.integer(now)])
    }

    // MARK: Reading

    static func revenueText(_ row: [SQLValue], _ i: Int) throws(StorageError) -> String {
        guard i < row.count, let value = row[i].text else { throw StorageError(.corrupt, "revenue: column \(i) is not text") }
        return value
    }

    static func revenueInteger(_ row: [SQLValue], _ i: Int) throws(StorageError) -> Int64 {
        guard i < row.count, let value = row[i].integer else { throw StorageError(.corrupt, "revenue: column \(i) is not an integer") }
        return value
    }

    /// `amount × count` from the columns at `i` (the amount) and `i + 1` (the count).
    static func revenueTotal(_ row: [SQLValue], _ i: Int) throws(StorageError) -> (payments: Int, total: DecimalSum) {
        let text = try revenueText(row, i)
        guard let amount = DecimalSum(text) else { throw StorageError(.corrupt, "x402_payments: the amount \"\(text.prefix(80))\" is not a decimal number") }
        let count = Int(try revenueInteger(row, i + 1))
        var total = DecimalSum()
        total.add(amount, times: count)
        return (count, total)
    }

    /// The series, each (bucket, route, asset) once.
    public static func revenueLines(_ rows: [[SQLValue]], query: RevenueQuery) throws(StorageError) -> [RevenueSummary.RevenueLine] {
        var lines: [String: RevenueSummary.RevenueLine] = [:]
        for row in rows {
            let bucket = try revenueInteger(row, 0) * query.bucketMilliseconds
            let (route, network, asset) = (try revenueText(row, 1), try revenueText(row, 2), try revenueText(row, 3))
            let (payments, total) = try revenueTotal(row, 4)
            let key = "\(bucket)\u{0}\(route)\u{0}\(network)\u{0}\(asset)"
            var line = lines[key] ?? RevenueSummary.RevenueLine(bucketStart: bucket, routeID: route, network: network, asset: asset,
                                                                payments: 0, total: DecimalSum())
            line.payments += payments
            line.total.add(total)
            lines[key] = line
        }
        return Array(lines.values)
    }

    public static func outcomeLine(_ row: [SQLValue]) throws(StorageError) -> RevenueSummary.OutcomeLine {
        guard let state = PaymentState(rawValue: try revenueText(row, 0)) else { throw StorageError(.corrupt, "x402_payments: unknown state") }
        return RevenueSummary.OutcomeLine(state: state, reason: row.count > 1 ? row[1].text : nil,
                                          afterSettling: try revenueInteger(row, 2) != 0, payments: Int(try revenueInteger(row, 3)))
    }

    /// Every payer of the window with its exact total per asset (ranked by ``RevenueSummary/topPayers(_:limit:)``).
    public static func payerLines(_ rows: [[SQLValue]]) throws(StorageError) -> [RevenueSummary.PayerLine] {
        var lines: [String: RevenueSummary.PayerLine] = [:]
        for row in rows {
            let (payer, network, asset) = (try revenueText(row, 0), try revenueText(row, 1), try revenueText(row, 2))
            let (payments, total) = try revenueTotal(row, 3)
            let key = "\(payer)\u{0}\(network)\u{0}\(asset)"
            var line = lines[key] ?? RevenueSummary.PayerLine(payer: payer, network: network, asset: asset, payments: 0, total: DecimalSum())
            line.payments += payments
            line.total.add(total)
            lines[key] = line
        }
        return Array(lines.values)
    }

    public static func latency(_ rows: [[SQLValue]]) throws(StorageError) -> RevenueSummary.SettlementLatency {
        guard let first = rows.first else { return RevenueSummary.SettlementLatency() }
        let count = Int(try revenueInteger(first, 2))
        var at: [Int: Int64] = [:]
        for row in rows { at[Int(try revenueInteger(row, 0))] = try revenueInteger(row, 1) }
        func value(_ percent: Int) -> Int64? { at[RevenueSummary.SettlementLatency.rank(percent: percent, count: count)] }
        return RevenueSummary.SettlementLatency(count: count, p50: value(50), p90: value(90), p99: value(99), max: at[count])
    }

    public static func attentionLines(_ rows: [[SQLValue]]) throws(StorageError) -> [RevenueSummary.AttentionLine] {
        var lines: [String: RevenueSummary.AttentionLine] = [:]
        for row in rows {
            let (network, asset) = (try revenueText(row, 0), try revenueText(row, 1))
            let (payments, total) = try revenueTotal(row, 2)
            let oldest = try revenueInteger(row, 4)
            let key = "\(network)\u{0}\(asset)"
            var line = lines[key] ?? RevenueSummary.AttentionLine(network: network, asset: asset, payments: 0, total: DecimalSum(),
                                                                  oldestClaimedAt: oldest)
            line.payments += payments
            line.total.add(total)
            line.oldestClaimedAt = min(line.oldestClaimedAt, oldest)
            lines[key] = line
        }
        return Array(lines.values)
    }
}

extension SQLPaymentStore {
    /// The five statements run concurrently (each its own read: SQLite's readers, PostgreSQL's pool).
    public func revenue(_ query: RevenueQuery) async throws -> RevenueSummary {
        let database = database
        async let series = database.query(LedgerSQL.revenueSeries(query))
        async let outcomes = database.query(LedgerSQL.revenueOutcomes(query))
        async let payers = database.query(LedgerSQL.revenuePayers(query))
        async let latencies = database.query(LedgerSQL.revenueLatencies(query))
        async let attention = database.query(LedgerSQL.revenueAttention(now: now()))
        return RevenueSummary(
            revenue: try LedgerSQL.revenueLines(try await series, query: query),
            outcomes: try await outcomes.map { row throws(StorageError) in try LedgerSQL.outcomeLine(row) },
            payers: RevenueSummary.topPayers(try LedgerSQL.payerLines(try await payers), limit: query.topPayers),
            latency: try LedgerSQL.latency(try await latencies),
            attention: try LedgerSQL.attentionLines(try await attention))
    }
}

import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayStorageSQLite
import Testing

/// A benchmark, not a timed test: with `X402_DASHBOARD_BENCH=1`, one dashboard refresh over a SQLite
/// ledger of 100 000 rows (30 days, 5 routes at one price each, 1 000 payers, a tenth refused): the
/// store's aggregation, the recent rows, and the page, each timed and printed, then each statement
/// of the 30-day aggregation.
@Suite("Dashboard benchmark")
struct DashboardBenchmarkTests {
    static let enabled = ProcessInfo.processInfo.environment["X402_DASHBOARD_BENCH"] != nil
    /// `X402_DASHBOARD_BENCH=distinct`: every payment of a different amount (the worst case: one
    /// SQL group per payment) instead of one price per route.
    static let distinctAmounts = ProcessInfo.processInfo.environment["X402_DASHBOARD_BENCH"] == "distinct"

    @Test("a dashboard of 100 000 ledger rows (X402_DASHBOARD_BENCH=1)", .enabled(if: enabled))
    func hundredThousandRows() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let now: Int64 = 1_800_000_000_000
        let store = try await SQLPaymentStore(database: try SQLiteDatabase(path: dir + "/ledger.db"),
                                              settings: StoreSettings(instanceID: "bench", clock: { now }))
        let rows = 100_000
        let spacing = DashboardWindow.month.milliseconds / Int64(rows)
        _ = try await store.database.query(SQLStatement("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(rows))
            INSERT INTO x402_payments (network, asset, payer, nonce, scheme, pay_to, amount, route_id, method, path, request_id, state,
              attempt, instance_id, lease_until, valid_before, verified_payer, reason, transaction_hash, claimed_at, settling_at, finished_at, updated_at)
            SELECT 'eip155:84532', '0x036cbd53842c5426634e7929541ec2318f3dcf7e', printf('0x%040x', i % 1000), printf('0x%064x', i), 'exact',
              '0x209693bc6afc0c5328ba36faf03c514ef312287c', CAST(CASE WHEN $3 = 1 THEN 1000 + i ELSE 1000 * (1 + i % 5) END AS TEXT), 'GET /r' || (i % 5), 'GET', '/r', 'req-' || i,
              CASE WHEN i % 10 = 0 THEN 'refused' ELSE 'settled' END, 1, 'bench', 0, 0, printf('0x%040x', i % 1000),
              CASE WHEN i % 10 = 0 THEN 'insufficient_funds' ELSE NULL END,
              CASE WHEN i % 10 = 0 THEN NULL ELSE printf('0x%064x', i) END,
              $1 - i * $2, $1 - i * $2 + 5, $1 - i * $2 + 5 + (i % 900), $1 - i * $2 + 905
            FROM n
            """, [.integer(now), .integer(spacing), .integer(Self.distinctAmounts ? 1 : 0)]))
        let clock = ContinuousClock()
        for window in DashboardWindow.allCases {
            let query = window.query(now: now)
            var summary = RevenueSummary(), recent: [PaymentRecord] = []
            let aggregated = try await clock.measure { summary = try await store.revenue(query) }
            let listed = try await clock.measure { recent = try await store.payments(PaymentQuery(since: query.from, limit: 25)) }
            var html = ""
            let rendered = clock.measure {
                html = DashboardPage(view: RevenueView(summary: summary, window: window, query: query), recent: recent,
                                     assets: AssetDirectory(), storeKind: "sqlite", now: now, signedIn: false).render(nonce: "n")
            }
            let counted = summary.outcomes.map(\.payments).reduce(0, +)
            print("dashboard \(window.rawValue): \(counted) rows aggregated in \(aggregated), recent rows in \(listed), page (\(html.utf8.count) bytes) in \(rendered)")
            #expect(window != .month || counted == rows)
        }
        // What each statement of the month's aggregation costs.
        let query = DashboardWindow.month.query(now: now)
        let statements: [(String, SQLStatement)] = [
            ("series", LedgerSQL.revenueSeries(query)), ("outcomes", LedgerSQL.revenueOutcomes(query)),
            ("payers", LedgerSQL.revenuePayers(query)), ("latencies", LedgerSQL.revenueLatencies(query)),
            ("unknown outcomes", LedgerSQL.revenueAttention(now: now)),
        ]
        for (name, statement) in statements {
            let took = try await clock.measure { _ = try await store.database.query(statement) }
            print("  \(name): \(took)")
        }
    }
}

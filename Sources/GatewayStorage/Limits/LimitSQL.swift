/// The statements of ``SQLLimitCounters`` (the same text on SQLite and PostgreSQL: upserts with a
/// condition and `RETURNING`).
public enum LimitSQL {
    /// Migration 3 of ``LedgerSQL/migrations``: the counters table and its expiry index. `value`:
    /// an allowance's requests counted in its window, or a bucket's full-again time (unix ns);
    /// `added`: what the bucket's last spend added (ns).
    public static let migration = [
        """
        CREATE TABLE x402_limit_counters (
          scope TEXT NOT NULL, client TEXT NOT NULL, window_start BIGINT NOT NULL,
          value BIGINT NOT NULL, added BIGINT NOT NULL, expires_at BIGINT NOT NULL,
          PRIMARY KEY (scope, client, window_start)
        )
        """,
        "CREATE INDEX x402_limit_counters_expiry ON x402_limit_counters (expires_at)",
    ]

    /// Buckets per statement of ``spend(_:)`` (5 values each, well under either database's limit).
    static let bucketsPerStatement = 500

    /// One more in the allowance row unless it holds `limit` already (the row is per window: it is
    /// never counted in after its window). Returns the count after, or no row.
    static func takeOne(_ counter: LimitCounter, limit: Int) -> SQLStatement {
        SQLStatement("""
            INSERT INTO x402_limit_counters (scope, client, window_start, value, added, expires_at) VALUES ($1, $2, $3, 1, 0, $4)
            ON CONFLICT (scope, client, window_start) DO UPDATE SET value = x402_limit_counters.value + 1
            WHERE x402_limit_counters.value < $5
            RETURNING value
            """, [.text(counter.scope), .text(counter.client), .integer(counter.window), .integer(counter.expiresAt),
                  .integer(Int64(limit))])
    }

    /// Each bucket (distinct) becomes `max(itself, since) + cost`: inserted as `since + cost`, or
    /// `max(old + cost, since + cost)`. It may be deleted a minute after it is full again. Returns
    /// `scope, client, value` of each.
    static func spend(_ spends: ArraySlice<BucketSpend>) -> SQLStatement {
        var values: [String] = []
        var binds: [SQLValue] = []
        for spend in spends {
            let n = binds.count
            values.append("($\(n + 1), $\(n + 2), 0, $\(n + 3), $\(n + 4), $\(n + 5))")
            let tat = spend.since + spend.cost
            binds += [.text(spend.bucket.scope), .text(spend.bucket.client), .integer(tat), .integer(spend.cost),
                      .integer(tat / 1_000_000 + 60_000)]
        }
        let later = "x402_limit_counters.value + excluded.added > excluded.value"
        return SQLStatement("""
            INSERT INTO x402_limit_counters (scope, client, window_start, value, added, expires_at) VALUES \(values.joined(separator: ", "))
            ON CONFLICT (scope, client, window_start) DO UPDATE SET
              value = CASE WHEN \(later) THEN x402_limit_counters.value + excluded.added ELSE excluded.value END,
              added = excluded.added,
              expires_at = CASE WHEN \(later) THEN (x402_limit_counters.value + excluded.added) / 1000000 + 60000
                                ELSE excluded.expires_at END
            RETURNING scope, client, value
            """, binds)
    }

    static func purge(now: Int64) -> SQLStatement {
        SQLStatement("DELETE FROM x402_limit_counters WHERE expires_at <= $1", [.integer(now)])
    }
}

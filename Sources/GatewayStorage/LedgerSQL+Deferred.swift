/// The deferred-settlement queue's statements (see ``DeferredSettlement``), shared by the SQL
/// backends.
extension LedgerSQL {
    /// What a take returns, in order (read by ``deferredSettlement(from:)``).
    static let takenColumns = """
        network, asset, payer, nonce, scheme, pay_to, amount, route_id, valid_before, claimed_at, upstream_status, \
        settle_attempts, x402_version, payment_payload, payment_requirements, transfer_method
        """

    /// Takes up to `limit` queued rows whose lease has ended, oldest lease first, for this instance
    /// until `leaseUntil`, counting a settle attempt; returns ``takenColumns`` per row. The outer
    /// condition repeats the inner one: a row another worker took meanwhile is not taken again.
    /// `skipLocked` (PostgreSQL): concurrent takes from several instances pass over each other's
    /// rows instead of waiting for them.
    public static func takePending(instance: String, now: Int64, leaseUntil: Int64, limit: Int, skipLocked: Bool) -> SQLStatement {
        SQLStatement("""
            UPDATE x402_payments SET instance_id = $1, lease_until = $3, settle_attempts = settle_attempts + 1, settling_at = $2,
              updated_at = $2
            WHERE state = 'settlement_pending' AND lease_until <= $2 AND (network, asset, payer, nonce) IN (
              SELECT network, asset, payer, nonce FROM x402_payments WHERE state = 'settlement_pending' AND lease_until <= $2
              ORDER BY lease_until LIMIT $4\(skipLocked ? " FOR UPDATE SKIP LOCKED" : ""))
            RETURNING \(takenColumns)
            """, [.text(instance), .integer(now), .integer(leaseUntil), .integer(Int64(max(0, limit)))])
    }

    /// The hand-over of a queued row by the request holding it (`attempt`), and its take by this
    /// instance's worker, in one change; returns ``takenColumns`` (then the key) when applied.
    public static func takeHandedOver(_ ticket: ClaimTicket, upstreamStatus: Int, forwardedAt: Int64, instance: String, now: Int64,
                                      leaseUntil: Int64) -> SQLStatement {
        SQLStatement(takeHandedOverSQL, keyBinds(ticket.key) + [
            .integer(Int64(ticket.attempt)), .integer(Int64(upstreamStatus)), .integer(forwardedAt), .text(instance),
            .integer(leaseUntil), .integer(now),
        ], hot: .takeHandedOver)
    }

    static let takeHandedOverSQL = takeHandedOverSQL(bind: { "$\($0)" }, from: "")

    /// ``takeHandedOver(_:upstreamStatus:forwardedAt:instance:now:leaseUntil:)``'s text, its values
    /// named by `bind(n)` and read `from` a source of rows (empty for one; `unnest` for a batch).
    static func takeHandedOverSQL(bind: (Int) -> String, from: String) -> String {
        """
        UPDATE x402_payments SET upstream_status = \(bind(6)), forwarded_at = \(bind(7)), instance_id = \(bind(8)),
          lease_until = \(bind(9)), settle_attempts = settle_attempts + 1, settling_at = \(bind(10)), updated_at = \(bind(10))
        \(from)
        WHERE \(key(bind)) AND attempt = \(bind(5)) AND state = 'settlement_pending' AND forwarded_at IS NULL
        RETURNING \(takenColumns), \(keyColumns)
        """
    }

    /// The settled outcome, the statement of every deferred payment (the others are rare).
    static let settledDeferredSQL = settledDeferredSQL(bind: { "$\($0)" }, from: "")

    static func settledDeferredSQL(bind: (Int) -> String, from: String) -> String {
        """
        UPDATE x402_payments SET state = 'settled', transaction_hash = \(bind(7)), charged_amount = amount, reason = NULL,
          finished_at = \(bind(5)), lease_until = \(bind(5)), updated_at = \(bind(5)), payment_payload = NULL, payment_requirements = NULL
        \(from)
        WHERE \(key(bind)) AND state = 'settlement_pending' AND settle_attempts = \(bind(6))
        RETURNING attempt, \(keyColumns)
        """
    }

    private static func key(_ bind: (Int) -> String) -> String {
        "network = \(bind(1)) AND asset = \(bind(2)) AND payer = \(bind(3)) AND nonce = \(bind(4))"
    }

    /// A taken row from the values of ``takenColumns``.
    public static func deferredSettlement(from v: [SQLValue]) throws(StorageError) -> DeferredSettlement {
        let c = Columns(values: v)
        let key = PaymentKey(network: try c.text(0), asset: try c.text(1), payer: try c.text(2), nonce: try c.text(3))
        var pending: PendingSettlement?
        if let version = c.optionalInt(12), let payload = c.optionalText(13), let requirements = c.optionalText(14) {
            pending = PendingSettlement(x402Version: Int(version), payload: payload, requirements: requirements)
        }
        return DeferredSettlement(
            ticket: DeferredTicket(key: key, settleAttempt: Int(try c.int(11))), routeID: try c.text(7),
            offer: PaymentOffer(scheme: try c.text(4), network: key.network, asset: key.asset, amount: try c.text(6), payTo: try c.text(5),
                                transferMethod: c.optionalText(15) ?? "eip3009"),
            validBefore: UInt64(max(0, try c.int(8))), claimedAt: try c.int(9), upstreamStatus: c.optionalInt(10).map { Int($0) },
            pending: pending)
    }

    /// Records a take's outcome when the ticket still holds the row; returns `attempt` when applied.
    public static func finishPending(_ ticket: DeferredTicket, _ outcome: DeferredOutcome, now: Int64) -> SQLStatement {
        let ended = "finished_at = $5, lease_until = $5, updated_at = $5, payment_payload = NULL, payment_requirements = NULL"
        var binds = keyBinds(ticket.key) + [.integer(now), .integer(Int64(ticket.settleAttempt))]
        let sets: String
        switch outcome {
        case .settled(let transaction):
            return SQLStatement(settledDeferredSQL, binds + [.text(transaction)], hot: .settledDeferred)
        case .failed(let reason), .unknown(let reason), .released(let reason):
            let state: PaymentState = switch outcome {
            case .failed: .settleFailedAfterDelivery
            case .unknown: .unknown
            default: .released
            }
            sets = "state = '\(state.rawValue)', reason = $7, \(ended)"
            binds.append(.text(reason))
        case .retry(let reason, let notBefore):
            sets = "reason = $7, lease_until = $8, updated_at = $5"
            binds += [.text(reason), .integer(notBefore)]
        }
        return SQLStatement("""
            UPDATE x402_payments SET \(sets)
            WHERE \(keyMatch) AND state = 'settlement_pending' AND settle_attempts = $6
            RETURNING attempt
            """, binds)
    }

    /// The queued rows, grouped by route, payer and amount (read by ``summaryGroup(from:state:)``).
    public static let pendingGroups = SQLStatement("""
        SELECT route_id, payer, amount, COUNT(*), MIN(claimed_at) FROM x402_payments WHERE state = 'settlement_pending'
        GROUP BY route_id, payer, amount
        """)

    /// Deferred rows whose settlement outcome is unknown, grouped like ``pendingGroups``.
    public static let deferredUnknownGroups = SQLStatement("""
        SELECT route_id, payer, amount, COUNT(*), MIN(claimed_at) FROM x402_payments WHERE state = 'unknown' AND deferred = 1
        GROUP BY route_id, payer, amount
        """)

    public static func summaryGroup(from v: [SQLValue], state: PaymentState) throws(StorageError) -> DeferredSummary.Group {
        guard v.count == 5, let route = v[0].text, let payer = v[1].text, let amount = v[2].text, let count = v[3].integer,
              let oldest = v[4].integer
        else { throw StorageError(.corrupt, "x402_payments: a deferred group is not what the query returns") }
        return DeferredSummary.Group(routeID: route, payer: payer, amount: amount, state: state, count: Int(count), oldestClaimedAt: oldest)
    }

    /// Payers with a deferred failure finished at or after `since`, and their latest.
    public static func failedPayers(since: Int64) -> SQLStatement {
        SQLStatement("""
            SELECT payer, MAX(finished_at) FROM x402_payments WHERE state = 'settle_failed_after_delivery' AND finished_at >= $1
            GROUP BY payer
            """, [.integer(since)])
    }

    public static let countDeferredFailures = SQLStatement("SELECT COUNT(*) FROM x402_payments WHERE state = 'settle_failed_after_delivery'")

    /// At the start of an instance that alone uses its id: queued rows it held go back to the
    /// queue at once (lease ended), and those its requests never handed over (the upstream's answer
    /// never came back) are released. Returns the new state of each row changed.
    public static func recoverPending(_ instance: String, now: Int64) -> SQLStatement {
        SQLStatement("""
            UPDATE x402_payments SET lease_until = $2, updated_at = $2,
              state = CASE WHEN forwarded_at IS NULL THEN 'released' ELSE state END,
              reason = CASE WHEN forwarded_at IS NULL THEN 'instance_restarted' ELSE reason END,
              finished_at = CASE WHEN forwarded_at IS NULL THEN $2 ELSE finished_at END,
              payment_payload = CASE WHEN forwarded_at IS NULL THEN NULL ELSE payment_payload END,
              payment_requirements = CASE WHEN forwarded_at IS NULL THEN NULL ELSE payment_requirements END
            WHERE instance_id = $1 AND state = 'settlement_pending'
            RETURNING state
            """, [.text(instance), .integer(now)])
    }
}

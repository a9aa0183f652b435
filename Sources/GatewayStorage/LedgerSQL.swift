import Synchronization

/// The ledger's schema and statements, shared by the SQL backends (SQLite and PostgreSQL speak the
/// same dialect for everything here: upserts with a condition, `RETURNING`, `TEXT` and `BIGINT`).
/// Amounts are decimal strings (a uint256 fits no SQL integer); times are unix milliseconds.
public enum LedgerSQL {
    /// Migrations in order; the schema's version is how many have run (kept in `x402_meta`).
    public static let migrations: [[String]] = [
        [
            "CREATE TABLE x402_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """
            CREATE TABLE x402_payments (
              network TEXT NOT NULL, asset TEXT NOT NULL, payer TEXT NOT NULL, nonce TEXT NOT NULL,
              scheme TEXT NOT NULL, pay_to TEXT NOT NULL, amount TEXT NOT NULL,
              route_id TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, request_id TEXT NOT NULL,
              state TEXT NOT NULL, prior_state TEXT, attempt BIGINT NOT NULL,
              instance_id TEXT NOT NULL, lease_until BIGINT NOT NULL, valid_before BIGINT NOT NULL,
              verified_payer TEXT, upstream_status BIGINT, reason TEXT, transaction_hash TEXT,
              charged_amount TEXT, payment_identifier TEXT,
              claimed_at BIGINT NOT NULL, verified_at BIGINT, forwarded_at BIGINT, settling_at BIGINT,
              finished_at BIGINT, reconciled_at BIGINT, updated_at BIGINT NOT NULL,
              PRIMARY KEY (network, asset, payer, nonce)
            )
            """,
            "CREATE INDEX x402_payments_claimed ON x402_payments (claimed_at)",
            // Only rows that need attention: a step of every payment leaves this index untouched.
            "CREATE INDEX x402_payments_unsettled ON x402_payments (state, claimed_at) WHERE state IN ('unknown', 'settling')",
            "CREATE INDEX x402_payments_route ON x402_payments (route_id, claimed_at)",
        ],
        // 2: payment identifiers (the payment-identifier extension) and the answers stored for them.
        [
            """
            CREATE TABLE x402_payment_identifiers (
              route_id TEXT NOT NULL, id TEXT NOT NULL,
              payment_hash TEXT NOT NULL, binding_hash TEXT NOT NULL,
              network TEXT NOT NULL, asset TEXT NOT NULL, payer TEXT NOT NULL, nonce TEXT NOT NULL, request_id TEXT NOT NULL,
              state TEXT NOT NULL, attempt BIGINT NOT NULL, instance_id TEXT NOT NULL, lease_until BIGINT NOT NULL,
              response_status BIGINT, response_headers TEXT, response_body TEXT,
              created_at BIGINT NOT NULL, completed_at BIGINT, expires_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
              PRIMARY KEY (route_id, id)
            )
            """,
            "CREATE INDEX x402_payment_identifiers_expiry ON x402_payment_identifiers (expires_at)",
        ],
        // 3: deferred settlement: the payment kept to settle it after delivery, the settle attempts,
        // and the queue and its failures, indexed apart from the rest of the ledger.
        [
            "ALTER TABLE x402_payments ADD COLUMN deferred BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE x402_payments ADD COLUMN settle_attempts BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE x402_payments ADD COLUMN x402_version BIGINT",
            "ALTER TABLE x402_payments ADD COLUMN payment_payload TEXT",
            "ALTER TABLE x402_payments ADD COLUMN payment_requirements TEXT",
            "CREATE INDEX x402_payments_pending ON x402_payments (lease_until) WHERE state = 'settlement_pending'",
            "CREATE INDEX x402_payments_deferred_unknown ON x402_payments (claimed_at) WHERE state = 'unknown' AND deferred = 1",
            "CREATE INDEX x402_payments_settle_failed ON x402_payments (finished_at) WHERE state = 'settle_failed_after_delivery'",
        ],
        // 4: Permit2 and `upto`. `transfer_method` says which nonce the key holds (EIP-3009's or
        // Permit2's; NULL on older rows: EIP-3009); `charge_basis` how an upto charge was decided.
        // `amount` stays the offer's (for upto the maximum); `charged_amount`, now written with
        // `settling`, what the settlement moves.
        [
            "ALTER TABLE x402_payments ADD COLUMN transfer_method TEXT",
            "ALTER TABLE x402_payments ADD COLUMN charge_basis TEXT",
        ],
        // 5: the counters of rate limits and free allowances (``LimitSQL``).
        LimitSQL.migration,
    ]

    public static var schemaVersion: Int { migrations.count }

    /// The statements that bring a database at schema `found` (nil: no ledger tables yet) to
    /// ``schemaVersion``, the version record included. Run them in one transaction.
    public static func upgrade(from found: Int?) throws(StorageError) -> [SQLStatement] {
        try checkVersion(found)
        let current = found ?? 0
        guard current < schemaVersion else { return [] }
        return migrations[current...].flatMap { $0.map { SQLStatement($0) } } + [writeVersion(schemaVersion)]
    }

    /// Reads the schema version; run only when `x402_meta` exists.
    public static let readVersion = SQLStatement("SELECT value FROM x402_meta WHERE key = 'schema_version'")

    public static func writeVersion(_ version: Int) -> SQLStatement {
        SQLStatement("""
            INSERT INTO x402_meta (key, value) VALUES ('schema_version', $1)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """, [.text(String(version))])
    }

    public static func readMeta(_ key: String) -> SQLStatement {
        SQLStatement("SELECT value FROM x402_meta WHERE key = $1", [.text(key)])
    }

    /// Keeps the first value written for `key`; returns nothing (read it back with ``readMeta(_:)``).
    public static func writeMetaOnce(_ key: String, _ value: String) -> SQLStatement {
        SQLStatement("INSERT INTO x402_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", [.text(key), .text(value)])
    }

    /// Rejects a version this binary does not know.
    public static func checkVersion(_ found: Int?) throws(StorageError) {
        if let found, found > schemaVersion {
            throw StorageError(.schemaTooNew, "the database's schema is version \(found); this binary knows up to \(schemaVersion): upgrade the gateway")
        }
    }

    // MARK: Claims

    private static func list(_ states: [PaymentState]) -> String {
        states.map { "'\($0.rawValue)'" }.joined(separator: ", ")
    }

    private static let inFlight = PaymentState.allCases.filter(\.isInFlight)

    static let claimSQL = claimSQL(rows: { "VALUES (\($0))" }, bind: { "$\($0)" })
    static let claimPendingSQL = claimSQL(rows: { "VALUES (\($0))" }, bind: { "$\($0)" }, pending: true)

    /// The claim's text. `bind(n)` names the n-th value and `rows` turns the row's expressions into
    /// the rows inserted: `VALUES (…)` with `$n` for one claim, or (``HotStatement/batchedSQL(bind:from:)``)
    /// a `SELECT` over PostgreSQL's `unnest` for many. A take-over is judged against the time of the
    /// claim being made (`excluded.updated_at`), so each row of a batch carries its own.
    ///
    /// `pending`: the deferred claim, straight into `settlement_pending` with the payment kept to
    /// settle it (values 18–20: version, payload, requirements); it takes only rows a fresh claim
    /// may take and whose settlement was never attempted (no unknown outcome behind it).
    static func claimSQL(rows: (String) -> String, bind: (Int) -> String, pending: Bool = false) -> String {
        // 17: the payment identifier, '' for none (NULL would keep the claim out of PostgreSQL's batches).
        var values = (1...11).map(bind) + [pending ? "'settlement_pending'" : "'claimed'", "NULL", "1"] + [12, 13, 14, 15, 15, 16].map(bind)
            + ["NULLIF(\(bind(17)), '')"]
        var columns = ""
        var deferredSet = "deferred = 0, settle_attempts = 0, x402_version = NULL, payment_payload = NULL, payment_requirements = NULL"
        var takable = """
            x402_payments.state IN (\(list(PaymentState.claimable)))
               OR (x402_payments.state IN (\(list(inFlight))) AND x402_payments.lease_until <= excluded.updated_at)
            """
        if pending {
            values += ["1"] + [18, 19, 20].map(bind)
            columns = ", deferred, x402_version, payment_payload, payment_requirements"
            deferredSet = """
                deferred = 1, settle_attempts = 0, x402_version = excluded.x402_version, payment_payload = excluded.payment_payload,
                  payment_requirements = excluded.payment_requirements
                """
            takable = """
                x402_payments.state IN (\(list(PaymentState.claimable.filter { !PaymentState.outcomeUnknown.contains($0) })))
                   OR (x402_payments.state IN (\(list(inFlight.filter { !PaymentState.outcomeUnknown.contains($0) })))
                       AND x402_payments.lease_until <= excluded.updated_at
                       AND (x402_payments.prior_state IS NULL OR x402_payments.prior_state NOT IN (\(list(PaymentState.outcomeUnknown)))))
                """
        }
        return """
            INSERT INTO x402_payments (network, asset, payer, nonce, scheme, pay_to, amount, route_id, method, path, request_id,
              state, prior_state, attempt, instance_id, lease_until, valid_before, claimed_at, updated_at, transfer_method,
              payment_identifier\(columns))
            \(rows(values.joined(separator: ", ")))
            ON CONFLICT (network, asset, payer, nonce) DO UPDATE SET
              prior_state = CASE WHEN x402_payments.state IN ('claimed', 'verified', 'forwarded')
                                  AND x402_payments.prior_state IN ('settling', 'unknown')
                                 THEN x402_payments.prior_state ELSE x402_payments.state END,
              state = \(pending ? "'settlement_pending'" : "'claimed'"), attempt = x402_payments.attempt + 1,
              scheme = excluded.scheme, pay_to = excluded.pay_to, amount = excluded.amount, route_id = excluded.route_id,
              method = excluded.method, path = excluded.path, request_id = excluded.request_id,
              instance_id = excluded.instance_id, lease_until = excluded.lease_until, valid_before = excluded.valid_before,
              claimed_at = excluded.claimed_at, updated_at = excluded.updated_at, transfer_method = excluded.transfer_method,
              payment_identifier = excluded.payment_identifier, verified_payer = NULL, upstream_status = NULL, reason = NULL, transaction_hash = NULL, charged_amount = NULL,
              charge_basis = NULL,
              verified_at = NULL, forwarded_at = NULL, settling_at = NULL, finished_at = NULL, reconciled_at = NULL,
              \(deferredSet)
            WHERE \(takable)
            RETURNING attempt, prior_state, \(keyColumns)
            """
    }

    /// The key's columns, last in what the hot statements return, so that a batch's rows can be
    /// matched to the statements they answer.
    static let keyColumns = "network, asset, payer, nonce"

    /// Inserts the row, or takes over a claimable one; returns `attempt, prior_state` (then the key) when claimed, no row when taken.
    public static func claim(_ r: ClaimRequest, instance: String, now: Int64, leaseUntil: Int64) -> SQLStatement {
        SQLStatement(claimSQL,
            [.text(r.key.network), .text(r.key.asset), .text(r.key.payer), .text(r.key.nonce),
             .text(r.offer.scheme), .text(r.offer.payTo), .text(r.offer.amount),
             .text(r.routeID), .text(r.method), .text(r.path), .text(r.requestID),
             .text(instance), .integer(leaseUntil), .integer(Int64(clamping: r.validBefore)), .integer(now), .text(r.offer.transferMethod),
             .text(r.paymentIdentifier ?? "")],
            hot: .claim)
    }

    /// The deferred claim (see ``claimSQL(rows:bind:pending:)``); returns `attempt, prior_state` (then the key) when claimed.
    public static func claimPending(_ r: ClaimRequest, _ p: PendingSettlement, instance: String, now: Int64, leaseUntil: Int64) -> SQLStatement {
        SQLStatement(claimPendingSQL,
            [.text(r.key.network), .text(r.key.asset), .text(r.key.payer), .text(r.key.nonce),
             .text(r.offer.scheme), .text(r.offer.payTo), .text(r.offer.amount),
             .text(r.routeID), .text(r.method), .text(r.path), .text(r.requestID),
             .text(instance), .integer(leaseUntil), .integer(Int64(clamping: r.validBefore)), .integer(now), .text(r.offer.transferMethod),
             .text(r.paymentIdentifier ?? ""), .integer(Int64(p.x402Version)), .text(p.payload), .text(p.requirements)],
            hot: .claimPending)
    }

    /// What a claim's returned row means.
    public static func claimResult(_ row: [SQLValue]?, key: PaymentKey) -> ClaimResult {
        guard let row, let attempt = row.first?.integer else { return .taken }
        let ticket = ClaimTicket(key: key, attempt: Int(attempt))
        let prior = row.count > 1 ? row[1].text.flatMap(PaymentState.init(rawValue:)) : nil
        if let prior, PaymentState.outcomeUnknown.contains(prior) { return .claimedAfterUnknownOutcome(ticket) }
        return .claimed(ticket)
    }

    // MARK: Steps

    static let keyMatch = "network = $1 AND asset = $2 AND payer = $3 AND nonce = $4"

    static func keyBinds(_ key: PaymentKey) -> [SQLValue] {
        [.text(key.network), .text(key.asset), .text(key.payer), .text(key.nonce)]
    }

    /// Applies a chain of steps (see ``PaymentStep/isChain(_:)``) as one change when the ticket
    /// still holds the claim and the row is in a predecessor state of the first; returns `attempt`
    /// when applied, no row otherwise (then ``explain(_:ticket:steps:)``).
    public static func record(_ ticket: ClaimTicket, _ steps: [PaymentStep], now: Int64, leaseUntil: Int64) -> SQLStatement {
        var binds = keyBinds(ticket.key) + [.integer(Int64(ticket.attempt)), .integer(now), .integer(leaseUntil)]
        for step in steps {
            if case .pending(let p) = step.transition {
                binds += [.integer(Int64(p.x402Version)), .text(p.payload), .text(p.requirements)]
                continue
            }
            binds.append(.integer(step.at))
            switch step.transition {
            case .verified(let payer): binds.append(.text(payer.lowercased()))
            case .forwarded(let status): binds.append(.integer(Int64(status)))
            case .settling: binds += [.text(step.charge?.amount ?? ""), .text(step.charge?.basis ?? "")]
            case .settled(let hash): binds.append(.text(hash))
            case .refused(let why), .released(let why), .unknown(let why): binds.append(.text(why))
            case .pending: break
            }
        }
        let targets = steps.map(\.transition.target)
        return SQLStatement(recordSQL(targets), binds, hot: HotStatement.record(targets))
    }

    /// The statement for a chain of step kinds: `$5` attempt, `$6` now, `$7` lease, then each
    /// step's time and value (`settling`: the charge's amount and basis, empty for the offer's
    /// amount). Made once per chain.
    static func recordSQL(_ targets: [PaymentState]) -> String {
        if let made = madeRecordSQL.withLock({ $0[targets] }) { return made }
        let sql = recordSQL(targets, bind: { "$\($0)" }, from: "")
        madeRecordSQL.withLock { $0[targets] = sql }
        return sql
    }

    /// ``recordSQL(_:)`` with the values named by `bind(n)` and read `from` a source of rows
    /// (empty for one row of `$n` values; PostgreSQL's `unnest` for a batch).
    static func recordSQL(_ targets: [PaymentState], bind: (Int) -> String, from: String) -> String {
        var next = 8
        func nextBind() -> String {
            defer { next += 1 }
            return bind(next)
        }
        var sets: [String] = []
        for target in targets {
            if target == .settlementPending {
                sets.append("deferred = 1, x402_version = \(nextBind()), payment_payload = \(nextBind()), payment_requirements = \(nextBind())")
                continue
            }
            let at = nextBind()
            switch target {
            case .verified: sets.append("verified_payer = \(nextBind()), verified_at = \(at)")
            case .forwarded: sets.append("upstream_status = \(nextBind()), forwarded_at = \(at)")
            case .settling:
                let (charged, basis) = (nextBind(), nextBind())
                sets.append("settling_at = \(at), charged_amount = COALESCE(NULLIF(\(charged), ''), amount), charge_basis = NULLIF(\(basis), '')")
            case .settled: sets.append("transaction_hash = \(nextBind()), charged_amount = COALESCE(charged_amount, amount), finished_at = \(at)")
            default:  // refused, released, unknown: the payment kept for a deferred settlement goes
                sets.append("reason = \(nextBind()), finished_at = \(at), payment_payload = NULL, payment_requirements = NULL")
            }
        }
        // `forwarded` alone after `settled` (under `before`) leaves the row settled, and after
        // `settlement_pending` leaves it queued and hands it to the settlement workers (its lease
        // ends now); in a longer chain the last step's state wins.
        let state, lease: String
        if targets == [.forwarded] {
            state = "CASE WHEN state IN ('settled', 'settlement_pending') THEN state ELSE 'forwarded' END"
            lease = "CASE WHEN state = 'settlement_pending' THEN \(bind(6)) ELSE \(bind(7)) END"
        } else {
            state = "'\(targets.last!.rawValue)'"
            lease = bind(7)
        }
        let key = "network = \(bind(1)) AND asset = \(bind(2)) AND payer = \(bind(3)) AND nonce = \(bind(4))"
        return """
            UPDATE x402_payments SET state = \(state), \(sets.joined(separator: ", ")), lease_until = \(lease), updated_at = \(bind(6))
            \(from)
            WHERE \(key) AND attempt = \(bind(5)) AND state IN (\(list(PaymentTransition.predecessors(of: targets[0]))))
            RETURNING attempt, \(keyColumns)
            """
    }

    /// The types of a chain's values, in the order of ``record(_:_:now:leaseUntil:)``'s binds.
    static func recordBindTypes(_ targets: [PaymentState]) -> [SQLType] {
        var types: [SQLType] = [.text, .text, .text, .text, .integer, .integer, .integer]
        for target in targets {
            if target == .settlementPending {
                types += [.integer, .text, .text]
                continue
            }
            types.append(.integer)  // the step's time
            switch target {
            case .forwarded: types.append(.integer)
            case .settling: types += [.text, .text]  // the charge's amount and basis
            default: types.append(.text)  // verified's payer, settled's transaction, a reason
            }
        }
        return types
    }

    private static let madeRecordSQL = Mutex<[[PaymentState]: String]>([:])

    /// The row's state and attempt, to explain a step that changed nothing.
    public static func stateOf(_ key: PaymentKey) -> SQLStatement {
        SQLStatement("SELECT state, attempt FROM x402_payments WHERE \(keyMatch)", keyBinds(key))
    }

    /// A chain of steps that changed nothing: a repeat (fine: the row is in the state the chain
    /// ends in), a lost claim, or steps out of order.
    public static func explain(_ row: [SQLValue]?, ticket: ClaimTicket, steps: [PaymentStep]) throws(StorageError) {
        guard let row, row.count == 2, let state = row[0].text.flatMap(PaymentState.init(rawValue:)), let attempt = row[1].integer,
              attempt == Int64(ticket.attempt)
        else {
            throw StorageError(.leaseLost, "\(ticket.key) attempt \(ticket.attempt) is no longer held")
        }
        if let last = steps.last?.transition, state == last.state(after: state) { return }
        throw StorageError(.outOfOrder, "\(steps.first?.transition.target.rawValue ?? "no step") cannot follow \(state.rawValue)")
    }

    /// At the start of an instance that alone uses its id: the claims its previous run left in
    /// flight died with it. `settling` ones, and retries of an unknown outcome, become `unknown`
    /// (a settlement may have gone out); the others are released. Returns the new state of each row changed.
    public static func recoverInstance(_ instance: String, now: Int64) -> SQLStatement {
        SQLStatement("""
            UPDATE x402_payments SET state = CASE WHEN state = 'settling' OR prior_state IN ('settling', 'unknown')
                                               THEN 'unknown' ELSE 'released' END,
              reason = 'instance_restarted', finished_at = $2, updated_at = $2, lease_until = $2
            WHERE instance_id = $1 AND state IN (\(list(inFlight)))
            RETURNING state
            """, [.text(instance), .integer(now)])
    }

    // MARK: Reconciliation

    /// Returns `attempt` when the row was unknown (or settling with an ended lease) and is now reconciled.
    public static func reconcile(_ key: PaymentKey, attempt: Int, _ outcome: ReconciledOutcome, now: Int64) -> SQLStatement {
        let (state, hash): (PaymentState, String?) = switch outcome {
        case .settled(let transaction): (.reconciledSettled, transaction)
        case .unsettled: (.reconciledUnsettled, nil)
        }
        return SQLStatement("""
            UPDATE x402_payments SET state = $5, transaction_hash = COALESCE($6, transaction_hash), reconciled_at = $7, updated_at = $7
            WHERE \(keyMatch) AND attempt = $8 AND (state = 'unknown' OR (state = 'settling' AND lease_until <= $7))
            RETURNING attempt
            """, keyBinds(key) + [.text(state.rawValue), SQLValue(hash), .integer(now), .integer(Int64(attempt))])
    }

    // MARK: Reading

    /// The columns ``record(from:)`` reads, in order.
    public static let columns = """
        network, asset, payer, nonce, scheme, pay_to, amount, route_id, method, path, request_id, state, attempt, instance_id, \
        lease_until, valid_before, verified_payer, upstream_status, reason, transaction_hash, claimed_at, verified_at, \
        forwarded_at, settling_at, finished_at, reconciled_at, updated_at, deferred, settle_attempts, transfer_method, charged_amount, \
        charge_basis, payment_identifier
        """

    public static func payments(_ q: PaymentQuery) -> SQLStatement {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        func add(_ condition: (String) -> String, _ value: SQLValue) {
            binds.append(value)
            conditions.append(condition("$\(binds.count)"))
        }
        if let since = q.since { add({ "claimed_at >= \($0)" }, .integer(since)) }
        if let before = q.before { add({ "claimed_at < \($0)" }, .integer(before)) }
        if let after = q.after {
            // The listing's order as one row value: both databases compare it part by part.
            let first = binds.count + 1
            binds += [.integer(after.claimedAt), .text(after.key.network), .text(after.key.asset), .text(after.key.payer), .text(after.key.nonce)]
            conditions.append("(claimed_at, network, asset, payer, nonce) < (\((first..<first + 5).map { "$\($0)" }.joined(separator: ", ")))")
        }
        if let route = q.routeID { add({ "route_id = \($0)" }, .text(route)) }
        if let payer = q.payer { add({ "payer = \($0)" }, .text(payer)) }
        if let states = q.states { conditions.append("state IN (\(states.isEmpty ? "NULL" : list(states)))") }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return SQLStatement("""
            SELECT \(columns) FROM x402_payments \(filter)
            ORDER BY claimed_at DESC, network DESC, asset DESC, payer DESC, nonce DESC LIMIT $\(binds.count + 1)
            """, binds + [.integer(Int64(max(0, q.limit)))])
    }

    /// The values of a returned `x402_payments` row, read by position.
    struct Columns {
        let values: [SQLValue]

        func text(_ i: Int) throws(StorageError) -> String {
            guard i < values.count, let value = values[i].text else { throw StorageError(.corrupt, "x402_payments: column \(i) is not text") }
            return value
        }

        func int(_ i: Int) throws(StorageError) -> Int64 {
            guard i < values.count, let value = values[i].integer else {
                throw StorageError(.corrupt, "x402_payments: column \(i) is not an integer")
            }
            return value
        }

        func optionalText(_ i: Int) -> String? { i < values.count ? values[i].text : nil }
        func optionalInt(_ i: Int) -> Int64? { i < values.count ? values[i].integer : nil }
    }

    /// A ledger row from the values of ``columns``, in order.
    public static func record(from v: [SQLValue]) throws(StorageError) -> PaymentRecord {
        let c = Columns(values: v)
        func text(_ i: Int) throws(StorageError) -> String { try c.text(i) }
        func int(_ i: Int) throws(StorageError) -> Int64 { try c.int(i) }
        func optionalText(_ i: Int) -> String? { c.optionalText(i) }
        func optionalInt(_ i: Int) -> Int64? { c.optionalInt(i) }
        guard let state = PaymentState(rawValue: try text(11)) else { throw StorageError(.corrupt, "x402_payments: unknown state") }
        return PaymentRecord(
            key: PaymentKey(network: try text(0), asset: try text(1), payer: try text(2), nonce: try text(3)),
            offer: PaymentOffer(scheme: try text(4), network: try text(0), asset: try text(1), amount: try text(6), payTo: try text(5),
                                transferMethod: optionalText(29) ?? "eip3009"),
            routeID: try text(7), method: try text(8), path: try text(9), requestID: try text(10), state: state,
            attempt: Int(try int(12)), instanceID: try text(13), leaseUntil: try int(14), validBefore: UInt64(max(0, try int(15))),
            verifiedPayer: optionalText(16), upstreamStatus: optionalInt(17).map { Int($0) }, reason: optionalText(18),
            transaction: optionalText(19), chargedAmount: optionalText(30), chargeBasis: optionalText(31), claimedAt: try int(20),
            verifiedAt: optionalInt(21), forwardedAt: optionalInt(22), settlingAt: optionalInt(23), finishedAt: optionalInt(24),
            reconciledAt: optionalInt(25), updatedAt: try int(26), deferred: (optionalInt(27) ?? 0) != 0, settleAttempts: Int(optionalInt(28) ?? 0),
            paymentIdentifier: optionalText(32))
    }
}

import Synchronization

/// A SQL database as the ledger uses it: one statement at a time, each durable when it returns.
/// The SQLite and PostgreSQL backends implement it; ``SQLPaymentStore`` holds the logic they share.
public protocol SQLDatabase: Sendable {
    /// "sqlite", "postgres".
    var kind: String { get }
    /// Runs one statement in its own transaction and returns its rows (values in column order).
    /// Failures are ``StorageError``s (`unavailable` when the database cannot be reached or written).
    func query(_ statement: SQLStatement) async throws -> [[SQLValue]]
    /// Brings the schema to ``LedgerSQL/schemaVersion`` with ``LedgerSQL/upgrade(from:)``, in one
    /// transaction that no other process migrates at the same time; refuses a newer schema.
    func migrate() async throws
}

/// The payment store over any ``SQLDatabase``: the statements of ``LedgerSQL``, the same answers
/// as ``InMemoryPaymentStore`` (one conformance suite checks every backend).
public final class SQLPaymentStore<Database: SQLDatabase>: PaymentStore {
    public let database: Database
    public let instanceID: String
    private let settings: StoreSettings
    /// When expired identifier records were last purged (unix ms): at most once a minute.
    private let lastPurge = Atomic<Int64>(0)
    public var kind: String { database.kind }

    /// Migrates the schema, then settles the instance id: `settings.instanceID` when given, else the
    /// one this database generated at its first start (kept in `x402_meta`).
    ///
    /// `migrate: false` (a reader beside a running gateway, such as `x402-gateway payments`) changes
    /// nothing: a schema other than this binary's is refused instead, so that a newer binary never
    /// migrates the database under a running older gateway.
    public init(database: Database, settings: StoreSettings, keepInstanceID: Bool = false, migrate: Bool = true) async throws {
        if migrate {
            try await database.migrate()
        } else {
            let found: Int?
            do {
                found = try await database.query(LedgerSQL.readVersion).first?.first?.text.flatMap { Int($0) }
            } catch {
                throw StorageError(.corrupt, "no ledger schema here (\(error))")
            }
            try LedgerSQL.checkVersion(found)
            guard let found, found == LedgerSQL.schemaVersion else {
                throw StorageError(.schemaTooOld, "the ledger's schema is version \(found.map(String.init) ?? "unknown"); this binary reads "
                    + "version \(LedgerSQL.schemaVersion) and does not migrate it while reading: start the gateway of this version once, or read with the gateway's own binary")
            }
        }
        self.database = database
        self.settings = settings
        if keepInstanceID {
            _ = try await database.query(LedgerSQL.writeMetaOnce("instance_id", settings.instanceID))
            let rows = try await database.query(LedgerSQL.readMeta("instance_id"))
            self.instanceID = rows.first?.first?.text ?? settings.instanceID
        } else {
            self.instanceID = settings.instanceID
        }
    }

    public func claim(_ request: ClaimRequest) async throws -> ClaimResult {
        let now = settings.clock()
        let rows = try await database.query(LedgerSQL.claim(request, instance: instanceID, now: now, leaseUntil: now + settings.leaseMilliseconds))
        return LedgerSQL.claimResult(rows.first, key: request.key)
    }

    public func record(_ ticket: ClaimTicket, _ steps: [PaymentStep]) async throws {
        guard PaymentStep.isChain(steps) else { throw StorageError(.outOfOrder, "steps out of order: \(steps.map(\.transition.target))") }
        let now = settings.clock()
        let applied = try await database.query(LedgerSQL.record(ticket, steps, now: now, leaseUntil: now + settings.leaseMilliseconds))
        guard applied.isEmpty else { return }
        let row = try await database.query(LedgerSQL.stateOf(ticket.key)).first
        try LedgerSQL.explain(row, ticket: ticket, steps: steps)
    }

    public func now() -> Int64 { settings.clock() }

    public func reconcile(_ key: PaymentKey, attempt: Int, _ outcome: ReconciledOutcome) async throws -> Bool {
        !(try await database.query(LedgerSQL.reconcile(key, attempt: attempt, outcome, now: settings.clock()))).isEmpty
    }

    public func payments(_ query: PaymentQuery) async throws -> [PaymentRecord] {
        try await database.query(LedgerSQL.payments(query)).map { row throws(StorageError) in try LedgerSQL.record(from: row) }
    }

    public func claimIdentifier(_ request: IdentifierClaimRequest) async throws -> IdentifierClaim {
        let now = settings.clock()
        let last = lastPurge.load(ordering: .relaxed)
        if now - last >= Self.purgeInterval, lastPurge.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged {
            _ = try await database.query(LedgerSQL.purgeIdentifiers(now: now))
        }
        // The insert and the read are two statements: a record released in between is claimed on the next round.
        for _ in 0..<3 {
            let claimed = try await database.query(
                LedgerSQL.claimIdentifier(request, instance: instanceID, now: now, leaseUntil: now + settings.leaseMilliseconds))
            if let attempt = claimed.first?.first?.integer {
                return .claimed(IdentifierTicket(routeID: request.routeID, id: request.id, attempt: Int(attempt)))
            }
            if let row = try await database.query(LedgerSQL.readIdentifier(routeID: request.routeID, id: request.id)).first {
                let record = try LedgerSQL.identifierRecord(from: row)
                if !record.isClaimable(now: settings.clock()) { return .existing(record) }
            }
        }
        throw StorageError(.unavailable, "payment identifier \(request.id) keeps changing hands")
    }

    public func completeIdentifier(_ ticket: IdentifierTicket, _ response: StoredResponse) async throws {
        let applied = try await database.query(LedgerSQL.completeIdentifier(ticket, response, now: settings.clock()))
        guard applied.isEmpty else { return }
        let row = try await database.query(LedgerSQL.readIdentifier(routeID: ticket.routeID, id: ticket.id)).first
        let record = try row.map { row throws(StorageError) in try LedgerSQL.identifierRecord(from: row) }
        guard let record, record.attempt == ticket.attempt, record.state == .completed else {
            throw StorageError(.leaseLost, "payment identifier \(ticket.id) attempt \(ticket.attempt) is no longer held")
        }
    }

    public func releaseIdentifier(_ ticket: IdentifierTicket) async throws {
        _ = try await database.query(LedgerSQL.releaseIdentifier(ticket, now: settings.clock()))
    }

    public func identifier(routeID: String, id: String) async throws -> IdentifierRecord? {
        guard let row = try await database.query(LedgerSQL.readIdentifier(routeID: routeID, id: id)).first else { return nil }
        let record = try LedgerSQL.identifierRecord(from: row)
        return record.state == .released || (record.state == .completed && record.expiresAt <= settings.clock()) ? nil : record
    }

    static var purgeInterval: Int64 { 60_000 }

    /// Ends the claims this instance's previous run left in flight (see ``LedgerSQL/recoverInstance(_:now:)``)
    /// and puts its queued deferred settlements back in the queue (``LedgerSQL/recoverPending(_:now:)``).
    /// Only for an instance id no other live process uses.
    public func recoverInstance() async throws -> (unknown: Int, released: Int, requeued: Int) {
        let states = try await database.query(LedgerSQL.recoverInstance(instanceID, now: settings.clock())).map { $0.first?.text }
        let pending = try await database.query(LedgerSQL.recoverPending(instanceID, now: settings.clock())).map { $0.first?.text }
        _ = try await database.query(LedgerSQL.recoverIdentifiers(instanceID, now: settings.clock()))
        let unknown = states.filter { $0 == PaymentState.unknown.rawValue }.count
        let requeued = pending.filter { $0 == PaymentState.settlementPending.rawValue }.count
        return (unknown, states.count - unknown + pending.count - requeued, requeued)
    }

    public func claimPending(_ request: ClaimRequest, _ pending: PendingSettlement) async throws -> ClaimTicket? {
        let now = settings.clock()
        let rows = try await database.query(
            LedgerSQL.claimPending(request, pending, instance: instanceID, now: now, leaseUntil: now + settings.leaseMilliseconds))
        return rows.first?.first?.integer.map { ClaimTicket(key: request.key, attempt: Int($0)) }
    }

    public func takePending(limit: Int, leaseMilliseconds: Int64) async throws -> [DeferredSettlement] {
        let now = settings.clock()
        let rows = try await database.query(LedgerSQL.takePending(
            instance: instanceID, now: now, leaseUntil: now + leaseMilliseconds, limit: limit, skipLocked: database.kind == "postgres"))
        return try rows.map { row throws(StorageError) in try LedgerSQL.deferredSettlement(from: row) }
    }

    public func takeHandedOver(_ ticket: ClaimTicket, upstreamStatus: Int, forwardedAt: Int64, leaseMilliseconds: Int64) async throws
        -> DeferredSettlement?
    {
        let now = settings.clock()
        let rows = try await database.query(LedgerSQL.takeHandedOver(
            ticket, upstreamStatus: upstreamStatus, forwardedAt: forwardedAt, instance: instanceID, now: now, leaseUntil: now + leaseMilliseconds))
        return try rows.first.map { row throws(StorageError) in try LedgerSQL.deferredSettlement(from: row) }
    }

    public func finishPending(_ ticket: DeferredTicket, _ outcome: DeferredOutcome) async throws -> Bool {
        !(try await database.query(LedgerSQL.finishPending(ticket, outcome, now: settings.clock()))).isEmpty
    }

    public func deferredSummary(failuresSince: Int64) async throws -> DeferredSummary {
        var summary = DeferredSummary()
        for (statement, state) in [(LedgerSQL.pendingGroups, PaymentState.settlementPending), (LedgerSQL.deferredUnknownGroups, .unknown)] {
            for row in try await database.query(statement) { summary.unsettled.append(try LedgerSQL.summaryGroup(from: row, state: state)) }
        }
        for row in try await database.query(LedgerSQL.failedPayers(since: failuresSince)) {
            if let payer = row.first?.text, row.count == 2, let at = row[1].integer { summary.failedPayers[payer] = at }
        }
        summary.failures = Int(try await database.query(LedgerSQL.countDeferredFailures).first?.first?.integer ?? 0)
        return summary
    }

    public func ping() async throws {
        _ = try await database.query(SQLStatement("SELECT 1"))
    }
}

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
    public var kind: String { database.kind }

    /// Migrates the schema, then settles the instance id: `settings.instanceID` when given, else the
    /// one this database generated at its first start (kept in `x402_meta`).
    public init(database: Database, settings: StoreSettings, keepInstanceID: Bool = false) async throws {
        try await database.migrate()
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

    public func record(_ ticket: ClaimTicket, _ transition: PaymentTransition) async throws {
        let now = settings.clock()
        let applied = try await database.query(LedgerSQL.record(ticket, transition, now: now, leaseUntil: now + settings.leaseMilliseconds))
        guard applied.isEmpty else { return }
        let row = try await database.query(LedgerSQL.stateOf(ticket.key)).first
        try LedgerSQL.explain(row, ticket: ticket, transition: transition)
    }

    public func reconcile(_ key: PaymentKey, attempt: Int, _ outcome: ReconciledOutcome) async throws -> Bool {
        !(try await database.query(LedgerSQL.reconcile(key, attempt: attempt, outcome, now: settings.clock()))).isEmpty
    }

    public func payments(_ query: PaymentQuery) async throws -> [PaymentRecord] {
        try await database.query(LedgerSQL.payments(query)).map { row throws(StorageError) in try LedgerSQL.record(from: row) }
    }

    /// Ends the claims this instance's previous run left in flight (see ``LedgerSQL/recoverInstance(_:now:)``).
    /// Only for an instance id no other live process uses.
    public func recoverInstance() async throws -> (unknown: Int, released: Int) {
        let states = try await database.query(LedgerSQL.recoverInstance(instanceID, now: settings.clock())).map { $0.first?.text }
        let unknown = states.filter { $0 == PaymentState.unknown.rawValue }.count
        return (unknown, states.count - unknown)
    }

    public func ping() async throws {
        _ = try await database.query(SQLStatement("SELECT 1"))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayStorage
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// The shared ledger: a PostgreSQL database that several gateway instances use at once, through
/// PostgresNIO's pooled ``PostgresClient``.
///
/// Every statement runs on its own (autocommit): it is one transaction, durable when it returns
/// with the server's defaults (`synchronous_commit = on`, `fsync = on`). Claims are atomic across
/// instances through the ledger's upsert (``LedgerSQL/claim(_:instance:now:leaseUntil:)``), which
/// PostgreSQL serialises on the row's key. The hot statements of concurrent payments are grouped
/// (``BatchedStatements``): a batch is one statement, so one transaction and one commit, and each
/// caller is answered after it.
///
/// **The pool needs ``run()``.** The owner runs it in a task for as long as the database is used
/// (a `ServiceGroup` service, a task group's child, or ``withDatabase(_:logger:_:)``); cancelling
/// that task closes the pool. Creating the database needs no running pool, and neither does
/// ``migrate()``, which uses a connection of its own: a database that cannot be reached, or that
/// refuses the credentials, fails there within ``PostgresConfiguration/connectTimeout``, with the
/// server's reason. A statement started before ``run()`` waits for it (at most
/// ``PostgresConfiguration/acquireTimeout``).
public final class PostgresDatabase: SQLDatabase {
    public var kind: String { "postgres" }
    public let configuration: PostgresConfiguration
    private let client: PostgresClient
    private let connectionConfiguration: PostgresConnection.Configuration
    private let logger: Logger
    private let running = Atomic<Bool>(false)
    /// The pool's connections and the timers of waits for them.
    private let eventLoops: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    /// The hot statements of concurrent payments, waiting to run together.
    private let batches = BatchedStatements()

    /// The advisory lock (`pg_advisory_xact_lock`) that makes concurrent migrations of one database
    /// wait for each other: "x402-ledger" in ASCII, so that it names itself in `pg_locks`.
    public static let migrationLock: Int64 = 0x7834_3032_6c65_6467

    /// Sets up the pool (no connection is opened yet). Fails only on a TLS setting that cannot be
    /// used (a missing `sslrootcert` file).
    public init(configuration: PostgresConfiguration, logger: Logger = PostgresDatabase.silentLogger) throws(StorageError) {
        self.configuration = configuration
        self.logger = logger
        let tls = try Self.tls(configuration)

        var options = PostgresClient.Configuration.Options()
        options.connectTimeout = configuration.connectTimeout
        options.maximumConnections = configuration.poolSize
        options.minimumConnections = 0
        options.additionalStartupParameters = Self.startupParameters(configuration)
        if let timeout = configuration.statementTimeout {
            // Any server setting may go in the startup packet; this one only for the pool's connections.
            options.additionalStartupParameters.append(("statement_timeout", String(timeout.timeAmount.nanoseconds / 1_000_000)))
        }
        var clientConfiguration = PostgresClient.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.username,
            password: configuration.password, database: configuration.database, tls: tls.client)
        clientConfiguration.options = options
        client = PostgresClient(configuration: clientConfiguration, eventLoopGroup: eventLoops, backgroundLogger: logger)

        var connectionConfiguration = PostgresConnection.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.username,
            password: configuration.password, database: configuration.database, tls: tls.connection)
        connectionConfiguration.options.connectTimeout = configuration.connectTimeout.timeAmount
        connectionConfiguration.options.additionalStartupParameters = Self.startupParameters(configuration)
        self.connectionConfiguration = connectionConfiguration
    }

    /// ``init(configuration:logger:)`` from a `postgres://` URL (see ``PostgresConfiguration``).
    public convenience init(url: String, poolSize: Int = 8, logger: Logger = PostgresDatabase.silentLogger) throws(StorageError) {
        try self.init(configuration: PostgresConfiguration(url: url, poolSize: poolSize), logger: logger)
    }

    /// Runs the pool until the calling task is cancelled (then closes every connection). Call it
    /// once, in a task that lives as long as the database is used.
    public func run() async {
        // PostgresClient traps on a second run(); a second call here returns at once instead.
        guard !running.exchange(true, ordering: .relaxed) else { return }
        await client.run()
    }

    /// Runs `body` with a database whose pool runs in a child task, closed when `body` returns or throws.
    public static func withDatabase<Result>(
        _ configuration: PostgresConfiguration, logger: Logger = PostgresDatabase.silentLogger,
        _ body: (PostgresDatabase) async throws -> Result
    ) async throws -> Result {
        let database = try PostgresDatabase(configuration: configuration, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            group.addTask { await database.run() }
            defer { group.cancelAll() }
            return try await body(database)
        }
    }

    /// ``withDatabase(_:logger:_:)`` from a `postgres://` URL.
    public static func withDatabase<Result>(
        url: String, poolSize: Int = 8, logger: Logger = PostgresDatabase.silentLogger,
        _ body: (PostgresDatabase) async throws -> Result
    ) async throws -> Result {
        try await withDatabase(try PostgresConfiguration(url: url, poolSize: poolSize), logger: logger, body)
    }

    public func query(_ statement: SQLStatement) async throws -> [[SQLValue]] {
        if let hot = statement.hot, BatchedLedgerSQL.fits(statement.binds, hot),
           let key = BatchedStatements.Job.key(statement.binds.prefix(4)) {
            return try await withCheckedThrowingContinuation { done in
                batches.enqueue(BatchedStatements.Job(binds: statement.binds, key: key, done: done), hot, database: self)
            }
        }
        let logger = logger
        let binds = statement.binds
        do {
            return try await withPooledConnection { connection in
                let query = PostgresQuery(unsafeSQL: statement.sql, binds: Self.bindings(binds))
                return try await Self.rows(try await connection.query(query, logger: logger))
            }
        } catch {
            throw storageError(error)
        }
    }

    /// How the hot statements ran: in how many batches, the largest.
    public var batchCounts: BatchedStatements.Counts { batches.counts }

    /// Runs one batch of a hot statement (see ``BatchedStatements``): the prepared statement itself
    /// for one, its `unnest` form for several. Returns the rows changed, each ending with its key.
    func run(_ hot: HotStatement, _ rows: [[SQLValue]]) async throws -> [[SQLValue]] {
        let logger = logger
        do {
            return try await withPooledConnection { connection in
                func execute<Kind: HotStatementKind>(_: Kind.Type) async throws -> [[SQLValue]] {
                    var result: [[SQLValue]] = []
                    if rows.count == 1 {
                        for try await row in try await connection.execute(PreparedLedgerStatement<Kind>(binds: rows[0]), logger: logger) {
                            result.append(row)
                        }
                    } else {
                        for try await row in try await connection.execute(BatchedLedgerStatement<Kind>(rows: rows), logger: logger) {
                            result.append(row)
                        }
                    }
                    return result
                }
                switch hot {
                case .claim: return try await execute(ClaimKind.self)
                case .claimPending: return try await execute(ClaimPendingKind.self)
                case .takeHandedOver: return try await execute(TakeHandedOverKind.self)
                case .settledDeferred: return try await execute(SettledDeferredKind.self)
                case .settlingAfterForward: return try await execute(SettlingAfterForwardKind.self)
                case .settlingBeforeForward: return try await execute(SettlingBeforeForwardKind.self)
                case .settled: return try await execute(SettledKind.self)
                case .forwardedAfterSettlement: return try await execute(ForwardedAfterSettlementKind.self)
                }
            }
        } catch {
            throw storageError(error)
        }
    }

    /// Migrates in one transaction on a connection of its own (no running pool needed), after
    /// taking ``migrationLock``: a second instance starting at the same time waits, then finds the
    /// schema current.
    public func migrate() async throws {
        try await withConnectionOfItsOwn { connection in try await self.migrate(on: connection) }
    }

    /// How far the server's clock is ahead of `local` (milliseconds; negative when behind), read on a
    /// connection of its own (no running pool needed), with the query's round trip, which bounds the error.
    public func clockGap(local: @escaping @Sendable () -> Int64) async throws -> (gap: Int64, roundTrip: Int64) {
        let logger = logger
        let (rows, before, after) = try await withConnectionOfItsOwn { connection in
            let before = local()
            let rows = try await Self.rows(try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)"), logger: logger))
            return (rows, before, local())
        }
        guard case .integer(let server)? = rows.first?.first else { throw StorageError(.unavailable, "the database did not tell its time") }
        // The server read its clock between `before` and `after`.
        return (server - (before + after) / 2, after - before)
    }

    /// Runs `body` on a connection opened for it and closed after it, outside the pool (which need
    /// not be running); any failure is a ``StorageError``.
    private func withConnectionOfItsOwn<Result: Sendable>(_ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: connectionConfiguration, id: 0, logger: logger)
        } catch {
            throw storageError(error)
        }
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw storageError(error)
        }
    }

    private func migrate(on connection: PostgresConnection) async throws {
        func execute(_ statement: SQLStatement) async throws -> [[SQLValue]] {
            try await Self.rows(try await connection.query(
                PostgresQuery(unsafeSQL: statement.sql, binds: Self.bindings(statement.binds)), logger: logger))
        }
        _ = try await execute(SQLStatement("BEGIN"))
        do {
            _ = try await execute(SQLStatement("SELECT pg_advisory_xact_lock($1)", [.integer(Self.migrationLock)]))
            // Every statement must be durable when it returns (the store's contract); with
            // synchronous_commit off a crash loses the last claims, and a spent payment could be replayed.
            let synchronousCommit = try await execute(SQLStatement("SELECT current_setting('synchronous_commit')"))
            if synchronousCommit.first?.first == .text("off") {
                throw StorageError(.unavailable, "synchronous_commit is off for this database or user: commits would not be durable; set it to on")
            }
            // to_regclass follows the connection's search_path, as the ledger's statements do.
            let tables = try await execute(SQLStatement("SELECT to_regclass('x402_meta')::text, to_regclass('x402_payments')::text"))
            var found: Int?
            if let row = tables.first, row.count == 2, row[0] != .null {
                let version = try await execute(LedgerSQL.readVersion).first?.first
                found = version.flatMap { if case .text(let text) = $0 { Int(text) } else { nil } } ?? 0
            } else if let row = tables.first, row.count == 2, row[1] != .null {
                throw StorageError(.corrupt, "x402_payments exists without x402_meta: not a ledger this gateway made")
            }
            for statement in try LedgerSQL.upgrade(from: found) {
                _ = try await execute(statement)
            }
            _ = try await execute(SQLStatement("COMMIT"))
        } catch {
            _ = try? await execute(SQLStatement("ROLLBACK"))
            throw error
        }
    }

    // MARK: Pool

    /// Leases a pooled connection for `body`, waiting at most ``PostgresConfiguration/acquireTimeout``
    /// for one. The wait is what times out, never a statement already sent: a statement that ran
    /// must not be reported as failed.
    private func withPooledConnection<Result: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let gate = LeaseGate()
        let client = client
        // One task and one event-loop timer per statement: this runs for every step of every paid
        // request, where a task group with a sleeping child cost a Dispatch timer and two tasks.
        let leased = Task {
            try await client.withConnection { connection in
                guard gate.lease() else { throw LeaseTimeout() }
                return try await body(connection)
            }
        }
        let timeout = eventLoops.any().scheduleTask(in: configuration.acquireTimeout.timeAmount) {
            if gate.expire() { leased.cancel() }  // still waiting for a connection: give up the wait
        }
        defer { timeout.cancel() }
        do {
            return try await withTaskCancellationHandler { try await leased.value } onCancel: { leased.cancel() }
        } catch {
            if gate.expired { throw LeaseTimeout() }
            throw error
        }
    }

    // MARK: Values

    static func bindings(_ values: [SQLValue]) -> PostgresBindings {
        var bindings = PostgresBindings(capacity: values.count)
        for value in values {
            switch value {
            case .text(let text): bindings.append(text)
            case .integer(let integer): bindings.append(integer)
            // A NULL typed text (`String?.none` would go out untyped, OID 0, leaving
            // `COALESCE($6, transaction_hash)` and the like to the server's inference). Every
            // nullable value the ledger binds is text.
            case .null: bindings.append(PostgresData(type: .text))
            }
        }
        return bindings
    }

    static func rows(_ sequence: PostgresRowSequence) async throws -> [[SQLValue]] {
        var rows: [[SQLValue]] = []
        for try await row in sequence {
            rows.append(try row.map { cell in try SQLValue(cell) })
        }
        return rows
    }

    // MARK: Setup

    public static let silentLogger = Logger(label: "x402.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    private static func startupParameters(_ configuration: PostgresConfiguration) -> [(String, String)] {
        var parameters = [("application_name", configuration.applicationName)]
        if let options = configuration.serverOptions { parameters.append(("options", options)) }
        return parameters
    }

    private static func tls(_ configuration: PostgresConfiguration) throws(StorageError)
        -> (client: PostgresClient.Configuration.TLS, connection: PostgresConnection.Configuration.TLS) {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch configuration.tls {
        case .disable: return (.disable, .disable)
        case .allow, .prefer, .require: tls.certificateVerification = .none  // libpq's meaning: encrypted, not authenticated
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        if let path = configuration.rootCertificatePath { tls.trustRoots = .file(path) }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw StorageError(.unavailable, "\(configuration.target): TLS set-up failed (sslrootcert?): \(error)")
        }
        switch configuration.tls {
        case .allow, .prefer: return (.prefer(tls), .prefer(context))
        default: return (.require(tls), .require(context))
        }
    }

    // MARK: Errors

    /// A ``StorageError`` for `error`, naming the server and the database, never the password.
    func storageError(_ error: any Error) -> StorageError {
        let prefix = "PostgreSQL \(configuration.username)@\(configuration.target): "
        if let error = error as? StorageError {
            let message = error.message.hasPrefix(prefix) ? error.message : prefix + error.message
            return StorageError(error.code, configuration.redacted(message))
        }
        let (code, reason) = Self.describe(error, configuration: configuration, running: running.load(ordering: .relaxed))
        return StorageError(code, configuration.redacted(prefix + reason))
    }

    static func describe(_ error: any Error, configuration: PostgresConfiguration, running: Bool) -> (StorageError.Code, String) {
        switch error {
        case is LeaseTimeout:
            let hint = running ? "the server is unreachable or refuses connections, or the pool is saturated"
                               : "PostgresDatabase.run() is not running"
            return (.unavailable, "no connection within \(configuration.acquireTimeout) (\(hint))")
        case let error as PSQLError:
            return describe(error, configuration: configuration)
        case let error as PostgresDecodingError:
            return (.corrupt, "column \(error.columnName) of type \(error.postgresType) could not be read (\(error.code))")
        case is CancellationError:
            return (.unavailable, "cancelled")
        default:
            return (.unavailable, String(describing: error))
        }
    }

    static func describe(_ error: PSQLError, configuration: PostgresConfiguration) -> (StorageError.Code, String) {
        // PSQLError's description is deliberately generic; its fields say what happened.
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? "?????"
            var text = error.serverInfo?[.message] ?? "server error"
            if let detail = error.serverInfo?[.detail] { text += " (\(detail))" }
            text += " [SQLSTATE \(state)]"
            // A table or a column that is not what the schema says.
            let corrupt: Set<String> = ["42P01", "42703", "42804"]
            return (corrupt.contains(state) ? .corrupt : .unavailable, text)
        case .connectionError:
            if let channel = error.underlying as? ChannelError, case .connectTimeout = channel {
                return (.unavailable, "no answer within \(configuration.connectTimeout) (connect timeout)")
            }
            return (.unavailable, "cannot connect: \(error.underlying.map(connectFailure) ?? "connection error")")
        case .sslUnsupported:
            return (.unavailable, "the server does not offer TLS, and sslmode=\(configuration.tls.rawValue) requires it")
        case .failedToAddSSLHandler:
            return (.unavailable, "TLS set-up failed: \(error.underlying.map { String(describing: $0) } ?? "")")
        case .serverClosedConnection, .uncleanShutdown:
            let cause = error.underlying.map { ": \(String(describing: $0))" } ?? ""
            return (.unavailable, "the server closed the connection\(cause)")
        case .clientClosedConnection, .poolClosed:
            return (.unavailable, "the connection pool is closed (PostgresDatabase.run() ended)")
        case .queryCancelled:
            return (.unavailable, "cancelled")
        case .authMechanismRequiresPassword:
            return (.unavailable, "the server asks for a password and the URL has none")
        case .unsupportedAuthMechanism, .saslError:
            return (.unavailable, "authentication failed (\(error.code))")
        default:
            let cause = error.underlying.map { ": \(String(describing: $0))" } ?? ""
            return (.unavailable, "\(error.code)\(cause)")
        }
    }
}

/// Why a connection could not be made, in a few words: the system's reason when NIO's error
/// (a list of attempts, one per address, in NIOPosix) holds one, else NIO's description (which
/// for a name that does not resolve reads "DNS error: … for host NAME, port PORT").
func connectFailure(_ error: any Error) -> String {
    func findIOError(_ value: Any, depth: Int) -> IOError? {
        if let error = value as? IOError { return error }
        guard depth > 0 else { return nil }
        for child in Mirror(reflecting: value).children {
            if let found = findIOError(child.value, depth: depth - 1) { return found }
        }
        return nil
    }
    if let io = findIOError(error, depth: 4) {
        return "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
    }
    return String(describing: error)
}

/// The pool did not hand out a connection in time.
struct LeaseTimeout: Error {}

/// Decides, once, between "the connection came in time" and "the wait timed out".
extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000)
    }
}

final class LeaseGate: Sendable {
    private let state = Atomic<Int>(0)  // 0 waiting, 1 leased, 2 expired

    /// True when the connection came first: the statement may run.
    func lease() -> Bool { state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged }

    /// True when the wait timed out first: no statement will run.
    func expire() -> Bool { state.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged }

    var expired: Bool { state.load(ordering: .acquiring) == 2 }
}

extension SQLValue {
    /// A cell as the ledger reads it: integers (and booleans, as 0 or 1) as `integer`, text-like
    /// values as `text`, NULL and `void` as `null`. PostgresNIO asks for every column in binary, so
    /// any other type (a float, a numeric, a timestamp) would read as meaningless bytes: it is
    /// refused as `corrupt` instead (the ledger selects TEXT and BIGINT columns only).
    init(_ cell: PostgresCell) throws {
        guard cell.bytes != nil else {
            self = .null
            return
        }
        switch cell.dataType {
        case .int8: self = .integer(try cell.decode(Int64.self))
        case .int4: self = .integer(Int64(try cell.decode(Int32.self)))
        case .int2: self = .integer(Int64(try cell.decode(Int16.self)))
        case .bool: self = .integer(try cell.decode(Bool.self) ? 1 : 0)
        case .text, .varchar, .bpchar, .name, .unknown, .uuid: self = .text(try cell.decode(String.self))
        case .void: self = .null
        default:
            throw StorageError(.corrupt, "column \(cell.columnName) is of type \(cell.dataType), which the ledger does not read")
        }
    }
}

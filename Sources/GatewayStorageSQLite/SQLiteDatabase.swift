import Foundation
import GRDB
import GRDBSQLite
import GatewayStorage
import Synchronization

/// The embedded ledger: one SQLite file in WAL mode with `synchronous = FULL`, so that a statement
/// that returned is on disk (a power cut included), written through GRDB's single writer.
public final class SQLiteDatabase: SQLDatabase {
    public var kind: String { "sqlite" }
    public let path: String
    private let pool: DatabasePool

    /// Opens (creating when missing) the file at `path`. Fails with a ``StorageError`` when the
    /// file cannot be opened or is not a SQLite database.
    /// Held for the database's lifetime when it was opened `exclusive`.
    private let lock: SQLiteFileLock?

    /// - Parameter exclusive: take the lock file `PATH.lock` first, so that no other gateway
    ///   process uses this ledger while this one runs (readers beside it open it without).
    public init(path: String, exclusive: Bool = false) throws {
        self.path = path
        lock = exclusive ? try SQLiteFileLock(path: SQLiteFileLock.path(forDatabase: path)) : nil
        var configuration = Configuration()
        configuration.label = "x402-ledger"
        configuration.busyMode = .timeout(5)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // Only the writer commits, so only its setting matters. It is set here, after the pool
            // opened: GRDB switches the writer to WAL with `synchronous = NORMAL` after running
            // `prepareDatabase`, and NORMAL in WAL syncs only at checkpoints (a commit survives the
            // process dying, not a power cut or a kernel crash).
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            // Reading the schema makes SQLite look at the file: a file that is no database fails here.
            _ = try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
        } catch {
            throw Self.storageError(error, path: path)
        }
    }

    /// Statements waiting for the writer, and whether a flush is scheduled on it.
    private struct Queue {
        var jobs: [Job] = []
        var flushing = false
    }

    private struct Job {
        var statement: SQLStatement
        var done: CheckedContinuation<[[SQLValue]], any Error>
    }

    private let queue = Mutex(Queue())
    /// The hot statements, compiled once on the writer connection.
    private let hotStatements = WriterConfined<[HotStatement: Statement]>([:])

    /// Group commit: statements from concurrent requests that wait while the writer is busy are
    /// run together in one transaction, so one `fsync` makes a whole batch durable. Every caller
    /// is answered only after the commit of the transaction its statement was in; each statement
    /// still runs alone, in arrival order, and a failing one fails only its caller.
    public func query(_ statement: SQLStatement) async throws -> [[SQLValue]] {
        if statement.sql.hasPrefix("SELECT") {
            // Reads take a snapshot on a reader connection: a long listing never holds the writer.
            do {
                return try await pool.read { db in try Self.run(statement, db) }
            } catch {
                throw Self.storageError(error, path: path)
            }
        }
        return try await withCheckedThrowingContinuation { done in enqueue(Job(statement: statement, done: done)) }
    }

    private func enqueue(_ job: Job) {
        let schedule = queue.withLock { queue in
            queue.jobs.append(job)
            defer { queue.flushing = true }
            return !queue.flushing
        }
        if schedule { pool.asyncWriteWithoutTransaction { db in self.flush(db) } }
    }

    /// Runs batches on GRDB's writer until no statement waits.
    private func flush(_ db: Database) {
        while true {
            let batch = queue.withLock { queue in
                let jobs = queue.jobs
                queue.jobs.removeAll(keepingCapacity: true)
                if jobs.isEmpty { queue.flushing = false }
                return jobs
            }
            if batch.isEmpty { return }
            var results: [Result<[[SQLValue]], any Error>] = []
            results.reserveCapacity(batch.count)
            do {
                try db.inTransaction(.immediate) {
                    for job in batch {
                        results.append(Result { try self.write(job.statement, db) }.mapError { Self.storageError($0, path: path) })
                    }
                    return .commit
                }
            } catch {
                let failure = Self.storageError(error, path: path)
                results = batch.map { _ in .failure(failure) }  // nothing of the batch is durable
            }
            for (job, result) in zip(batch, results) { job.done.resume(with: result) }
        }
    }

    /// Runs a statement on the writer: a hot one from its compiled statement, without rewriting
    /// and hashing its text again. Every statement is bound and stepped through SQLite's own
    /// functions (``step(_:_:connection:)``): GRDB's arguments and rows cost the paid path more
    /// than SQLite's work did.
    private func write(_ statement: SQLStatement, _ db: Database) throws -> [[SQLValue]] {
        guard let hot = statement.hot else { return try Self.run(statement, db) }
        let prepared: Statement
        if let compiled = hotStatements.value[hot] {
            prepared = compiled
        } else {
            prepared = try db.makeStatement(sql: Self.sqliteSQL(statement.sql))
            hotStatements.value[hot] = prepared
        }
        return try Self.step(prepared.sqliteStatement, statement.binds, connection: db.sqliteConnection)
    }

    /// SQLite's "copy the bytes now" destructor for bound text.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// Binds `binds` (`?1`…) to a compiled statement, steps it to the end and returns its rows.
    private static func step(_ statement: OpaquePointer, _ binds: [SQLValue], connection: OpaquePointer?) throws -> [[SQLValue]] {
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        func check(_ code: CInt) throws {
            guard code == SQLITE_OK else { throw failure(code, connection) }
        }
        for (offset, value) in binds.enumerated() {
            let index = CInt(offset + 1)
            switch value {
            case .text(let text): try check(text.withCString { sqlite3_bind_text(statement, index, $0, -1, transient) })
            case .integer(let integer): try check(sqlite3_bind_int64(statement, index, integer))
            case .null: try check(sqlite3_bind_null(statement, index))
            }
        }
        var rows: [[SQLValue]] = []
        while true {
            let code = sqlite3_step(statement)
            if code == SQLITE_DONE { return rows }
            guard code == SQLITE_ROW else { throw failure(code, connection) }
            let count = sqlite3_column_count(statement)
            var row: [SQLValue] = []
            row.reserveCapacity(Int(count))
            for column in 0..<count {
                switch sqlite3_column_type(statement, column) {
                case SQLITE_NULL: row.append(.null)
                case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(statement, column)))
                case SQLITE_FLOAT:
                    let double = sqlite3_column_double(statement, column)
                    row.append(Int64(exactly: double).map { .integer($0) } ?? .text(String(double)))
                default:  // text (and blobs, as GRDB's rows gave them: their bytes as UTF-8)
                    let bytes = sqlite3_column_blob(statement, column)
                    let length = Int(sqlite3_column_bytes(statement, column))
                    let buffer = UnsafeRawBufferPointer(start: bytes, count: bytes == nil ? 0 : length)
                    row.append(.text(String(decoding: buffer, as: UTF8.self)))
                }
            }
            rows.append(row)
        }
    }

    /// A failed SQLite call as GRDB reports it (so ``storageError(_:path:)`` maps it the same way).
    private static func failure(_ code: CInt, _ connection: OpaquePointer?) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: code), message: connection.map { String(cString: sqlite3_errmsg($0)) })
    }

    private static func run(_ statement: SQLStatement, _ db: Database) throws -> [[SQLValue]] {
        try step(try db.cachedStatement(sql: sqliteSQL(statement.sql)).sqliteStatement, statement.binds, connection: db.sqliteConnection)
    }

    public func migrate() async throws {
        do {
            try await pool.write { db in
                var found: Int?
                if try db.tableExists("x402_meta") {
                    found = try String.fetchOne(db, sql: LedgerSQL.readVersion.sql).flatMap { Int($0) } ?? 0
                } else if try db.tableExists("x402_payments") {
                    throw StorageError(.corrupt, "x402_payments exists without x402_meta: not a ledger this gateway made")
                }
                for statement in try LedgerSQL.upgrade(from: found) {
                    try db.execute(sql: Self.sqliteSQL(statement.sql), arguments: StatementArguments(statement.binds.map(\.databaseValue)))
                }
            }
        } catch {
            throw Self.storageError(error, path: path)
        }
    }

    /// `$1` placeholders as SQLite's numbered `?1`.
    static func sqliteSQL(_ sql: String) -> String {
        // Byte by byte: Foundation's replacingOccurrences cost the writer thread more than SQLite did.
        String(decoding: sql.utf8.map { $0 == UInt8(ascii: "$") ? UInt8(ascii: "?") : $0 }, as: UTF8.self)
    }

    static func storageError(_ error: any Error, path: String) -> StorageError {
        if let error = error as? StorageError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_NOTADB, .SQLITE_CORRUPT:
                return StorageError(.corrupt, "\(path): not a SQLite database or damaged (\(error.message ?? "\(error.resultCode)"))")
            default:
                return StorageError(.unavailable, "\(path): \(error.message ?? "\(error.resultCode)")")
            }
        }
        return StorageError(.unavailable, "\(path): \(error)")
    }
}

extension SQLValue {
    var databaseValue: DatabaseValue {
        switch self {
        case .text(let text): text.databaseValue
        case .integer(let integer): integer.databaseValue
        case .null: .null
        }
    }
}

/// State only GRDB's writer touches (its serial queue orders every access).
private final class WriterConfined<Value>: @unchecked Sendable {
    var value: Value

    init(_ value: Value) {
        self.value = value
    }
}

import Foundation
import GRDB
import GatewayStorage

/// The embedded ledger: one SQLite file in WAL mode with `synchronous = FULL`, so that a statement
/// that returned is on disk (a power cut included), written through GRDB's single writer.
public final class SQLiteDatabase: SQLDatabase {
    public var kind: String { "sqlite" }
    public let path: String
    private let pool: DatabasePool

    /// Opens (creating when missing) the file at `path`. Fails with a ``StorageError`` when the
    /// file cannot be opened or is not a SQLite database.
    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.label = "x402-ledger"
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // Reading the schema makes SQLite look at the file: a file that is no database fails here.
            _ = try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master") }
        } catch {
            throw Self.storageError(error, path: path)
        }
    }

    public func query(_ statement: SQLStatement) async throws -> [[SQLValue]] {
        let sql = Self.sqliteSQL(statement.sql)
        let arguments = StatementArguments(statement.binds.map(\.databaseValue))
        do {
            return try await pool.write { db in
                try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in row.databaseValues.map(SQLValue.init) }
            }
        } catch {
            throw Self.storageError(error, path: path)
        }
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
        sql.replacingOccurrences(of: "$", with: "?")
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

    init(_ value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let integer): self = .integer(integer)
        case .double(let double): self = .integer(Int64(double))
        case .string(let text): self = .text(text)
        case .blob(let data): self = .text(String(decoding: data, as: UTF8.self))
        }
    }
}

/// A value bound to or read from a SQL statement, in the few types the ledger uses. Each SQL
/// backend maps it to its driver's own type.
public enum SQLValue: Sendable, Equatable {
    case text(String)
    case integer(Int64)
    case null

    var text: String? {
        if case .text(let value) = self { return value }
        return nil
    }

    var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    init(_ text: String?) { self = text.map { .text($0) } ?? .null }
    init(_ integer: Int64?) { self = integer.map { .integer($0) } ?? .null }
}

/// A statement with `$1`-style placeholders (the SQLite backend turns them into `?1`) and its values.
public struct SQLStatement: Sendable, Equatable {
    public var sql: String
    public var binds: [SQLValue]
    /// Set on the statements every paid request runs: a backend may keep them prepared.
    public var hot: HotStatement?

    public init(_ sql: String, _ binds: [SQLValue] = [], hot: HotStatement? = nil) {
        self.sql = sql
        self.binds = binds
        self.hot = hot
    }
}

import GatewayStorage
import PostgresNIO

/// Which ``HotStatement`` a ``PreparedLedgerStatement`` is: PostgresNIO names and prepares a
/// statement by its type, so each hot statement has one.
protocol HotStatementKind: Sendable {
    static var hot: HotStatement { get }
}

enum ClaimKind: HotStatementKind { static var hot: HotStatement { .claim } }
enum ClaimPendingKind: HotStatementKind { static var hot: HotStatement { .claimPending } }
enum TakeHandedOverKind: HotStatementKind { static var hot: HotStatement { .takeHandedOver } }
enum SettledDeferredKind: HotStatementKind { static var hot: HotStatement { .settledDeferred } }
enum SettlingAfterForwardKind: HotStatementKind { static var hot: HotStatement { .settlingAfterForward } }
enum SettlingBeforeForwardKind: HotStatementKind { static var hot: HotStatement { .settlingBeforeForward } }
enum SettledKind: HotStatementKind { static var hot: HotStatement { .settled } }
enum ForwardedAfterSettlementKind: HotStatementKind { static var hot: HotStatement { .forwardedAfterSettlement } }

/// A hot ledger statement, prepared once per connection by PostgresNIO (on first use) and then
/// only bound and executed.
struct PreparedLedgerStatement<Kind: HotStatementKind>: PostgresPreparedStatement {
    typealias Row = [SQLValue]
    static var name: String { "x402_" + Kind.hot.rawValue }
    static var sql: String { Kind.hot.sql }

    let binds: [SQLValue]

    func makeBindings() throws -> PostgresBindings { PostgresDatabase.bindings(binds) }
    func decodeRow(_ row: PostgresRow) throws -> [SQLValue] { try row.map { cell in try SQLValue(cell) } }
}

/// The hot statements of several concurrent payments as one prepared statement: the n-th value of
/// every row goes out as one array, and `unnest` turns the arrays back into rows. One round trip
/// and one commit for the whole batch.
struct BatchedLedgerStatement<Kind: HotStatementKind>: PostgresPreparedStatement {
    typealias Row = [SQLValue]
    static var name: String { "x402_" + Kind.hot.rawValue + "_batch" }
    static var sql: String { BatchedLedgerSQL.text[Kind.hot]! }

    /// Each statement's values; every one matches ``HotStatement/bindTypes`` (see ``BatchedLedgerSQL/fits(_:_:)``).
    let rows: [[SQLValue]]

    func makeBindings() throws -> PostgresBindings {
        let types = BatchedLedgerSQL.types[Kind.hot]!
        var bindings = PostgresBindings(capacity: types.count)
        for (index, type) in types.enumerated() {
            switch type {
            case .text: bindings.append(rows.map { row -> String in if case .text(let text) = row[index] { text } else { "" } })
            case .integer: bindings.append(rows.map { row -> Int64 in if case .integer(let integer) = row[index] { integer } else { 0 } })
            }
        }
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> [SQLValue] { try row.map { cell in try SQLValue(cell) } }
}

/// The batched texts, made once.
enum BatchedLedgerSQL {
    static let types: [HotStatement: [SQLType]] = Dictionary(uniqueKeysWithValues: HotStatement.allCases.map { ($0, $0.bindTypes) })

    static let text: [HotStatement: String] = Dictionary(uniqueKeysWithValues: HotStatement.allCases.map { hot in
        let types = hot.bindTypes
        let arrays = types.indices.map { "$\($0 + 1)::\(types[$0] == .text ? "text" : "bigint")[]" }
        let columns = types.indices.map { "c\($0 + 1)" }
        let source = "unnest(\(arrays.joined(separator: ", "))) AS v(\(columns.joined(separator: ", ")))"
        return (hot, hot.sql(readingRowsFrom: source, bind: { "v.c\($0)" }))
    })

    /// Whether `binds` can go in a batch of `hot`: its types, no NULL.
    static func fits(_ binds: [SQLValue], _ hot: HotStatement) -> Bool {
        guard let types = types[hot], binds.count == types.count else { return false }
        return zip(binds, types).allSatisfy { value, type in
            switch (value, type) {
            case (.text, .text), (.integer, .integer): true
            default: false
            }
        }
    }
}

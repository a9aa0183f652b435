import GatewayStorage
import PostgresNIO

/// Which ``HotStatement`` a ``PreparedLedgerStatement`` is: PostgresNIO names and prepares a
/// statement by its type, so each hot statement has one.
protocol HotStatementKind: Sendable {
    static var hot: HotStatement { get }
}

enum ClaimKind: HotStatementKind { static var hot: HotStatement { .claim } }
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

/// The ledger statements of every paid request, each always the same text with values of the same
/// types: the PostgreSQL backend keeps them prepared on each connection, so the server parses and
/// plans them once per connection instead of once per payment, and runs those of concurrent
/// payments together, as one statement over many rows (``sql(readingRowsFrom:bind:)``).
public enum HotStatement: String, Sendable, CaseIterable {
    case claim
    /// The deferred claim, straight into `settlement_pending` (deferred settlement, local checks only).
    case claimPending = "claim_pending"
    /// `verified`, `forwarded`, `settling` in one change (settlement after the upstream answered).
    case settlingAfterForward = "settling_after_forward"
    /// `verified`, `settling` in one change (settlement before forwarding).
    case settlingBeforeForward = "settling_before_forward"
    case settled
    /// The upstream's status on a row settled already, or on a queued deferred settlement (which
    /// hands it to the settlement workers).
    case forwardedAfterSettlement = "forwarded_after_settlement"
    /// A deferred settlement's hand-over and its take by this instance's worker, in one change.
    case takeHandedOver = "take_handed_over"
    /// A deferred settlement settled by a worker.
    case settledDeferred = "settled_deferred"

    /// The statement's text, as ``LedgerSQL`` writes it.
    public var sql: String {
        if let targets = recordedTargets { return LedgerSQL.recordSQL(targets) }
        switch self {
        case .claimPending: return LedgerSQL.claimPendingSQL
        case .takeHandedOver: return LedgerSQL.takeHandedOverSQL
        case .settledDeferred: return LedgerSQL.settledDeferredSQL
        default: return LedgerSQL.claimSQL
        }
    }

    /// The statement for many rows at once, reading each row's values from `source` (a `FROM`
    /// item, such as PostgreSQL's `unnest(…) AS v(…)`) where `bind(n)` names the n-th value. It
    /// returns, for each row it changed, what ``sql`` returns for one, the key last.
    public func sql(readingRowsFrom source: String, bind: (Int) -> String) -> String {
        if let targets = recordedTargets { return LedgerSQL.recordSQL(targets, bind: bind, from: "FROM \(source)") }
        switch self {
        case .takeHandedOver: return LedgerSQL.takeHandedOverSQL(bind: bind, from: "FROM \(source)")
        case .settledDeferred: return LedgerSQL.settledDeferredSQL(bind: bind, from: "FROM \(source)")
        default: return LedgerSQL.claimSQL(rows: { "SELECT \($0) FROM \(source)" }, bind: bind, pending: self == .claimPending)
        }
    }

    /// The types of the statement's values, in order (every value of a hot statement is non-null).
    public var bindTypes: [SQLType] {
        if let targets = recordedTargets { return LedgerSQL.recordBindTypes(targets) }
        let key: [SQLType] = [.text, .text, .text, .text]
        let claim: [SQLType] = Array(repeating: .text, count: 12) + [.integer, .integer, .integer, .text, .text]
        switch self {
        case .claimPending: return claim + [.integer, .text, .text]
        case .takeHandedOver: return key + [.integer, .integer, .integer, .text, .integer, .integer]
        case .settledDeferred: return key + [.integer, .integer, .text]
        default: return claim
        }
    }

    /// The chain of steps this statement records; nil for the claim.
    var recordedTargets: [PaymentState]? {
        switch self {
        case .claim, .claimPending, .takeHandedOver, .settledDeferred: nil
        case .settlingAfterForward: [.verified, .forwarded, .settling]
        case .settlingBeforeForward: [.verified, .settling]
        case .settled: [.settled]
        case .forwardedAfterSettlement: [.forwarded]
        }
    }

    /// The hot statement recording this chain of steps, if it is one.
    static func record(_ targets: [PaymentState]) -> HotStatement? { byTargets[targets] }

    private static let byTargets: [[PaymentState]: HotStatement] = Dictionary(
        uniqueKeysWithValues: allCases.compactMap { hot in hot.recordedTargets.map { ($0, hot) } })
}

/// The type of a value bound to a statement.
public enum SQLType: Sendable, Equatable {
    case text
    case integer
}

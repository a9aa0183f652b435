/// The ledger statements of every paid request, each always the same text with values of the same
/// types: the PostgreSQL backend keeps them prepared on each connection, so the server parses and
/// plans them once per connection instead of once per payment.
public enum HotStatement: String, Sendable, CaseIterable {
    case claim
    /// `verified`, `forwarded`, `settling` in one change (settlement after the upstream answered).
    case settlingAfterForward = "settling_after_forward"
    /// `verified`, `settling` in one change (settlement before forwarding).
    case settlingBeforeForward = "settling_before_forward"
    case settled
    /// The upstream's status on a row settled already.
    case forwardedAfterSettlement = "forwarded_after_settlement"

    /// The statement's text, as ``LedgerSQL`` writes it.
    public var sql: String {
        switch self {
        case .claim: LedgerSQL.claimSQL
        case .settlingAfterForward: LedgerSQL.recordSQL([.verified, .forwarded, .settling])
        case .settlingBeforeForward: LedgerSQL.recordSQL([.verified, .settling])
        case .settled: LedgerSQL.recordSQL([.settled])
        case .forwardedAfterSettlement: LedgerSQL.recordSQL([.forwarded])
        }
    }

    /// The hot statement recording this chain of steps, if it is one.
    static func record(_ targets: [PaymentState]) -> HotStatement? {
        switch targets {
        case [.verified, .forwarded, .settling]: .settlingAfterForward
        case [.verified, .settling]: .settlingBeforeForward
        case [.settled]: .settled
        case [.forwarded]: .forwardedAfterSettlement
        default: nil
        }
    }
}

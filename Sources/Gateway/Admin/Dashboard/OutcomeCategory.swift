import GatewayStorage

/// How the dashboard and `/revenue` group what became of payments (from the ledger's state and
/// reason; refusals and releases keep their reasons).
public enum OutcomeCategory: String, Sendable, CaseIterable {
    /// Settled, directly or through reconciliation: the money moved.
    case paid
    /// The facilitator refused the payment at verification: nothing was forwarded or charged.
    case refused
    /// The facilitator refused to settle after the upstream answered: content withheld, nothing charged.
    case settlementFailed = "settlement_failed"
    /// The upstream answered an error (or nothing usable): delivered, not charged (`released`, reason `unsettled`).
    case upstreamFailed = "upstream_failed"
    /// Released for another reason (client gone, fail-closed on facilitator or upstream trouble, restart).
    case notCharged = "not_charged"
    /// The settlement's outcome is unknown: needs reconciliation (or the seller).
    case unknown
    /// Reconciliation found the transfer never happened.
    case reconciledUnsettled = "reconciled_unsettled"
    /// Still being handled.
    case inFlight = "in_flight"
    /// Delivered before its settlement, which is queued (`settlement: deferred`).
    case settlementPending = "settlement_pending"
    /// Delivered before its settlement, which the facilitator then refused: delivered unpaid.
    case settleFailedAfterDelivery = "settle_failed_after_delivery"

    public init(_ line: RevenueSummary.OutcomeLine) {
        switch line.state {
        case .settled, .reconciledSettled: self = .paid
        case .refused: self = line.afterSettling ? .settlementFailed : .refused
        case .released: self = line.reason == RequestOutcome.unsettled.rawValue ? .upstreamFailed : .notCharged
        case .unknown: self = .unknown
        case .reconciledUnsettled: self = .reconciledUnsettled
        case .claimed, .verified, .forwarded, .settling: self = .inFlight
        case .settlementPending: self = .settlementPending
        case .settleFailedAfterDelivery: self = .settleFailedAfterDelivery
        }
    }

    package var title: String {
        switch self {
        case .paid: "Paid"
        case .refused: "Refused at verification"
        case .settlementFailed: "Settlement failed"
        case .upstreamFailed: "Upstream failed, not charged"
        case .notCharged: "Not charged (other)"
        case .unknown: "Unknown outcome"
        case .reconciledUnsettled: "Reconciled: never settled"
        case .inFlight: "In flight"
        case .settlementPending: "Delivered, settlement pending"
        case .settleFailedAfterDelivery: "Delivered, settlement failed"
        }
    }

    /// Whether the reasons are worth listing.
    var listsReasons: Bool {
        switch self {
        case .refused, .settlementFailed, .notCharged, .unknown, .settleFailedAfterDelivery: true
        default: false
        }
    }
}

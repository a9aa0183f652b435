/// A step of a claimed payment, recorded by the request that holds the claim.
public enum PaymentTransition: Sendable, Equatable {
    /// The facilitator's `/verify` accepted the payment (`payer` as it reported).
    case verified(payer: String)
    /// The upstream answered with this status (under `before`, after the settlement: the row stays settled).
    case forwarded(upstreamStatus: Int)
    /// About to call `/settle`. Durable before the call.
    case settling
    case settled(transaction: String)
    /// The facilitator refused the payment (at verify or settle); nothing moved, it may come again.
    case refused(reason: String)
    /// Not charged (upstream failure, client gone, facilitator unavailable at verify).
    case released(reason: String)
    /// The settlement's outcome is unknown: held until reconciled or retried with the same payment.
    case unknown(reason: String)
    /// Deferred settlement: the payment (kept to settle it later) is queued before the request is
    /// forwarded. `forwarded` then hands the row to the settlement workers.
    case pending(PendingSettlement)

    public var target: PaymentState {
        switch self {
        case .verified: .verified
        case .forwarded: .forwarded
        case .settling: .settling
        case .settled: .settled
        case .refused: .refused
        case .released: .released
        case .unknown: .unknown
        case .pending: .settlementPending
        }
    }

    /// The states this step may follow (the order the ledger enforces).
    public var predecessors: [PaymentState] { Self.predecessors(of: target) }

    /// The states a step into `target` may follow; none for the states no step leads to.
    public static func predecessors(of target: PaymentState) -> [PaymentState] {
        switch target {
        case .verified: [.claimed]
        case .forwarded: [.verified, .settled, .settlementPending]
        case .settling: [.verified, .forwarded]
        case .settled: [.settling]
        case .refused: [.claimed, .verified, .settling]
        case .released: [.claimed, .verified, .forwarded, .settlementPending]
        case .unknown: [.claimed, .verified, .forwarded, .settling]
        case .settlementPending: [.claimed, .verified]
        case .claimed, .reconciledSettled, .reconciledUnsettled, .settleFailedAfterDelivery: []
        }
    }

    /// The state the row is in after this step from `current`: `forwarded` after `settled` keeps
    /// `settled`, and after `settlement_pending` keeps the row queued (handed to the workers).
    public func state(after current: PaymentState) -> PaymentState {
        if case .forwarded = self, current == .settled || current == .settlementPending { return current }
        return target
    }
}

/// What reconciliation found for a payment whose settlement outcome was unknown.
public enum ReconciledOutcome: Sendable, Equatable {
    /// The transfer happened (the transaction, when the chain's logs show it).
    case settled(transaction: String?)
    /// It never happened: the claim is released, so the same authorization may be presented again.
    case unsettled
}

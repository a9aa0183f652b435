/// Where a payment stands in the ledger.
///
///     claimed ─▶ verified ─▶ forwarded ─▶ settling ─▶ settled          (after-success)
///     claimed ─▶ verified ─▶ settling ─▶ settled (─▶ upstream status)   (before)
///     any step before settling ─▶ released | refused
///     settling ─▶ refused | unknown ─▶ reconciled_settled | reconciled_unsettled
///
///     claimed | verified ─▶ settlement_pending ─(upstream < 400: handed to the queue)─▶ settled     (deferred)
///                                 │                                 ├─▶ settle_failed_after_delivery
///                                 │                                 └─▶ unknown ─▶ reconciled_*
///                                 └─(upstream ≥ 400, never answered)─▶ released
///
/// `settling` is written durably before `/settle` is called: a process that dies after it leaves a
/// row whose outcome is unknown, never nothing. Under deferred settlement the row is
/// `settlement_pending` (with the payment needed to settle it) before the request is forwarded;
/// a settlement worker takes it from there (see ``DeferredSettlement``).
public enum PaymentState: String, Sendable, CaseIterable, Codable {
    case claimed, verified, forwarded, settling, settled, refused, released, unknown
    case reconciledSettled = "reconciled_settled"
    case reconciledUnsettled = "reconciled_unsettled"
    /// Served (or being served) before its settlement; queued for a settlement worker.
    case settlementPending = "settlement_pending"
    /// Served before its settlement, which the facilitator then refused (or never came before the
    /// authorization's deadline): delivered unpaid.
    case settleFailedAfterDelivery = "settle_failed_after_delivery"

    /// Held by a live request (under a lease).
    public var isInFlight: Bool {
        switch self {
        case .claimed, .verified, .forwarded, .settling: true
        default: false
        }
    }

    /// The money moved: the payment can never be claimed again.
    public var isSpent: Bool { self == .settled || self == .reconciledSettled }

    /// States a payment may be claimed from again (nothing moved on chain, or a retry of the same
    /// payment after an unknown outcome). In-flight states qualify only once their lease has ended.
    static let claimable: [PaymentState] = [.released, .refused, .unknown, .reconciledUnsettled]

    /// Reclaiming from these is a retry after an unknown outcome, never a fresh claim.
    static let outcomeUnknown: [PaymentState] = [.settling, .unknown]
}

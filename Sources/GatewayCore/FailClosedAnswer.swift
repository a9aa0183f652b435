/// What a paid request that fails closed is answered (``PaymentFlow/Action/failClosed(_:stage:)``):
/// the status, the error code and the message, decided from where it failed and what is known of
/// the money, so that the client is never invited to pay again when a transfer may have happened.
public struct FailClosedAnswer: Sendable, Equatable {
    public let status: Int
    public let code: String
    public let message: String
    /// The settlement's `PAYMENT-RESPONSE` goes with the answer (`before`: settled, then the upstream failed).
    public let carriesReceipt: Bool

    public init(_ failure: PaymentFlow.CallFailure, stage: PaymentFlow.Stage, settled: Bool, retryAfterUnknownOutcome: Bool) {
        if stage == .storage {
            status = 503
            code = "storage_unavailable"
            message = "the payment cannot be recorded right now; nothing was charged, retry later"
            carriesReceipt = false
            return
        }
        status = failure == .timeout ? 504 : 502
        code = "\(stage == .upstream ? "upstream" : "facilitator")_\(failure == .timeout ? "timeout" : "unavailable")"
        if stage == .upstream && settled {
            message = "the payment was settled but the upstream failed; keep PAYMENT-RESPONSE as the receipt and do not pay again"
            carriesReceipt = true
        } else if stage == .settle || retryAfterUnknownOutcome {
            message = "the payment's settlement outcome is unknown; do not pay again, retry later with the same payment"
            carriesReceipt = false
        } else {
            message = "the request could not be completed; nothing was charged"
            carriesReceipt = false
        }
    }
}

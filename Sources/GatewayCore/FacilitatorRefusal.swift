import X402

/// Facilitator refusals the buyer can act on, mapped to an answer that says what to do, instead of
/// a bare 402 that invites signing the same failing payment again. Reason codes are the official
/// Python SDK 2.25's (`x402/mechanisms/evm/constants.py`); the 412 is the x402 `upto` spec's
/// (`specs/schemes/upto/scheme_upto_evm.md`, verification step 2) and applies to `exact` through
/// Permit2 alike. Any other refusal stays a 402 (the challenge again, for v1 clients in the body)
/// whose `error` is the facilitator's reason verbatim (`permit2_insufficient_balance`,
/// `upto_facilitator_mismatch`, `invalid_permit2_spender`, …).
public struct FacilitatorRefusal: Sendable, Equatable {
    /// The HTTP status of the answer.
    public var status: Int
    /// The `error` code in the JSON body.
    public var code: String
    public var message: String

    /// The answer for a facilitator's `invalidReason` / `errorReason`, or nil for a plain 402.
    public static func answer(for reason: String?) -> FacilitatorRefusal? {
        switch reason {
        case "permit2_allowance_required":
            FacilitatorRefusal(
                status: 412, code: "PERMIT2_ALLOWANCE_REQUIRED",
                message: "the paying address has not approved Permit2 (\(Permit2Contracts.permit2)) to spend this token: "
                    + "send approve(Permit2, amount) on the token once, then pay again (PAYMENT-REQUIRED holds the offer)")
        default:
            nil
        }
    }
}

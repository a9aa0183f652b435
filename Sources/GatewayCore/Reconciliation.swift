import X402

/// Deciding what became of a payment whose settlement outcome is unknown, from what the chain says
/// about its EIP-3009 authorization. Pure: the reader, the store and the clock are the caller's.
///
/// An `exact` EVM payment is a `transferWithAuthorization` signed by the payer; the token records
/// `authorizationState(payer, nonce) = true` when the transfer runs (or when the payer cancels the
/// authorization), and emits `AuthorizationUsed` (or `AuthorizationCanceled`). So:
///
/// - **used** on chain → the money moved: `settled`, with the transaction when the event is found;
/// - **canceled** → nothing moved and nothing ever will: `unsettled`;
/// - **unused**, read at a block whose timestamp is at or past the authorization's `validBefore` →
///   `unsettled`: the token refuses the transfer in every block from then on
///   (`block.timestamp < validBefore` is required), so no transaction can still land. The chain's
///   time is used, not ours: a node that lags behind (or an idle development chain) shows an older
///   block, and this leg then waits for it;
/// - **unused**, still valid, and unknown for longer than `grace` → `unsettled`;
/// - **unused**, still valid, inside `grace` → left for the next round;
/// - the chain could not be read → left for the next round.
///
/// Why the grace: an unknown outcome means the gateway lost the facilitator's answer, not that the
/// facilitator did nothing. It may have broadcast the transaction (or still be about to: a slow
/// facilitator works on after the gateway stopped waiting), and that transaction may still be mined
/// while the authorization is valid. Declaring the payment unsettled releases its claim; if the
/// transfer then lands, the ledger says "not charged" for money that moved, and the same
/// authorization presented again is refused by the facilitator although the payer paid. The grace
/// is the time we give a broadcast transaction to show up; after `validBefore` none can, so no
/// grace is needed there. Most x402 authorizations are valid for a few minutes
/// (`maxTimeoutSeconds`), so most unknowns end on the `validBefore` leg.
public enum Reconciliation {
    /// What the chain says about the authorization, read at one block.
    public enum Reading: Sendable, Equatable {
        /// `authorizationState` is true and the `AuthorizationUsed` event names this transaction
        /// (nil when the event was not found within the blocks searched, or the search failed).
        case used(transaction: String?)
        /// `authorizationState` is true because the payer canceled the authorization
        /// (`AuthorizationCanceled`): no transfer happened.
        case canceled
        /// `authorizationState` is false at a block with this timestamp (unix seconds).
        case unused(blockTimestamp: UInt64)
        /// The chain could not be read (transport, JSON-RPC error, unexpected answer).
        case failed
    }

    public enum UnsettledBecause: String, Sendable, Hashable {
        /// The authorization's `validBefore` has passed on chain and it was never used.
        case expired
        /// Unused for longer than the grace period while still valid.
        case graceElapsed = "grace_elapsed"
        /// The payer canceled the authorization.
        case canceled
    }

    public enum Decision: Sendable, Hashable {
        case settled(transaction: String?)
        case unsettled(UnsettledBecause)
        /// Unused but still valid and inside the grace period: try again next round.
        case pending
        /// The chain could not be read: try again next round.
        case error

        /// The metric label (`x402_reconciliations_total{outcome}`).
        public var outcome: String {
            switch self {
            case .settled: "settled"
            case .unsettled: "unsettled"
            case .pending: "pending"
            case .error: "error"
            }
        }
    }

    /// - Parameters:
    ///   - validBefore: the authorization's `validBefore` (unix seconds).
    ///   - unknownSince: when the row's outcome became unknown (unix milliseconds).
    ///   - now: unix milliseconds.
    public static func decide(_ reading: Reading, validBefore: UInt64, unknownSince: Int64, now: Int64, grace: Duration) -> Decision {
        switch reading {
        case .used(let transaction):
            return .settled(transaction: transaction)
        case .canceled:
            return .unsettled(.canceled)
        case .failed:
            return .error
        case .unused(let blockTimestamp):
            if blockTimestamp >= validBefore { return .unsettled(.expired) }
            if now - unknownSince >= grace.wholeMilliseconds { return .unsettled(.graceElapsed) }
            return .pending
        }
    }
}

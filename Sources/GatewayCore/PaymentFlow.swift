import X402

/// The paid-request flow as a pure state machine. The async shell performs each returned action
/// and feeds the outcome back; nothing here does I/O or reads a clock (time is passed in).
///
///     received ─match+pre-verify─▶ claim ─▶ verify ─┬─ after-success: forward ─▶ settle ─▶ deliver
///                                                   ├─ after-headers: forward ─▶ settle ─▶ deliver (streamed)
///                                                   └─ before:        settle ─▶ forward ─▶ deliver
///
/// Deferred settlement (the settlement is queued durably and made after delivery, see ``Deferral``):
///
///     received ─match+pre-verify─┬─ local:       claim pending ──────────────────────┬─▶ forward ─▶ hand over ─▶ deliver pending
///                                └─ facilitator: claim ─▶ verify ─▶ record pending ─┘   (upstream ≥ 400: deliver unsettled)
///
/// A retry of a payment whose settlement outcome is unknown is never deferred: it goes on as after-success.
///
/// On a route offering payment-identifier, a payment with an id claims the id first:
///
///     received ─match+pre-verify─▶ claim id ─┬─ new ─▶ claim ─▶ … ─▶ deliver (answer stored for the id)
///                                            ├─ answered, same payment and request ─▶ replay
///                                            └─ in flight, or another payment or request ─▶ 409
///
/// An expired payment with an id only looks the id up: a stored answer is replayed, else it is refused.
public struct PaymentFlow: Sendable {
    public enum CallFailure: Error, Sendable, Equatable {
        case timeout
        case unavailable
    }

    public enum Action: Sendable, Equatable {
        /// Answer 402 with a fresh challenge; `detail` carries a facilitator's reason verbatim.
        case refuse(RefusalReason, detail: String?)
        /// Claim the payment's replay key.
        case claim
        case verify
        case forward
        case settle
        /// Relay the upstream response with `PAYMENT-RESPONSE`.
        case deliver(SettleResponse)
        /// Deferred settlement, verified locally: claim the payment straight into the settlement
        /// queue (then ``PaymentFlow/claimed(_:)`` with `.pending`, or with the ordinary claim's answer).
        case claimPending
        /// Deferred settlement: write the payment into the settlement queue, held for this request.
        case recordPending
        /// Deferred settlement: the upstream answered < 400: hand the queued payment to the settlement workers.
        case handOver
        /// Relay the upstream response with a pending `PAYMENT-RESPONSE`: settled after delivery.
        case deliverPending
        /// Relay the upstream's failure as is: nothing was charged.
        case deliverUnsettled
        /// 402 with `PAYMENT-RESPONSE` describing the failure; the upstream body is withheld.
        case settlementFailed(SettleResponse)
        /// 502/504: the gateway cannot tell or cannot proceed. Never a fresh 402.
        case failClosed(CallFailure, stage: Stage)
        /// The client is gone: nothing to answer, nothing settled.
        case abandon
        /// Claim the payment's identifier `id` (before the payment's own claim).
        case claimIdentifier(String)
        /// The payment has expired but carries the identifier `id`: look for an answer stored for it.
        case lookUpIdentifier(String)
        /// Answer with the response stored for the identifier: nothing is verified, forwarded or settled.
        case replay
        /// 400: the identifier is missing on a route that requires one, or malformed.
        case rejectIdentifier(IdentifierProblem)
        /// 409: the identifier cannot serve this request.
        case identifierConflict(IdentifierConflict)
    }

    public enum IdentifierProblem: Sendable, Equatable {
        case missing
        /// Why the presented identifier does not fit the extension's schema.
        case invalid(String)
    }

    public enum IdentifierConflict: String, Sendable, Equatable {
        /// The id was used with a different payment.
        case differentPayment = "payment_identifier_conflict"
        /// The id was used with this payment for a different request (method, path, route, offer or body).
        case differentRequest = "payment_identifier_request_mismatch"
        /// The id's first request is still being processed (on this instance or another).
        case inFlight = "payment_identifier_in_flight"
        /// The request was paid and answered, but its answer was too large to store.
        case notReplayable = "payment_identifier_response_not_stored"
    }

    /// What the store holds for the payment's identifier, compared with this request.
    public enum IdentifierLookup: Sendable, Equatable {
        /// The id is this request's now (new, released, or its earlier holder's lease ended).
        case claimed
        /// Nothing live is stored for the id (look-up only).
        case notFound
        case inFlight(samePayment: Bool, sameRequest: Bool)
        case completed(samePayment: Bool, sameRequest: Bool, replayable: Bool)
    }

    /// What to do with the identifier's claim once the flow ends.
    public enum IdentifierDisposition: Sendable, Equatable {
        case none  // no identifier, or not claimed
        case release  // nothing to store: the id may be used again
        case complete  // the paid answer is stored for retries
    }

    public enum Stage: String, Sendable, Equatable {
        case verify, settle, upstream
        /// The payment's record could not be written: nothing is settled without it.
        case storage
    }

    /// What to do with the replay claim once the flow ends.
    public enum ClaimDisposition: Sendable, Equatable {
        case none  // never claimed
        case release  // not charged: the payment may be presented again
        case spend  // charged
        case unknown  // settlement outcome unknown: held, but the same payment may come back to retry
        case queued  // delivered before its settlement: handed to the settlement workers
    }

    /// How the replay claim went (mirrors the storage layer's answer).
    public enum Claim: Sendable, Equatable {
        case fresh
        /// Claimed straight into the settlement queue (``Action/claimPending``).
        case pending
        /// An earlier settlement of this same payment ended without an answer.
        case afterUnknownOutcome
        case taken
    }

    enum State: Sendable, Equatable {
        case received, identifying, lookingUp, claiming, verifying, queueing, forwarding, handingOver, settling, done
    }

    /// The policy the request is served under; a deferred payment that turns out to be a retry of
    /// an unknown outcome goes on as `after-success`.
    public private(set) var policy: SettlementPolicy
    /// How a deferred payment is checked before it is served.
    public let verification: Deferral.Verification
    /// Whether the route offers payment-identifier (nil: identifiers are ignored).
    public let identifierMode: PaymentIdentifierMode?
    private(set) var state: State = .received
    public private(set) var claim: ClaimDisposition = .none
    /// The payment's valid identifier, when the route offers the extension.
    public private(set) var identifier: String?
    public private(set) var identifierDisposition: IdentifierDisposition = .none
    public private(set) var offerIndex: Int?
    public private(set) var payer: String?
    /// A retry of a payment whose earlier settlement outcome is unknown: any refusal from the
    /// facilitator may mean the earlier transfer went through, so it is never answered with a 402.
    public private(set) var isRetryAfterUnknownOutcome = false
    /// The settlement, under `before` once it has succeeded (then an upstream failure is not "nothing charged").
    public private(set) var settlement: SettleResponse?

    public init(policy: SettlementPolicy, identifierMode: PaymentIdentifierMode? = nil, verification: Deferral.Verification = .facilitator) {
        self.policy = policy
        self.verification = verification
        self.identifierMode = identifierMode
    }

    public mutating func start(_ payment: PresentedPayment, offers: [PreparedOffer], now: UInt64) -> Action {
        precondition(state == .received)
        if let identifierMode {
            switch payment.identifier {
            case .invalid(let why):
                state = .done
                return .rejectIdentifier(.invalid(why))
            case .absent where identifierMode == .required:
                state = .done
                return .rejectIdentifier(.missing)
            case .absent: break
            case .valid(let id): identifier = id
            }
        }
        switch PaymentCheck.match(payment, offers: offers) {
        case .failure(let reason):
            state = .done
            return .refuse(reason, detail: nil)
        case .success(let index):
            offerIndex = index
            if let reason = PaymentCheck.preVerify(payment, offer: offers[index], now: now) {
                // A retry after the authorization expired may still be owed the answer it paid for.
                if reason == .expired, let identifier {
                    state = .lookingUp
                    return .lookUpIdentifier(identifier)
                }
                state = .done
                return .refuse(reason, detail: nil)
            }
            if let identifier {
                state = .identifying
                return .claimIdentifier(identifier)
            }
            state = .claiming
            return policy == .deferred && verification == .local ? .claimPending : .claim
        }
    }

    /// What the store answered to ``Action/claimIdentifier`` or ``Action/lookUpIdentifier``.
    public mutating func identifierChecked(_ result: IdentifierLookup) -> Action {
        precondition(state == .identifying || state == .lookingUp)
        let lookingUp = state == .lookingUp
        state = .done
        switch result {
        case .claimed:
            precondition(!lookingUp)
            identifierDisposition = .release  // held; released unless the answer gets stored
            state = .claiming
            return .claim
        case .notFound:
            precondition(lookingUp)
            return .refuse(.expired, detail: nil)
        case .inFlight(let samePayment, let sameRequest), .completed(let samePayment, let sameRequest, _):
            if !samePayment { return .identifierConflict(.differentPayment) }
            if !sameRequest { return .identifierConflict(.differentRequest) }
            guard case .completed(_, _, let replayable) = result else { return .identifierConflict(.inFlight) }
            return replayable ? .replay : .identifierConflict(.notReplayable)
        }
    }

    public mutating func claimed(_ result: Claim) -> Action {
        precondition(state == .claiming)
        if result == .taken {
            state = .done
            return .refuse(.alreadyUsed, detail: nil)
        }
        if result == .pending {
            precondition(policy == .deferred)
            claim = .release  // released unless the upstream's answer hands it over
            state = .forwarding
            return .forward
        }
        isRetryAfterUnknownOutcome = result == .afterUnknownOutcome
        // Held; released unless the payment gets charged. A retry after an unknown outcome stays
        // unknown however it ends short of a settlement: the earlier transfer may have gone through.
        claim = isRetryAfterUnknownOutcome ? .unknown : .release
        if policy == .deferred {
            if isRetryAfterUnknownOutcome {
                policy = .afterSuccess
            } else if verification == .local {
                state = .queueing
                return .recordPending
            }
        }
        state = .verifying
        return .verify
    }

    /// The payment is in the settlement queue, held for this request (deferred settlement).
    public mutating func pendingRecorded() -> Action {
        precondition(state == .queueing)
        state = .forwarding
        return .forward
    }

    /// The queued payment was handed to the settlement workers (deferred settlement).
    public mutating func handedOver() -> Action {
        precondition(state == .handingOver)
        claim = .queued
        state = .done
        return .deliverPending
    }

    public mutating func verified(_ result: Result<VerifyResponse, CallFailure>) -> Action {
        precondition(state == .verifying)
        switch result {
        case .failure(let failure):
            state = .done
            return .failClosed(failure, stage: .verify)
        case .success(let response) where !response.isValid:
            state = .done
            if isRetryAfterUnknownOutcome {
                claim = .unknown
                return .failClosed(.unavailable, stage: .settle)
            }
            return .refuse(.facilitatorRefused, detail: response.invalidReason ?? "invalid_payment")
        case .success(let response):
            payer = response.payer
            switch policy {
            case .afterSuccess, .afterHeaders:
                state = .forwarding
                return .forward
            case .before:
                state = .settling
                return .settle
            case .deferred:
                state = .queueing
                return .recordPending
            }
        }
    }

    /// The upstream answered with `status` (its body not yet relayed).
    public mutating func upstreamResponded(status: Int) -> Action {
        precondition(state == .forwarding)
        switch policy {
        case .afterSuccess, .afterHeaders, .deferred:
            if status >= 400 {
                state = .done
                return .deliverUnsettled
            }
            if policy == .deferred {
                state = .handingOver
                return .handOver
            }
            state = .settling
            return .settle
        case .before:
            state = .done
            return .deliver(settlement!)  // streamed: nothing stored for an identifier
        }
    }

    /// The upstream could not be reached or timed out.
    public mutating func upstreamFailed(_ failure: CallFailure) -> Action {
        precondition(state == .forwarding)
        state = .done
        return .failClosed(failure, stage: .upstream)
    }

    /// The client went away before the settlement (or, deferred, before the hand-over): it would not
    /// receive what it pays for, so nothing is settled. The claim is released (held as unknown on a
    /// retry after an unknown outcome).
    public mutating func clientGone() -> Action {
        precondition(state == .settling || state == .handingOver)
        claim = isRetryAfterUnknownOutcome ? .unknown : .release
        state = .done
        return .abandon
    }

    /// The payment store failed before the settlement was called: the gateway cannot keep a record
    /// of the payment, so it neither settles nor delivers. The claim is let go (kept unknown on a
    /// retry after an unknown outcome).
    public mutating func storageFailed() -> Action {
        precondition(state != .received && state != .done)
        claim = isRetryAfterUnknownOutcome ? .unknown : (state == .claiming || state == .identifying || state == .lookingUp ? .none : .release)
        state = .done
        return .failClosed(.unavailable, stage: .storage)
    }

    public mutating func settled(_ result: Result<SettleResponse, CallFailure>) -> Action {
        precondition(state == .settling)
        switch result {
        case .failure(let failure):
            // The transfer may or may not have happened: hold the claim for a retry of this same
            // payment, and never invite a new one.
            claim = .unknown
            state = .done
            return .failClosed(failure, stage: .settle)
        case .success(let response) where !response.success && isRetryAfterUnknownOutcome:
            // A refusal now may mean the earlier attempt went through: still unknown.
            claim = .unknown
            state = .done
            return .failClosed(.unavailable, stage: .settle)
        case .success(let response) where !response.success:
            state = .done
            return .settlementFailed(response)
        case .success(let response):
            claim = .spend
            if payer == nil { payer = response.payer }
            switch policy {
            case .afterSuccess, .afterHeaders:
                state = .done
                if identifierDisposition == .release { identifierDisposition = .complete }
                return .deliver(response)
            case .before:
                settlement = response
                state = .forwarding
                return .forward
            case .deferred:
                preconditionFailure("a deferred payment is never settled by its request")
            }
        }
    }
}

// Deferred settlement in the ledger: a payment served before its settlement waits in
// `settlement_pending`, with what the facilitator needs to settle it, until a settlement worker
// of any instance sharing the store takes it under a lease and records what became of it.
//
//     request:  claim ─▶ settlement_pending (held by the request) ─▶ forward
//               upstream < 400: handed over, with `forwarded`: taken by this instance's worker in
//               the same change (`takeHandedOver`), or into the queue (its lease ends now)
//               upstream ≥ 400 or unreachable: `released` (nothing charged)
//     worker:   take (lease, settle attempt + 1; durable before `/settle`) ─▶ /settle ─▶ finish:
//               settled │ settle_failed_after_delivery │ unknown │ released │ back in the queue
//
// A row whose holder (request or worker) died is taken again once its lease has ended; a row never
// handed over is then released (the upstream's answer never came back through the gateway). A
// take after an earlier attempt of the same row (``DeferredSettlement/earlierAttemptUnsure``) may
// follow a `/settle` that went through without an answer, so a refusal then is not a failure but
// an unknown outcome, for reconciliation against the chain.

/// What a settlement worker needs to settle a payment later; kept on the row while it is pending
/// and cleared when it ends.
public struct PendingSettlement: Sendable, Hashable {
    /// The payment's x402 version (1 or 2).
    public var x402Version: Int
    /// The payment payload as the client sent it (JSON).
    public var payload: String
    /// The requirements to settle against (JSON, in the payment's version).
    public var requirements: String

    public init(x402Version: Int, payload: String, requirements: String) {
        self.x402Version = x402Version
        self.payload = payload
        self.requirements = requirements
    }
}

/// Proof that a worker holds a pending row: its key and the settle attempt it took.
public struct DeferredTicket: Sendable, Hashable {
    public var key: PaymentKey
    public var settleAttempt: Int

    public init(key: PaymentKey, settleAttempt: Int) {
        self.key = key
        self.settleAttempt = settleAttempt
    }
}

/// A pending row a worker took.
public struct DeferredSettlement: Sendable, Equatable {
    public var ticket: DeferredTicket
    public var routeID: String
    public var offer: PaymentOffer
    /// The authorization's `validBefore` (unix seconds).
    public var validBefore: UInt64
    public var claimedAt: Int64
    /// The upstream's status, once the request handed the row over; nil when it never did (the
    /// request's holder died before the upstream answered): the row is then released.
    public var upstreamStatus: Int?
    /// nil only for a row written without it (never by this gateway): it cannot be settled.
    public var pending: PendingSettlement?

    public init(ticket: DeferredTicket, routeID: String, offer: PaymentOffer, validBefore: UInt64, claimedAt: Int64,
                upstreamStatus: Int?, pending: PendingSettlement?) {
        self.ticket = ticket
        self.routeID = routeID
        self.offer = offer
        self.validBefore = validBefore
        self.claimedAt = claimedAt
        self.upstreamStatus = upstreamStatus
        self.pending = pending
    }

    /// An earlier take of this row ended without a recorded outcome (a worker died, or `/settle`
    /// gave no clear answer): that attempt may have moved the money.
    public var earlierAttemptUnsure: Bool { ticket.settleAttempt > 1 }
}

/// What a worker records for a row it took.
public enum DeferredOutcome: Sendable, Equatable {
    case settled(transaction: String)
    /// The facilitator refused (or the deadline passed) after the content was delivered:
    /// `settle_failed_after_delivery`.
    case failed(reason: String)
    /// Unknown whether the money moved (for reconciliation).
    case unknown(reason: String)
    /// Never delivered (the row was not handed over): nothing is charged.
    case released(reason: String)
    /// Back in the queue: taken again at `notBefore` (unix ms); `reason` says why it did not settle.
    case retry(reason: String, notBefore: Int64)
}

/// The ledger's deferred settlements, summed: what the budgets, metrics and reports read.
public struct DeferredSummary: Sendable, Equatable {
    /// Unsettled deferred payments (`settlement_pending`, and deferred rows whose outcome is
    /// `unknown`) grouped by route, payer, amount and state.
    public struct Group: Sendable, Hashable {
        public var routeID: String
        public var payer: String
        /// Atomic units, decimal.
        public var amount: String
        public var state: PaymentState
        public var count: Int
        /// The oldest claim in the group (unix ms).
        public var oldestClaimedAt: Int64

        public init(routeID: String, payer: String, amount: String, state: PaymentState, count: Int, oldestClaimedAt: Int64) {
            self.routeID = routeID
            self.payer = payer
            self.amount = amount
            self.state = state
            self.count = count
            self.oldestClaimedAt = oldestClaimedAt
        }
    }

    public var unsettled: [Group]
    /// Payers with a `settle_failed_after_delivery` row finished at or after the summary's
    /// `failuresSince`, and the time of their latest failure (unix ms).
    public var failedPayers: [String: Int64]
    /// Every `settle_failed_after_delivery` row in the ledger.
    public var failures: Int

    public init(unsettled: [Group] = [], failedPayers: [String: Int64] = [:], failures: Int = 0) {
        self.unsettled = unsettled
        self.failedPayers = failedPayers
        self.failures = failures
    }
}

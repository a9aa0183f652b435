/// Durable payment state: replay claims and the payment ledger, in one row per payment.
///
/// Every method is `async throws`: a database error is reported to the caller, never swallowed;
/// the gateway fails closed on it (a paid request gets 503 and nothing is charged).
///
/// Contract, kept by every backend (the conformance suite checks each):
/// - `claim` is atomic across every process sharing the store: of any number of concurrent claims
///   on one key, exactly one succeeds until that claim ends.
/// - A claim holds a lease (this store's instance id and an expiry, renewed by every step). A claim
///   whose holder died is taken over only after its lease ends; one that had reached `settling`
///   is taken over as a retry after an unknown outcome, never as fresh.
/// - `record` is ordered and idempotent: a step is applied only from its predecessors, repeating
///   the step the row is already in is a no-op, and a ticket whose claim was taken over is refused.
///   A chain of steps is applied as one change (all or none), each with its own time.
/// - Every call has reached durable storage when it returns.
/// - Payment identifiers (the payment-identifier extension) follow the same rules: of concurrent
///   `claimIdentifier` calls on one (route, id), exactly one gets `.claimed` until that claim is
///   completed or released or its lease ends; the others get the record to compare with.
///   `completeIdentifier` and `releaseIdentifier` apply only for the ticket that holds the claim.
/// - Deferred settlement (``DeferredSettlement``): of any number of concurrent `takePending` calls
///   across the processes sharing the store, each queued row goes to one until its lease ends;
///   `finishPending` applies only for the ticket of the latest take.
public protocol PaymentStore: Sendable {
    /// The id written into the rows this instance claims.
    var instanceID: String { get }

    func claim(_ request: ClaimRequest) async throws -> ClaimResult
    /// Applies `steps` (a chain: see ``PaymentStep/isChain(_:)``) in order, as one change: the first
    /// must follow the row's state; a chain ending in the state the row is in already is a no-op.
    func record(_ ticket: ClaimTicket, _ steps: [PaymentStep]) async throws
    /// The store's clock (unix ms), for the time of a step written later.
    func now() -> Int64
    /// Settles an `unknown` row (or a `settling` row whose lease ended) with what the chain says,
    /// provided it is still the `attempt` the decision was made for. Returns false when the row is
    /// in no such state (already reconciled, retried since, or never seen).
    func reconcile(_ key: PaymentKey, attempt: Int, _ outcome: ReconciledOutcome) async throws -> Bool
    /// Ledger rows, newest claim first.
    func payments(_ query: PaymentQuery) async throws -> [PaymentRecord]
    /// The ledger aggregated over a window (revenue series, outcomes, top payers, settlement
    /// latency) and the unknown outcomes of any age; every backend gives the same summary as
    /// ``RevenueSummary/init(records:query:now:)`` over its rows.
    func revenue(_ query: RevenueQuery) async throws -> RevenueSummary
    /// Claims a payment identifier for a request, or returns the record that holds it.
    func claimIdentifier(_ request: IdentifierClaimRequest) async throws -> IdentifierClaim
    /// Stores the answer of the request holding `ticket`; the record is `completed` from now on.
    /// Repeating it is a no-op; a ticket whose claim was taken over fails with `leaseLost`.
    func completeIdentifier(_ ticket: IdentifierTicket, _ response: StoredResponse) async throws
    /// Lets the id go (nothing was charged: the client may use it again). A no-op when the ticket
    /// no longer holds the claim.
    func releaseIdentifier(_ ticket: IdentifierTicket) async throws
    /// The live record of an id (nil when absent, released or expired), without claiming it.
    func identifier(routeID: String, id: String) async throws -> IdentifierRecord?
    /// Claims the payment straight into `settlement_pending` (deferred settlement after the local
    /// checks alone): one write before forwarding, holding the row for the request until it hands
    /// it over (`forwarded`) or releases it. Only where a fresh ``claim(_:)`` would succeed and no
    /// settlement was ever attempted; nil otherwise (then ``claim(_:)`` tells why).
    func claimPending(_ request: ClaimRequest, _ pending: PendingSettlement) async throws -> ClaimTicket?
    /// Takes up to `limit` `settlement_pending` rows whose lease has ended (oldest lease first),
    /// each for `leaseMilliseconds`, bumping its settle attempt; durable before it returns.
    func takePending(limit: Int, leaseMilliseconds: Int64) async throws -> [DeferredSettlement]
    /// Hands over a queued row its request holds (the upstream answered `upstreamStatus` < 400 at
    /// `forwardedAt`) and takes it for this instance's worker in the same change, for
    /// `leaseMilliseconds`: the worker that got the hand-over settles it at once, and the row is
    /// never in the queue unheld. nil when the ticket no longer holds a row not yet handed over.
    func takeHandedOver(_ ticket: ClaimTicket, upstreamStatus: Int, forwardedAt: Int64, leaseMilliseconds: Int64) async throws
        -> DeferredSettlement?
    /// Records what became of a taken row; false when the ticket no longer holds it (its lease
    /// ended and it was taken again, or it left the queue).
    func finishPending(_ ticket: DeferredTicket, _ outcome: DeferredOutcome) async throws -> Bool
    /// The unsettled deferred payments grouped for the budgets and metrics, and the deferred failures.
    func deferredSummary(failuresSince: Int64) async throws -> DeferredSummary
    /// A cheap round trip, for readiness.
    func ping() async throws
    /// What this backend is, for logs and `/readyz` ("sqlite", "postgres", "memory").
    var kind: String { get }
}

extension PaymentStore {
    /// Records one step, timed now.
    public func record(_ ticket: ClaimTicket, _ transition: PaymentTransition) async throws {
        try await record(ticket, [PaymentStep(transition, at: now())])
    }
}

/// What the request claiming a payment knows about it.
public struct ClaimRequest: Sendable, Equatable {
    public var key: PaymentKey
    public var offer: PaymentOffer
    public var routeID: String
    public var method: String
    public var path: String
    public var requestID: String
    /// The authorization's `validBefore` (unix seconds): the claim matters until then.
    public var validBefore: UInt64
    /// The id the payment carries under the payment-identifier extension, on a route that offers it.
    public var paymentIdentifier: String?

    public init(key: PaymentKey, offer: PaymentOffer, routeID: String, method: String, path: String, requestID: String,
                validBefore: UInt64, paymentIdentifier: String? = nil) {
        self.key = key
        self.offer = offer
        self.routeID = routeID
        self.method = method
        self.path = path
        self.requestID = requestID
        self.validBefore = validBefore
        self.paymentIdentifier = paymentIdentifier
    }
}

/// The offer a payment was accepted against.
public struct PaymentOffer: Sendable, Equatable {
    public var scheme: String
    public var network: String
    public var asset: String
    /// Atomic units, decimal digits (never a float); for `upto`, the maximum signed for.
    public var amount: String
    public var payTo: String
    /// `eip3009` or `permit2` (how the token moves; which nonce the key's `nonce` is).
    public var transferMethod: String

    public init(scheme: String, network: String, asset: String, amount: String, payTo: String, transferMethod: String = "eip3009") {
        self.scheme = scheme
        self.network = network
        self.asset = asset
        self.amount = amount
        self.payTo = payTo
        self.transferMethod = transferMethod
    }
}

/// Proof of holding a claim: the key and the claim's attempt number (bumped by every claim of the key).
public struct ClaimTicket: Sendable, Hashable {
    public var key: PaymentKey
    public var attempt: Int

    public init(key: PaymentKey, attempt: Int) {
        self.key = key
        self.attempt = attempt
    }
}

public enum ClaimResult: Sendable, Equatable {
    /// The key was free (never seen, released, refused, reconciled unsettled, or its holder's lease
    /// ended before it reached `settling`).
    case claimed(ClaimTicket)
    /// An earlier settlement of this payment ended without an answer: this request holds the key
    /// and may try again, and must never treat a refusal as "nothing moved".
    case claimedAfterUnknownOutcome(ClaimTicket)
    /// In flight elsewhere, or spent.
    case taken
}

/// A storage failure, reported rather than swallowed.
public struct StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The database cannot be opened, reached or written.
        case unavailable
        /// The ticket's claim was taken over (its lease ended) or the row is gone.
        case leaseLost = "lease_lost"
        /// The step does not follow the row's state.
        case outOfOrder = "out_of_order"
        /// The database's schema is newer than this binary.
        case schemaTooNew = "schema_too_new"
        /// A reader found the schema older than this binary's: it does not migrate it (the running
        /// gateway's version owns the schema).
        case schemaTooOld = "schema_too_old"
        /// The file is not a database, or a table is not what the schema says.
        case corrupt
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// What happened to one request, as a bounded metric label.
public enum RequestOutcome: String, Sendable, CaseIterable {
    /// Forwarded on a free route (or unmatched with `unmatched: pass`).
    case free
    /// Priced route, no payment: a 402 challenge was issued.
    case paymentRequired = "payment_required"
    /// A payment was presented and refused (402 with a reason).
    case refused
    /// Paid, settled and delivered.
    case paid
    /// Paid with a payment that passed its checks, delivered, its settlement queued (`settlement: deferred`).
    case deferred
    /// Forwarded on a priced route under a valid pass (no new payment).
    case pass
    /// A pass was sent and refused (forged, expired, another route's…): the route's 402.
    case passRefused = "pass_refused"
    /// Paid, but the upstream failed: delivered the failure, nothing charged.
    case unsettled
    /// The facilitator refused to settle: content withheld.
    case settlementFailed = "settlement_failed"
    /// Facilitator or upstream trouble on a paid request: 502/504, fail closed.
    case failedClosed = "failed_closed"
    /// The client went away before its payment was settled: nothing charged, nothing answered.
    case clientGone = "client_gone"
    /// A retry carrying a payment identifier got the answer stored for it (nothing verified, forwarded or settled).
    case replayed
    /// A payment identifier in use by another payment or request, or still in flight: 409.
    case identifierConflict = "identifier_conflict"
    /// Answered 429: the route's rate limit for this client (payer or address) was reached.
    case rateLimited = "rate_limited"
    /// Forwarded on a priced route without a payment, under the route's free allowance.
    case freeAllowance = "free_allowance"
    /// Upstream unreachable or slow on a free route.
    case upstreamError = "upstream_error"
    /// Malformed request (path, host, body too large).
    case badRequest = "bad_request"
    /// No route and `unmatched: deny`.
    case notFound = "not_found"
}

/// One ledger row: a payment that passed the local checks, and what became of it.
/// Times are unix milliseconds.
public struct PaymentRecord: Sendable, Equatable {
    public var key: PaymentKey
    public var offer: PaymentOffer
    public var routeID: String
    public var method: String
    public var path: String
    public var requestID: String
    public var state: PaymentState
    /// How many times the key was claimed (retries after an unknown outcome, re-presentations).
    public var attempt: Int
    /// The instance that holds (or last held) the claim.
    public var instanceID: String
    public var leaseUntil: Int64
    public var validBefore: UInt64
    /// The payer as the facilitator reported it at verify (normally the authorizer).
    public var verifiedPayer: String?
    public var upstreamStatus: Int?
    /// The facilitator's or the gateway's reason for a refusal, release or unknown outcome.
    public var reason: String?
    public var transaction: String?
    /// What the settlement was asked to move (set at `settling`; the offer's amount unless `upto`
    /// decided less), and how that amount was decided (see ``PaymentCharge``).
    public var chargedAmount: String?
    public var chargeBasis: String?
    public var claimedAt: Int64
    public var verifiedAt: Int64?
    public var forwardedAt: Int64?
    public var settlingAt: Int64?
    /// When the row reached settled, refused, released or unknown.
    public var finishedAt: Int64?
    public var reconciledAt: Int64?
    public var updatedAt: Int64
    /// Served before its settlement (`settlement: deferred`).
    public var deferred: Bool
    /// How many times a settlement worker took the row (deferred settlement).
    public var settleAttempts: Int
    /// The payment-identifier id the request presented (the answer stored for retries is kept under it).
    public var paymentIdentifier: String?

    /// What the payment brought in once settled: the charged amount, else the offer's.
    public var revenueAmount: String { chargedAmount ?? offer.amount }

    public init(key: PaymentKey, offer: PaymentOffer, routeID: String, method: String, path: String, requestID: String,
                state: PaymentState, attempt: Int, instanceID: String, leaseUntil: Int64, validBefore: UInt64,
                verifiedPayer: String? = nil, upstreamStatus: Int? = nil, reason: String? = nil, transaction: String? = nil,
                chargedAmount: String? = nil, chargeBasis: String? = nil, claimedAt: Int64, verifiedAt: Int64? = nil,
                forwardedAt: Int64? = nil, settlingAt: Int64? = nil, finishedAt: Int64? = nil, reconciledAt: Int64? = nil,
                updatedAt: Int64, deferred: Bool = false, settleAttempts: Int = 0, paymentIdentifier: String? = nil) {
        self.key = key
        self.offer = offer
        self.routeID = routeID
        self.method = method
        self.path = path
        self.requestID = requestID
        self.state = state
        self.attempt = attempt
        self.instanceID = instanceID
        self.leaseUntil = leaseUntil
        self.validBefore = validBefore
        self.verifiedPayer = verifiedPayer
        self.upstreamStatus = upstreamStatus
        self.reason = reason
        self.transaction = transaction
        self.chargedAmount = chargedAmount
        self.chargeBasis = chargeBasis
        self.claimedAt = claimedAt
        self.verifiedAt = verifiedAt
        self.forwardedAt = forwardedAt
        self.settlingAt = settlingAt
        self.finishedAt = finishedAt
        self.reconciledAt = reconciledAt
        self.updatedAt = updatedAt
        self.deferred = deferred
        self.settleAttempts = settleAttempts
        self.paymentIdentifier = paymentIdentifier
    }
}

/// Which ledger rows to list.
public struct PaymentQuery: Sendable, Equatable {
    /// Claimed at or after (unix ms).
    public var since: Int64?
    public var routeID: String?
    public var states: [PaymentState]?
    public var payer: String?
    public var limit: Int
    /// Rows claimed strictly before this (unix ms).
    public var before: Int64?
    /// Rows listed after this one (the next page): older, or claimed in the same millisecond with a
    /// smaller key. Rows are listed newest first, ties in key order, so paging by cursor lists every
    /// row once however many share a millisecond.
    public var after: PaymentCursor?

    public init(since: Int64? = nil, routeID: String? = nil, states: [PaymentState]? = nil, payer: String? = nil,
                limit: Int = 100, before: Int64? = nil, after: PaymentCursor? = nil) {
        self.since = since
        self.routeID = routeID
        self.states = states
        self.payer = payer?.lowercased()
        self.limit = limit
        self.before = before
        self.after = after
    }
}

/// Where a listing of the ledger stopped: the last row's claim time and key.
public struct PaymentCursor: Sendable, Equatable {
    public var claimedAt: Int64
    public var key: PaymentKey

    public init(claimedAt: Int64, key: PaymentKey) {
        self.claimedAt = claimedAt
        self.key = key
    }

    public init(_ record: PaymentRecord) {
        self.init(claimedAt: record.claimedAt, key: record.key)
    }

    /// `MS~network~asset~payer~nonce`: every part is free of `~`, and the whole is safe in a URL query.
    public var text: String { "\(claimedAt)~\(key.network)~\(key.asset)~\(key.payer)~\(key.nonce)" }

    public init?(text: String) {
        let parts = text.split(separator: "~", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 5, let claimedAt = Int64(parts[0]), !parts[1...].contains(where: \.isEmpty) else { return nil }
        self.init(claimedAt: claimedAt, key: PaymentKey(network: parts[1], asset: parts[2], payer: parts[3], nonce: parts[4]))
    }

    /// Whether a row with this claim time and key is listed before one at `other` (newest first,
    /// then the key's parts in descending order, as every backend orders its listing).
    static func listedFirst(_ a: (Int64, PaymentKey), _ b: (Int64, PaymentKey)) -> Bool {
        if a.0 != b.0 { return a.0 > b.0 }
        return (a.1.network, a.1.asset, a.1.payer, a.1.nonce) > (b.1.network, b.1.asset, b.1.payer, b.1.nonce)
    }
}

/// The payment-identifier extension's records: one per (route, client-chosen id), holding the hash
/// of the payment and of the request it came with, and once the request is answered, the answer to
/// replay. A record is `in_flight` under a lease (like a claim) until its request ends; then it is
/// `completed` (the answer stored, kept until `expiresAt`) or `released` (nothing charged: the id may
/// be used again).
public enum IdentifierState: String, Sendable, CaseIterable {
    case inFlight = "in_flight"
    case completed
    case released
}

/// What the request claiming an identifier knows.
public struct IdentifierClaimRequest: Sendable, Equatable {
    /// Ids are scoped by route: the same id on two routes is two records.
    public var routeID: String
    public var id: String
    /// Hex digest of the payment (see `PaymentIdentifier.paymentHash` in GatewayCore).
    public var paymentHash: String
    /// Hex digest of the request the payment came with: method, path, route, offer, body.
    public var bindingHash: String
    /// The payment the record belongs to (for operators; the ledger row has the same key).
    public var key: PaymentKey
    public var requestID: String
    /// Unix milliseconds after which a completed record is forgotten.
    public var expiresAt: Int64

    public init(routeID: String, id: String, paymentHash: String, bindingHash: String, key: PaymentKey, requestID: String,
                expiresAt: Int64) {
        self.routeID = routeID
        self.id = id
        self.paymentHash = paymentHash
        self.bindingHash = bindingHash
        self.key = key
        self.requestID = requestID
        self.expiresAt = expiresAt
    }
}

/// Proof of holding an identifier: its scope, and the claim's attempt (bumped by every claim).
public struct IdentifierTicket: Sendable, Hashable {
    public var routeID: String
    public var id: String
    public var attempt: Int

    public init(routeID: String, id: String, attempt: Int) {
        self.routeID = routeID
        self.id = id
        self.attempt = attempt
    }
}

/// One response header as it was sent to the client.
public struct HeaderField: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The answer stored for an identifier, replayed to a retry of the same request.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    /// In the order they were sent; names and values hold no CR or LF.
    public var headers: [HeaderField]
    /// nil when the body was over the configured size: the answer cannot be replayed.
    public var body: [UInt8]?

    public init(status: Int, headers: [HeaderField], body: [UInt8]?) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// One identifier record as stored.
public struct IdentifierRecord: Sendable, Equatable {
    public var routeID: String
    public var id: String
    public var paymentHash: String
    public var bindingHash: String
    public var key: PaymentKey
    public var requestID: String
    public var state: IdentifierState
    public var attempt: Int
    public var instanceID: String
    public var leaseUntil: Int64
    /// Present once `completed`.
    public var response: StoredResponse?
    public var createdAt: Int64
    public var completedAt: Int64?
    public var expiresAt: Int64
    public var updatedAt: Int64

    public init(routeID: String, id: String, paymentHash: String, bindingHash: String, key: PaymentKey, requestID: String,
                state: IdentifierState, attempt: Int, instanceID: String, leaseUntil: Int64, response: StoredResponse? = nil,
                createdAt: Int64, completedAt: Int64? = nil, expiresAt: Int64, updatedAt: Int64) {
        self.routeID = routeID
        self.id = id
        self.paymentHash = paymentHash
        self.bindingHash = bindingHash
        self.key = key
        self.requestID = requestID
        self.state = state
        self.attempt = attempt
        self.instanceID = instanceID
        self.leaseUntil = leaseUntil
        self.response = response
        self.createdAt = createdAt
        self.completedAt = completedAt
        self.expiresAt = expiresAt
        self.updatedAt = updatedAt
    }

    /// Whether a claim may take this record over: released, in flight past its lease, or completed
    /// and past its expiry.
    public func isClaimable(now: Int64) -> Bool {
        switch state {
        case .released: true
        case .inFlight: leaseUntil <= now
        case .completed: expiresAt <= now
        }
    }
}

public enum IdentifierClaim: Sendable, Equatable {
    /// The id was free (never seen, released, its holder's lease ended, or its answer expired):
    /// this request holds it and must complete or release it.
    case claimed(IdentifierTicket)
    /// The id is held by a request in flight, or answered: the record, for the caller to compare.
    case existing(IdentifierRecord)
}

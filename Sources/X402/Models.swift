/// x402 wire model, v2 and v1. Field names follow the protocol; optional fields are omitted when nil.

/// What is being bought (v2 `resource`).
public struct ResourceInfo: Sendable, Hashable, Codable {
    public var url: String
    public var description: String
    public var mimeType: String

    public init(url: String, description: String = "", mimeType: String = "") {
        self.url = url
        self.description = description
        self.mimeType = mimeType
    }
}

/// One acceptable way to pay (v2 `accepts[]` entry, also the payload's `accepted`).
public struct PaymentRequirements: Sendable, Hashable, Codable {
    public var scheme: String
    public var network: String
    public var amount: String
    public var asset: String
    public var payTo: String
    public var maxTimeoutSeconds: Int
    public var extra: [String: JSONValue]?

    public init(
        scheme: String, network: String, amount: String, asset: String, payTo: String,
        maxTimeoutSeconds: Int, extra: [String: JSONValue]? = nil
    ) {
        self.scheme = scheme
        self.network = network
        self.amount = amount
        self.asset = asset
        self.payTo = payTo
        self.maxTimeoutSeconds = maxTimeoutSeconds
        self.extra = extra
    }
}

/// The v2 402 challenge carried base64-encoded in `PAYMENT-REQUIRED`.
public struct PaymentRequired: Sendable, Hashable, Codable {
    public var x402Version: Int
    public var error: String?
    public var resource: ResourceInfo
    public var accepts: [PaymentRequirements]
    public var extensions: [String: JSONValue]?

    public init(
        error: String?, resource: ResourceInfo, accepts: [PaymentRequirements],
        extensions: [String: JSONValue]? = nil
    ) {
        self.x402Version = 2
        self.error = error
        self.resource = resource
        self.accepts = accepts
        self.extensions = extensions
    }
}

/// v1 requirements (legacy clients read these from the 402 JSON body).
public struct PaymentRequirementsV1: Sendable, Hashable, Codable {
    public var scheme: String
    public var network: String
    public var maxAmountRequired: String
    public var resource: String
    public var description: String
    public var mimeType: String
    public var payTo: String
    public var maxTimeoutSeconds: Int
    public var asset: String
    public var extra: [String: JSONValue]?
    public var outputSchema: JSONValue?

    public init(
        scheme: String, network: String, maxAmountRequired: String, resource: String,
        description: String, mimeType: String, payTo: String, maxTimeoutSeconds: Int,
        asset: String, extra: [String: JSONValue]?, outputSchema: JSONValue? = nil
    ) {
        self.scheme = scheme
        self.network = network
        self.maxAmountRequired = maxAmountRequired
        self.resource = resource
        self.description = description
        self.mimeType = mimeType
        self.payTo = payTo
        self.maxTimeoutSeconds = maxTimeoutSeconds
        self.asset = asset
        self.extra = extra
        self.outputSchema = outputSchema
    }
}

/// The v1 402 JSON body (`PaymentRequirementsResponse`).
public struct PaymentRequiredV1: Sendable, Hashable, Codable {
    public var x402Version: Int
    public var error: String
    public var accepts: [PaymentRequirementsV1]

    public init(error: String, accepts: [PaymentRequirementsV1]) {
        self.x402Version = 1
        self.error = error
        self.accepts = accepts
    }
}

/// EIP-3009 `TransferWithAuthorization` fields as carried in an exact-EVM payload.
public struct EIP3009Authorization: Sendable, Hashable, Codable {
    public var from: String
    public var to: String
    public var value: String
    public var validAfter: String
    public var validBefore: String
    public var nonce: String

    public init(from: String, to: String, value: String, validAfter: String, validBefore: String, nonce: String) {
        self.from = from
        self.to = to
        self.value = value
        self.validAfter = validAfter
        self.validBefore = validBefore
        self.nonce = nonce
    }
}

/// The scheme payload of `exact` on EVM (EIP-3009 flavour).
public struct ExactEVMPayload: Sendable, Hashable, Codable {
    public var signature: String
    public var authorization: EIP3009Authorization

    public init(signature: String, authorization: EIP3009Authorization) {
        self.signature = signature
        self.authorization = authorization
    }
}

/// v2 `PAYMENT-SIGNATURE` content.
public struct PaymentPayload: Sendable, Hashable, Codable {
    public var x402Version: Int
    public var resource: ResourceInfo?
    public var accepted: PaymentRequirements
    /// EIP-3009 or Permit2 (v1 payloads are EIP-3009 only).
    public var payload: EVMPayload
    public var extensions: [String: JSONValue]?

    public init(
        resource: ResourceInfo?, accepted: PaymentRequirements, payload: EVMPayload,
        extensions: [String: JSONValue]? = nil
    ) {
        self.x402Version = 2
        self.resource = resource
        self.accepted = accepted
        self.payload = payload
        self.extensions = extensions
    }

    public init(
        resource: ResourceInfo?, accepted: PaymentRequirements, payload: ExactEVMPayload,
        extensions: [String: JSONValue]? = nil
    ) {
        self.init(resource: resource, accepted: accepted, payload: .eip3009(payload), extensions: extensions)
    }
}

/// v1 `X-PAYMENT` content.
public struct PaymentPayloadV1: Sendable, Hashable, Codable {
    public var x402Version: Int
    public var scheme: String
    public var network: String
    public var payload: ExactEVMPayload

    public init(scheme: String, network: String, payload: ExactEVMPayload) {
        self.x402Version = 1
        self.scheme = scheme
        self.network = network
        self.payload = payload
    }
}

/// Facilitator `/verify` answer.
public struct VerifyResponse: Sendable, Hashable, Codable {
    public var isValid: Bool
    public var invalidReason: String?
    public var invalidMessage: String?
    public var payer: String?

    public init(isValid: Bool, invalidReason: String? = nil, invalidMessage: String? = nil, payer: String? = nil) {
        self.isValid = isValid
        self.invalidReason = invalidReason
        self.invalidMessage = invalidMessage
        self.payer = payer
    }
}

/// Facilitator `/settle` answer, also the content of `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`.
public struct SettleResponse: Sendable, Hashable, Codable {
    public var success: Bool
    public var errorReason: String?
    public var errorMessage: String?
    public var payer: String?
    public var transaction: String
    public var network: String
    public var amount: String?

    public init(
        success: Bool, errorReason: String? = nil, errorMessage: String? = nil, payer: String? = nil,
        transaction: String, network: String, amount: String? = nil
    ) {
        self.success = success
        self.errorReason = errorReason
        self.errorMessage = errorMessage
        self.payer = payer
        self.transaction = transaction
        self.network = network
        self.amount = amount
    }
}

/// Facilitator `/supported` answer.
public struct SupportedResponse: Sendable, Hashable, Codable {
    public struct Kind: Sendable, Hashable, Codable {
        public var x402Version: Int
        public var scheme: String
        public var network: String
        public var extra: [String: JSONValue]?

        public init(x402Version: Int, scheme: String, network: String, extra: [String: JSONValue]? = nil) {
            self.x402Version = x402Version
            self.scheme = scheme
            self.network = network
            self.extra = extra
        }
    }

    public var kinds: [Kind]
    public var extensions: [String]?
    public var signers: [String: [String]]?

    public init(kinds: [Kind], extensions: [String]? = nil, signers: [String: [String]]? = nil) {
        self.kinds = kinds
        self.extensions = extensions
        self.signers = signers
    }
}

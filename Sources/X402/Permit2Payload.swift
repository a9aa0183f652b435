/// Permit2 payloads: `exact` with `assetTransferMethod: permit2`, and `upto` (always Permit2).
/// Field names as in the x402 specs (`specs/schemes/exact/scheme_exact_evm.md`,
/// `specs/schemes/upto/scheme_upto_evm.md`) and the official Python SDK 2.25
/// (`x402/mechanisms/evm/types.py`): every number is a decimal string, the nonce included.

/// The contracts Permit2 payments go through: the same address on every EVM chain (CREATE2).
/// Source: x402 Python SDK 2.25, `x402/mechanisms/evm/constants.py`.
public enum Permit2Contracts {
    /// Uniswap's canonical Permit2.
    public static let permit2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
    /// `x402ExactPermit2Proxy`: the spender an `exact` Permit2 payment must name.
    public static let exactProxy = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
    /// `x402UptoPermit2Proxy`: the spender an `upto` payment must name.
    public static let uptoProxy = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
}

/// `permit2Authorization.permitted`.
public struct Permit2TokenPermissions: Sendable, Hashable, Codable {
    public var token: String
    public var amount: String

    public init(token: String, amount: String) {
        self.token = token
        self.amount = amount
    }
}

/// `permit2Authorization.witness`: the x402 witness. `facilitator` is present in `upto`'s witness
/// only (it binds the authorization to the facilitator that may settle it).
public struct Permit2Witness: Sendable, Hashable, Codable {
    public var to: String
    public var facilitator: String?
    public var validAfter: String

    public init(to: String, facilitator: String? = nil, validAfter: String) {
        self.to = to
        self.facilitator = facilitator
        self.validAfter = validAfter
    }
}

/// The `PermitWitnessTransferFrom` message a Permit2 payment signs.
public struct Permit2Authorization: Sendable, Hashable, Codable {
    public var from: String
    public var permitted: Permit2TokenPermissions
    public var spender: String
    /// A uint256 in decimal (Permit2 nonces are numbers, not bytes32).
    public var nonce: String
    /// Unix seconds: the upper time bound.
    public var deadline: String
    public var witness: Permit2Witness

    public init(from: String, permitted: Permit2TokenPermissions, spender: String, nonce: String, deadline: String,
                witness: Permit2Witness) {
        self.from = from
        self.permitted = permitted
        self.spender = spender
        self.nonce = nonce
        self.deadline = deadline
        self.witness = witness
    }
}

/// The scheme payload of a Permit2 payment.
public struct Permit2Payload: Sendable, Hashable, Codable {
    public var signature: String
    public var permit2Authorization: Permit2Authorization

    public init(signature: String, permit2Authorization: Permit2Authorization) {
        self.signature = signature
        self.permit2Authorization = permit2Authorization
    }
}

/// The scheme payload of an EVM payment: an EIP-3009 authorization or a Permit2 one (told apart,
/// as the SDK does, by the `permit2Authorization` member).
public enum EVMPayload: Sendable, Hashable, Codable {
    case eip3009(ExactEVMPayload)
    case permit2(Permit2Payload)

    public init(from decoder: any Decoder) throws {
        enum Keys: String, CodingKey { case permit2Authorization }
        if try decoder.container(keyedBy: Keys.self).contains(.permit2Authorization) {
            self = .permit2(try Permit2Payload(from: decoder))
        } else {
            self = .eip3009(try ExactEVMPayload(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .eip3009(let payload): try payload.encode(to: encoder)
        case .permit2(let payload): try payload.encode(to: encoder)
        }
    }

    /// The authorizer (the payer, unless a smart wallet says otherwise at the facilitator).
    public var from: String {
        switch self {
        case .eip3009(let p): p.authorization.from
        case .permit2(let p): p.permit2Authorization.from
        }
    }

    /// Who receives the money: `authorization.to`, or the witness's `to`.
    public var recipient: String {
        switch self {
        case .eip3009(let p): p.authorization.to
        case .permit2(let p): p.permit2Authorization.witness.to
        }
    }

    /// The amount signed for (for `upto`, the maximum), decimal.
    public var value: String {
        switch self {
        case .eip3009(let p): p.authorization.value
        case .permit2(let p): p.permit2Authorization.permitted.amount
        }
    }

    /// The nonce as written: bytes32 hex (EIP-3009) or a decimal uint256 (Permit2).
    public var nonce: String {
        switch self {
        case .eip3009(let p): p.authorization.nonce
        case .permit2(let p): p.permit2Authorization.nonce
        }
    }

    public var validAfter: String {
        switch self {
        case .eip3009(let p): p.authorization.validAfter
        case .permit2(let p): p.permit2Authorization.witness.validAfter
        }
    }

    /// `validBefore`, or the Permit2 `deadline`.
    public var validBefore: String {
        switch self {
        case .eip3009(let p): p.authorization.validBefore
        case .permit2(let p): p.permit2Authorization.deadline
        }
    }

    public var signature: String {
        switch self {
        case .eip3009(let p): p.signature
        case .permit2(let p): p.signature
        }
    }
}

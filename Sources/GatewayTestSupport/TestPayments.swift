import Foundation
import X402
import X402Crypto

/// Builds real, signed EIP-3009 and Permit2 payments for tests (Hardhat test key #0 by default).
public struct TestPayer: Sendable {
    public static let hardhat0 = Hex.decode("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", prefixed: true)!
    public let privateKey: [UInt8]
    public let address: String

    public init(privateKey: [UInt8] = TestPayer.hardhat0) {
        self.privateKey = privateKey
        self.address = EIP55.checksummed(try! Secp256k1.shared.address(ofPrivateKey: privateKey))
    }

    /// Signs an authorization for `requirements`; every field can be overridden to build bad payments.
    public func authorization(
        for requirements: PaymentRequirements, now: UInt64, value: String? = nil, to: String? = nil,
        validAfter: UInt64? = nil, validBefore: UInt64? = nil, nonce: String? = nil, signWith: PaymentRequirements? = nil
    ) -> ExactEVMPayload {
        let auth = EIP3009Authorization(
            from: address, to: to ?? requirements.payTo, value: value ?? requirements.amount,
            validAfter: String(validAfter ?? now - 600), validBefore: String(validBefore ?? now + 300),
            nonce: nonce ?? "0x" + Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255) }))
        let domainSource = signWith ?? requirements
        let chainId = Networks.evmChainId(domainSource.network)!
        let domain = EIP712.domainSeparator(
            name: domainSource.extra?["name"]?.stringValue ?? "", version: domainSource.extra?["version"]?.stringValue ?? "",
            chainId: chainId, verifyingContract: EVMAddress(hex: domainSource.asset)!)
        let digest = try! EIP3009.digest(auth, domainSeparator: domain)
        let signature = try! Secp256k1.shared.sign(digest: digest, privateKey: privateKey)
        return ExactEVMPayload(signature: "0x" + Hex.encode(signature), authorization: auth)
    }

    /// Signs a Permit2 authorization for `requirements` the way the official SDK's client does: the
    /// `exact` proxy as spender, or for `upto` the upto proxy and the facilitator of
    /// `extra.facilitatorAddress`. Every field can be overridden to build bad payments.
    public func permit2(
        for requirements: PaymentRequirements, now: UInt64, amount: String? = nil, token: String? = nil, spender: String? = nil,
        to: String? = nil, facilitator: String? = nil, validAfter: UInt64 = 0, deadline: UInt64? = nil, nonce: String? = nil
    ) -> Permit2Payload {
        let upto = requirements.scheme == "upto"
        let auth = Permit2Authorization(
            from: address, permitted: Permit2TokenPermissions(token: token ?? requirements.asset, amount: amount ?? requirements.amount),
            spender: spender ?? (upto ? Permit2Contracts.uptoProxy : Permit2Contracts.exactProxy),
            nonce: nonce ?? String(UInt64.random(in: 1...UInt64.max)), deadline: String(deadline ?? now + 300),
            witness: Permit2Witness(to: to ?? requirements.payTo,
                                    facilitator: upto ? (facilitator ?? requirements.extra?["facilitatorAddress"]?.stringValue) : nil,
                                    validAfter: String(validAfter)))
        let digest = try! Permit2.digest(auth, witness: upto ? .upto : .exact, chainId: Networks.evmChainId(requirements.network)!)
        let signature = try! Secp256k1.shared.sign(digest: digest, privateKey: privateKey)
        return Permit2Payload(signature: "0x" + Hex.encode(signature), permit2Authorization: auth)
    }

    /// A `PAYMENT-SIGNATURE` value (v2).
    public func header(accepted: PaymentRequirements, payload: ExactEVMPayload, extensions: [String: JSONValue]? = nil) -> String {
        header(accepted: accepted, payload: .eip3009(payload), extensions: extensions)
    }

    /// A `PAYMENT-SIGNATURE` value (v2) for any EVM payload.
    public func header(accepted: PaymentRequirements, payload: EVMPayload, extensions: [String: JSONValue]? = nil) -> String {
        try! HeaderCodec.encode(PaymentPayload(resource: nil, accepted: accepted, payload: payload, extensions: extensions))
    }

    /// `extensions` carrying a payment identifier the way the official SDK's client adds it.
    public static func identifier(_ id: String, required: Bool = false) -> [String: JSONValue] {
        ["payment-identifier": .object(["info": .object(["required": .bool(required), "id": .string(id)])])]
    }

    /// An `X-PAYMENT` value (v1).
    public func headerV1(network v1Name: String, payload: ExactEVMPayload) -> String {
        try! HeaderCodec.encode(PaymentPayloadV1(scheme: "exact", network: v1Name, payload: payload))
    }
}

import BigInt
import X402
import X402Crypto

/// Why a payment was not accepted. Bounded: it feeds the 402 `error`, log metadata and metric labels.
/// Raw values follow the x402 reason codes where one exists.
public enum RefusalReason: String, Error, Sendable, Hashable, CaseIterable {
    case malformed = "invalid_payload"
    case unsupportedVersion = "invalid_x402_version"
    case schemeMismatch = "unsupported_scheme"
    case networkMismatch = "invalid_network"
    case assetMismatch = "invalid_exact_evm_asset_mismatch"
    case recipientMismatch = "invalid_exact_evm_payload_recipient_mismatch"
    case amountMismatch = "invalid_exact_evm_payload_authorization_value_mismatch"
    case acceptedMismatch = "invalid_payment_requirements"
    case expired = "invalid_exact_evm_payload_authorization_valid_before"
    case notYetValid = "invalid_exact_evm_payload_authorization_valid_after"
    case badSignature = "invalid_exact_evm_payload_signature"
    /// The payment's transfer method (EIP-3009 or Permit2) is not the one the offer names.
    case transferMethodMismatch = "invalid_asset_transfer_method"
    /// A Permit2 payment whose spender is not the scheme's x402 proxy.
    case permit2Spender = "invalid_permit2_spender"
    /// An `upto` payment bound to another facilitator than the one the offer names.
    case uptoFacilitator = "upto_facilitator_mismatch"
    case alreadyUsed = "payment_already_used"
    case facilitatorRefused = "facilitator_refused"

    public var message: String {
        switch self {
        case .malformed: return "the payment header is not base64 JSON of an x402 payment payload"
        case .unsupportedVersion: return "unsupported x402Version"
        case .schemeMismatch: return "the payment's scheme is not offered for this route"
        case .networkMismatch: return "the payment's network is not offered for this route"
        case .assetMismatch: return "the payment's asset is not offered for this route"
        case .recipientMismatch: return "the payment is not made out to this route's payee"
        case .amountMismatch: return "the payment's amount is not this route's price"
        case .acceptedMismatch: return "the payment's accepted requirements differ from this route's offer"
        case .expired: return "the payment authorization has expired or expires too soon"
        case .notYetValid: return "the payment authorization is not valid yet"
        case .badSignature: return "the payment signature does not match its sender"
        case .transferMethodMismatch: return "the payment's asset transfer method (EIP-3009 or Permit2) is not the one offered"
        case .permit2Spender: return "the Permit2 authorization does not name the scheme's x402 proxy as spender"
        case .uptoFacilitator: return "the upto authorization is bound to another facilitator than the one offered"
        case .alreadyUsed: return "this payment has already been used"
        case .facilitatorRefused: return "the facilitator refused the payment"
        }
    }
}

/// A payment as presented in `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1).
public struct PresentedPayment: Sendable {
    public let version: Int
    public let scheme: String
    /// CAIP-2 network (v1 names are mapped).
    public let network: String
    public let accepted: PaymentRequirements?
    public let payload: EVMPayload
    /// The payload JSON exactly as received, for the facilitator.
    public let rawJSON: [UInt8]
    /// The payment-identifier extension's id (v2 `extensions["payment-identifier"].info.id`).
    public let identifier: PresentedIdentifier

    /// Decodes a header value; `headerVersion` is 2 for `PAYMENT-SIGNATURE` and 1 for `X-PAYMENT`.
    ///
    /// The body's own `x402Version` decides which payload shape is read; without one, the header's
    /// version does. The JSON is read with `JSONReader` (strict RFC 8259: JSON that `JSONDecoder`
    /// would let through, such as a trailing comma or a duplicate key, is `.malformed`) and mapped
    /// with the same required/optional fields and type rules as the `Codable` decoding of the model.
    public static func decode(header: some StringProtocol, headerVersion: Int) throws(RefusalReason) -> PresentedPayment {
        // A byte-order mark would be spliced into the facilitator's request body with the raw JSON.
        guard let bytes = Base64.decode(header), !bytes.starts(with: [0xEF, 0xBB, 0xBF]),
              let root = try? JSONReader.parse(bytes), case .object = root else {
            throw .malformed
        }
        var version = headerVersion
        if let declared = root["x402Version"], declared != .null {
            guard let v = try? declared.decodeInt() else { throw .malformed }
            version = v
        }
        switch version {
        case 2:
            guard let p = try? PaymentPayload(json: root) else { throw .malformed }
            return PresentedPayment(version: 2, scheme: p.accepted.scheme, network: p.accepted.network, accepted: p.accepted,
                                    payload: p.payload, rawJSON: bytes, identifier: PaymentIdentifier.read(p.extensions))
        case 1:
            guard let p = try? PaymentPayloadV1(json: root) else { throw .malformed }
            guard let network = Networks.named(p.network)?.caip2 else { throw .networkMismatch }
            return PresentedPayment(version: 1, scheme: p.scheme, network: network, accepted: nil, payload: .eip3009(p.payload),
                                    rawJSON: bytes, identifier: .absent)
        default:
            throw .unsupportedVersion
        }
    }

    /// The authorizer the payment names (the payer, unless a smart wallet says otherwise at the facilitator).
    public var from: String { payload.from }

    /// The replay key's nonce: EIP-3009's bytes32 hex, or Permit2's decimal uint256 (pre-verification
    /// refuses any other spelling of the number, so one Permit2 nonce has one key).
    public var nonce: String { payload.nonce }

    public var key: (from: String, nonce: String) { (from, nonce) }
}

/// One offer with what pre-verification needs, computed once per configuration.
public struct PreparedOffer: Sendable {
    public let offer: Offer
    public let requirementsJSON: [UInt8]
    /// The EIP-712 domain the payment signs under: the token's (EIP-3009) or Permit2's.
    let domainSeparator: [UInt8]?
    /// Position among the distinct offers of the route table (the same offer, the same number).
    let distinct: Int

    init(offer: Offer, distinct: Int = 0) {
        self.offer = offer
        self.distinct = distinct
        self.requirementsJSON = (try? HeaderCodec.compactJSON(offer.requirements)) ?? []
        if offer.transferMethod == .permit2 {
            self.domainSeparator = Permit2.domainSeparator(chainId: offer.network.chainId)
        } else if let name = offer.extra["name"]?.stringValue, let version = offer.extra["version"]?.stringValue,
                  let asset = EVMAddress(hex: offer.asset)
        {
            self.domainSeparator = EIP712.domainSeparator(name: name, version: version, chainId: offer.network.chainId, verifyingContract: asset)
        } else {
            self.domainSeparator = nil
        }
    }
}

/// Matching a presented payment to a route's offers, and local pre-verification.
public enum PaymentCheck {
    /// The offer the payment is for, or the most precise reason it fits none.
    public static func match(_ payment: PresentedPayment, offers: [PreparedOffer]) -> Result<Int, RefusalReason> {
        var candidates = Array(offers.indices)
        func narrow(_ reason: RefusalReason, _ keep: (Offer) -> Bool) -> RefusalReason? {
            let kept = candidates.filter { keep(offers[$0].offer) }
            if kept.isEmpty { return reason }
            candidates = kept
            return nil
        }
        let payload = payment.payload
        let asset = payment.accepted?.asset
        let method: AssetTransferMethod = if case .permit2 = payload { .permit2 } else { .eip3009 }
        if let r = narrow(.schemeMismatch, { $0.scheme == payment.scheme }) { return .failure(r) }
        if let r = narrow(.networkMismatch, { $0.network.caip2 == payment.network }) { return .failure(r) }
        if let asset, let r = narrow(.assetMismatch, { $0.asset.lowercased() == asset.lowercased() }) { return .failure(r) }
        if let r = narrow(.transferMethodMismatch, { $0.transferMethod == method }) { return .failure(r) }
        if let r = narrow(.recipientMismatch, { $0.payTo.lowercased() == payload.recipient.lowercased() }) { return .failure(r) }
        if let r = narrow(.amountMismatch, { Money.atomicUnits(fromInteger: payload.value) == $0.amount }) { return .failure(r) }
        if let accepted = payment.accepted {
            // v2: the client's copy of the requirements must be the offer (what it signed against).
            if let r = narrow(.acceptedMismatch, { offer in
                accepted.payTo.lowercased() == offer.payTo.lowercased() && Money.atomicUnits(fromInteger: accepted.amount) == offer.amount
                    && accepted.extra?["name"] == offer.extra["name"] && accepted.extra?["version"] == offer.extra["version"]
            }) { return .failure(r) }
        }
        return .success(candidates[0])
    }

    /// Seconds of validity the authorization must still have (block-time margin, as facilitators use).
    public static let validBeforeMargin: UInt64 = 6

    /// Time window, and for plain 65-byte signatures, recovery to the authorizer. For Permit2, also
    /// the token, the spender (the scheme's x402 proxy), for `upto` the facilitator the offer names,
    /// and numbers spelt canonically (one nonce, one replay key).
    /// Longer signatures (ERC-1271 / ERC-6492 smart wallets) are left to the facilitator.
    public static func preVerify(_ payment: PresentedPayment, offer: PreparedOffer, now: UInt64) -> RefusalReason? {
        let payload = payment.payload
        guard let validAfter = UInt64(payload.validAfter), let validBefore = UInt64(payload.validBefore) else { return .malformed }
        if validBefore < now + validBeforeMargin { return .expired }
        if validAfter > now { return .notYetValid }
        if case .permit2(let permit) = payload {
            let auth = permit.permit2Authorization
            guard [auth.nonce, auth.deadline, auth.witness.validAfter].allSatisfy({ Money.atomicUnits(fromInteger: $0) != nil }) else {
                return .malformed
            }
            guard EVMAddress(hex: auth.permitted.token) == EVMAddress(hex: offer.offer.asset) else { return .assetMismatch }
            let proxy = offer.offer.scheme == "upto" ? Permit2Contracts.uptoProxy : Permit2Contracts.exactProxy
            guard EVMAddress(hex: auth.spender) == EVMAddress(hex: proxy) else { return .permit2Spender }
            if offer.offer.scheme == "upto" {
                guard let bound = auth.witness.facilitator.flatMap(EVMAddress.init(hex:)),
                      let offered = offer.offer.facilitatorAddress.flatMap(EVMAddress.init(hex:)), bound == offered
                else { return .uptoFacilitator }
            }
        }
        guard let signature = Hex.decode(payload.signature, prefixed: true), !signature.isEmpty else { return .badSignature }
        guard signature.count == 65 else { return nil }
        guard let domain = offer.domainSeparator, let from = EVMAddress(hex: payload.from),
              let digest = digest(payload, offer: offer.offer, domain: domain)
        else { return .malformed }
        guard let recovered = Secp256k1.shared.recoverAddress(digest: digest, signature: signature), recovered == from else {
            return .badSignature
        }
        return nil
    }

    /// The EIP-712 digest the payment's signature must be over; nil when a field cannot be hashed.
    static func digest(_ payload: EVMPayload, offer: Offer, domain: [UInt8]) -> [UInt8]? {
        switch payload {
        case .eip3009(let exact): try? EIP3009.digest(exact.authorization, domainSeparator: domain)
        case .permit2(let permit):
            try? Permit2.digest(permit.permit2Authorization, witness: offer.scheme == "upto" ? .upto : .exact, domainSeparator: domain)
        }
    }
}

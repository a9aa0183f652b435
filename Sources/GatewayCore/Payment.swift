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
    public let payload: ExactEVMPayload
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
            return PresentedPayment(version: 1, scheme: p.scheme, network: network, accepted: nil, payload: p.payload, rawJSON: bytes,
                                    identifier: .absent)
        default:
            throw .unsupportedVersion
        }
    }

    public var key: (from: String, nonce: String) { (payload.authorization.from, payload.authorization.nonce) }
}

/// One offer with what pre-verification needs, computed once per configuration.
public struct PreparedOffer: Sendable {
    public let offer: Offer
    public let requirementsJSON: [UInt8]
    let domainSeparator: [UInt8]?
    /// Position among the distinct offers of the route table (the same offer, the same number).
    let distinct: Int

    init(offer: Offer, distinct: Int = 0) {
        self.offer = offer
        self.distinct = distinct
        self.requirementsJSON = (try? HeaderCodec.compactJSON(offer.requirements)) ?? []
        if let name = offer.extra["name"]?.stringValue, let version = offer.extra["version"]?.stringValue,
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
        let auth = payment.payload.authorization
        let asset = payment.accepted?.asset
        if let r = narrow(.schemeMismatch, { $0.scheme == payment.scheme }) { return .failure(r) }
        if let r = narrow(.networkMismatch, { $0.network.caip2 == payment.network }) { return .failure(r) }
        if let asset, let r = narrow(.assetMismatch, { $0.asset.lowercased() == asset.lowercased() }) { return .failure(r) }
        if let r = narrow(.recipientMismatch, { $0.payTo.lowercased() == auth.to.lowercased() }) { return .failure(r) }
        if let r = narrow(.amountMismatch, { Money.atomicUnits(fromInteger: auth.value) == $0.amount }) { return .failure(r) }
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

    /// Time window, and for plain 65-byte signatures, recovery to `authorization.from`.
    /// Longer signatures (ERC-1271 / ERC-6492 smart wallets) are left to the facilitator.
    public static func preVerify(_ payment: PresentedPayment, offer: PreparedOffer, now: UInt64) -> RefusalReason? {
        let auth = payment.payload.authorization
        guard let validAfter = UInt64(auth.validAfter), let validBefore = UInt64(auth.validBefore) else { return .malformed }
        if validBefore < now + validBeforeMargin { return .expired }
        if validAfter > now { return .notYetValid }
        guard let signature = Hex.decode(payment.payload.signature, prefixed: true), !signature.isEmpty else { return .badSignature }
        guard signature.count == 65 else { return nil }
        guard let domain = offer.domainSeparator, let from = EVMAddress(hex: auth.from),
              let digest = try? EIP3009.digest(auth, domainSeparator: domain)
        else { return .malformed }
        guard let recovered = Secp256k1.shared.recoverAddress(digest: digest, signature: signature), recovered == from else {
            return .badSignature
        }
        return nil
    }
}

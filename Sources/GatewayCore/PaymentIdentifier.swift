import X402
import X402Crypto

/// Whether a route offers the payment-identifier extension, and whether it insists on it.
public enum PaymentIdentifierMode: String, Sendable, Hashable, CaseIterable {
    /// Declared with `required: false`: a payment with an id gets idempotent retries, one without is served as usual.
    case optional
    /// Declared with `required: true`: a payment without an id is answered 400.
    case required
}

/// What a payment carries in `extensions["payment-identifier"]` (v2 only; v1 payloads have no extensions).
public enum PresentedIdentifier: Sendable, Hashable {
    case absent
    case valid(String)
    /// Present but not what the extension's schema allows; the text says why.
    case invalid(String)
}

/// The payment-identifier extension (x402 `specs/extensions`): its declaration in the 402, reading
/// and checking the id a client sends, and the digests that tell a retry from a different request.
public enum PaymentIdentifier {
    public static let extensionKey = "payment-identifier"
    public static let minLength = 16
    public static let maxLength = 128

    /// 16 to 128 characters of `A-Z a-z 0-9 _ -` (the schema's `^[a-zA-Z0-9_-]+$`).
    public static func isValid(_ id: String) -> Bool {
        let bytes = id.utf8
        guard bytes.count >= minLength, bytes.count <= maxLength else { return false }
        return bytes.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_")
                || c == UInt8(ascii: "-")
        }
    }

    /// The value of `extensions["payment-identifier"]` in a 402: `{info: {required}, schema}`.
    public static func declaration(required: Bool) -> JSONValue {
        .object([
            "info": .object(["required": .bool(required)]),
            "schema": .object([
                "$schema": .string("https://json-schema.org/draft/2020-12/schema"),
                "type": .string("object"),
                "properties": .object([
                    "required": .object(["type": .string("boolean")]),
                    "id": .object([
                        "type": .string("string"),
                        "minLength": .number(String(minLength)),
                        "maxLength": .number(String(maxLength)),
                        "pattern": .string("^[a-zA-Z0-9_-]+$"),
                    ]),
                ]),
                "required": .array([.string("required")]),
            ]),
        ])
    }

    static let invalidMessage = "payment-identifier info.id must be 16 to 128 characters of A-Z, a-z, 0-9, '_' or '-'"

    /// Reads the id from a v2 payload's `extensions`. The extension must be an object with an `info`
    /// object; `info.required`, when present, a boolean; `info.id`, when present, a valid id.
    public static func read(_ extensions: [String: JSONValue]?) -> PresentedIdentifier {
        guard let value = extensions?[extensionKey], value != .null else { return .absent }
        guard case .object(let fields) = value else { return .invalid("extensions[\"payment-identifier\"] must be an object") }
        guard case .object(let info)? = fields["info"] else {
            return .invalid("extensions[\"payment-identifier\"] must have an \"info\" object")
        }
        if let required = info["required"], required != .null {
            guard case .bool = required else { return .invalid("payment-identifier info.required must be a boolean") }
        }
        guard let id = info["id"], id != .null else { return .absent }
        guard case .string(let text) = id else { return .invalid("payment-identifier info.id must be a string") }
        return isValid(text) ? .valid(text) : .invalid(invalidMessage)
    }

    /// Identifies the payment: Keccak-256 over its version, scheme, network and the signed
    /// authorization with its signature (addresses and hex in lower case). The same signed payment
    /// spelt as different JSON (key order, spacing, another `resource`) has the same digest; any other
    /// payment, a different one.
    /// A Permit2 payment adds what its message signs besides those (token, spender, facilitator).
    public static func paymentHash(_ payment: PresentedPayment) -> String {
        let p = payment.payload
        var fields = [
            String(payment.version), payment.scheme, payment.network, p.from.lowercased(), p.recipient.lowercased(), p.value,
            p.validAfter, p.validBefore, p.nonce.lowercased(), p.signature.lowercased(),
        ]
        if case .permit2(let permit) = p {
            let auth = permit.permit2Authorization
            fields += ["permit2", auth.permitted.token.lowercased(), auth.spender.lowercased(), auth.witness.facilitator?.lowercased() ?? ""]
        }
        return digest("payment", fields)
    }

    /// Identifies the request the payment came with: method, path with query, route, the offer paid
    /// (scheme, network, asset, amount, payee) and the request body's digest.
    public static func bindingHash(method: String, pathAndQuery: String, routeID: String, offer: Offer, body: some Collection<UInt8>)
        -> String
    {
        digest("binding", [
            method, pathAndQuery, routeID, offer.scheme, offer.network.caip2, offer.asset.lowercased(), String(offer.amount),
            offer.payTo.lowercased(), Hex.encode(Keccak256.hash(body)),
        ])
    }

    /// Keccak-256 of the length-prefixed fields (unambiguous whatever they contain), as hex.
    static func digest(_ kind: String, _ fields: [String]) -> String {
        var bytes = Array("x402-gateway/payment-identifier/\(kind)/1".utf8)
        for field in fields {
            bytes.append(contentsOf: "\n\(field.utf8.count):".utf8)
            bytes.append(contentsOf: field.utf8)
        }
        return Hex.encode(Keccak256.hash(bytes))
    }
}

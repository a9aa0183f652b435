// Building the wire model from a `JSONNode` (see `JSONReader`), accepting what Foundation's
// `JSONDecoder` accepts for the same `Codable` types: required fields must be present and not null,
// optional ones may be absent or null, strings must be JSON strings, unknown keys are ignored, and
// numbers convert to `Int` by `JSONDecoder`'s rules (`2`, `2.0`, `2e0` and `0.2e1` are all 2; `2.5`
// is refused). The `Codable` conformances stay for encoding and for other decoders.

/// Why a JSON tree does not have the shape of a model type.
public struct JSONShapeError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case missing = "is missing"
        case null = "is null"
        case typeMismatch = "has the wrong type"
        case notRepresentable = "is a number that does not fit"
    }

    public var kind: Kind
    /// The member the problem is in (the innermost key).
    public var key: String

    public init(_ kind: Kind, key: String) {
        self.kind = kind
        self.key = key
    }

    public var description: String { "\(key) \(kind.rawValue)" }
}

extension JSONNode {
    /// This value as a `String`, as a `String` property would decode it.
    public func decodeString(key: String = "") throws(JSONShapeError) -> String {
        switch self {
        case .string(let s): return s
        case .null: throw JSONShapeError(.null, key: key)
        default: throw JSONShapeError(.typeMismatch, key: key)
        }
    }

    /// This value as an `Int`, as an `Int` property would decode it.
    public func decodeInt(key: String = "") throws(JSONShapeError) -> Int {
        switch self {
        case .number(let text):
            guard case .value(let v) = JSONInteger.parse(text), let int = Int(exactly: v) else {
                throw JSONShapeError(.notRepresentable, key: key)
            }
            return int
        case .null: throw JSONShapeError(.null, key: key)
        default: throw JSONShapeError(.typeMismatch, key: key)
        }
    }
}

/// An object's members, read the way a `Codable` keyed container reads them.
struct JSONFields {
    let members: [JSONMember]

    init(_ node: JSONNode, key: String) throws(JSONShapeError) {
        switch node {
        case .object(let members): self.members = members
        case .null: throw JSONShapeError(.null, key: key)
        default: throw JSONShapeError(.typeMismatch, key: key)
        }
    }

    /// Present and not null (`decode(_:forKey:)`).
    func required(_ key: String) throws(JSONShapeError) -> JSONNode {
        for member in members where member.key == key {
            if case .null = member.value { throw JSONShapeError(.null, key: key) }
            return member.value
        }
        throw JSONShapeError(.missing, key: key)
    }

    /// Nil when absent or null (`decodeIfPresent(_:forKey:)`).
    func optional(_ key: String) -> JSONNode? {
        for member in members where member.key == key {
            if case .null = member.value { return nil }
            return member.value
        }
        return nil
    }

    func string(_ key: String) throws(JSONShapeError) -> String {
        try required(key).decodeString(key: key)
    }

    func int(_ key: String) throws(JSONShapeError) -> Int {
        try required(key).decodeInt(key: key)
    }

    /// An optional `[String: JSONValue]` (`extra`, `extensions`).
    func optionalObject(_ key: String) throws(JSONShapeError) -> [String: JSONValue]? {
        guard let node = optional(key) else { return nil }
        guard case .object(let members) = node else { throw JSONShapeError(.typeMismatch, key: key) }
        return try JSONValue.dictionary(members)
    }
}

extension JSONValue {
    /// The value `JSONValue(from:)` decodes from the same JSON: integers (including `2.0`, `1e3`)
    /// become their decimal text, other numbers their `Double`'s (``JSONValue/text(of:)``); numbers
    /// beyond `Double` are refused.
    public init(json: JSONNode) throws(JSONShapeError) {
        switch json {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .number(let text):
            switch JSONInteger.parse(text) {
            case .value(let i): self = .number(String(i))
            case .notInteger:
                guard let d = Double(text), d.isFinite else { throw JSONShapeError(.notRepresentable, key: "") }
                self = .number(JSONValue.text(of: d))
            case .unsupported: throw JSONShapeError(.notRepresentable, key: "")
            }
        case .string(let s): self = .string(s)
        case .array(let elements):
            var values: [JSONValue] = []
            values.reserveCapacity(elements.count)
            for element in elements { values.append(try JSONValue(json: element)) }
            self = .array(values)
        case .object(let members): self = .object(try JSONValue.dictionary(members))
        }
    }

    static func dictionary(_ members: [JSONMember]) throws(JSONShapeError) -> [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        result.reserveCapacity(members.count)
        // `JSONReader` refuses duplicate keys; for a tree built by hand, the first one wins (as in JSONDecoder).
        for member in members where result[member.key] == nil {
            result[member.key] = try JSONValue(json: member.value)
        }
        return result
    }
}

/// `JSONDecoder`'s conversion of a number literal to a 64-bit integer (swift-foundation, Linux):
/// a plain integer literal must fit; a literal with a fraction or exponent goes through `Double`,
/// must be integral and in range, and from 2^53 on is re-read as a decimal whose fraction is
/// truncated (so `9007199254740993.5` is 9007199254740993).
enum JSONInteger {
    enum Outcome: Equatable {
        case value(Int64)
        /// `JSONDecoder` refuses it as an integer (for `JSONValue` it is then read as a `Double`).
        case notInteger
        /// Spellings `JSONDecoder` handles inconsistently (it traps on some of them): refused.
        case unsupported
    }

    static func parse(_ text: String) -> Outcome {
        let utf8 = text.utf8
        if !utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
            return Int64(text).map(Outcome.value) ?? .notInteger
        }
        guard let double = Double(text), double.isFinite, let value = Int64(exactly: double) else { return .notInteger }
        if double.magnitude < 0x1p53 { return .value(value) }
        return decimal(utf8)
    }

    /// The decimal re-reading for magnitudes from 2^53 (where `Double` no longer tells integers apart).
    private static func decimal(_ utf8: String.UTF8View) -> Outcome {
        var negative = false
        var exponentNegative = false
        var inFraction = false
        var inExponent = false
        var digits: [UInt8] = []  // significant digits, leading zeros dropped
        var totalDigits = 0
        var fractionDigits = 0
        var exponent = 0
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "-"):
                if inExponent { exponentNegative = true } else { negative = true }
            case UInt8(ascii: "+"):
                break
            case UInt8(ascii: "."):
                inFraction = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                inExponent = true
            default:
                let digit = byte &- UInt8(ascii: "0")
                if inExponent {
                    exponent = min(exponent * 10 + Int(digit), 1_000_000)
                } else {
                    totalDigits += 1
                    if inFraction { fractionDigits += 1 }
                    if !(digits.isEmpty && digit == 0) { digits.append(digit) }
                }
            }
        }
        // Foundation's decimal parser keeps about 38 significant digits (dropping the rest) and traps
        // past about 160 integer digits: spellings where that could matter are refused, not guessed at.
        guard totalDigits <= 100, !digits.dropFirst(38).contains(where: { $0 != 0 }) else { return .unsupported }
        var scale = (exponentNegative ? -exponent : exponent) - fractionDigits
        while digits.last == 0 {
            digits.removeLast()
            scale += 1
        }
        var magnitude: UInt64 = 0
        for digit in digits {
            let (shifted, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(UInt64(digit))
            if overflow1 || overflow2 { return .notInteger }
            magnitude = sum
        }
        if scale < 0 {
            for _ in 0..<min(-scale, 20) { magnitude /= 10 }
        } else if magnitude != 0 {
            for _ in 0..<scale {
                let (product, overflow) = magnitude.multipliedReportingOverflow(by: 10)
                if overflow { return .notInteger }
                magnitude = product
            }
        }
        guard let value = Int64(exactly: magnitude) else { return .notInteger }
        return .value(negative ? -value : value)
    }
}

extension ResourceInfo {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "resource")
        self.init(url: try fields.string("url"), description: try fields.string("description"),
                  mimeType: try fields.string("mimeType"))
    }
}

extension PaymentRequirements {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "accepted")
        self.init(
            scheme: try fields.string("scheme"), network: try fields.string("network"), amount: try fields.string("amount"),
            asset: try fields.string("asset"), payTo: try fields.string("payTo"),
            maxTimeoutSeconds: try fields.int("maxTimeoutSeconds"), extra: try fields.optionalObject("extra"))
    }
}

extension EIP3009Authorization {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "authorization")
        self.init(
            from: try fields.string("from"), to: try fields.string("to"), value: try fields.string("value"),
            validAfter: try fields.string("validAfter"), validBefore: try fields.string("validBefore"),
            nonce: try fields.string("nonce"))
    }
}

extension ExactEVMPayload {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "payload")
        self.init(signature: try fields.string("signature"),
                  authorization: try EIP3009Authorization(json: try fields.required("authorization")))
    }
}

extension Permit2Payload {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "payload")
        let auth = try JSONFields(try fields.required("permit2Authorization"), key: "permit2Authorization")
        let permitted = try JSONFields(try auth.required("permitted"), key: "permitted")
        let witness = try JSONFields(try auth.required("witness"), key: "witness")
        self.init(
            signature: try fields.string("signature"),
            permit2Authorization: Permit2Authorization(
                from: try auth.string("from"),
                permitted: Permit2TokenPermissions(token: try permitted.string("token"), amount: try permitted.string("amount")),
                spender: try auth.string("spender"), nonce: try auth.string("nonce"), deadline: try auth.string("deadline"),
                witness: Permit2Witness(to: try witness.string("to"), facilitator: try witness.optionalString("facilitator"),
                                        validAfter: try witness.string("validAfter"))))
    }
}

extension EVMPayload {
    /// A Permit2 payload when it has `permit2Authorization` (even null: then it is malformed), else EIP-3009.
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "payload")
        if fields.members.contains(where: { $0.key == "permit2Authorization" }) {
            self = .permit2(try Permit2Payload(json: json))
        } else {
            self = .eip3009(try ExactEVMPayload(json: json))
        }
    }
}

extension PaymentPayload {
    /// The v2 payload; like the `Codable` decoding, `x402Version` must be an integer but is not checked here.
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "")
        let version = try fields.int("x402Version")
        var resource: ResourceInfo? = nil
        if let node = fields.optional("resource") { resource = try ResourceInfo(json: node) }
        self.init(
            resource: resource, accepted: try PaymentRequirements(json: try fields.required("accepted")),
            payload: try EVMPayload(json: try fields.required("payload")), extensions: try fields.optionalObject("extensions"))
        self.x402Version = version
    }
}

extension PaymentPayloadV1 {
    /// The v1 payload; like the `Codable` decoding, `x402Version` must be an integer but is not checked here.
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "")
        let version = try fields.int("x402Version")
        self.init(scheme: try fields.string("scheme"), network: try fields.string("network"),
                  payload: try ExactEVMPayload(json: try fields.required("payload")))
        self.x402Version = version
    }
}

// Facilitator answers: parsed with `JSONReader` too, so a misbehaving facilitator cannot reach
// `JSONDecoder`'s traps either.

/// A model type that can be built from a `JSONNode`.
public protocol JSONNodeDecodable {
    init(json: JSONNode) throws(JSONShapeError)
}

extension VerifyResponse: JSONNodeDecodable {}
extension SettleResponse: JSONNodeDecodable {}
extension SupportedResponse: JSONNodeDecodable {}

extension JSONFields {
    func bool(_ key: String) throws(JSONShapeError) -> Bool {
        guard case .bool(let value) = try required(key) else { throw JSONShapeError(.typeMismatch, key: key) }
        return value
    }

    func optionalString(_ key: String) throws(JSONShapeError) -> String? {
        try optional(key).map { node throws(JSONShapeError) in try node.decodeString(key: key) }
    }
}

extension VerifyResponse {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "")
        self.init(isValid: try fields.bool("isValid"), invalidReason: try fields.optionalString("invalidReason"),
                  invalidMessage: try fields.optionalString("invalidMessage"), payer: try fields.optionalString("payer"))
    }
}

extension SettleResponse {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "")
        self.init(
            success: try fields.bool("success"), errorReason: try fields.optionalString("errorReason"),
            errorMessage: try fields.optionalString("errorMessage"), payer: try fields.optionalString("payer"),
            transaction: try fields.string("transaction"), network: try fields.string("network"),
            amount: try fields.optionalString("amount"))
    }
}

extension SupportedResponse {
    public init(json: JSONNode) throws(JSONShapeError) {
        let fields = try JSONFields(json, key: "")
        guard case .array(let kindNodes) = try fields.required("kinds") else { throw JSONShapeError(.typeMismatch, key: "kinds") }
        var kinds: [Kind] = []
        for node in kindNodes {
            let kind = try JSONFields(node, key: "kinds")
            kinds.append(Kind(x402Version: try kind.int("x402Version"), scheme: try kind.string("scheme"),
                              network: try kind.string("network"), extra: try kind.optionalObject("extra")))
        }
        var extensions: [String]?
        if let node = fields.optional("extensions") {
            guard case .array(let items) = node else { throw JSONShapeError(.typeMismatch, key: "extensions") }
            extensions = []
            for item in items { extensions!.append(try item.decodeString(key: "extensions")) }
        }
        var signers: [String: [String]]?
        if let node = fields.optional("signers") {
            guard case .object(let members) = node else { throw JSONShapeError(.typeMismatch, key: "signers") }
            var map: [String: [String]] = [:]
            for member in members where map[member.key] == nil {
                guard case .array(let items) = member.value else { throw JSONShapeError(.typeMismatch, key: member.key) }
                var values: [String] = []
                for item in items { values.append(try item.decodeString(key: member.key)) }
                map[member.key] = values
            }
            signers = map
        }
        self.init(kinds: kinds, extensions: extensions, signers: signers)
    }
}

import Foundation

/// Names of the x402 HTTP headers, as the reference servers emit them.
public enum X402Header {
    public static let paymentRequired = "PAYMENT-REQUIRED"
    public static let paymentSignature = "PAYMENT-SIGNATURE"
    public static let paymentResponse = "PAYMENT-RESPONSE"
    public static let xPayment = "X-PAYMENT"
    public static let xPaymentResponse = "X-PAYMENT-RESPONSE"
}

/// base64(compact JSON) codec used by every x402 header.
public enum HeaderCodec {
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        Base64.encode(try compactJSON(value))
    }

    public static func decode<T: Decodable>(_ type: T.Type, from header: some StringProtocol) throws -> T {
        guard let bytes = Base64.decode(header) else { throw HeaderDecodingError.notBase64 }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw HeaderDecodingError.invalidJSON
        }
    }

    /// Compact JSON (no whitespace, slashes unescaped), keys in a stable order.
    public static func compactJSON<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return Array(try encoder.encode(value))
    }
}

public enum HeaderDecodingError: Error, Sendable, Equatable {
    case notBase64
    case invalidJSON
}

extension SettleResponse {
    /// The same bytes as `HeaderCodec.compactJSON(self)` (sorted keys, nil fields left out), built
    /// without `JSONEncoder`: it goes out on every paid response.
    public var compactJSON: String {
        var fields: [String] = []
        if let amount { fields.append("\"amount\":" + JSONString.quoted(amount)) }
        if let errorMessage { fields.append("\"errorMessage\":" + JSONString.quoted(errorMessage)) }
        if let errorReason { fields.append("\"errorReason\":" + JSONString.quoted(errorReason)) }
        fields.append("\"network\":" + JSONString.quoted(network))
        if let payer { fields.append("\"payer\":" + JSONString.quoted(payer)) }
        fields.append("\"success\":" + (success ? "true" : "false"))
        fields.append("\"transaction\":" + JSONString.quoted(transaction))
        return "{" + fields.joined(separator: ",") + "}"
    }
}

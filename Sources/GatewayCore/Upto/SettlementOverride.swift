import BigInt
import X402

/// The upstream's report of what to charge for an `upto` request: the `Settlement-Overrides`
/// response header as the official SDK's servers set it (`set_settlement_overrides`: a JSON object
/// whose `amount` is atomic units `"1234"`, a percentage of the maximum `"50%"` / `"12.5%"`, or
/// dollars `"$0.002"`; read by `x402HTTPServerBase.resolve_settlement_override_amount`, Python SDK
/// 2.25). Percentages keep two decimals and round down; dollars are cut to the asset's decimals,
/// as the SDK does. The gateway also takes an `asset` or `network` member, which must then name
/// the offer's own. The header never reaches the client.
public enum SettlementOverride {
    public static let header = "Settlement-Overrides"

    /// Why a report cannot be used as given.
    public enum Problem: Error, Sendable, Hashable, CustomStringConvertible {
        case notJSONObject
        case noAmount
        case notANumber(String)
        case negative(String)
        case dollarsWithoutDecimals
        case otherAsset(String)
        case otherNetwork(String)

        public var description: String {
            switch self {
            case .notJSONObject: "Settlement-Overrides is not a JSON object"
            case .noAmount: "Settlement-Overrides has no amount"
            case .notANumber(let text): "Settlement-Overrides amount \"\(text.prefix(40))\" is not atomic units, NN% or $x.yy"
            case .negative(let text): "Settlement-Overrides amount \"\(text.prefix(40))\" is negative"
            case .dollarsWithoutDecimals: "Settlement-Overrides gives dollars for an asset whose decimals are not configured"
            case .otherAsset(let asset): "Settlement-Overrides names another asset (\(asset.prefix(50)))"
            case .otherNetwork(let network): "Settlement-Overrides names another network (\(network.prefix(50)))"
            }
        }
    }

    /// The amount the header asks for, in atomic units, before any cap at the maximum.
    public static func amount(_ header: String, maximum: BigUInt, decimals: Int?, asset: String, network: String)
        -> Result<BigUInt, Problem>
    {
        guard let node = try? JSONReader.parse(Array(header.utf8), maxDepth: 8), case .object = node else { return .failure(.notJSONObject) }
        if let named = node["asset"], named != .null {
            guard case .string(let text) = named, let address = EVMAddress(hex: text), address == EVMAddress(hex: asset) else {
                return .failure(.otherAsset(describe(named)))
            }
        }
        if let named = node["network"], named != .null {
            guard case .string(let text) = named, text == network else { return .failure(.otherNetwork(describe(named))) }
        }
        let text: String
        switch node["amount"] {
        case nil, .null?: return .failure(.noAmount)
        case .string(let s)?: text = s
        case .number(let s)?: text = s  // the SDK reads str(amount): a JSON integer works too
        case let other?: return .failure(.notANumber(describe(other)))
        }
        return parse(text, maximum: maximum, decimals: decimals)
    }

    /// `"1234"`, `"NN%"` / `"NN.n%"` / `"NN.nn%"` of `maximum`, or `"$x.yy"`.
    static func parse(_ text: String, maximum: BigUInt, decimals: Int?) -> Result<BigUInt, Problem> {
        if text.hasPrefix("-") { return .failure(.negative(text)) }
        if text.hasSuffix("%") {
            guard let (whole, fraction) = UnitPrice.decimal(text.dropLast()) ?? decimalWithTrailingDot(text.dropLast()),
                  fraction.count <= 2
            else { return .failure(.notANumber(text)) }
            let hundredths = BigUInt(whole + fraction + String(repeating: "0", count: 2 - fraction.count), radix: 10) ?? 0
            return .success(maximum * hundredths / 10_000)
        }
        if text.hasPrefix("$") {
            guard let (whole, fraction) = UnitPrice.decimal(text.dropFirst()) else { return .failure(.notANumber(text)) }
            guard let decimals else { return .failure(.dollarsWithoutDecimals) }
            let kept = String(fraction.prefix(decimals))
            return .success(BigUInt(whole + kept + String(repeating: "0", count: decimals - kept.count), radix: 10) ?? 0)
        }
        guard !text.isEmpty, text.count <= 78, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = BigUInt(text, radix: 10) else {
            return .failure(.notANumber(text))
        }
        return .success(value)
    }

    /// `"50."`, which the SDK's percentage pattern also takes.
    private static func decimalWithTrailingDot(_ text: Substring) -> (whole: String, fraction: String)? {
        guard text.hasSuffix("."), let (whole, _) = UnitPrice.decimal(text.dropLast()) else { return nil }
        return (whole, "")
    }

    private static func describe(_ node: JSONNode) -> String {
        switch node {
        case .string(let s): s
        case .number(let s): s
        case .bool(let b): "\(b)"
        case .null: "null"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

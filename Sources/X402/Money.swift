import BigInt

/// Exact conversion of human prices ("$4.02", "0.01") to atomic token units. No floating point.
public enum Money {
    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case malformed(String)
        case tooPrecise(decimals: Int)
        case zero
        case tooLarge

        public var description: String {
            switch self {
            case .empty: return "price is empty"
            case .malformed(let text):
                return "price \"\(text)\" is not a plain decimal amount like \"$0.01\" (no thousands separators, signs or exponents)"
            case .tooPrecise(let decimals):
                return "price has more than \(decimals) decimal places: it is smaller than one atomic unit of the asset"
            case .zero: return "price must be greater than zero"
            case .tooLarge: return "price is too large"
            }
        }
    }

    /// Parses `"$4.02"`, `"4.02"` or `"$1000"` into atomic units of a token with `decimals` decimals.
    /// A price that needs more precision than the token has is refused, never rounded.
    public static func atomicUnits(fromDollars text: String, decimals: Int) throws(ParseError) -> BigUInt {
        var s = Substring(text)
        if s.first == "$" { s = s.dropFirst() }
        guard !s.isEmpty else { throw .empty }
        let parts = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0]
        let fraction = parts.count == 2 ? parts[1] : ""
        let isDigits: (Substring) -> Bool = { $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        guard isDigits(whole), isDigits(fraction), !(whole.isEmpty && fraction.isEmpty),
              !(parts.count == 2 && fraction.isEmpty)
        else { throw .malformed(text) }
        if whole.count > 30 { throw .tooLarge }
        let trimmedFraction = fraction.reversed().drop(while: { $0 == "0" }).reversed()
        if trimmedFraction.count > decimals { throw .tooPrecise(decimals: decimals) }
        let padded = String(trimmedFraction) + String(repeating: "0", count: decimals - trimmedFraction.count)
        guard let value = BigUInt((whole.isEmpty ? "0" : String(whole)) + padded, radix: 10) else { throw .malformed(text) }
        if value == 0 { throw .zero }
        return value
    }

    /// Parses a decimal string of atomic units ("10000"). Refuses signs, spaces, leading zeros.
    public static func atomicUnits(fromInteger text: String) -> BigUInt? {
        guard !text.isEmpty, text.count <= 78, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              text == "0" || text.first != "0"
        else { return nil }
        return BigUInt(text, radix: 10)
    }

    /// Formats atomic units as a human decimal ("4020000", 6 → "4.02").
    public static func format(_ amount: BigUInt, decimals: Int) -> String {
        let digits = String(amount, radix: 10)
        guard decimals > 0 else { return digits }
        let padded = digits.count <= decimals ? String(repeating: "0", count: decimals - digits.count + 1) + digits : digits
        let split = padded.index(padded.endIndex, offsetBy: -decimals)
        let whole = padded[..<split]
        let fraction = padded[split...].reversed().drop(while: { $0 == "0" }).reversed()
        return fraction.isEmpty ? String(whole) : "\(whole).\(String(fraction))"
    }
}

import BigInt
import X402

/// A price per unit that may be finer than one atomic unit: exactly `numerator / 10^scale` atomic
/// units of the offer's asset (`"$0.0000002"` at 6 decimals is 2 / 10^1). Costs are rounded down
/// to whole atomic units, never up: the buyer is never charged for a fraction.
public struct UnitPrice: Sendable, Hashable, CustomStringConvertible {
    public var numerator: BigUInt
    public var scale: Int

    public init(numerator: BigUInt, scale: Int) {
        self.numerator = numerator
        self.scale = scale
    }

    /// Parses `"$0.00001"` (dollars of an asset with `decimals`) or `"250"` / `"2.5"` (atomic units).
    public static func parse(_ text: String, decimals: Int?) -> Result<UnitPrice, Problem> {
        var digits = Substring(text)
        var shift = 0
        if digits.hasPrefix("$") {
            guard let decimals else { return .failure(.unknownDecimals) }
            digits = digits.dropFirst()
            shift = decimals
        }
        guard let (whole, fraction) = Self.decimal(digits) else { return .failure(.notDecimal) }
        // value = whole.fraction × 10^shift atomic units = (whole‖fraction) / 10^(fraction digits − shift)
        var numerator = BigUInt(whole + fraction, radix: 10) ?? 0
        var scale = fraction.count - shift
        if scale < 0 {
            numerator *= BigUInt(10).power(-scale)
            scale = 0
        }
        return .success(UnitPrice(numerator: numerator, scale: scale))
    }

    public enum Problem: Error, Sendable, Hashable {
        case notDecimal
        case unknownDecimals
    }

    /// `whole.fraction` from plain decimal text (digits, at most one dot, digits on both sides when there is one).
    static func decimal(_ text: Substring) -> (whole: String, fraction: String)? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.count <= 78, whole.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        let fraction = parts.count > 1 ? parts[1] : ""
        guard parts.count == 1 || (!fraction.isEmpty && fraction.count <= 78 && fraction.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }))
        else { return nil }
        return (String(whole), String(fraction))
    }

    /// ⌊count / divisor × price⌋ atomic units.
    public func cost(count: BigUInt, per divisor: BigUInt = 1) -> BigUInt {
        (count * numerator) / (divisor * BigUInt(10).power(scale))
    }

    public var description: String { scale == 0 ? "\(numerator)" : "\(numerator)e-\(scale)" }
}

/// How an `upto` route decides what to charge once the upstream has answered (`upto:` on a route).
/// The maximum is the offer's amount; whatever is decided is capped at it.
///
/// In order: the upstream's `Settlement-Overrides` response header when it is valid; else the
/// route's rule; else the maximum (as the official SDK's servers charge without an override).
public struct UptoMetering: Sendable, Hashable {
    public enum Rule: Sendable, Hashable {
        /// Per KiB (1024 bytes) of response body, pro rata.
        case perKiB(UnitPrice)
        /// Per unit of the number at `field` (keys and array indexes, dot-separated: `usage.total_tokens`)
        /// in the JSON response body (for a stream: in the last JSON `data:` event).
        case perUnit(field: [String], price: UnitPrice)
    }

    public var rule: Rule?
    /// Streamed answers (`text/event-stream`): relayed as they arrive, except the last `holdBack`
    /// bytes, which wait for the settlement at the end of the stream. Nil: every answer is held
    /// back whole until the settlement (bounded by `limits.maxBufferedResponse`).
    public var holdBack: Int?

    public init(rule: Rule? = nil, holdBack: Int? = nil) {
        self.rule = rule
        self.holdBack = holdBack
    }
}

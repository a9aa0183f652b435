import BigInt
import X402

/// What an `upto` request is charged, decided once the upstream has answered, and why. Never more
/// than the maximum the buyer signed for; zero means no transaction at all.
public struct UptoCharge: Sendable, Equatable {
    public enum Basis: String, Sendable, Equatable {
        /// The upstream's `Settlement-Overrides`.
        case report
        /// The route's per-KiB rule over the response body.
        case perKiB = "per_kib"
        /// The route's per-unit rule over a number in the JSON response.
        case perUnit = "per_unit"
        /// No usable report and no rule (or the rule's number was missing): the maximum.
        case maximum
    }

    public var amount: BigUInt
    public var basis: Basis
    /// The report or rule asked for more than the maximum (the upstream's error): cut to the maximum.
    public var capped: Bool
    /// What was wrong with the upstream's report or the number the rule reads (logged as the
    /// upstream's error); the charge fell through to the next way.
    public var problem: String?

    public init(amount: BigUInt, basis: Basis, capped: Bool = false, problem: String? = nil) {
        self.amount = amount
        self.basis = basis
        self.capped = capped
        self.problem = problem
    }

    /// How the ledger records the basis (`report`, `per_kib_capped`, …).
    public var ledgerBasis: String { capped ? basis.rawValue + "_capped" : basis.rawValue }

    /// What the upstream's answer says to charge.
    /// - Parameters:
    ///   - offer: the `upto` offer paid (its amount is the maximum).
    ///   - metering: the route's rule.
    ///   - report: the upstream's `Settlement-Overrides` value, if it sent one.
    ///   - bodyBytes: the length of the response body relayed (for the per-KiB rule).
    ///   - json: the JSON the per-unit rule reads (the body, or a stream's last JSON event); nil when
    ///     there is none.
    public static func decide(offer: Offer, metering: UptoMetering, report: String?, bodyBytes: Int, json: [UInt8]?) -> UptoCharge {
        let maximum = offer.amount
        var problem: String?
        func capped(_ amount: BigUInt, _ basis: Basis) -> UptoCharge {
            amount > maximum
                ? UptoCharge(amount: maximum, basis: basis, capped: true, problem: problem)
                : UptoCharge(amount: amount, basis: basis, problem: problem)
        }
        if let report {
            switch SettlementOverride.amount(report, maximum: maximum, decimals: offer.decimals, asset: offer.asset,
                                             network: offer.network.caip2) {
            case .success(let amount): return capped(amount, .report)
            case .failure(let why): problem = why.description
            }
        }
        switch metering.rule {
        case .perKiB(let price)?:
            return capped(price.cost(count: BigUInt(bodyBytes), per: 1024), .perKiB)
        case .perUnit(let field, let price)?:
            switch units(at: field, in: json) {
            case .success(let (count, divisor)): return capped(price.cost(count: count, per: divisor), .perUnit)
            case .failure(let why): problem = [problem, why.description].compactMap { $0 }.joined(separator: "; ")
            }
        case nil:
            break
        }
        return UptoCharge(amount: maximum, basis: .maximum, problem: problem)
    }

    /// The non-negative number at `field` as `count / divisor` (a decimal fraction kept exact).
    static func units(at field: [String], in json: [UInt8]?) -> Result<(BigUInt, BigUInt), UnitsProblem> {
        let path = field.joined(separator: ".")
        guard let json, let root = try? JSONReader.parse(json) else {
            return .failure(UnitsProblem("the response is not JSON, so \(path) cannot be read"))
        }
        guard let node = JSONFieldPath(keys: field).value(in: root) else { return .failure(UnitsProblem("the response has no \(path)")) }
        guard case .number(let text) = node, let (whole, fraction) = UnitPrice.decimal(Substring(text)) else {
            return .failure(UnitsProblem("\(path) in the response is not a plain non-negative number"))
        }
        return .success((BigUInt(whole + fraction, radix: 10) ?? 0, BigUInt(10).power(fraction.count)))
    }
}

/// Why the per-unit rule found no number to charge for.
struct UnitsProblem: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) { self.description = description }
}

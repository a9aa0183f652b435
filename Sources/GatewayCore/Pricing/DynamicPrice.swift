import BigInt
import X402

/// One price rule: when the request's field matches the pattern, the route costs `amount`.
public struct PriceRule: Sendable, Hashable {
    public var field: PriceField
    public var pattern: PriceGlob
    /// Atomic units of the route's asset.
    public var amount: BigUInt
    public var location: SourceLocation?

    public init(field: PriceField, pattern: PriceGlob, amount: BigUInt, location: SourceLocation? = nil) {
        self.field = field
        self.pattern = pattern
        self.amount = amount
        self.location = location
    }
}

/// A pricing endpoint the gateway asks for a route's price (`price: { endpoint, key, … }`).
public struct PricingEndpoint: Sendable, Hashable {
    /// `http(s)://host[:port]/path`, called with `POST`.
    public var url: String
    /// The request fields sent to the endpoint; its answers are cached by their values.
    public var key: [PriceField]
    /// Deadline of one call (connection included).
    public var timeout: Duration
    /// How long an answer is reused for the same key values.
    public var cacheFor: Duration
    /// Most answers kept (per endpoint); beyond, the oldest go first.
    public var cacheEntries: Int
    /// Answers outside `min...max` are refused (the request fails closed, 503).
    public var min: BigUInt
    public var max: BigUInt
    /// The route's asset decimals, to read `"$0.02"` answers (nil: only `amount` answers).
    public var decimals: Int?
    /// Extra headers sent with every call (values `${ENV}`-expanded), e.g. an API key.
    public var headers: [String: String]

    public init(url: String, key: [PriceField], timeout: Duration = .milliseconds(500), cacheFor: Duration = .seconds(60),
                cacheEntries: Int = 10_000, min: BigUInt = 1, max: BigUInt, decimals: Int?, headers: [String: String] = [:]) {
        self.url = url
        self.key = key
        self.timeout = timeout
        self.cacheFor = cacheFor
        self.cacheEntries = cacheEntries
        self.min = min
        self.max = max
        self.decimals = decimals
        self.headers = headers
    }
}

/// A route's price that depends on the request. The route's one offer carries the base amount
/// (the rules' fallback, or the endpoint's maximum); each request gets that offer at the amount
/// worked out here, in the same asset, network and payee.
public enum DynamicPrice: Sendable, Hashable {
    /// The first rule whose field matches gives the price; none: `fallback`.
    case rules([PriceRule], fallback: BigUInt)
    case endpoint(PricingEndpoint)

    /// Whether the request body must be read before the price is known.
    public var readsBody: Bool {
        switch self {
        case .rules(let rules, _): rules.contains { $0.field.readsBody }
        case .endpoint(let endpoint): endpoint.key.contains { $0.readsBody }
        }
    }

    /// The highest price a request can be asked (a deferred route's budget must hold one payment).
    public var highest: BigUInt {
        switch self {
        case .rules(let rules, let fallback): rules.map(\.amount).reduce(fallback) { Swift.max($0, $1) }
        case .endpoint(let endpoint): endpoint.max
        }
    }

    /// The price the rules give `request` (the endpoint form is asked by the gateway instead).
    public static func price(rules: [PriceRule], fallback: BigUInt, _ request: PriceRequest) -> BigUInt {
        for rule in rules {
            if let value = request.value(of: rule.field), rule.pattern.matches(value) { return rule.amount }
        }
        return fallback
    }

    /// Why a rule can never give its price, by rule position: an earlier rule on the same field
    /// matches every value it matches. (A request without the field skips both.)
    public static func unreachable(_ rules: [PriceRule]) -> [(index: Int, reason: String)] {
        var out: [(Int, String)] = []
        for (j, later) in rules.enumerated() {
            for i in 0..<j where rules[i].field == later.field && rules[i].pattern.covers(later.pattern) {
                let what = rules[i].pattern == later.pattern ? "the same pattern" : "\"\(rules[i].pattern)\", which matches every value \"\(later.pattern)\" does"
                let at = rules[i].location.map { " (\($0.line):\($0.column))" } ?? ""
                out.append((j, "this price rule can never match: rule \(i + 1)\(at) tests \(later.field) with \(what), and the first match wins"))
                break
            }
        }
        return out
    }
}

import BigInt
import GatewayCore
import NIOHTTP1
import Paywall
import Synchronization
import X402

/// A route's dynamic price in one snapshot: works out the price of a request (the rules, or the
/// pricing endpoint through its ``PriceQuoter``) and keeps the route compiled at each price met
/// (its challenge, prepared offers and paywall page), so a price seen before costs no compiling.
final class RoutePricing: Sendable {
    let price: DynamicPrice
    private let base: CompiledRoute
    private let quoter: PriceQuoter?
    private let paywallConfig: PaywallConfig
    private let variants = Mutex<[BigUInt: Variant]>([:])

    /// Most prices kept compiled per route; a price beyond is compiled for its request only.
    static let maxVariants = 256

    /// The route at one price.
    struct Variant: Sendable {
        let route: CompiledRoute
        /// Its browser paywall page (nil: the paywall is off, or the offer cannot be paid from it).
        let paywall: PaywallPage?
    }

    enum Outcome: Sendable {
        case priced(Variant, BigUInt)
        /// The pricing endpoint failed (why, for the log and the 503).
        case failed(String)
    }

    init?(route: CompiledRoute, paywall: PaywallConfig, quoter: (PricingEndpoint) -> PriceQuoter?) {
        guard let price = route.config.dynamicPrice else { return nil }
        self.price = price
        self.base = route
        self.paywallConfig = paywall
        if case .endpoint(let endpoint) = price { self.quoter = quoter(endpoint) } else { self.quoter = nil }
    }

    /// Whether the price is known from the request head alone (rules that read no body): the 402
    /// is then written without any I/O, like a fixed price's.
    var isImmediate: Bool {
        if case .rules = price { !price.readsBody } else { false }
    }

    /// The rules' price for a request (without a body when ``isImmediate``).
    func rulePrice(_ request: PriceRequest) -> BigUInt? {
        guard case .rules(let rules, let fallback) = price else { return nil }
        return DynamicPrice.price(rules: rules, fallback: fallback, request)
    }

    /// The request's price: the rules, or the endpoint (cached answers first).
    func price(_ request: PriceRequest, metrics: GatewayMetrics) async -> Outcome {
        let id = base.config.id
        if let amount = rulePrice(request) {
            metrics.pricing(route: id, result: "rules")
            return .priced(variant(at: amount), amount)
        }
        guard let quoter else { return .failed("no pricing endpoint client") }
        switch await quoter.quote(route: id, request) {
        case .price(let amount, let cached):
            metrics.pricing(route: id, result: cached ? "cached" : "asked")
            return .priced(variant(at: amount), amount)
        case .failed(let why):
            metrics.pricing(route: id, result: "failed")
            return .failed(why)
        }
    }

    /// The route compiled at `amount`.
    func variant(at amount: BigUInt) -> Variant {
        if let hit = variants.withLock({ $0[amount] }) { return hit }
        let route = base.priced(at: amount) ?? base
        var compiler = PaywallCompiler(config: paywallConfig)
        let paywall = paywallConfig.enabled ? route.challenge.flatMap { compiler.page(route: route.config, challenge: $0) } : nil
        let made = Variant(route: route, paywall: paywall)
        variants.withLock { if $0.count < Self.maxVariants { $0[amount] = made } }
        return made
    }

    /// What the price may read of a request: its query and headers, and its body when given.
    static func request(head: HTTPRequestHead, path: CanonicalPath, body: [UInt8]?) -> PriceRequest {
        let headers = head.headers
        return PriceRequest(query: path.query, header: { headers.first(name: $0) }, body: body)
    }
}

import BigInt

/// A route with everything that can be computed ahead of requests already computed.
public struct CompiledRoute: Sendable {
    public let config: RouteConfig
    /// Present for priced routes.
    public let challenge: Challenge?
    /// The route's offers with their EIP-712 domains and requirement JSON, for paid requests.
    public let offers: [PreparedOffer]

    public init(config: RouteConfig) {
        var compiler = RouteCompiler()
        self = compiler.compile(config)
    }

    init(config: RouteConfig, challenge: Challenge?, offers: [PreparedOffer]) {
        self.config = config
        self.challenge = challenge
        self.offers = offers
    }

    public var isFree: Bool { challenge == nil }

    /// The route with its offers at `amount` (a dynamic price): same asset, network and payee, its
    /// own challenge and prepared offers. Nil for a free route.
    public func priced(at amount: BigUInt) -> CompiledRoute? {
        guard case .priced(let offers) = config.access else { return nil }
        var config = config
        config.access = .priced(offers.map { offer in
            var offer = offer
            offer.amount = amount
            return offer
        })
        return CompiledRoute(config: config)
    }
}

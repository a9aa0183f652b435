/// Compiles the routes of one configuration, doing what routes have in common once: a priced
/// route's challenge is its shape (offers, payment-identifier mode, method: JSON-encoded once per
/// shape) filled with its description and MIME type, and an offer's requirement JSON and EIP-712
/// domain are computed once per distinct offer. Ten thousand routes with a handful of prices
/// encode a handful of templates instead of thirty thousand JSON documents.
struct RouteCompiler {
    private var shapes: [Challenge.Shape.Key: Challenge.Shape] = [:]
    private var preparedOffers: [Offer: PreparedOffer] = [:]

    mutating func compile(_ route: RouteConfig) -> CompiledRoute {
        guard case .priced(let offers) = route.access else {
            return CompiledRoute(config: route, challenge: nil, offers: [])
        }
        let key = Challenge.Shape.key(route: route, offers: offers)
        let shape = shapes[key] ?? Challenge.Shape(route: route, offers: offers)
        shapes[key] = shape
        let prepared = offers.map { offer in
            let prepared = preparedOffers[offer] ?? PreparedOffer(offer: offer)
            preparedOffers[offer] = prepared
            return prepared
        }
        return CompiledRoute(config: route, challenge: Challenge(route: route, shape: shape), offers: prepared)
    }
}

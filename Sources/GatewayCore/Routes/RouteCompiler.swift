import X402

/// Compiles the routes of one configuration, doing what routes have in common once: a priced
/// route's challenge is its shape (offers, payment-identifier mode, method: JSON-encoded once per
/// shape) filled with its description and MIME type, and an offer's requirement JSON and EIP-712
/// domain are computed once per distinct offer. Ten thousand routes with a handful of prices
/// encode a handful of templates instead of thirty thousand JSON documents.
struct RouteCompiler {
    private var shapes: [Challenge.Shape.Key: Challenge.Shape] = [:]
    private var preparedOffers: [Offer: PreparedOffer] = [:]
    /// Bazaar declarations encoded once per kind, with a hole for the route template.
    private var bazaarTemplates: [BazaarKey: JSONTemplate] = [:]

    private struct BazaarKey: Hashable {
        var method: String
        var discovery: RouteDiscovery
        var outputType: String
        var templated: Bool
    }

    mutating func compile(_ route: RouteConfig) -> CompiledRoute {
        guard case .priced(let offers) = route.access else {
            return CompiledRoute(config: route, challenge: nil, offers: [])
        }
        let key = Challenge.Shape.key(route: route, offers: offers)
        let shape = shapes[key] ?? Challenge.Shape(route: route, offers: offers)
        shapes[key] = shape
        let prepared = offers.map { offer in
            let prepared = preparedOffers[offer] ?? PreparedOffer(offer: offer, distinct: preparedOffers.count)
            preparedOffers[offer] = prepared
            return prepared
        }
        return CompiledRoute(config: route, challenge: Challenge(route: route, shape: shape, bazaar: bazaarDeclaration(route)), offers: prepared)
    }

    /// The route's bazaar declaration as compact JSON (nil: it has none, see ``Challenge/Shape/bazaarMethod(_:)``).
    mutating func bazaarDeclaration(_ route: RouteConfig) -> [UInt8]? {
        guard let method = Challenge.Shape.bazaarMethod(route) else { return nil }
        let routeTemplate = Bazaar.routeTemplate(route.pattern)
        let key = BazaarKey(method: method, discovery: route.discovery, outputType: Bazaar.outputType(mimeType: route.mimeType),
                            templated: routeTemplate != nil)
        let template = bazaarTemplates[key] ?? JSONTemplate(Bazaar.declaration(
            method: method, discovery: route.discovery, mimeType: route.mimeType,
            routeTemplate: routeTemplate == nil ? nil : JSONTemplate.routeTemplateSentinel))
        bazaarTemplates[key] = template
        return template.filling(routeTemplate.map { [.routeTemplate: Array(JSONString.quoted($0).utf8)] } ?? [:]).filled
    }
}

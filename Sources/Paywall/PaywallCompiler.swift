import GatewayCore

/// Compiles the paywall pages of one configuration: the page of every route with the same offers
/// (offers as the page shows them, settings JSON, branding) is laid out once, and each route's page
/// is that with its title and description filled in.
public struct PaywallCompiler {
    public let config: PaywallConfig
    private var shapes: [[Offer]: PaywallPage.Shape] = [:]

    public init(config: PaywallConfig) { self.config = config }

    /// The page of a priced route; nil when the challenge has no offers.
    public mutating func page(route: RouteConfig, challenge: Challenge) -> PaywallPage? {
        let offers = challenge.offers
        if shapes[offers] == nil {
            let settings = PaywallPage.settingsJSON(offers.map(OfferView.init))
            shapes[offers] = PaywallPage.Shape(offers: offers, config: config, settingsJSON: settings)
        }
        return shapes[offers].map { PaywallPage(route: route, shape: $0) }
    }
}

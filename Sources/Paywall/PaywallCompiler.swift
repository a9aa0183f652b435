import GatewayCore

/// Compiles the paywall pages of one configuration: the page of every route with the same offers
/// (offers as the page shows them, settings JSON, branding) is laid out once, and each route's page
/// is that with its title and description filled in.
public struct PaywallCompiler {
    public let config: PaywallConfig
    private var shapes: [[Offer]: PaywallPage.Shape] = [:]

    public init(config: PaywallConfig) { self.config = config }

    /// The page of a priced route; nil when the challenge has no offers, or has one the page cannot
    /// pay (it signs EIP-3009 `exact` only: `upto` and Permit2 routes keep the JSON 402 in browsers).
    public mutating func page(route: RouteConfig, challenge: Challenge) -> PaywallPage? {
        let offers = challenge.offers
        guard offers.allSatisfy({ $0.scheme == "exact" && $0.transferMethod == .eip3009 }) else { return nil }
        if shapes[offers] == nil {
            let settings = PaywallPage.settingsJSON(offers.map(OfferView.init))
            shapes[offers] = PaywallPage.Shape(offers: offers, config: config, settingsJSON: settings)
        }
        return shapes[offers].map { PaywallPage(route: route, shape: $0) }
    }
}

import GatewayCore
import X402

/// The facilitator addresses `upto` offers carry (`extra.facilitatorAddress`): buyers bind their
/// authorization to that address (the witness's `facilitator`), so the gateway names the one its
/// facilitator announces in `/supported` (`kinds[].extra.facilitatorAddress` of the `upto` kind).
/// Learnt at start and whenever a configuration names an `upto` network not seen yet; a
/// configuration is served with the addresses known so far (an `upto` offer without one takes no
/// payment, and readiness says why).
enum UptoFacilitatorAddresses {
    /// Network (CAIP-2, or `*` for a facilitator's `eip155:*` kind) → address, from `/supported`.
    static func addresses(from supported: SupportedResponse) -> [String: String] {
        var found: [String: String] = [:]
        for kind in supported.kinds where kind.scheme == "upto" && kind.x402Version == 2 {
            guard let address = kind.extra?["facilitatorAddress"]?.stringValue, EVMAddress(hex: address) != nil else { continue }
            // The first member of a facilitator group that announces one wins: its kinds come first.
            let network = kind.network == "eip155:*" ? "*" : kind.network
            if found[network] == nil { found[network] = address }
        }
        return found
    }

    /// The networks of `config`'s `upto` offers that have no address among `known`.
    static func missing(_ config: GatewayConfig, known: [String: String]) -> Set<String> {
        var missing: Set<String> = []
        for route in config.routes {
            guard case .priced(let offers) = route.access else { continue }
            for offer in offers where offer.scheme == "upto" && offer.facilitatorAddress == nil && address(for: offer, in: known) == nil {
                missing.insert(offer.network.caip2)
            }
        }
        return missing
    }

    /// `config` with every `upto` offer's `extra.facilitatorAddress` filled in where known.
    static func fill(_ config: GatewayConfig, with known: [String: String]) -> GatewayConfig {
        guard !known.isEmpty else { return config }
        var config = config
        for index in config.routes.indices {
            guard case .priced(var offers) = config.routes[index].access, offers.contains(where: { $0.scheme == "upto" }) else { continue }
            for o in offers.indices where offers[o].scheme == "upto" && offers[o].facilitatorAddress == nil {
                if let address = address(for: offers[o], in: known) { offers[o].extra["facilitatorAddress"] = .string(address) }
            }
            config.routes[index].access = .priced(offers)
        }
        return config
    }

    private static func address(for offer: Offer, in known: [String: String]) -> String? {
        known[offer.network.caip2] ?? known["*"]
    }
}

import BigInt
import GatewayCore
import X402

/// What the gateway knows of the assets it is paid in: symbol and decimals from the configured
/// prices, else from the networks' default stablecoins. Amounts of an asset it knows nothing of
/// are shown in atomic units.
public struct AssetDirectory: Sendable {
    public struct Asset: Sendable, Hashable {
        public var symbol: String?
        public var decimals: Int?
    }

    private var known: [String: Asset] = [:]

    public init(config: GatewayConfig? = nil) {
        for network in Networks.all {
            if let asset = network.defaultAsset {
                known[Self.key(network.caip2, asset.address)] = Asset(symbol: asset.symbol, decimals: asset.decimals)
            }
        }
        for route in config?.routes ?? [] {
            guard case .priced(let offers) = route.access else { continue }
            for offer in offers where offer.decimals != nil || offer.symbol != nil {
                known[Self.key(offer.network.caip2, offer.asset)] = Asset(symbol: offer.symbol, decimals: offer.decimals)
            }
        }
    }

    private static func key(_ network: String, _ asset: String) -> String { network + " " + asset.lowercased() }

    public func asset(network: String, address: String) -> Asset {
        known[Self.key(network, address)] ?? Asset(symbol: nil, decimals: nil)
    }

    /// `1.5 USDC`, or `1500000 units` when the decimals are not known. Exact (no floating point).
    public func format(_ amount: BigUInt, network: String, asset address: String) -> String {
        let asset = asset(network: network, address: address)
        guard let decimals = asset.decimals else { return "\(amount) units" }
        return Money.format(amount, decimals: decimals) + " " + (asset.symbol ?? "units")
    }

    /// The amount in the asset's own unit without the symbol (nil when the decimals are not known).
    public func units(_ amount: BigUInt, network: String, asset address: String) -> String? {
        asset(network: network, address: address).decimals.map { Money.format(amount, decimals: $0) }
    }

    /// `USDC on Base Sepolia`, `0x1234…abcd on eip155:31337`.
    public func label(network: String, asset address: String) -> String {
        let symbol = asset(network: network, address: address).symbol ?? Self.short(address)
        return "\(symbol) on \(Networks.named(network)?.displayName ?? network)"
    }

    /// `0x1234…abcd` for a long hex string, else the text itself.
    static func short(_ text: String) -> String {
        text.count > 14 ? "\(text.prefix(6))…\(text.suffix(4))" : text
    }
}

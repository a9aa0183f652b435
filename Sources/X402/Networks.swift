/// A token a network prices `$` amounts in by default.
public struct AssetInfo: Sendable, Hashable {
    public var address: String
    public var decimals: Int
    public var symbol: String
    /// EIP-712 domain `name` and `version` of the token contract.
    public var eip712Name: String
    public var eip712Version: String
    public var usesPermit2: Bool

    public init(address: String, decimals: Int, symbol: String, eip712Name: String, eip712Version: String, usesPermit2: Bool = false) {
        self.address = address
        self.decimals = decimals
        self.symbol = symbol
        self.eip712Name = eip712Name
        self.eip712Version = eip712Version
        self.usesPermit2 = usesPermit2
    }
}

/// An EVM network the gateway knows by CAIP-2 id, with its v1 name and default stablecoin.
public struct NetworkInfo: Sendable, Hashable {
    public var caip2: String
    public var chainId: UInt64
    public var v1Name: String?
    public var displayName: String
    public var isTestnet: Bool
    public var defaultAsset: AssetInfo?
}

public enum Networks {
    private static func usdc(_ address: String, _ name: String = "USD Coin") -> AssetInfo {
        AssetInfo(address: address, decimals: 6, symbol: "USDC", eip712Name: name, eip712Version: "2")
    }

    /// Known EVM networks (protocol notes §5.2 and §5.3).
    public static let all: [NetworkInfo] = [
        .init(caip2: "eip155:8453", chainId: 8453, v1Name: "base", displayName: "Base", isTestnet: false,
              defaultAsset: usdc("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")),
        .init(caip2: "eip155:84532", chainId: 84532, v1Name: "base-sepolia", displayName: "Base Sepolia", isTestnet: true,
              defaultAsset: usdc("0x036CbD53842c5426634e7929541eC2318f3dCF7e", "USDC")),
        .init(caip2: "eip155:137", chainId: 137, v1Name: "polygon", displayName: "Polygon", isTestnet: false,
              defaultAsset: usdc("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359")),
        .init(caip2: "eip155:42161", chainId: 42161, v1Name: nil, displayName: "Arbitrum One", isTestnet: false,
              defaultAsset: usdc("0xaf88d065e77c8cC2239327C5EDb3A432268e5831")),
        .init(caip2: "eip155:421614", chainId: 421614, v1Name: nil, displayName: "Arbitrum Sepolia", isTestnet: true,
              defaultAsset: usdc("0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d")),
        .init(caip2: "eip155:143", chainId: 143, v1Name: "monad", displayName: "Monad", isTestnet: false,
              defaultAsset: usdc("0x754704Bc059F8C67012fEd69BC8A327a5aafb603")),
        .init(caip2: "eip155:988", chainId: 988, v1Name: "stable", displayName: "Stable", isTestnet: false,
              defaultAsset: AssetInfo(address: "0x779Ded0c9e1022225f8E0630b35a9b54bE713736", decimals: 6, symbol: "USDT0",
                                      eip712Name: "USDT0", eip712Version: "1")),
        .init(caip2: "eip155:2201", chainId: 2201, v1Name: "stable-testnet", displayName: "Stable Testnet", isTestnet: true,
              defaultAsset: AssetInfo(address: "0x78Cf24370174180738C5B8E352B6D14c83a6c9A9", decimals: 6, symbol: "USDT0",
                                      eip712Name: "USDT0", eip712Version: "1")),
        .init(caip2: "eip155:4326", chainId: 4326, v1Name: "megaeth", displayName: "MegaETH", isTestnet: false,
              defaultAsset: AssetInfo(address: "0xFAfDdbb3FC7688494971a79cc65DCa3EF82079E7", decimals: 18, symbol: "MegaUSD",
                                      eip712Name: "MegaUSD", eip712Version: "1", usesPermit2: true)),
        .init(caip2: "eip155:31611", chainId: 31611, v1Name: nil, displayName: "Mezo Testnet", isTestnet: true,
              defaultAsset: AssetInfo(address: "0x118917a40FAF1CD7a13dB0Ef56C86De7973Ac503", decimals: 18, symbol: "mUSD",
                                      eip712Name: "Mezo USD", eip712Version: "1", usesPermit2: true)),
        // Networks without a default asset in the v2 tables: prices must name the asset.
        .init(caip2: "eip155:1", chainId: 1, v1Name: "ethereum", displayName: "Ethereum", isTestnet: false, defaultAsset: nil),
        .init(caip2: "eip155:11155111", chainId: 11_155_111, v1Name: "sepolia", displayName: "Sepolia", isTestnet: true, defaultAsset: nil),
        .init(caip2: "eip155:43114", chainId: 43114, v1Name: "avalanche", displayName: "Avalanche C-Chain", isTestnet: false, defaultAsset: nil),
        .init(caip2: "eip155:43113", chainId: 43113, v1Name: "avalanche-fuji", displayName: "Avalanche Fuji", isTestnet: true, defaultAsset: nil),
        .init(caip2: "eip155:80002", chainId: 80002, v1Name: "polygon-amoy", displayName: "Polygon Amoy", isTestnet: true, defaultAsset: nil),
        .init(caip2: "eip155:2741", chainId: 2741, v1Name: "abstract", displayName: "Abstract", isTestnet: false, defaultAsset: nil),
        .init(caip2: "eip155:11124", chainId: 11124, v1Name: "abstract-testnet", displayName: "Abstract Testnet", isTestnet: true, defaultAsset: nil),
        .init(caip2: "eip155:4689", chainId: 4689, v1Name: "iotex", displayName: "IoTeX", isTestnet: false, defaultAsset: nil),
        .init(caip2: "eip155:1329", chainId: 1329, v1Name: "sei", displayName: "Sei", isTestnet: false, defaultAsset: nil),
        .init(caip2: "eip155:1328", chainId: 1328, v1Name: "sei-testnet", displayName: "Sei Testnet", isTestnet: true, defaultAsset: nil),
        .init(caip2: "eip155:3338", chainId: 3338, v1Name: "peaq", displayName: "peaq", isTestnet: false, defaultAsset: nil),
    ]

    private static let byCAIP2: [String: NetworkInfo] = Dictionary(uniqueKeysWithValues: all.map { ($0.caip2, $0) })
    private static let byV1Name: [String: NetworkInfo] = Dictionary(
        uniqueKeysWithValues: all.compactMap { n in n.v1Name.map { ($0, n) } })

    /// Looks a network up by CAIP-2 id or v1 name.
    public static func named(_ name: String) -> NetworkInfo? {
        byCAIP2[name] ?? byV1Name[name]
    }

    /// Parses `eip155:<chainId>`; returns nil for other namespaces or malformed ids.
    public static func evmChainId(_ caip2: String) -> UInt64? {
        guard caip2.hasPrefix("eip155:") else { return nil }
        let digits = caip2.dropFirst("eip155:".count)
        guard !digits.isEmpty, digits.count <= 19, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              digits.first != "0" || digits.count == 1
        else { return nil }
        return UInt64(digits)
    }

    /// The network for `name`: a known one, or any well-formed `eip155:<id>` (no v1 name, no default asset).
    public static func resolve(_ name: String) -> NetworkInfo? {
        if let known = named(name) { return known }
        guard let chainId = evmChainId(name), chainId > 0 else { return nil }
        return NetworkInfo(caip2: name, chainId: chainId, v1Name: nil, displayName: name, isTestnet: false, defaultAsset: nil)
    }
}

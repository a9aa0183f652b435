/// What a wallet needs to add a chain it does not know (`wallet_addEthereumChain`, EIP-3085),
/// plus the block explorer and the test-token faucet shown on the page.
struct ChainParameters: Sendable {
    var rpcURL: String
    var explorerURL: String?
    var nativeName: String
    var nativeSymbol: String
    /// A faucet handing out the network's test USDC (testnets only).
    var usdcFaucet: String?
}

enum ChainDirectory {
    static let circleFaucet = "https://faucet.circle.com/"

    /// Public endpoints of the networks the gateway knows. Chains missing here can still be paid
    /// on when the wallet already has them; the page then asks the person to add the chain.
    static let known: [UInt64: ChainParameters] = [
        1: .init(rpcURL: "https://ethereum-rpc.publicnode.com", explorerURL: "https://etherscan.io", nativeName: "Ether", nativeSymbol: "ETH"),
        11_155_111: .init(rpcURL: "https://ethereum-sepolia-rpc.publicnode.com", explorerURL: "https://sepolia.etherscan.io",
                          nativeName: "Sepolia Ether", nativeSymbol: "ETH", usdcFaucet: circleFaucet),
        8453: .init(rpcURL: "https://mainnet.base.org", explorerURL: "https://basescan.org", nativeName: "Ether", nativeSymbol: "ETH"),
        84532: .init(rpcURL: "https://sepolia.base.org", explorerURL: "https://sepolia.basescan.org", nativeName: "Sepolia Ether",
                     nativeSymbol: "ETH", usdcFaucet: circleFaucet),
        137: .init(rpcURL: "https://polygon-rpc.com", explorerURL: "https://polygonscan.com", nativeName: "POL", nativeSymbol: "POL"),
        80002: .init(rpcURL: "https://rpc-amoy.polygon.technology", explorerURL: "https://amoy.polygonscan.com", nativeName: "POL",
                     nativeSymbol: "POL", usdcFaucet: circleFaucet),
        42161: .init(rpcURL: "https://arb1.arbitrum.io/rpc", explorerURL: "https://arbiscan.io", nativeName: "Ether", nativeSymbol: "ETH"),
        421_614: .init(rpcURL: "https://sepolia-rollup.arbitrum.io/rpc", explorerURL: "https://sepolia.arbiscan.io",
                       nativeName: "Sepolia Ether", nativeSymbol: "ETH", usdcFaucet: circleFaucet),
        43114: .init(rpcURL: "https://api.avax.network/ext/bc/C/rpc", explorerURL: "https://snowtrace.io", nativeName: "Avalanche",
                     nativeSymbol: "AVAX"),
        43113: .init(rpcURL: "https://api.avax-test.network/ext/bc/C/rpc", explorerURL: "https://testnet.snowtrace.io",
                     nativeName: "Avalanche", nativeSymbol: "AVAX", usdcFaucet: circleFaucet),
    ]
}

/// Public block explorers of the chains the gateway knows (for links to transactions and addresses).
public enum BlockExplorers {
    /// The explorer's base URL (`https://basescan.org`) for an EVM chain id, when it has a public one.
    public static func baseURL(chainID: UInt64) -> String? {
        ChainDirectory.known[chainID]?.explorerURL
    }
}

/// Identifies one payment authorization: the token's own replay key (EIP-3009 nonces are per
/// authorizer and token), scoped by network. The ledger keeps one row per key.
public struct PaymentKey: Sendable, Hashable, CustomStringConvertible {
    public var network: String
    public var asset: String
    public var payer: String
    public var nonce: String

    /// Addresses and nonce are lower-cased so spellings of one payment collide.
    public init(network: String, asset: String, payer: String, nonce: String) {
        self.network = network
        self.asset = asset.lowercased()
        self.payer = payer.lowercased()
        self.nonce = nonce.lowercased()
    }

    public var description: String { "\(network)/\(asset)/\(payer)/\(nonce)" }
}

/// What a pass says, signed by the gateway: which route (or group) and path it opens, who paid, on
/// which network, and until when.
public struct PassClaims: Sendable, Hashable, Codable {
    /// The route's id, for a pass of a route without a group.
    public var route: String?
    /// The group's name, for a pass of a grouped route.
    public var group: String?
    /// The canonical path paid for (scope `path`); nil for a pass of the whole route or group.
    public var path: String?
    /// The verified payer (EIP-55 address), sent upstream like a paid request's.
    public var payer: String
    /// CAIP-2 network of the payment.
    public var network: String
    /// Unix seconds.
    public var issuedAt: UInt64
    /// Unix seconds; the pass is refused from this second on.
    public var expiresAt: UInt64

    public init(route: String? = nil, group: String? = nil, path: String? = nil, payer: String, network: String,
                issuedAt: UInt64, expiresAt: UInt64) {
        self.route = route
        self.group = group
        self.path = path
        self.payer = payer
        self.network = network
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }

    enum CodingKeys: String, CodingKey {
        case route = "r", group = "g", path = "p", payer = "sub", network = "net", issuedAt = "iat", expiresAt = "exp"
    }
}

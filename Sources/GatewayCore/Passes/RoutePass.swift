/// What a route pass opens, chosen by the seller (`pass: { scope: route | path }`).
public enum PassScope: String, Sendable, Hashable, CaseIterable {
    /// The exact path that was paid for (query strings aside): `GET /articles/42` paid, `/articles/42`
    /// readable again, `/articles/43` still priced. The default: the narrowest.
    case path
    /// Every request the route (or the route's group) matches: one payment opens `/articles/*`.
    case route
}

/// A priced route's pass (`pass: { for: 24h, scope: path, group: news }`): after a settled payment
/// the gateway issues a signed pass, and while it is valid the route's requests in its scope are
/// forwarded without a new payment.
public struct RoutePass: Sendable, Hashable {
    /// How long a pass stays valid after the payment, in whole seconds.
    public var seconds: UInt64
    public var scope: PassScope
    /// Routes naming the same group accept each other's passes (within the scope).
    public var group: String?

    public init(seconds: UInt64, scope: PassScope = .path, group: String? = nil) {
        self.seconds = seconds
        self.scope = scope
        self.group = group
    }

    /// Longest `for:` accepted: a pass is a bearer credential, revoked only by retiring its key.
    public static let maxSeconds: UInt64 = 366 * 86_400
}

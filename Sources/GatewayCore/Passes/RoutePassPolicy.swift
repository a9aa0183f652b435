import Crypto
import X402

/// One priced route's pass rules, compiled from its ``RoutePass`` when the configuration is
/// loaded: what its passes are bound to, which requests they open, and the cookie that carries them.
public struct RoutePassPolicy: Sendable, Hashable {
    /// What a pass of this route is bound to: the route itself, or its group.
    public enum Binding: Sendable, Hashable {
        case route(String)
        case group(String)
    }

    public let binding: Binding
    public let scope: PassScope
    public let seconds: UInt64
    /// `x402-pass-` and 12 hex digits of SHA-256 of the binding: one cookie per route (or group),
    /// so passes of routes sharing a cookie path do not replace each other.
    public let cookieName: String
    /// The cookie `Path` of a route-scoped pass: the literal start of the route's pattern (of all
    /// the group's patterns), up to its last `/` before any wildcard.
    public let routeCookiePath: String

    /// Prefix of every pass cookie's name: cookies named so are the gateway's and never forwarded.
    public static let cookiePrefix = "x402-pass-"

    /// `groupPatterns`: the path patterns of every route of the group (this one's included), when
    /// the route has a group.
    public init(route: RouteConfig, pass: RoutePass, groupPatterns: [RoutePattern] = []) {
        binding = pass.group.map(Binding.group) ?? .route(route.id)
        scope = pass.scope
        seconds = pass.seconds
        let name: String = switch binding {
        case .route(let id): "route\u{0}" + id
        case .group(let group): "group\u{0}" + group
        }
        let digest = SHA256.hash(data: Array(name.utf8))
        cookieName = Self.cookiePrefix + Hex.encode(digest.prefix(6))
        let patterns = groupPatterns.isEmpty ? [route.pattern] : groupPatterns
        routeCookiePath = Self.commonCookiePath(patterns.map { Self.cookiePath(of: $0) })
    }

    /// The policy of every route (same positions; nil for routes without `pass`), each group's
    /// cookie path covering all of its routes.
    public static func compile(_ routes: [RouteConfig]) -> [RoutePassPolicy?] {
        var groups: [String: [RoutePattern]] = [:]
        for route in routes { if let group = route.pass?.group { groups[group, default: []].append(route.pattern) } }
        return routes.map { route in
            route.pass.map { RoutePassPolicy(route: route, pass: $0, groupPatterns: $0.group.flatMap { groups[$0] } ?? []) }
        }
    }

    /// The claims of a pass for a payment by `payer` on `network` for `path`, settled at `now`.
    public func claims(path: String, payer: String, network: String, now: UInt64) -> PassClaims {
        var claims = PassClaims(path: scope == .path ? Self.resource(path) : nil, payer: payer, network: network, issuedAt: now,
                                expiresAt: now + seconds)
        switch binding {
        case .route(let id): claims.route = id
        case .group(let group): claims.group = group
        }
        return claims
    }

    /// Nil when a verified pass opens a request for `path` (canonical) on this route, else why not.
    /// A pass never opens more than it was issued for, nor more than the route's scope now allows.
    public func refusal(of claims: PassClaims, path: String) -> PassRejection? {
        switch binding {
        case .route(let id): if claims.route != id || claims.group != nil { return .otherRoute }
        case .group(let group): if claims.group != group || claims.route != nil { return .otherRoute }
        }
        if let paid = claims.path {
            if paid != Self.resource(path) { return .otherPath }
        } else if scope == .path {
            return .otherPath  // issued for the whole route, which is now scoped by path
        }
        return nil
    }

    /// The `Set-Cookie` value carrying `token` for a pass issued for `path`, valid `maxAge` seconds.
    /// `HttpOnly` (page scripts never read it), `SameSite=Lax` (sent on top-level navigations from
    /// other sites, not on their subrequests), `Secure` when the public URL is `https`, and `Path`
    /// limited to the scope.
    public func setCookie(token: String, path: String, maxAge: UInt64, secure: Bool) -> String {
        let paid = Self.resource(path)
        let cookiePath = scope == .path && Self.isCookieSafe(paid) ? paid : routeCookiePath
        return "\(cookieName)=\(token); Path=\(cookiePath); Max-Age=\(maxAge); HttpOnly; SameSite=Lax" + (secure ? "; Secure" : "")
    }

    /// The resource a path names for a pass: as routes match it, one trailing slash ignored
    /// (`/articles/42/` is `/articles/42`); letter case kept (a pass never widens to other spellings).
    static func resource(_ path: String) -> String {
        path.utf8.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    // MARK: Cookie paths

    /// The literal start of a pattern, cut back to its last `/` before the first wildcard:
    /// `/weather` → `/weather`, `/articles/*` → `/articles/`, `/items/:id` → `/items/`, `/a*/*` → `/`.
    static func cookiePath(of pattern: RoutePattern) -> String {
        let text = Array(pattern.path.utf8)
        var end = text.count
        for i in text.indices where text[i] == UInt8(ascii: "*") || (text[i] == UInt8(ascii: ":") && i > 0 && text[i - 1] == UInt8(ascii: "/")) {
            end = i
            break
        }
        var prefix = Array(text[..<end])
        if end < text.count {
            while let last = prefix.last, last != UInt8(ascii: "/") { prefix.removeLast() }
        }
        let path = String(decoding: prefix, as: UTF8.self)
        return path.isEmpty || !isCookieSafe(path) ? "/" : path
    }

    /// A cookie path every one of `paths` lies under: the path itself when they are all the same,
    /// else their common start cut back to its last `/` (possibly wider than needed, never narrower).
    static func commonCookiePath(_ paths: [String]) -> String {
        guard let first = paths.first else { return "/" }
        if paths.allSatisfy({ $0 == first }) { return first }
        var common = Array(first.utf8)
        for path in paths.dropFirst() {
            let other = Array(path.utf8)
            var n = 0
            while n < common.count && n < other.count && common[n] == other[n] { n += 1 }
            common = Array(common[..<n])
        }
        while let last = common.last, last != UInt8(ascii: "/") { common.removeLast() }
        return common.isEmpty ? "/" : String(decoding: common, as: UTF8.self)
    }

    /// Printable ASCII without `;` or `,` (a cookie attribute value that cannot end the attribute).
    static func isCookieSafe(_ path: String) -> Bool {
        path.utf8.first == UInt8(ascii: "/") && path.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") && $0 != UInt8(ascii: ",") }
    }
}

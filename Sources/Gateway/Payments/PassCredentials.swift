import GatewayCore
import NIOHTTP1

/// Where a request carries route passes, and how they are kept from the upstream.
///
/// A pass comes back as its cookie (browsers: any cookie named `x402-pass-…`), as
/// `Authorization: Bearer x402pass1.…`, or in a `PAYMENT-PASS` request field (for clients whose
/// upstream API uses `Authorization` itself). None of them is ever forwarded, on any route: pass
/// cookies are cut out of `Cookie`, a pass `Authorization` is dropped (any other `Authorization` is
/// the upstream's and goes through), and `PAYMENT-PASS` and the upstream marker
/// `X-Payment-Pass` are gateway-owned names.
package enum PassCredentials {
    /// The response field carrying a newly issued pass, and the request field that may bring it back.
    package static let header = "PAYMENT-PASS"
    /// The request field telling the upstream that a pass (not a payment) opened this request; its
    /// value is the pass's expiry (unix seconds). A client's copy is never forwarded.
    package static let upstreamHeader = "X-Payment-Pass"
    /// A request carrying more passes than this has the rest ignored (each costs an HMAC).
    package static let maxTokens = 8

    private static let cookiePrefix = Array(RoutePassPolicy.cookiePrefix.utf8)
    private static let bearer = Array("bearer ".utf8)
    private static let tokenPrefix = Array((PassKeyring.prefix + ".").utf8)

    /// The passes a request presents to a route, in the order cookies, `Authorization`,
    /// `PAYMENT-PASS`. Only the route's own pass cookie (`cookieName`; nil: none) is one: a browser
    /// sends every cookie whose `Path` covers the URL, so other routes' pass cookies are not
    /// presented to this route, and are neither verified nor counted as refused.
    package static func tokens(in headers: HTTPHeaders, cookieName: String?) -> [Substring] {
        var tokens: [Substring] = []
        for (name, value) in headers where tokens.count < maxTokens {
            if HTTPWire.nameEquals(name, "cookie") {
                guard let cookieName, mayHoldPassCookie(value) else { continue }
                for token in HTTPWire.cookieValues(value, named: cookieName) where tokens.count < maxTokens { tokens.append(token) }
            } else if HTTPWire.nameEquals(name, "authorization") {
                if let token = bearerPass(value) { tokens.append(token) }
            } else if HTTPWire.nameEquals(name, "payment-pass") {
                tokens.append(Substring(value).trimmingASCIISpaces())
            }
        }
        return tokens
    }

    /// The token of `Authorization: Bearer x402pass1.…` (scheme name compared ignoring case).
    /// Every forwarded `Authorization` passes here: compared in place, nothing allocated.
    package static func bearerPass(_ value: String) -> Substring? {
        let trimmed = Substring(value).trimmingASCIISpaces()
        guard trimmed.utf8.count > bearer.count, zip(trimmed.utf8, bearer).allSatisfy({ $0 | 0x20 == $1 }) else { return nil }
        let token = trimmed.dropFirst(bearer.count).trimmingASCIISpaces()
        return token.utf8.starts(with: tokenPrefix) ? token : nil
    }

    /// A cheap test before any parsing: whether a `Cookie` value names a pass cookie at all.
    @inline(__always)
    static func mayHoldPassCookie(_ value: String) -> Bool {
        let bytes = value.utf8
        guard bytes.count >= cookiePrefix.count else { return false }
        var i = bytes.startIndex
        while let x = bytes[i...].firstIndex(of: cookiePrefix[0]) {
            if bytes[x...].starts(with: cookiePrefix) { return true }
            i = bytes.index(after: x)
        }
        return false
    }

    /// `value` without its pass cookies; nil when no cookie is left.
    package static func cookieWithoutPasses(_ value: String) -> String? {
        let kept = value.split(separator: ";").map { $0.trimmingASCIISpaces() }.filter { !$0.isEmpty && !$0.utf8.starts(with: cookiePrefix) }
        return kept.isEmpty ? nil : kept.joined(separator: "; ")
    }

    /// The request field as forwarded upstream: unchanged, rewritten (`Cookie` without pass
    /// cookies) or dropped (nil: a pass `Authorization`, a `Cookie` of pass cookies only).
    @inline(__always)
    package static func forwarded(name: String, value: String) -> String? {
        if HTTPWire.nameEquals(name, "cookie") {
            return mayHoldPassCookie(value) ? cookieWithoutPasses(value) : value
        }
        if HTTPWire.nameEquals(name, "authorization") {
            return bearerPass(value) == nil ? value : nil
        }
        return value
    }
}

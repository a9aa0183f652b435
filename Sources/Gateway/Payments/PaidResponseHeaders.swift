import GatewayCore
import NIOHTTP1
import X402

/// The header rewriting of every upstream answer relayed on a priced route (paid, replayed for a
/// payment identifier, or an upstream error under a payment that was not settled). Pure: the
/// upstream's fields and the gateway's own (`extra`, e.g. `PAYMENT-RESPONSE`) in, the fields to
/// write out. The free path never comes here.
///
/// - Caching (unless the route says `cache: upstream`): `Cache-Control: private, no-store` replaces
///   the upstream's; `Expires`, `Surrogate-Control`, `CDN-Cache-Control`,
///   `Cloudflare-CDN-Cache-Control` and nginx's `X-Accel-Expires` go; `Vary` gains
///   `PAYMENT-SIGNATURE` and `X-PAYMENT` for caches that ignore `private`. One buyer's answer is
///   never a shared cache's answer to the next client.
/// - CORS: the receipt (`PAYMENT-RESPONSE`, `X-PAYMENT-RESPONSE`, whichever the answer carries) is
///   added to `Access-Control-Expose-Headers`, so a page on another origin can read it. When the
///   upstream sends no `Access-Control-Allow-Origin`, the gateway's `cors.allowOrigin` applies (as
///   on its 402s), with `Vary: Origin` when that is not `*`.
package enum PaidResponseHeaders {
    package static let cacheControl = "private, no-store"
    /// Fields that let a shared cache store the answer (lower case); `Cache-Control` is replaced.
    static let sharedCachingFields = [
        "cache-control", "expires", "surrogate-control", "cdn-cache-control", "cloudflare-cdn-cache-control", "x-accel-expires",
    ]
    static let paymentRequestHeaders = [X402Header.paymentSignature, X402Header.xPayment]
    /// What an answer opened by a pass varies on: the fields a pass comes back in, besides the payment's.
    static let passRequestHeaders = paymentRequestHeaders + ["Cookie", "Authorization", PassCredentials.header]
    /// Fields of the gateway's a page on another origin may read: the receipt, and a pass issued with it.
    static let receiptHeaders = [X402Header.paymentResponse, X402Header.xPaymentResponse, PassCredentials.header]

    /// `vary`: the request fields a private answer varies on (the payment's, or those of a pass too).
    package static func rewrite(
        _ upstream: HTTPHeaders, extra: [(String, String)], caching: PaidResponseCaching, allowOrigin: String,
        vary varyOn: [String] = paymentRequestHeaders
    ) -> HTTPHeaders {
        let markPrivate = caching == .private
        var out = HTTPHeaders()
        var vary: [String] = []
        var exposed: [String] = []
        var hasAllowOrigin = false
        // Hop-by-hop fields go first, so that none of the fields set here can be named in `Connection`.
        let listed = HTTPWire.connectionListed(upstream)
        for (name, value) in upstream {
            if HTTPWire.nameEquals(name, "connection") { continue }
            if !listed.isEmpty, listed.contains(where: { HTTPWire.nameEquals(name, $0) }) { continue }
            // The gateway's fields replace the upstream's of the same name.
            if extra.contains(where: { HTTPWire.equalsIgnoringCase($0.0, name) }) { continue }
            if HTTPWire.nameEquals(name, "vary") {
                vary.append(contentsOf: tokens(value))
                continue
            }
            if HTTPWire.nameEquals(name, "access-control-expose-headers") {
                exposed.append(contentsOf: tokens(value))
                continue
            }
            if HTTPWire.nameEquals(name, "access-control-allow-origin") { hasAllowOrigin = true }
            if markPrivate, sharedCachingFields.contains(where: { HTTPWire.nameEquals(name, $0) }) { continue }
            out.add(name: name, value: value)
        }
        for (name, value) in extra { out.add(name: name, value: value) }

        if markPrivate {
            out.add(name: "Cache-Control", value: cacheControl)
            vary = merged(vary, varyOn)
        }
        if !hasAllowOrigin {
            out.add(name: "Access-Control-Allow-Origin", value: allowOrigin)
            if allowOrigin != "*" { vary = merged(vary, ["Origin"]) }
        }
        let receipts = receiptHeaders.filter { receipt in out.contains { HTTPWire.equalsIgnoringCase($0.name, receipt) } }
        exposed = merged(exposed, receipts)
        if !vary.isEmpty { out.add(name: "Vary", value: vary.joined(separator: ", ")) }
        if !exposed.isEmpty { out.add(name: "Access-Control-Expose-Headers", value: exposed.joined(separator: ", ")) }
        return out
    }

    /// `list` plus the names of `more` it lacks, duplicates dropped (compared ignoring case).
    static func merged(_ list: [String], _ more: [String]) -> [String] {
        var result: [String] = []
        for name in list + more where !result.contains(where: { HTTPWire.equalsIgnoringCase($0, name) }) { result.append(name) }
        return result
    }

    /// The comma-separated tokens of a list field, trimmed, empty ones dropped.
    static func tokens(_ value: String) -> [String] {
        value.split(separator: ",").map { String($0.trimmingASCIISpaces()) }.filter { !$0.isEmpty }
    }
}

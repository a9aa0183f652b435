import GatewayCore
import NIOHTTP1

/// The header rules of the proxy (free requests and the paid path's upstream hop, both over
/// ``UpstreamConnections`` in ``GatewayHandler``): which request fields go upstream, and which
/// upstream response fields the gateway owns and never relays.
package enum ReverseProxy {
    /// `X-Original-URL` and `X-Rewrite-URL` name another path than the one routed and priced (IIS URL
    /// Rewrite, old Symfony and Zend read them): never forwarded. Nor are a pass sent back in
    /// `PAYMENT-PASS` or a client's `X-Payment-Pass` (the gateway's marker of pass requests).
    static let gatewayOwnedRequestHeaders = [
        "host", "content-length", "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
        "payment-signature", "x-payment", "x-original-url", "x-rewrite-url", "payment-pass", "x-payment-pass",
    ]
    /// Upstream response fields the gateway owns: its receipt (v2 and v1), its challenge and the
    /// pass it issues. An upstream's copies are dropped as its head arrives, so the gateway's
    /// receipt is the only one.
    static let gatewayOwnedResponseHeaders = ["payment-response", "x-payment-response", "payment-required", "payment-pass"]

    /// Whether a client's request field is forwarded upstream. Not forwarded: hop-by-hop fields,
    /// fields listed in `Connection` (`listed`, lower case), the gateway's own (payment, forwarding,
    /// framing, URL-override fields), the payer field (`payerHeader`, lower case), and every name
    /// containing `_`: CGI-style upstreams (WSGI, PHP, Rack) read `X_Payment_Payer` as
    /// `X-Payment-Payer`, so such a name could spoof any field the gateway sets (nginx drops them by
    /// default too). No allocation: the names are compared in place.
    @inline(__always)
    package static func forwardsRequestField(_ name: String, listed: [String], payerHeader: String) -> Bool {
        if name.utf8.contains(UInt8(ascii: "_")) { return false }
        if HTTPWire.hopByHop.contains(where: { HTTPWire.nameEquals(name, $0) }) { return false }
        if gatewayOwnedRequestHeaders.contains(where: { HTTPWire.nameEquals(name, $0) }) { return false }
        if !listed.isEmpty, listed.contains(where: { HTTPWire.nameEquals(name, $0) }) { return false }
        return !HTTPWire.nameEquals(name, payerHeader)
    }

    /// Whether an upstream response field is the gateway's own (see ``gatewayOwnedResponseHeaders``).
    @inline(__always)
    package static func isGatewayOwnedResponseField(_ name: String) -> Bool {
        gatewayOwnedResponseHeaders.contains { HTTPWire.nameEquals(name, $0) }
    }

    /// Whether an upstream's status can be relayed: RFC 9110 §15 makes values outside 100–599
    /// invalid (some servers use 600–999 internally; the HTTP/1 parser reads any three digits,
    /// `000` included). The connection carrying another status is closed and the client gets 502.
    package static func isRelayableStatus(_ code: UInt) -> Bool {
        (100...599).contains(code)
    }

    /// The upstream's response fields without the gateway-owned ones; the same list (no copy) when
    /// there are none, which is the usual case.
    package static func withoutGatewayOwnedResponseFields(_ headers: HTTPHeaders) -> HTTPHeaders {
        guard headers.contains(where: { isGatewayOwnedResponseField($0.name) }) else { return headers }
        var kept = HTTPHeaders()
        kept.reserveCapacity(headers.count)
        for (name, value) in headers where !isGatewayOwnedResponseField(name) { kept.add(name: name, value: value) }
        return kept
    }

    package struct Forwarding: Sendable {
        package var clientAddress: String?
        package var clientIsTrustedProxy: Bool
        package var requestHost: String?
        package var payerHeader: String
        /// Extra request headers set by the gateway (e.g. the verified payer).
        package var extraHeaders: [(String, String)] = []
        /// The client reached the gateway over TLS (`X-Forwarded-Proto: https`).
        package var tls = false

        package init(clientAddress: String?, clientIsTrustedProxy: Bool, requestHost: String?, payerHeader: String,
                     extraHeaders: [(String, String)] = [], tls: Bool = false) {
            self.clientAddress = clientAddress
            self.clientIsTrustedProxy = clientIsTrustedProxy
            self.requestHost = requestHost
            self.payerHeader = payerHeader
            self.extraHeaders = extraHeaders
            self.tls = tls
        }
    }

    package enum Failure: Error, Equatable {
        case unavailable(String)
        case timeout
    }

    /// The request header fields sent upstream, on both proxy paths (free requests and the paid
    /// hop): fields ``forwardsRequestField(_:listed:payerHeader:)`` refuses dropped; passes cut
    /// out (``PassCredentials/forwarded(name:value:)``); `Host` rewritten; `X-Forwarded-*` rebuilt (incoming values kept only from a
    /// trusted proxy); the gateway's extra headers and the upstream's configured headers set last.
    /// Body framing (`Content-Length`, `Transfer-Encoding`) is left to the caller.
    static func upstreamHeaders(_ fields: HTTPHeaders, upstream: UpstreamConfig, forwarding: Forwarding) -> HTTPHeaders {
        let listed = HTTPWire.connectionListed(fields)
        let payerHeader = forwarding.payerHeader.lowercased()
        var headers = HTTPHeaders()
        headers.reserveCapacity(fields.count + 4)
        for (name, value) in fields where forwardsRequestField(name, listed: listed, payerHeader: payerHeader) {
            if let value = PassCredentials.forwarded(name: name, value: value) { headers.add(name: name, value: value) }
        }
        headers.add(name: "Host", value: upstream.hostHeader)
        // X-Forwarded-*: incoming values are kept only when the peer is a trusted proxy.
        let incomingXFF = forwarding.clientIsTrustedProxy ? fields["x-forwarded-for"].joined(separator: ", ") : ""
        if let client = forwarding.clientAddress {
            headers.add(
                name: "X-Forwarded-For",
                value: forwarding.clientIsTrustedProxy && !incomingXFF.isEmpty ? "\(incomingXFF), \(client)" : client)
        }
        let proto = forwarding.clientIsTrustedProxy ? fields.first(name: "x-forwarded-proto") : nil
        headers.add(name: "X-Forwarded-Proto", value: proto ?? (forwarding.tls ? "https" : "http"))
        let forwardedHost = forwarding.clientIsTrustedProxy ? fields.first(name: "x-forwarded-host") : nil
        if let host = forwardedHost ?? forwarding.requestHost { headers.add(name: "X-Forwarded-Host", value: host) }
        if forwarding.clientIsTrustedProxy, let forwarded = fields.first(name: "forwarded") { headers.add(name: "Forwarded", value: forwarded) }
        for (name, value) in forwarding.extraHeaders { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in upstream.headers { headers.replaceOrAdd(name: name, value: value) }
        return headers
    }
}

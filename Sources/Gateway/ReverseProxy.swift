import GatewayCore
import NIOHTTP1

/// The request-header rules of the proxy (free requests and the paid path's upstream hop, both
/// over ``UpstreamConnections`` in ``GatewayHandler``).
enum ReverseProxy {
    /// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), plus ones the
    /// gateway owns: the payment headers and the verified-payer header are never passed through.
    static let hopByHop = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]
    static let gatewayOwnedRequestHeaders = [
        "host", "content-length", "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
        "payment-signature", "x-payment",
    ]

    struct Forwarding: Sendable {
        var clientAddress: String?
        var clientIsTrustedProxy: Bool
        var requestHost: String?
        var payerHeader: String
        /// Extra request headers set by the gateway (e.g. the verified payer).
        var extraHeaders: [(String, String)] = []
    }

    enum Failure: Error, Equatable {
        case unavailable(String)
        case timeout
    }

    /// The request header fields sent upstream, on both proxy paths (AsyncHTTPClient and the
    /// NIO-level ``UpstreamConnections``): hop-by-hop, Connection-listed, gateway-owned and payer
    /// headers dropped; `Host` rewritten; `X-Forwarded-*` rebuilt (incoming values kept only from a
    /// trusted proxy); the gateway's extra headers and the upstream's configured headers set last.
    /// Body framing (`Content-Length`, `Transfer-Encoding`) is left to the caller.
    static func upstreamHeaders(_ fields: HTTPHeaders, upstream: UpstreamConfig, forwarding: Forwarding) -> HTTPHeaders {
        let listed = HTTPWire.connectionListed(fields)
        let payerHeader = forwarding.payerHeader.lowercased()
        var headers = HTTPHeaders()
        headers.reserveCapacity(fields.count + 4)
        for (name, value) in fields {
            if Self.hopByHop.contains(where: { HTTPWire.nameEquals(name, $0) })
                || Self.gatewayOwnedRequestHeaders.contains(where: { HTTPWire.nameEquals(name, $0) })
                || (!listed.isEmpty && listed.contains(where: { HTTPWire.nameEquals(name, $0) }))
                || HTTPWire.nameEquals(name, payerHeader)
            {
                continue
            }
            headers.add(name: name, value: value)
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
        headers.add(name: "X-Forwarded-Proto", value: proto ?? "http")
        let forwardedHost = forwarding.clientIsTrustedProxy ? fields.first(name: "x-forwarded-host") : nil
        if let host = forwardedHost ?? forwarding.requestHost { headers.add(name: "X-Forwarded-Host", value: host) }
        if forwarding.clientIsTrustedProxy, let forwarded = fields.first(name: "forwarded") { headers.add(name: "Forwarded", value: forwarded) }
        for (name, value) in forwarding.extraHeaders { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in upstream.headers { headers.replaceOrAdd(name: name, value: value) }
        return headers
    }
}

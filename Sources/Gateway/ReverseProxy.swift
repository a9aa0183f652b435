import AsyncHTTPClient
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import X402

/// Header rules shared by both proxy paths, and the paid path's upstream hop on AsyncHTTPClient
/// (one client per upstream, each with its own connect and read timeouts, see ``ClientPool``; the
/// response body streamed with back-pressure). Free requests are proxied by ``GatewayHandler``.
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

    /// Sends the request (its body already read) upstream and returns the upstream's response
    /// head with a streaming body.
    static func forward(
        _ head: HTTPRequestHead, path: CanonicalPath, to target: Upstream, forwarding: Forwarding, body: ByteBuffer?,
        metrics: GatewayMetrics, logger: Logger
    ) async throws(Failure) -> HTTPClientResponse {
        let upstream = target.config
        var outgoing = HTTPClientRequest(url: upstream.origin + upstream.basePath + path.pathAndQuery)
        outgoing.method = head.method
        outgoing.headers = Self.upstreamHeaders(head.headers, upstream: upstream, forwarding: forwarding)
        if let body { outgoing.body = .bytes(body) }

        let started = ContinuousClock.now
        do {
            let response = try await target.client.execute(
                outgoing, timeout: .milliseconds(upstream.timeout.wholeMilliseconds), logger: logger)
            metrics.upstreamResponse(upstream.name, duration: ContinuousClock.now - started)
            return response
        } catch let error as HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: throw .timeout
            default: throw .unavailable(String(describing: error))
            }
        } catch {
            throw .unavailable(String(describing: error))
        }
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

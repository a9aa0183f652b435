import Foundation
import AsyncHTTPClient
import GatewayCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import X402
import NIOHTTP1

/// Streaming reverse proxy on AsyncHTTPClient: one client per upstream (each with its own connect
/// and read timeouts, see ``ClientPool``), request and response bodies streamed with back-pressure,
/// never buffered.
enum ReverseProxy {
    /// Headers that describe one hop and are never forwarded (RFC 9110 §7.6.1), plus ones the
    /// gateway owns: the payment headers and the verified-payer header are never passed through.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]
    static let gatewayOwnedRequestHeaders: Set<String> = [
        "host", "content-length", "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
        "payment-signature", "x-payment",
    ]

    /// Names listed in `Connection` (lower-cased); they are hop-by-hop too.
    static func connectionListed(_ fields: HTTPFields) -> Set<String> {
        var names: Set<String> = []
        for value in fields[values: .connection] {
            for token in value.split(separator: ",") {
                names.insert(token.trimmingCharacters(in: .whitespaces).lowercased())
            }
        }
        return names
    }

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

    /// Sends the request upstream and returns the upstream's response head with a streaming body.
    static func forward(
        _ request: Request, path: CanonicalPath, to target: Upstream, forwarding: Forwarding, body: ByteBuffer? = nil,
        metrics: GatewayMetrics, logger: Logger
    ) async throws(Failure) -> HTTPClientResponse {
        let upstream = target.config
        var outgoing = HTTPClientRequest(url: upstream.origin + upstream.basePath + path.pathAndQuery)
        outgoing.method = HTTPMethod(rawValue: request.method.rawValue)

        outgoing.headers = Self.upstreamHeaders(request.headers, upstream: upstream, forwarding: forwarding)

        if let body {
            outgoing.body = .bytes(body)
        } else if let lengthText = request.headers[.contentLength], let length = Int64(lengthText) {
            if length > 0 { outgoing.body = .stream(request.body, length: .known(length)) }
        } else if request.headers[.transferEncoding] != nil {
            outgoing.body = .stream(request.body, length: .unknown)
        }

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
    static func upstreamHeaders(_ fields: HTTPFields, upstream: UpstreamConfig, forwarding: Forwarding) -> HTTPHeaders {
        let listed = Self.connectionListed(fields)
        let payerHeader = forwarding.payerHeader.lowercased()
        var headers = HTTPHeaders()
        for field in fields {
            let name = field.name.canonicalName
            if Self.hopByHop.contains(name) || Self.gatewayOwnedRequestHeaders.contains(name) || listed.contains(name)
                || name == payerHeader
            {
                continue
            }
            headers.add(name: field.name.rawName, value: field.value)
        }
        headers.replaceOrAdd(name: "Host", value: upstream.hostHeader)
        // X-Forwarded-*: incoming values are kept only when the peer is a trusted proxy.
        let incomingXFF = fields[values: .xForwardedFor].joined(separator: ", ")
        if let client = forwarding.clientAddress {
            headers.add(
                name: "X-Forwarded-For",
                value: forwarding.clientIsTrustedProxy && !incomingXFF.isEmpty ? "\(incomingXFF), \(client)" : client)
        }
        let proto = forwarding.clientIsTrustedProxy ? fields[.xForwardedProto] : nil
        headers.add(name: "X-Forwarded-Proto", value: proto ?? "http")
        let forwardedHost = forwarding.clientIsTrustedProxy ? fields[.xForwardedHost] : nil
        if let host = forwardedHost ?? forwarding.requestHost { headers.add(name: "X-Forwarded-Host", value: host) }
        if forwarding.clientIsTrustedProxy, let forwarded = fields[.forwarded] { headers.add(name: "Forwarded", value: forwarded) }
        for (name, value) in forwarding.extraHeaders { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in upstream.headers { headers.replaceOrAdd(name: name, value: value) }
        return headers
    }

    /// Response head fields to relay to the client (hop-by-hop and Connection-listed removed).
    static func relayedHeaders(_ upstream: HTTPHeaders) -> HTTPFields {
        var listed: Set<String> = []
        for value in upstream["connection"] {
            for token in value.split(separator: ",") { listed.insert(token.trimmingCharacters(in: .whitespaces).lowercased()) }
        }
        var fields = HTTPFields()
        fields.reserveCapacity(upstream.count)
        for (name, value) in upstream {
            guard let fieldName = HTTPField.Name(name) else { continue }
            let lower = fieldName.canonicalName
            if hopByHop.contains(lower) || (!listed.isEmpty && listed.contains(lower)) || lower == "settlement-overrides" { continue }
            fields.append(HTTPField(name: fieldName, value: value))
        }
        return fields
    }
}


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

        let listed = Self.connectionListed(request.headers)
        let payerHeader = forwarding.payerHeader.lowercased()
        var headers = HTTPHeaders()
        for field in request.headers {
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
        let incomingXFF = request.headers[values: .xForwardedFor].joined(separator: ", ")
        if let client = forwarding.clientAddress {
            headers.add(
                name: "X-Forwarded-For",
                value: forwarding.clientIsTrustedProxy && !incomingXFF.isEmpty ? "\(incomingXFF), \(client)" : client)
        }
        let proto = forwarding.clientIsTrustedProxy ? request.headers[.xForwardedProto] : nil
        headers.add(name: "X-Forwarded-Proto", value: proto ?? "http")
        let forwardedHost = forwarding.clientIsTrustedProxy ? request.headers[.xForwardedHost] : nil
        if let host = forwardedHost ?? forwarding.requestHost { headers.add(name: "X-Forwarded-Host", value: host) }
        if forwarding.clientIsTrustedProxy, let forwarded = request.headers[.forwarded] { headers.add(name: "Forwarded", value: forwarded) }
        for (name, value) in forwarding.extraHeaders { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in upstream.headers { headers.replaceOrAdd(name: name, value: value) }
        outgoing.headers = headers

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

    /// Response head fields to relay to the client (hop-by-hop and Connection-listed removed).
    static func relayedHeaders(_ upstream: HTTPHeaders) -> HTTPFields {
        var listed: Set<String> = []
        for value in upstream["connection"] {
            for token in value.split(separator: ",") { listed.insert(token.trimmingCharacters(in: .whitespaces).lowercased()) }
        }
        var fields = HTTPFields()
        for (name, value) in upstream {
            let lower = name.lowercased()
            if hopByHop.contains(lower) || listed.contains(lower) || lower == "settlement-overrides" { continue }
            if let fieldName = HTTPField.Name(name) { fields.append(HTTPField(name: fieldName, value: value)) }
        }
        return fields
    }
}


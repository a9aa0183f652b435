import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import X402

/// What a facilitator call came to. Expected outcomes are values; only transport-level trouble is
/// distinguished further, because it decides between "refuse" and "fail closed".
public enum FacilitatorFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Could not connect, or the connection broke before an answer.
    case unreachable(String)
    /// No answer within the call's deadline.
    case timeout
    /// Answered with a non-2xx status.
    case httpStatus(Int)
    /// Answered 2xx with a body that is not the expected JSON.
    case malformedResponse

    public var description: String {
        switch self {
        case .unreachable(let why): return "facilitator unreachable: \(why)"
        case .timeout: return "facilitator did not answer in time"
        case .httpStatus(let code): return "facilitator answered HTTP \(code)"
        case .malformedResponse: return "facilitator answered with malformed JSON"
        }
    }
}

/// The facilitator as the gateway sees it. The HTTP client implements it; a self-hosted
/// facilitator (verifying and settling on an EVM RPC) can implement it later.
public protocol Facilitator: Sendable {
    /// `paymentPayload` is the client's payload JSON, passed on verbatim.
    func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse
    func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse
    func supported() async throws(FacilitatorFailure) -> SupportedResponse
}

/// HTTP facilitator client: `POST {base}/verify`, `POST {base}/settle`, `GET {base}/supported`, each
/// with a deadline and the configured extra headers, over the keep-alive connections of an
/// ``HTTP1Client`` (TLS with certificate and hostname verification for `https`). The URL is parsed and
/// the request heads are built once, here; a call adds only its `Content-Length`.
public final class HTTPFacilitatorClient: Facilitator {
    private struct Endpoint: Sendable {
        let client: HTTP1Client
        let origin: HTTPOrigin
        let verifyHead: HTTPRequestHead
        let settleHead: HTTPRequestHead
        let supportedHead: HTTPRequestHead
        /// Signs each request's `Authorization` (CDP's facilitator).
        let authenticator: CDPAuthenticator?
    }

    /// nil when the URL is not an absolute `http(s)` URL; every call then fails `.unreachable`.
    private let endpoint: Endpoint?
    private let baseURL: String
    private let logger: Logger

    static let userAgent = "x402-gateway"
    /// Header names the configuration may not set: the client frames the request itself.
    private static let framingHeaders: Set<String> = ["content-length", "transfer-encoding", "connection", "host"]

    /// - Parameters:
    ///   - caFile: a PEM file of the certificates to trust for `https` instead of the system's trust
    ///     roots (a private CA, or a test's self-signed certificate).
    ///   - authenticator: signs a fresh `Authorization: Bearer` JWT for each request (CDP).
    public init(
        baseURL: String, headers: [String: String], timeout: Duration, connectTimeout: Duration = .seconds(2),
        caFile: String? = nil, authenticator: CDPAuthenticator? = nil, eventLoopGroup: any EventLoopGroup, logger: Logger
    ) {
        self.baseURL = baseURL
        self.logger = logger
        guard Self.accepts(url: baseURL), let url = HTTPURL(baseURL) else {
            endpoint = nil
            return
        }
        var basePath = url.target
        while basePath.hasSuffix("/") { basePath.removeLast() }
        let extra = headers.filter { !Self.framingHeaders.contains($0.key.lowercased()) }.sorted { $0.key < $1.key }
        let tls = HTTP1Connector.tlsConfiguration(caFile: caFile)
        let configuration = HTTP1Client.Configuration(
            timeout: TimeAmount(timeout), connectTimeout: TimeAmount(connectTimeout), tls: tls,
            credentialHeaders: Set(extra.map { $0.key.lowercased() } + (authenticator == nil ? [] : ["authorization"])))
        func head(_ method: HTTPMethod, _ path: String, json: Bool) -> HTTPRequestHead {
            var fields = HTTPHeaders()
            fields.add(name: "Host", value: url.origin.hostHeader)
            fields.add(name: "User-Agent", value: Self.userAgent)
            if json { fields.add(name: "Content-Type", value: "application/json") }
            for (name, value) in extra { fields.replaceOrAdd(name: name, value: value) }
            return HTTPRequestHead(version: .http1_1, method: method, uri: basePath + path, headers: fields)
        }
        endpoint = Endpoint(
            client: HTTP1Client(home: url.origin, configuration: configuration, eventLoopGroup: eventLoopGroup),
            origin: url.origin,
            verifyHead: head(.POST, "/verify", json: true),
            settleHead: head(.POST, "/settle", json: true),
            supportedHead: head(.GET, "/supported", json: false),
            authenticator: authenticator)
    }

    /// `scheme://host[:port]` of the facilitator: how it is named in `/readyz` and logs (its path
    /// and query may hold a key); the base URL as given when it could not be parsed.
    public var origin: String {
        guard let origin = endpoint?.origin else { return baseURL }
        return (origin.tls ? "https://" : "http://") + origin.hostHeader
    }

    /// Whether `url` is a base URL this client can call: `http(s)://host[:port][/path]`, no user info, query or fragment.
    public static func accepts(url: String) -> Bool {
        guard let parsed = HTTPURL(url) else { return false }
        return !parsed.target.contains("?") && !url.contains("#")
    }

    /// nil when `path` is a readable PEM file with at least one certificate, else what is wrong with it.
    public static func caFileProblem(_ path: String) -> String? {
        do {
            return try NIOSSLCertificate.fromPEMFile(path).isEmpty ? "no PEM certificate in \"\(path)\"" : nil
        } catch {
            return "cannot read PEM certificates from \"\(path)\": \(error)"
        }
    }

    /// Closes idle connections; calls in flight finish or fail, later calls fail `.unreachable`.
    public func shutdown() async {
        await endpoint?.client.shutdown()
    }

    public func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse {
        let endpoint = try resolvedEndpoint()
        let body = Self.requestBody(version: version, payload: paymentPayload, requirements: requirements)
        // Verifying changes nothing: safe to send again after a reused connection turned out dead.
        let head = try await Self.authorized(Self.withLength(endpoint.verifyHead, body), endpoint)
        return try Self.decode(try await endpoint.client.execute(head, body: body, origin: endpoint.origin, retryable: true).body)
    }

    public func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse {
        let endpoint = try resolvedEndpoint()
        let body = Self.requestBody(version: version, payload: paymentPayload, requirements: requirements)
        // Settling moves money: never sent twice (see HTTP1Client).
        let head = try await Self.authorized(Self.withLength(endpoint.settleHead, body), endpoint)
        return try Self.decode(try await endpoint.client.execute(head, body: body, origin: endpoint.origin, retryable: false).body)
    }

    public func supported() async throws(FacilitatorFailure) -> SupportedResponse {
        let endpoint = try resolvedEndpoint()
        let head = try await Self.authorized(endpoint.supportedHead, endpoint)
        return try Self.decode(try await endpoint.client.execute(head, body: nil, origin: endpoint.origin, retryable: true).body)
    }

    /// `head` with the request's own CDP token, when the facilitator wants one.
    private static func authorized(_ head: HTTPRequestHead, _ endpoint: Endpoint) async throws(FacilitatorFailure) -> HTTPRequestHead {
        guard let authenticator = endpoint.authenticator else { return head }
        var head = head
        do {
            let token = try await authenticator.authorization(
                method: head.method.rawValue, host: endpoint.origin.hostHeader, path: head.uri)
            head.headers.replaceOrAdd(name: "Authorization", value: token)
        } catch {
            throw .unreachable("cannot sign the CDP token: \(error)")
        }
        return head
    }

    private func resolvedEndpoint() throws(FacilitatorFailure) -> Endpoint {
        guard let endpoint else { throw .unreachable("invalid facilitator URL \"\(baseURL)\"") }
        return endpoint
    }

    private static func withLength(_ head: HTTPRequestHead, _ body: ByteBuffer) -> HTTPRequestHead {
        var head = head
        head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        return head
    }

    /// `{"x402Version":N,"paymentPayload":<raw>,"paymentRequirements":<raw>}` without re-encoding the payload.
    static func requestBody(version: Int, payload: [UInt8], requirements: [UInt8]) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: 64 + payload.count + requirements.count)
        out.writeStaticString("{\"x402Version\":")
        out.writeString(String(version))
        out.writeStaticString(",\"paymentPayload\":")
        out.writeBytes(payload)
        out.writeStaticString(",\"paymentRequirements\":")
        out.writeBytes(requirements)
        out.writeInteger(UInt8(ascii: "}"))
        return out
    }

    /// The one place a facilitator answer is decoded: our strict reader, never `JSONDecoder`.
    static func decode<T: JSONNodeDecodable>(_ body: ByteBuffer) throws(FacilitatorFailure) -> T {
        do {
            return try T(json: try JSONReader.parse(Array(body.readableBytesView)))
        } catch {
            throw .malformedResponse
        }
    }
}

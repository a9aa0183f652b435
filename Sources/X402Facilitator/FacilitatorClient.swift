import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
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
/// with a deadline and the configured extra headers.
public final class HTTPFacilitatorClient: Facilitator {
    private let baseURL: String
    private let headers: [(String, String)]
    private let timeout: Duration
    private let client: HTTPClient
    private let logger: Logger

    public init(
        baseURL: String, headers: [String: String], timeout: Duration, connectTimeout: Duration = .seconds(2),
        eventLoopGroup: any EventLoopGroup, logger: Logger
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.headers = headers.sorted { $0.key < $1.key }
        self.timeout = timeout
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .follow(max: 3, allowCycles: false),
            timeout: .init(connect: .milliseconds(connectTimeout.wholeMilliseconds), read: .milliseconds(timeout.wholeMilliseconds)))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        self.client = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
        self.logger = logger
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    public func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse {
        try await post("/verify", body: Self.requestBody(version: version, payload: paymentPayload, requirements: requirements))
    }

    public func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse {
        try await post("/settle", body: Self.requestBody(version: version, payload: paymentPayload, requirements: requirements))
    }

    public func supported() async throws(FacilitatorFailure) -> SupportedResponse {
        var request = HTTPClientRequest(url: baseURL + "/supported")
        request.method = .GET
        return try await execute(request)
    }

    /// `{"x402Version":N,"paymentPayload":<raw>,"paymentRequirements":<raw>}` without re-encoding the payload.
    static func requestBody(version: Int, payload: [UInt8], requirements: [UInt8]) -> [UInt8] {
        var out = Array("{\"x402Version\":\(version),\"paymentPayload\":".utf8)
        out.append(contentsOf: payload)
        out.append(contentsOf: Array(",\"paymentRequirements\":".utf8))
        out.append(contentsOf: requirements)
        out.append(UInt8(ascii: "}"))
        return out
    }

    private func post<T: Decodable>(_ path: String, body: [UInt8]) async throws(FacilitatorFailure) -> T {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        return try await execute(request)
    }

    private func execute<T: Decodable>(_ request: HTTPClientRequest) async throws(FacilitatorFailure) -> T {
        var request = request
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        let deadline = NIODeadline.now() + .milliseconds(timeout.wholeMilliseconds)
        let body: ByteBuffer
        let status: HTTPResponseStatus
        do {
            let response = try await client.execute(request, deadline: deadline, logger: logger)
            status = response.status
            body = try await response.body.collect(upTo: 1 << 20)
        } catch let error as HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout: throw .timeout
            default: throw .unreachable(String(describing: error))
            }
        } catch {
            throw .unreachable(String(describing: error))
        }
        guard (200..<300).contains(Int(status.code)) else { throw .httpStatus(Int(status.code)) }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            throw .malformedResponse
        }
    }
}

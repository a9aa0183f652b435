import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One JSON `POST` to one URL, the whole answer read (at most `maxResponseBytes`), over the same
/// keep-alive ``HTTP1Client`` the facilitator client uses (system trust roots for `https`,
/// certificate and hostname verified): a route's pricing endpoint, and the `reload` command's call
/// to the admin listener. Failures are ``FacilitatorFailure``s: `.timeout` past the deadline
/// (connection included), `.unreachable`, `.httpStatus` for anything but 2xx from ``post(_:)``.
public final class JSONPostClient: Sendable {
    private let client: HTTP1Client?
    private let origin: HTTPOrigin?
    private let head: HTTPRequestHead

    public init(url: String, headers: [String: String], timeout: Duration, maxResponseBytes: Int = 64 * 1024,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        let tls = HTTP1Connector.tlsConfiguration()
        var configuration = HTTP1Client.Configuration(
            timeout: TimeAmount(timeout), connectTimeout: TimeAmount(timeout), tls: tls,
            credentialHeaders: Set(headers.keys.map { $0.lowercased() }))
        configuration.maxResponseBodyBytes = maxResponseBytes
        var fields = HTTPHeaders()
        let parsed = Self.accepts(url: url) ? HTTPURL(url) : nil
        if let parsed {
            fields.add(name: "Host", value: parsed.origin.hostHeader)
            fields.add(name: "User-Agent", value: HTTPFacilitatorClient.userAgent)
            fields.add(name: "Content-Type", value: "application/json")
            fields.add(name: "Accept", value: "application/json")
            for (name, value) in headers.sorted(by: { $0.key < $1.key })
            where !["content-length", "transfer-encoding", "connection", "host"].contains(name.lowercased()) {
                fields.replaceOrAdd(name: name, value: value)
            }
        }
        head = HTTPRequestHead(version: .http1_1, method: .POST, uri: parsed.map { $0.target.isEmpty ? "/" : $0.target } ?? "/",
                               headers: fields)
        origin = parsed?.origin
        client = parsed.map { HTTP1Client(home: $0.origin, configuration: configuration, eventLoopGroup: eventLoopGroup) }
    }

    /// Whether `url` is one this client can call: `http(s)://host[:port][/path]`, no user info, query or fragment.
    public static func accepts(url: String) -> Bool { HTTPFacilitatorClient.accepts(url: url) }

    /// Posts `json` and returns the 2xx answer's body. Sent again on a fresh connection when a
    /// reused one turns out closed before any answer: only for calls that change nothing (a price).
    public func post(_ json: [UInt8]) async throws(FacilitatorFailure) -> [UInt8] {
        Array(try await send(json, retryable: true, anyStatus: false).body.readableBytesView)
    }

    /// Posts `json` once and returns the final answer whatever its status, with its body.
    public func exchange(_ json: [UInt8]) async throws(FacilitatorFailure) -> (status: Int, body: [UInt8]) {
        let response = try await send(json, retryable: false, anyStatus: true)
        return (response.status, Array(response.body.readableBytesView))
    }

    private func send(_ json: [UInt8], retryable: Bool, anyStatus: Bool) async throws(FacilitatorFailure) -> HTTP1Response {
        guard let client, let origin else { throw .unreachable("invalid URL") }
        var head = head
        head.headers.add(name: "Content-Length", value: String(json.count))
        return try await client.execute(head, body: ByteBuffer(bytes: json), origin: origin, retryable: retryable, anyStatus: anyStatus)
    }

    public func shutdown() async {
        await client?.shutdown()
    }
}

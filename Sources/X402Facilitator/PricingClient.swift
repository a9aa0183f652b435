import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// The client of a route's pricing endpoint: `POST` of a small JSON document to one URL, the whole
/// answer read (at most 64 KiB), over the same keep-alive ``HTTP1Client`` the facilitator client
/// uses (system trust roots for `https`, certificate and hostname verified). Failures are
/// ``FacilitatorFailure``s: `.timeout` past the deadline (connection included), `.unreachable`,
/// `.httpStatus` for anything but 2xx.
public final class PricingClient: Sendable {
    private let client: HTTP1Client?
    private let origin: HTTPOrigin?
    private let head: HTTPRequestHead

    public init(url: String, headers: [String: String], timeout: Duration, eventLoopGroup: any EventLoopGroup) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["http/1.1"]
        var configuration = HTTP1Client.Configuration(
            timeout: TimeAmount(timeout), connectTimeout: TimeAmount(timeout), tls: tls,
            credentialHeaders: Set(headers.keys.map { $0.lowercased() }))
        configuration.maxResponseBodyBytes = 64 * 1024
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

    /// Posts `json` and returns the 2xx answer's body.
    public func post(_ json: [UInt8]) async throws(FacilitatorFailure) -> [UInt8] {
        guard let client, let origin else { throw .unreachable("invalid pricing endpoint URL") }
        var head = head
        head.headers.add(name: "Content-Length", value: String(json.count))
        // Asking for a price changes nothing: safe to send again on a fresh connection.
        let response = try await client.execute(head, body: ByteBuffer(bytes: json), origin: origin, retryable: true)
        return Array(response.body.readableBytesView)
    }

    public func shutdown() async {
        await client?.shutdown()
    }
}

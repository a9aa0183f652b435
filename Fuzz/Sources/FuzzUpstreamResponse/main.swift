// The HTTP/1 response path from an upstream: NIO's response decoder and the gateway's upstream
// connection handler (as `UpstreamConnections` builds the pipeline), then the head the gateway
// relays to its client: the free path (`HTTPWire.writeRelayedHead`) and the paid path
// (`PaidResponseHeaders.rewrite`, then the same writer).
//
// Input: byte 0 picks the request method (GET or HEAD), the client's HTTP version, whether the
// client connection closes, and the paid route's caching; byte 1 the size of the pieces the bytes
// arrive in; the rest is what the upstream sends. Properties, for every response head:
// - the relayed head is one well-formed HTTP/1.1 response head that NIO reads back, with the
//   upstream's status and fields, minus hop-by-hop, `Connection`-listed and gateway-owned ones;
// - exactly one framing: `Content-Length` (the upstream's, once) or `Transfer-Encoding: chunked`
//   or neither (HEAD, 1xx, 204, 304, or an HTTP/1.0 client read until close), as the framing says;
// - the gateway's receipt is the only `PAYMENT-RESPONSE`, with `Cache-Control: private, no-store`
//   on a private paid answer;
// and the connection handler passes on only statuses from 100 to 599 (another is a failure, 502),
// and reports the connection's end or failure exactly once.
@testable import Gateway
import GatewayCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import FuzzSupport

final class Collector: UpstreamExchangeDelegate {
    var heads: [HTTPResponseHead] = []
    var ends = 0
    var failures = 0

    func upstreamResponseHead(_ head: HTTPResponseHead) { heads.append(head) }
    func upstreamResponseBody(_ body: ByteBuffer) {}
    func upstreamResponseEnd() { ends += 1 }
    func upstreamReadComplete() {}
    func upstreamWritabilityChanged() {}
    func upstreamFailed(_ error: (any Error)?) { failures += 1 }
}

let upstreamConfig = UpstreamConfig(name: "api", scheme: "http", host: "127.0.0.1", port: 9, basePath: "", timeout: .seconds(30),
                                    connectTimeout: .seconds(1), headers: [])
let pool = UpstreamConnections(config: upstreamConfig)
let receipt = "eyJzdWNjZXNzIjp0cnVlfQ=="
let hopByHop = Set(HTTPWire.unrelayedResponseHeaders)

/// Reads a relayed head back with NIO's decoder: the one head it holds, or nil when it is refused.
func readBack(_ bytes: ByteBuffer, isHead: Bool) -> HTTPResponseHead? {
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish() }
    try! channel.pipeline.syncOperations.addHandlers([
        HTTPRequestEncoder(),
        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)),
    ])
    try! channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: isHead ? .HEAD : .GET, uri: "/")))
    _ = try? channel.readOutbound(as: ByteBuffer.self)
    do {
        try channel.writeInbound(bytes)
    } catch {
        return nil
    }
    guard case .head(let head)? = try? channel.readInbound(as: HTTPClientResponsePart.self) else { return nil }
    return head
}

func checkRelayed(_ upstream: HTTPResponseHead, headers: HTTPHeaders, extra: [(String, String)], isHead: Bool, http10: Bool,
                  close: Bool, paid: Bool) {
    var buffer = ByteBuffer()
    let framing = HTTPWire.writeRelayedHead(status: upstream.status, upstream: headers, extra: extra, requestID: "fuzz-request",
                                            isHead: isHead, clientIsHTTP10: http10, close: close, into: &buffer)
    let text = String(buffer: buffer)
    guard let relayed = readBack(buffer, isHead: isHead) else {
        require(false, "relayed head refused by NIO: \(text.debugDescription) from \(upstream)")
        return
    }
    require(relayed.status.code == upstream.status.code, "status \(upstream.status.code) relayed as \(relayed.status.code)")
    let fields = relayed.headers
    let listed = HTTPWire.connectionListed(upstream.headers)
    let gatewaySet = ["x-request-id", "transfer-encoding", "connection"]
        + (paid ? ["cache-control", "vary", "access-control-allow-origin", "access-control-expose-headers", "payment-response"] : [])
    for (name, _) in fields where !gatewaySet.contains(name.lowercased()) {
        let lower = name.lowercased()
        require(!hopByHop.contains(lower), "hop-by-hop \(name) relayed: \(text.debugDescription)")
        require(!listed.contains(lower), "Connection-listed \(name) relayed: \(text.debugDescription)")
    }
    let lengths = fields["content-length"], encodings = fields["transfer-encoding"]
    require(lengths.count <= 1 && (lengths.isEmpty || encodings.isEmpty), "framing fields \(lengths) \(encodings): \(text.debugDescription)")
    switch framing {
    case .chunked: require(encodings == ["chunked"] && !http10, "chunked framing without its field: \(text.debugDescription)")
    case .length: require(lengths.count == 1, "length framing without Content-Length: \(text.debugDescription)")
    case .untilClose: require(http10 && fields["connection"].contains("close"), "read-until-close without Connection: close: \(text.debugDescription)")
    case .none: require(encodings.isEmpty, "no body, yet Transfer-Encoding: \(text.debugDescription)")
    }
    if close { require(fields["connection"].contains("close"), "closing without Connection: close: \(text.debugDescription)") }
    require(!fields["x-request-id"].isEmpty, "no X-Request-Id: \(text.debugDescription)")
    let receipts = fields["payment-response"] + fields["x-payment-response"]
    require(paid ? receipts == [receipt] : receipts.isEmpty, "receipts \(receipts) relayed (paid: \(paid)): \(text.debugDescription)")
    require(fields["payment-required"].isEmpty, "an upstream PAYMENT-REQUIRED relayed: \(text.debugDescription)")
}

Fuzzer.run { bytes in
    var input = FuzzInput(bytes)
    let flags = input.byte()
    let isHead = flags & 1 != 0
    let http10 = flags & 2 != 0
    let close = flags & 4 != 0
    let caching: PaidResponseCaching = flags & 8 != 0 ? .upstream : .private
    let piece = max(1, Int(input.byte()))
    let sent = input.rest()

    let channel = EmbeddedChannel()
    let connection = UpstreamConnection(pool: pool, origin: pool.origin!)
    let collector = Collector()
    try! channel.pipeline.syncOperations.addHandlers([
        HTTPRequestEncoder(), ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)), connection,
    ])
    try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
    connection.delegate = collector
    connection.write(.head(HTTPRequestHead(version: .http1_1, method: isHead ? .HEAD : .GET, uri: "/")))
    connection.write(.end(nil))
    connection.flush()
    var offset = 0
    while offset < sent.count, channel.isActive {
        let end = min(sent.count, offset + piece)
        do {
            try channel.writeInbound(ByteBuffer(bytes: sent[offset..<end]))
        } catch {
            break
        }
        offset = end
    }
    _ = try? channel.close().wait()
    // An embedded channel takes its handlers out of the pipeline in a task on its loop: without
    // running it, the channel, its pipeline and the handler that holds the channel keep each other
    // alive (~10 KB per input, the memory growth of the first long run).
    channel.embeddedEventLoop.run()
    // The exchange keeps the connection to the end here, so it hears of the close (or the error) once.
    require(collector.failures == 1, "the connection's end reported \(collector.failures) times")
    require(collector.ends <= collector.heads.count, "\(collector.heads.count) heads, \(collector.ends) ends")

    for head in collector.heads {
        // Anything else is answered 502 and never relayed (the connection reports a failure).
        require(ReverseProxy.isRelayableStatus(head.status.code), "status \(head.status.code) reached the exchange")
        // As `GatewayHandler` takes a head: the gateway's own fields go first.
        let headers = ReverseProxy.withoutGatewayOwnedResponseFields(head.headers)
        for (name, _) in headers { require(!ReverseProxy.isGatewayOwnedResponseField(name), "gateway-owned \(name) kept") }
        guard head.status != .switchingProtocols else { continue }  // answered 502, never relayed
        checkRelayed(head, headers: headers, extra: [], isHead: isHead, http10: http10, close: close, paid: false)
        let paid = PaidResponseHeaders.rewrite(headers, extra: [("PAYMENT-RESPONSE", receipt)], caching: caching, allowOrigin: "*")
        if caching == .private {
            require(paid["cache-control"] == [PaidResponseHeaders.cacheControl], "paid answer cache fields \(paid["cache-control"])")
        }
        checkRelayed(head, headers: paid, extra: [], isHead: isHead, http10: http10, close: close, paid: true)
    }
}

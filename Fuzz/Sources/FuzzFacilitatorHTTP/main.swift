// The HTTP/1 response path of the facilitator client: a settle call on a pooled connection
// (`HTTP1Client`'s exchange and connection handler over NIO's response decoder, as `connect`
// builds the pipeline), fed the facilitator's answer in pieces, then the connection closes.
//
// Input: byte 0 the size of the pieces; byte 1 the body cap (so that small answers reach it);
// the rest is what the facilitator sends. Properties, checked against NIO's decoder reading the
// same bytes on its own (the reference):
// - the call always ends once the connection has closed (no answer leaves it waiting);
// - success only for a complete 2xx answer, with exactly its body, within the cap;
// - `.httpStatus(n)` only when the first answer's status is n and not 2xx (a redirect is not
//   followed here: `maxRedirects` is 0, and a settle call is never sent again);
// - `.malformedResponse` only for a 2xx answer over the cap; never `.timeout` (no time passes).
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOSSL
@testable import X402Facilitator
import FuzzSupport

let origin = HTTPOrigin(tls: false, authority: "127.0.0.1:4021")!

struct Reference {
    var status: Int?
    var body: [UInt8] = []
    var ended = false
}

/// NIO's decoder alone over the same bytes: the first final answer.
func reference(_ sent: [UInt8]) -> Reference {
    let channel = EmbeddedChannel()
    // Closed below: `finish()` alone would throw "already closed" before running the loop's task
    // that takes the handlers out, and the channel would keep itself alive.
    defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
    try! channel.pipeline.syncOperations.addHandlers([
        HTTPRequestEncoder(),
        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop)),
    ])
    try! channel.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: "/settle")))
    var result = Reference()
    _ = try? channel.writeInbound(ByteBuffer(bytes: sent))
    _ = try? channel.close().wait()
    while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
        switch part {
        case .head(let head): if result.status == nil { result.status = Int(head.status.code) }
        case .body(let body): if !result.ended { result.body += Array(body.readableBytesView) }
        case .end: result.ended = true
        }
        if result.ended { break }
    }
    return result
}

Fuzzer.run { bytes in
    var input = FuzzInput(bytes)
    let piece = max(1, Int(input.byte()))
    let cap = Int(input.byte()) * 16
    let sent = input.rest()

    let loop = EmbeddedEventLoop()
    var configuration = HTTP1Client.Configuration(timeout: .seconds(5), connectTimeout: .seconds(1),
                                                  tls: TLSConfiguration.makeClientConfiguration())
    configuration.maxRedirects = 0
    configuration.maxResponseBodyBytes = cap
    let client = HTTP1Client(home: origin, configuration: configuration, eventLoopGroup: loop)
    let pool = IdleConnections<HTTP1Connection>(idleTimeout: .seconds(60), maxPerOrigin: 1)
    let channel = EmbeddedChannel(loop: loop)
    let connection = HTTP1Connection(origin: origin)
    var encoding = HTTPRequestEncoder.Configuration()
    encoding.automaticallySetFramingHeaders = false
    try! channel.pipeline.syncOperations.addHandlers([
        HTTPRequestEncoder(configuration: encoding),
        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop)),
        connection,
    ])
    try! channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4021)).wait()
    connection.pool = pool
    pool.release(connection)

    let promise = loop.makePromise(of: HTTP1Response.self)
    var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/settle")
    head.headers.add(name: "Host", value: origin.hostHeader)
    head.headers.add(name: "Content-Length", value: "2")
    let exchange = HTTP1Exchange(client: client, pool: NIOLoopBoundBox(pool, eventLoop: loop), head: head,
                                 body: ByteBuffer(string: "{}"), origin: origin, retryable: false, anyStatus: false,
                                 deadline: .now() + .seconds(5), promise: promise)
    var outcome: Result<HTTP1Response, any Error>?
    promise.futureResult.assumeIsolated().whenComplete { outcome = $0 }
    exchange.start()
    loop.run()
    var offset = 0
    while offset < sent.count, channel.isActive {
        let end = min(sent.count, offset + piece)
        _ = try? channel.writeInbound(ByteBuffer(bytes: sent[offset..<end]))
        loop.run()
        offset = end
    }
    _ = try? channel.close().wait()
    loop.run()

    guard let outcome else {
        require(false, "the call did not end after the connection closed")
        return
    }
    let expected = reference(sent)
    switch outcome {
    case .success(let response):
        require((200..<300).contains(response.status) && expected.status == response.status && expected.ended,
                "success \(response.status) for \(expected)")
        require(Array(response.body.readableBytesView) == expected.body, "body differs from the answer's")
        require(response.body.readableBytes <= cap, "body of \(response.body.readableBytes) bytes over the cap \(cap)")
    case .failure(let failure as FacilitatorFailure):
        switch failure {
        case .httpStatus(let status):
            require(expected.status == status && !(200..<300).contains(status), ".httpStatus(\(status)) for \(expected)")
        case .malformedResponse:
            require(expected.status.map { (200..<300).contains($0) } == true, ".malformedResponse for \(expected)")
        case .unreachable:
            break
        case .timeout:
            require(false, ".timeout without time passing")
        }
    case .failure(let error):
        require(false, "unexpected error \(error)")
    }
    _ = try? loop.syncShutdownGracefully()
}

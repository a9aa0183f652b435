import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

// MARK: - Streamed upto: relayed with a hold-back, settled at the end

extension GatewayHandler {
    /// Sends the response head and relays the body as it comes, all but its last `limit` bytes;
    /// succeeds with what was counted once the upstream's body has ended (the tail still held).
    /// The head leaves chunked (so `PAYMENT-RESPONSE` can follow as a trailer) and without
    /// `Content-Length`.
    func relayHop(_ payment: PaidExchange, status: HTTPResponseStatus, headers: HTTPHeaders, holdingBack limit: Int,
                              loop: any EventLoop) -> EventLoopFuture<StreamedBody> {
        guard let hop = payment.hop else { return loop.makeFailedFuture(ReverseProxy.Failure.unavailable("no upstream response")) }
        if let failure = hop.failure { return loop.makeFailedFuture(failure) }
        guard isCurrent(payment), let context else {
            discardHop(payment)
            return loop.makeFailedFuture(ReverseProxy.Failure.unavailable("the client connection is gone"))
        }
        var headers = headers
        headers.remove(name: "content-length")
        var buffer = context.channel.allocator.buffer(capacity: 512)
        framing = HTTPWire.writeRelayedHead(
            status: status, upstream: headers, extra: payment.http10 ? [] : [("Trailer", X402Header.paymentResponse)],
            requestID: payment.requestID, isHead: payment.head.method == .HEAD, clientIsHTTP10: payment.http10,
            close: closeAfter(payment.closeClient), into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
        hop.heldBack = HeldBackBody(limit: limit)
        hop.meter = StreamMeter()
        let promise = loop.makePromise(of: StreamedBody.self)
        hop.streamEnd = promise
        if let body = hop.body {
            hop.body = nil
            relayHoldingBack(body, hop, context: context)
        }
        context.flush()
        if hop.ended {
            completeStream(hop)
        } else if let exchange, exchange.hop === hop {
            exchange.state.startRelaying()
            exchange.connection?.read()
        } else {
            hop.fail(.unavailable("upstream failed mid-response"))
        }
        return promise.futureResult
    }

    /// One part of a streamed upto body: counted, then relayed but for the hold-back.
    func relayHoldingBack(_ body: ByteBuffer, _ hop: Hop, context: ChannelHandlerContext) {
        hop.meter?.feed(body.readableBytesView)
        for part in hop.heldBack?.append(body) ?? [] { _ = writeBody(part, context: context) }
    }

    /// The upstream's body has ended: the flow gets what was counted (and settles).
    func completeStream(_ hop: Hop) {
        guard let promise = hop.streamEnd else { return }
        hop.streamEnd = nil
        promise.succeed(StreamedBody(bytes: hop.meter?.bytes ?? 0, lastJSONEvent: hop.meter?.lastJSONEvent))
    }

    /// The flow's end of a streamed upto answer: the tail and the receipt (a trailer) once settled,
    /// else the connection closes with the tail unsent (the head is out: a truncated body is the
    /// only way left to say it).
    func paidStreamFinish(_ end: PaidResult.StreamEnd, _ payment: PaidExchange) {
        let hop = payment.hop
        payment.hop = nil
        guard isCurrent(payment), let context else {
            finishPayment(payment)
            return
        }
        switch end {
        case .release(let trailer):
            var tail = hop?.heldBack
            for part in tail?.drain() ?? [] { _ = writeBody(part, context: context) }
            if framing == .chunked {
                var last = context.channel.allocator.buffer(capacity: 256)
                last.writeStaticString("0\r\n")
                if let (name, value) = trailer { last.writeString("\(name): \(value)\r\n") }
                last.writeStaticString("\r\n")
                context.write(wrapOutboundOut(last), promise: nil)
                framing = .none
            }
            endRelayedBody(close: closeAfter(payment.closeClient), context: context)
        case .abort:
            framing = .none
            state.closeNow()
            context.flush()
            context.close(promise: nil)
        }
        finishPayment(payment)
    }
}

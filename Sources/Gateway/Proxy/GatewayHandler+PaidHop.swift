import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

// MARK: - The paid path's upstream hop

extension GatewayHandler {
    /// A paid request's request to the upstream, over the free path's pooled connections on this
    /// loop. The response head goes to the payment flow; the body is held (read on only while it is
    /// small) until the flow collects it, relays it, or drops it.
    final class Hop {
        static let holdLimit = 64 * 1024
        let payment: PaidExchange
        var head: EventLoopPromise<HTTPResponseHead>?
        var collect: (limit: Int, promise: EventLoopPromise<ByteBuffer>)?
        /// Body read before the flow decided.
        var body: ByteBuffer?
        /// The upstream response has been read to the end (its connection is back in the pool).
        var ended = false
        /// The upstream failed after the head; a later `collect` fails with this.
        var failure: ReverseProxy.Failure?
        /// Streamed upto: the body relayed but its last bytes (``relayHop``), counted, and the flow
        /// waiting for its end.
        var heldBack: HeldBackBody?
        var meter: StreamMeter?
        var streamEnd: EventLoopPromise<StreamedBody>?

        init(payment: PaidExchange, head: EventLoopPromise<HTTPResponseHead>) {
            self.payment = payment
            self.head = head
        }

        /// Completes whatever the flow is waiting for with `failure`.
        func fail(_ failure: ReverseProxy.Failure) {
            self.failure = failure
            let (head, collect, streamEnd) = (self.head, self.collect, self.streamEnd)
            self.head = nil
            self.collect = nil
            self.streamEnd = nil
            head?.fail(failure)
            collect?.promise.fail(failure)
            streamEnd?.fail(failure)
        }
    }

    func startHop(
        _ payment: PaidExchange, _ head: HTTPRequestHead, path: CanonicalPath, upstream: Upstream,
        forwarding: ReverseProxy.Forwarding, body: ByteBuffer?
    ) -> EventLoopFuture<HTTPResponseHead>? {
        guard isCurrent(payment), let context, exchange == nil, payment.hop == nil else { return nil }
        let exchange = Exchange(requestID: payment.requestID, head: head, counters: payment.snapshot.routeMetrics[payment.decision.routeIndex],
                                upstream: upstream.config, connections: upstream.connections, mode: .paidHop, hasBody: body != nil,
                                now: context.eventLoop.now)
        let hop = Hop(payment: payment, head: context.eventLoop.makePromise())
        exchange.hop = hop
        payment.hop = hop
        var headers = ReverseProxy.upstreamHeaders(head.headers, upstream: upstream.config, forwarding: forwarding)
        if let body {
            headers.add(name: "Content-Length", value: String(body.readableBytes))
        } else if head.headers.contains(name: "content-length") || head.headers.contains(name: "transfer-encoding") {
            headers.add(name: "Content-Length", value: "0")
        }
        let requestHead = HTTPRequestHead(
            version: .http1_1, method: head.method, uri: upstream.config.basePath + path.pathAndQuery, headers: headers)
        let future = hop.head!.futureResult
        launch(exchange, requestHead, body: (body.map { [.body(.byteBuffer($0))] } ?? []) + [.end(nil)], context: context)
        return future
    }

    func collectHop(_ payment: PaidExchange, limit: Int, loop: any EventLoop) -> EventLoopFuture<ByteBuffer> {
        guard let hop = payment.hop else { return loop.makeFailedFuture(ReverseProxy.Failure.unavailable("no upstream response")) }
        if let failure = hop.failure { return loop.makeFailedFuture(failure) }
        if (hop.body?.readableBytes ?? 0) > limit {
            discardHop(payment)
            return loop.makeFailedFuture(ReverseProxy.Failure.unavailable("response body over \(limit) bytes"))
        }
        if hop.ended {
            let body = hop.body ?? ByteBuffer()
            hop.body = nil
            return loop.makeSucceededFuture(body)
        }
        let promise = loop.makePromise(of: ByteBuffer.self)
        hop.collect = (limit, promise)
        if let exchange, exchange.hop === hop { exchange.connection?.read() }
        return promise.futureResult
    }

    /// Body read while the flow decides (or collects); over the collect limit the hop fails.
    func hold(_ body: ByteBuffer, _ hop: Hop, _ exchange: Exchange) {
        var body = body
        if hop.body == nil { hop.body = body } else { hop.body!.writeBuffer(&body) }
        if let (limit, _) = hop.collect, hop.body!.readableBytes > limit {
            hop.fail(.unavailable("response body over \(limit) bytes"))
            discardHop(hop.payment)
        }
    }

    /// Drops the hop's response (closing its connection if it is still being read).
    func discardHop(_ payment: PaidExchange) {
        guard let hop = payment.hop else { return }
        payment.hop = nil
        hop.body = nil
        if let exchange, exchange.hop === hop {
            self.exchange = nil
            exchange.state.abandon()
            exchange.connection?.close()
            exchange.connection = nil
        }
        if hop.head != nil || hop.collect != nil { hop.fail(.unavailable("discarded")) }
    }
}

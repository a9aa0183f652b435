import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

/// ``UpstreamHop`` for ``PaidRequestHandler``: each step runs on the client connection's loop.
struct ConnectionHop: UpstreamHop {
    let handler: NIOLoopBound<GatewayHandler>
    let payment: NIOLoopBound<GatewayHandler.PaidExchange>

    func send(_ head: HTTPRequestHead, path: CanonicalPath, to upstream: Upstream, forwarding: ReverseProxy.Forwarding,
              body: ByteBuffer?) async throws(ReverseProxy.Failure) -> HTTPResponseHead {
        let (handler, payment) = (self.handler, self.payment)
        return try await Self.value(handler.eventLoop.flatSubmit {
            handler.value.startHop(payment.value, head, path: path, upstream: upstream, forwarding: forwarding, body: body)
                ?? handler.eventLoop.makeFailedFuture(ReverseProxy.Failure.unavailable("the client connection is gone"))
        })
    }

    func collect(upTo limit: Int) async throws(ReverseProxy.Failure) -> ByteBuffer {
        let (handler, payment) = (self.handler, self.payment)
        return try await Self.value(handler.eventLoop.flatSubmit {
            handler.value.collectHop(payment.value, limit: limit, loop: handler.eventLoop)
        })
    }

    func relay(status: HTTPResponseStatus, headers: HTTPHeaders, holdingBack limit: Int) async throws(ReverseProxy.Failure)
        -> StreamedBody
    {
        let (handler, payment) = (self.handler, self.payment)
        return try await Self.value(handler.eventLoop.flatSubmit {
            handler.value.relayHop(payment.value, status: status, headers: headers, holdingBack: limit, loop: handler.eventLoop)
        })
    }

    private static func value<T: Sendable>(_ future: EventLoopFuture<T>) async throws(ReverseProxy.Failure) -> T {
        do {
            return try await future.get()
        } catch let failure as ReverseProxy.Failure {
            throw failure
        } catch {
            throw .unavailable("\(error)")
        }
    }
}

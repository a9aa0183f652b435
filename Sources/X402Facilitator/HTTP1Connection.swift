import NIOCore
import NIOHTTP1

/// The last handler of a facilitator connection: writes the owning exchange's request, relays the
/// response parts to it, and while idle watches for the server closing the connection (anything
/// arriving unasked closes it too). One timer per connection serves both the exchange's deadline
/// and the idle timeout; it is re-armed lazily, so back-to-back calls schedule nothing.
final class HTTP1Connection: ChannelInboundHandler, RemovableChannelHandler, IdleConnection {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let origin: HTTPOrigin
    /// The idle list this connection returns to; set when its first exchange takes it.
    var pool: HTTP1IdleList?
    private var context: ChannelHandlerContext?
    private var exchange: HTTP1Exchange?
    private var isClosed = false
    private var requestWritten = false
    private(set) var idleSince = NIODeadline.now()
    private var idleTimeout = TimeAmount.seconds(60)
    private var timer: Scheduled<Void>?
    private var timerDeadline = NIODeadline.distantFuture

    init(origin: HTTPOrigin) {
        self.origin = origin
    }

    var isUsable: Bool { !isClosed && context?.channel.isActive == true }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Writes one request for `exchange`, which from now on gets the response parts.
    func send(_ head: HTTPRequestHead, body: ByteBuffer?, for exchange: HTTP1Exchange) {
        guard let context, !isClosed else {
            exchange.connectionFailed(nil)
            return
        }
        self.exchange = exchange
        requestWritten = false
        arm(exchange.deadline)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenComplete { result in
            switch result {
            case .success: self.requestWritten = true
            case .failure(let error):
                // NIO fails the write before it reports the closed channel, and `close()` detaches
                // the exchange: tell it here, or nothing ever would.
                let failed = self.exchange
                self.close()
                failed?.connectionFailed(error)
            }
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
    }

    /// The exchange read its response to the end: back to the pool if both sides keep it alive.
    func exchangeEnded(keepAlive: Bool) {
        exchange = nil
        if keepAlive && requestWritten, let pool {
            pool.release(self)
        } else {
            close()
        }
    }

    /// The exchange gives up on this connection (deadline, cancellation, oversized answer).
    func abandon() {
        exchange = nil
        close()
    }

    func enterIdle(timeout: TimeAmount) {
        idleSince = .now()
        idleTimeout = timeout
        arm(idleSince + timeout)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        exchange = nil
        timer?.cancel()
        timer = nil
        context?.close(promise: nil)
    }

    /// Closes the connection; the future completes when it is closed (nil if it was already).
    func closeFuture() -> EventLoopFuture<Void>? {
        guard !isClosed, let channel = context?.channel else { return nil }
        close()
        return channel.closeFuture
    }

    /// Makes sure the timer fires no later than `deadline`.
    private func arm(_ deadline: NIODeadline) {
        if timer != nil && timerDeadline <= deadline { return }
        timer?.cancel()
        guard let context else { return }
        timerDeadline = deadline
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { self.timerFired() }
    }

    private func timerFired() {
        timer = nil
        guard !isClosed else { return }
        let now = NIODeadline.now()
        if let exchange {
            if exchange.deadline <= now {
                abandon()
                exchange.deadlinePassed()
            } else {
                arm(exchange.deadline)
            }
        } else if idleSince + idleTimeout <= now {
            pool?.remove(self)
            close()
        } else {
            arm(idleSince + idleTimeout)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange else {
            // Nothing is asked of an idle connection: whatever arrives makes it unusable.
            pool?.remove(self)
            close()
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head): exchange.responseHead(head)
        case .body(let body): exchange.responseBody(body)
        case .end: exchange.responseEnd()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let exchange = self.exchange
        if exchange == nil { pool?.remove(self) }
        close()
        exchange?.connectionFailed(nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let exchange = self.exchange
        if exchange == nil { pool?.remove(self) }
        close()
        exchange?.connectionFailed(error)
    }
}

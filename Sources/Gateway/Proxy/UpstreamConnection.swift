import GatewayCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import X402
import X402Facilitator

/// What an upstream connection reports to the exchange using it (all on the shared event loop).
protocol UpstreamExchangeDelegate: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    func upstreamResponseBody(_ body: ByteBuffer)
    func upstreamResponseEnd()
    func upstreamReadComplete()
    func upstreamWritabilityChanged()
    /// The connection closed or failed; `error` is nil for a plain close.
    func upstreamFailed(_ error: (any Error)?)
}

/// The last handler of an upstream connection's pipeline: relays response parts to the exchange
/// that owns the connection, or, while idle, watches for the upstream closing it.
final class UpstreamConnection: ChannelInboundHandler, RemovableChannelHandler, IdleConnection {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let pool: UpstreamConnections
    let origin: HTTPOrigin
    private var context: ChannelHandlerContext?
    private(set) var channel: (any Channel)!
    weak var delegate: (any UpstreamExchangeDelegate)?
    private var idleTimer: Scheduled<Void>?
    private var isIdle = false
    private(set) var idleSince = NIODeadline.now()
    private var idleTimeout = TimeAmount.seconds(60)
    private var isClosed = false

    /// The upstream answered with a status outside 100–599 (see ``ReverseProxy/isRelayableStatus(_:)``).
    struct InvalidStatus: Error, CustomStringConvertible {
        let code: UInt
        var description: String { "the upstream answered with status \(code), outside 100–599" }
    }

    init(pool: UpstreamConnections, origin: HTTPOrigin) {
        self.pool = pool
        self.origin = origin
    }

    var isUsable: Bool { !isClosed && channel?.isActive == true }
    var isWritable: Bool { channel?.isWritable == true }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func write(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    func read() { context?.read() }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        delegate = nil
        idleTimer?.cancel()
        idleTimer = nil
        context?.close(promise: nil)
    }

    /// Idle from now; closed after `timeout` unless reused. The check is armed at most once per
    /// `timeout` (a connection reused back to back schedules nothing).
    func enterIdle(timeout: TimeAmount) {
        isIdle = true
        delegate = nil
        idleSince = .now()
        idleTimeout = timeout
        guard let context else { return }
        if idleTimer == nil { scheduleIdleCheck(context, at: idleSince + timeout) }
        // Read while idle so that a close by the upstream is noticed (and anything unasked closes it).
        context.read()
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        idleTimer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            self.idleTimer = nil
            guard self.isIdle, !self.isClosed else { return }
            let due = self.idleSince + self.idleTimeout
            if due <= .now() {
                self.pool.remove(self)
                self.close()
            } else {
                self.scheduleIdleCheck(context, at: due)
            }
        }
    }

    func leaveIdle() {
        isIdle = false
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard let delegate, !isIdle else {
            // Nothing is asked of an idle connection: whatever arrives makes it unusable.
            if isIdle { pool.remove(self) }
            close()
            return
        }
        switch part {
        case .head(let head) where !ReverseProxy.isRelayableStatus(head.status.code):
            // Not HTTP: never relayed, and the connection is not reused (502 to the client).
            self.delegate = nil
            close()
            delegate.upstreamFailed(InvalidStatus(code: head.status.code))
        case .head(let head): delegate.upstreamResponseHead(head)
        case .body(let body): delegate.upstreamResponseBody(body)
        case .end: delegate.upstreamResponseEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        delegate?.upstreamWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        idleTimer?.cancel()
        idleTimer = nil
        if isIdle { pool.remove(self) }
        let delegate = self.delegate
        self.delegate = nil
        delegate?.upstreamFailed(nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let delegate = self.delegate
        self.delegate = nil
        if isIdle { pool.remove(self) }
        close()
        delegate?.upstreamFailed(error)
    }
}

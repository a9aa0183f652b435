import NIOCore
import NIOHTTP1

/// A WebSocket upgrade on a free route, proxied (issue 14): the handshake goes to the upstream on a
/// connection of its own (never pooled), and once the upstream answers `101 Switching Protocols`
/// both connections carry bytes both ways, unread and unchanged, through a pair of
/// ``TunnelGlue`` handlers:
///
/// - back-pressure both ways: a side reads only while the other side can take what it writes, so
///   neither connection's buffers grow past NIO's write watermarks;
/// - an idle bound: no byte either way for `limits.idleTimeout` closes both (WebSocket clients and
///   servers ping well within that when they mean to stay);
/// - either side closing (or half-closing) closes the other once what it had sent is written, and
///   graceful shutdown closes every tunnel at once (a WebSocket would otherwise hold it to the
///   end of the grace period).
///
/// An upstream that answers the handshake with anything else has that answer (status, fields, a
/// body of at most ``maxRefusalBody`` bytes) relayed, and the client connection closes.
enum WebSocketTunnel {
    /// The largest body of an upstream's refusal of the handshake relayed to the client.
    static let maxRefusalBody = 64 * 1024

    /// Whether `head` asks for a WebSocket (RFC 6455 §4.1): `GET`, HTTP/1.1, `Upgrade: websocket`
    /// alone, `Connection` naming `upgrade`, and a `Sec-WebSocket-Key`.
    static func isWebSocketHandshake(_ head: HTTPRequestHead) -> Bool {
        guard head.method == .GET, head.version == .http1_1, head.headers.contains(name: "sec-websocket-key") else { return false }
        let upgrade = head.headers["upgrade"]
        guard upgrade.count == 1, upgrade[0].utf8.count == 9, HTTPWire.nameEquals(upgrade[0], "websocket") else { return false }
        return HTTPWire.connectionListed(head.headers).contains("upgrade")
    }

    /// How the upstream answered the handshake.
    enum Answer {
        /// `101`: the connection is switched; its head (fields to relay).
        case switched(HTTPResponseHead)
        /// Anything else, read to its end.
        case refused(HTTPResponseHead, ByteBuffer)
    }

    enum Failure: Error {
        case timeout
        case refusalTooLarge
        case closed
    }
}

/// The last handler of an upstream connection opened for a WebSocket handshake: writes the
/// request, then reports the answer's head (`101`) or the whole answer (anything else) through
/// `answered`, once. The caller then takes the connection over (``TunnelGlue``).
final class TunnelHandshake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let request: HTTPRequestHead
    private var answered: ((Result<WebSocketTunnel.Answer, any Error>) -> Void)?
    private var refusal: (head: HTTPResponseHead, body: ByteBuffer)?
    private var deadline: Scheduled<Void>?
    private let timeout: TimeAmount

    init(request: HTTPRequestHead, timeout: TimeAmount, answered: @escaping (Result<WebSocketTunnel.Answer, any Error>) -> Void) {
        self.request = request
        self.timeout = timeout
        self.answered = answered
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { send(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context)
        context.fireChannelActive()
    }

    private func send(_ context: ChannelHandlerContext) {
        guard deadline == nil else { return }
        deadline = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: timeout) {
            self.finish(.failure(WebSocketTunnel.Failure.timeout))
            context.close(promise: nil)
        }
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head) where head.status == .switchingProtocols:
            finish(.success(.switched(head)))
        case .head(let head) where head.status.code < 200:
            break  // another interim answer: the final one follows
        case .head(let head):
            refusal = (head, context.channel.allocator.buffer(capacity: 0))
        case .body(var body):
            guard refusal != nil else { return }
            if refusal!.body.readableBytes + body.readableBytes > WebSocketTunnel.maxRefusalBody {
                finish(.failure(WebSocketTunnel.Failure.refusalTooLarge))
                context.close(promise: nil)
                return
            }
            refusal!.body.writeBuffer(&body)
        case .end:
            if let refusal { finish(.success(.refused(refusal.head, refusal.body))) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if answered != nil { context.read() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(WebSocketTunnel.Failure.closed))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failure(error))
        context.close(promise: nil)
    }

    private func finish(_ result: Result<WebSocketTunnel.Answer, any Error>) {
        deadline?.cancel()
        guard let answered else { return }
        self.answered = nil
        answered(result)
    }
}

/// What a tunnel's two ends share (both on one event loop): when a byte last went either way, and
/// what to do once it ends.
final class TunnelActivity {
    var last: NIODeadline
    var ended = false
    private let onEnd: () -> Void

    init(now: NIODeadline, onEnd: @escaping () -> Void) {
        self.last = now
        self.onEnd = onEnd
    }

    func end() {
        guard !ended else { return }
        ended = true
        onEnd()
    }
}

/// One end of a tunnel: what it reads is written to its partner's connection, as is; it reads only
/// while the partner's connection is writable. Closing one end closes the other after its writes.
/// The client end also runs the idle check.
final class TunnelGlue: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var partner: TunnelGlue?
    private var context: ChannelHandlerContext?
    private var readHeld = false
    private let activity: TunnelActivity
    private let idleTimeout: TimeAmount?
    private var idleCheck: Scheduled<Void>?

    /// `idleTimeout`: on one end only (it checks for both).
    init(activity: TunnelActivity, idleTimeout: TimeAmount?) {
        self.activity = activity
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let idleTimeout { scheduleIdleCheck(context, at: context.eventLoop.now + idleTimeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        self.context = nil
    }

    private var isWritable: Bool { context?.channel.isWritable ?? false }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity.last = context.eventLoop.now
        partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.isWritable == true {
            context.read()
        } else {
            readHeld = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerWritable() }
        context.fireChannelWritabilityChanged()
    }

    private func partnerWritable() {
        guard readHeld, let context else { return }
        readHeld = false
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeBoth()
        context.fireChannelInactive()
    }

    /// The peer closed its sending side (client connections allow half-closure), or the gateway is
    /// shutting down (`ChannelShouldQuiesceEvent`): the tunnel ends.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .inputClosed || event is ChannelShouldQuiesceEvent {
            closeBoth()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeBoth()
    }

    /// Closes this end now and the partner once what was written to it is out.
    private func closeBoth() {
        idleCheck?.cancel()
        let partner = self.partner
        self.partner = nil
        partner?.partner = nil
        context?.close(promise: nil)
        if let other = partner?.context {
            let channel = other.channel
            other.writeAndFlush(NIOAny(channel.allocator.buffer(capacity: 0))).whenComplete { _ in channel.close(promise: nil) }
        }
        activity.end()
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        idleCheck = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            guard let idleTimeout = self.idleTimeout, !self.activity.ended else { return }
            let due = self.activity.last + idleTimeout
            if due <= context.eventLoop.now {
                self.closeBoth()
            } else {
                self.scheduleIdleCheck(context, at: due)
            }
        }
    }
}

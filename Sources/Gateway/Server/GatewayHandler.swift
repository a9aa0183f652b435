import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

/// The connection handler of the main listener, right after NIO's HTTP/1 request decoder. It
/// writes responses as bytes itself (see ``HTTPWire``) and handles one request at a time:
/// - the gateway's own answers (402 challenges, 400s, 404s, preflights) are written from the
///   pipeline, on the connection's event loop, without any I/O or task;
/// - free requests are proxied at the NIO level (the `Exchange` extension below): the upstream
///   connection lives on the same event loop and every part is relayed synchronously;
/// - paid requests have their (bounded) body read, then run ``PaidRequestHandler`` in a task, whose
///   result is written back on the event loop.
///
/// The rules live in two value types this handler drives and whose actions it performs:
/// ``ClientConnectionStateMachine`` for the connection (requests pipelined behind one in flight are
/// queued and reading stops until its answer has been written, so answers keep their order; read
/// holds and their release; the idle timeout; graceful shutdown, `ChannelShouldQuiesceEvent`: close
/// once the request in flight is answered; half-closure: a client that closed its sending side
/// still gets its answers) and ``UpstreamExchangeStateMachine`` for each request to an upstream
/// (buffering until connected, the stale-connection retry, 1xx relay, response timeouts, the paid
/// hop's held body). The handler keeps the I/O: the in-flight objects, bytes, timers, connections.
///
/// It is a duplex handler only to see `read` (outbound) events: holding them is how reading stops.
///
/// A request asking for a protocol upgrade (or `CONNECT`) is the last one on its connection: NIO's
/// decoder stops parsing after it and would keep every byte that follows. WebSocket and other
/// upgrades are not proxied: a priced route answers its 402 (or 400, 404) and a free one 501, and
/// the connection closes at once, nothing more read. An `Upgrade: h2c` offer alone is ignored, as
/// RFC 9110 §7.8 allows: the request is served over HTTP/1.1, then the connection closes; nothing
/// is read after the request's end.
final class GatewayHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let box: SnapshotBox
    let logger: Logger
    let metrics: GatewayMetrics
    let paid: PaidRequestHandler
    let idleTimeout: TimeAmount
    private let headerTimeout: TimeAmount
    /// Tells this handler when a request head starts arriving (`limits.headerTimeout`).
    let headWatch: RequestHeadWatch?
    let connections: ConnectionLimiter
    /// This connection's admission under the connection limits, while it holds a place.
    var admitted: ConnectionLimiter.Admission?
    /// The upstream connection of a WebSocket handshake in progress (closed if the client leaves).
    var tunnelUpstream: (any Channel)?
    /// Why this connection was refused a place: its first request is answered 503, then it closes.
    private var refused: ConnectionLimiter.Admission?
    /// The answer to an intercepted request, written when its (discarded) body has been read.
    var pending: (answer: EncodedAnswer, requestID: String, close: Bool, http10: Bool)?
    /// The connection's rules: queueing, read holds, closing, the idle timeout.
    var state: ClientConnectionStateMachine
    private var idleCheck: Scheduled<Void>?
    private var idleCheckDeadline = NIODeadline.distantFuture
    /// The free request being proxied at the NIO level, if any.
    var exchange: Exchange?
    /// The paid request in flight, if any.
    var payment: PaidExchange?
    /// The request waiting for its free allowance to be counted in the store, if any.
    var admission: AdmissionWait?
    /// How the body of the response being written is framed.
    var framing = HTTPWire.Framing.none
    /// The response-timeout check of the exchanges on this connection (see `scheduleExchangeTimer`).
    var exchangeTimer: Scheduled<Void>?
    var exchangeTimerDeadline = NIODeadline.distantPast
    var context: ChannelHandlerContext?
    /// The client's IP address as text, read once per connection.
    private var peer: String??

    init(
        box: SnapshotBox, logger: Logger, metrics: GatewayMetrics, paid: PaidRequestHandler, connections: ConnectionLimiter,
        idleTimeout: Duration, headerTimeout: Duration, headWatch: RequestHeadWatch?
    ) {
        self.box = box
        self.logger = logger
        self.metrics = metrics
        self.paid = paid
        self.connections = connections
        self.idleTimeout = .milliseconds(idleTimeout.wholeMilliseconds)
        self.headerTimeout = .milliseconds(headerTimeout.wholeMilliseconds)
        self.headWatch = headWatch
        self.state = ClientConnectionStateMachine(now: .now(), idleTimeout: self.idleTimeout, headerTimeout: self.headerTimeout)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        state = ClientConnectionStateMachine(now: context.eventLoop.now, idleTimeout: idleTimeout, headerTimeout: headerTimeout)
        if context.channel.isActive { opened(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        opened(context)
        context.fireChannelActive()
    }

    /// The connection is open: admit it under the connection limits, start the idle timer.
    private func opened(_ context: ChannelHandlerContext) {
        guard admitted == nil, refused == nil else { return }
        let admission = connections.admit(context.channel.remoteAddress, limits: box.snapshot.config.limits)
        if case .admitted = admission {
            admitted = admission
            metrics.connectionOpened()
        } else {
            refused = admission
            metrics.connectionRefused(clientFull: admission == .clientFull)
        }
        scheduleIdleCheck(context, at: context.eventLoop.now + idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        teardown()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        teardown()
        context.fireChannelInactive()
    }

    private func teardown() {
        tunnelUpstream?.close(promise: nil)
        tunnelUpstream = nil
        if let admitted {
            self.admitted = nil
            connections.release(admitted)
            metrics.connectionClosed()
        }
        idleCheck?.cancel()
        idleCheck = nil
        exchangeTimer?.cancel()
        exchangeTimer = nil
        abortExchange()
        if let payment {
            self.payment = nil
            payment.gone.set()
            metrics.requestEnded()
        }
        admission?.timer?.cancel()
        admission = nil
        state.closeNow()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        perform(state.channelRead(unwrapInboundIn(data), now: context.eventLoop.now), context: context)
    }

    /// Performs what the state machine decided for a request part (read now or taken from the queue).
    private func perform(_ action: ClientConnectionStateMachine.ReadAction, context: ChannelHandlerContext) {
        switch action {
        case .start(let head):
            start(head, context: context)
        case .body(let body):
            if let exchange {
                requestBody(body, exchange)
            } else if let payment {
                paymentBody(body, payment, context: context)
            } else if let admission {
                admission.body.append(body)
            }
            // Otherwise the body of a request answered by the gateway itself: discarded.
        case .end:
            if let exchange {
                requestEnd(exchange)
            } else if let payment {
                paymentEnd(payment, context: context)
            } else if let admission {
                admission.ended = true
            } else if let (answer, requestID, close, http10) = pending {
                pending = nil
                write(answer, requestID: requestID, close: close, http10: http10, context: context)
                answerCompleted()
            }
        case .endFinished:
            // Read to its end after its answer: nothing of it is left.
            requestFinished(context: context)
        case .none:
            break
        }
    }

    /// A head that started arriving in this read and is still incomplete gets its deadline checked
    /// (most heads arrive whole: no timer is touched for them).
    func channelReadComplete(context: ChannelHandlerContext) {
        if let deadline = state.headDeadline, deadline < idleCheckDeadline { scheduleIdleCheck(context, at: deadline) }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if state.read() { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        if writable, let exchange, exchange.state.clientWritable(now: context.eventLoop.now) { exchange.connection?.read() }
        if state.writabilityChanged(isWritable: writable, now: context.eventLoop.now) { context.read() }
        context.fireChannelWritabilityChanged()
    }

    /// The upstream connection the request body goes to became ready (connected, writable) or not.
    func bodySinkChanged(ready: Bool) {
        if state.bodySinkChanged(ready: ready) { context?.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is RequestHeadWatch.HeadStarted {
            state.headBytesArrived(now: context.eventLoop.now)
            return
        }
        if event is ChannelShouldQuiesceEvent {
            if state.quiesce() { context.close(promise: nil) }
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            // A half-closed client still gets the answers to what it sent. A payment in flight is
            // not settled, though: TCP cannot tell a half-close from a client that left, and a
            // client that left must not be charged (nginx treats this end of input as an abort too).
            payment?.gone.set()
            if state.inputClosed() { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError, !state.closing, state.queuedParts == 0 { abandonRequestBeingRead() }
        // (Not on a connection already gone: the decoder reports a request cut short by the close.)
        if let error = error as? HTTPParserError, state.phase == .idle, !state.closing, context.channel.isActive {
            // A request the decoder cannot read: answer it, then close (the decoder stops here).
            let tooLarge = error == .headerOverflow
            let answer = box.snapshot.responses.error(
                tooLarge ? .custom(code: 431, reasonPhrase: "Request Header Fields Too Large") : .badRequest,
                code: tooLarge ? "headers_too_large" : "bad_request",
                message: tooLarge ? "request headers exceed the limit" : "the request is not valid HTTP/1.1")
            write(answer.encoded(), requestID: RequestID.next(), close: true, http10: false, context: context)
            return
        }
        state.closeNow()
        context.close(promise: nil)
    }

    /// The decoder failed in the middle of a request body (a malformed chunk, say): the request
    /// being read is dropped, unless its answer has begun, so that it can be answered 400 instead.
    private func abandonRequestBeingRead() {
        if pending != nil {
            pending = nil
        } else if let payment, !payment.requestEnded, !payment.answeredEarly {
            self.payment = nil
            payment.gone.set()
            metrics.requestEnded()
        } else if let exchange, exchange.hop == nil, !exchange.state.requestEnded, !exchange.state.responseStarted {
            exchange.counters.record(.badRequest)
            abortExchange()  // the upstream got part of a body: its connection is closed
        } else if let admission, !admission.ended {
            admission.timer?.cancel()
            self.admission = nil
        } else {
            return
        }
        state.requestAbandoned()
    }

    /// Answers the request, or starts proxying it, or starts its payment.
    private func start(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let requestID = head.headers.first(name: "x-request-id").flatMap(RequestID.accept) ?? RequestID.next()
        let snapshot = box.snapshot
        if let refusal = limitRefusal(head, refused: refused, snapshot: snapshot) {
            pending = (refusal, requestID, true, head.version.minor == 0)
            return
        }
        if peer == nil { peer = .some(context.channel.remoteAddress?.ipAddress) }
        let remoteAddress = peer!
        var head = head
        let upgrade = RequestRules.upgrade(head)
        if upgrade == .h2cOnly {
            // Served over HTTP/1.1, the last request on this connection.
            head.headers.remove(name: "http2-settings")
            head.headers.replaceOrAdd(name: "connection", value: "close")
            state.lastRequestOnConnection()
        }
        let close = !head.isKeepAlive
        let http10 = head.version.major == 1 && head.version.minor == 0
        let decision = Routing.decide(head, peer: remoteAddress, snapshot: snapshot, logger: logger, requestID: requestID, clock: paid.clock)
        if upgrade == .refused {
            if case .forward(let name, let path, let counters, nil, nil) = decision, WebSocketTunnel.isWebSocketHandshake(head),
               let upstream = snapshot.upstreams[name] {
                startTunnel(head, path: path, upstream: upstream, counters: counters, snapshot: snapshot, requestID: requestID,
                            remoteAddress: remoteAddress, context: context)
            } else {
                refuseUpgrade(head, decision, snapshot: snapshot, requestID: requestID, context: context)
            }
            return
        }
        let expectsContinue = RequestRules.expectsContinue(head)
        switch decision {
        case .answer(let answer, let counters, let outcome):
            counters.record(outcome)
            pending = (answer, requestID, close, http10)
        case .forward(let name, let path, let counters, let pass, let free):
            guard let upstream = snapshot.upstreams[name] else {
                counters.record(.upstreamError)
                pending = (snapshot.responses.error(.badGateway, code: "upstream_unavailable", message: "upstream is not configured",
                                                    head: head.method == .HEAD).encoded(), requestID, close, http10)
                break
            }
            if expectsContinue { writeContinue(context: context) }
            startExchange(head, path: path, upstream: upstream.config, connections: upstream.connections, counters: counters,
                          snapshot: snapshot, requestID: requestID, remoteAddress: remoteAddress, continueSent: expectsContinue,
                          pass: pass, free: free, context: context)
        case .admit(let a):
            startAdmission(AdmissionWait(head: head, decision: a, snapshot: snapshot, requestID: requestID, remoteAddress: remoteAddress,
                                         expectsContinue: expectsContinue), context: context)
        case .pay(let p):
            startPayment(head, p, snapshot: snapshot, requestID: requestID, remoteAddress: remoteAddress, context: context)
            if expectsContinue, let payment, !payment.answeredEarly { writeContinue(context: context) }
        }
        // The client waits for `100 Continue` before sending its body; the gateway's own answer
        // needs no body: it goes out now, and the connection closes since the body is never read
        // (RFC 9110 §10.1.1).
        if expectsContinue, let (answer, requestID, _, http10) = pending {
            pending = nil
            write(answer, requestID: requestID, close: true, http10: http10, context: context)
        }
    }

    private static let continueBytes = ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n")

    /// The answer to a request on a connection over the connection limits (503), or with more header
    /// fields than `limits.maxHeaderCount` (431); the connection closes after it.
    private func limitRefusal(_ head: HTTPRequestHead, refused: ConnectionLimiter.Admission?, snapshot: GatewaySnapshot) -> EncodedAnswer? {
        if let refused {
            let perClient = refused == .clientFull
            var answer = snapshot.responses.error(
                .serviceUnavailable, code: perClient ? "too_many_connections_from_client" : "too_many_connections",
                message: perClient ? "too many connections from this address" : "the gateway is at its connection limit",
                head: head.method == .HEAD)
            answer.headers.add(name: "Retry-After", value: "1")
            return answer.encoded()
        }
        guard head.headers.count > snapshot.config.limits.maxHeaderCount else { return nil }
        return snapshot.responses.error(
            .custom(code: 431, reasonPhrase: "Request Header Fields Too Large"), code: "too_many_headers",
            message: "the request has more than \(snapshot.config.limits.maxHeaderCount) header fields", head: head.method == .HEAD).encoded()
    }

    /// The interim answer to `Expect: 100-continue` when the gateway will read the body.
    func writeContinue(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(Self.continueBytes), promise: nil)
    }

    /// A request asking for an upgrade that is not proxied: the answer the route would give (402,
    /// 400, 404), or 501 where it would be forwarded or paid for, then the connection closes.
    private func refuseUpgrade(
        _ head: HTTPRequestHead, _ decision: Decision, snapshot: GatewaySnapshot, requestID: String, context: ChannelHandlerContext
    ) {
        let notProxied = {
            snapshot.responses.error(
                .notImplemented, code: "upgrade_not_supported",
                message: "protocol upgrades (WebSocket, CONNECT) are not proxied by this gateway", head: head.method == .HEAD).encoded()
        }
        let answer: EncodedAnswer
        switch decision {
        case .answer(let own, let counters, let outcome):
            counters.record(outcome)
            answer = own
        case .forward(_, _, let counters, _, _):
            counters.record(.badRequest)
            answer = notProxied()
        case .admit(let a):
            snapshot.routeMetrics[a.routeIndex].record(.badRequest)
            answer = notProxied()
        case .pay(let p):
            // Refused before the payment is even decoded: nothing is verified or charged.
            snapshot.routeMetrics[p.routeIndex].record(.badRequest)
            answer = notProxied()
        }
        write(answer, requestID: requestID, close: true, http10: head.version.minor == 0, context: context)
    }

    // MARK: Writing

    /// Writes a complete answer of the gateway's own.
    func write(_ answer: EncodedAnswer, requestID: String, close: Bool, http10: Bool, context: ChannelHandlerContext) {
        let close = closeAfter(close)
        let bytes = answer.bytes(requestID: requestID, connection: close ? "close" : (http10 ? "keep-alive" : nil),
                                 allocator: context.channel.allocator)
        context.write(wrapOutboundOut(bytes), promise: nil)
        framing = .none
        endResponse(close: close, context: context)
    }

    /// Writes one part of a relayed response body, framed.
    func writeBody(_ body: ByteBuffer, context: ChannelHandlerContext) -> EventLoopFuture<Void>? {
        switch framing {
        case .none:
            return nil
        case .length, .untilClose:
            return context.write(wrapOutboundOut(body))
        case .chunked:
            guard body.readableBytes > 0 else { return nil }  // an empty chunk would end the body
            var prefix = context.channel.allocator.buffer(capacity: 10)
            prefix.writeString(String(body.readableBytes, radix: 16))
            prefix.writeStaticString("\r\n")
            context.write(wrapOutboundOut(prefix), promise: nil)
            context.write(wrapOutboundOut(body), promise: nil)
            return context.write(wrapOutboundOut(Self.crlf))
        }
    }

    private static let crlf = ByteBuffer(string: "\r\n")
    private static let lastChunk = ByteBuffer(string: "0\r\n\r\n")

    /// Ends the relayed body (the chunked terminator), flushes, and closes when asked.
    func endRelayedBody(close: Bool, context: ChannelHandlerContext) {
        if framing == .chunked { context.write(wrapOutboundOut(Self.lastChunk), promise: nil) }
        endResponse(close: close || framing == .untilClose, context: context)
        framing = .none
    }

    /// The response is written to the end: flush, and close the connection after it when asked.
    func endResponse(close: Bool, context: ChannelHandlerContext) {
        state.responseEnded(close: close, now: context.eventLoop.now)
        guard close else {
            context.flush()
            return
        }
        // Closing now would drop what is still queued for the socket; the idle timer closes a
        // connection whose last write never completes (a client that stopped reading).
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated()
            .whenComplete { _ in context.close(promise: nil) }
    }

    /// Whether the response about to be written should end the connection (see
    /// ``ClientConnectionStateMachine/closesAfterAnswer(requested:)``).
    func closeAfter(_ requested: Bool) -> Bool { state.closesAfterAnswer(requested: requested) }

    /// The answer to the request in flight is complete (its object, exchange or payment, is gone):
    /// once the request has been read to its end too, what was queued behind it is handled.
    func answerCompleted() {
        guard let context else { return }
        switch state.answerCompleted(now: context.eventLoop.now) {
        case .finished: requestFinished(context: context)
        case .read: context.read()
        case .none: break
        }
    }

    /// The request in flight is answered and read to the end: handle what was queued behind it,
    /// one request at a time (a request answered at once does not recurse into another drain).
    private func requestFinished(context: ChannelHandlerContext) {
        guard state.requestFinished() else { return }
        while let action = state.nextQueuedPart() { perform(action, context: context) }
        let resume = state.queueDrained()
        if state.awaitsHead { headWatch?.armed = true }
        switch resume {
        case .read: context.read()
        case .close: context.close(promise: nil)
        case .none: break
        }
    }

    /// Schedules the idle check at `deadline`, or earlier than one already scheduled.
    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        if let idleCheck {
            guard deadline < idleCheckDeadline else { return }
            idleCheck.cancel()
        }
        idleCheckDeadline = deadline
        idleCheck = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            self.idleCheck = nil
            self.idleCheckDeadline = .distantFuture
            switch self.state.idleTimerFired(now: context.eventLoop.now) {
            case .rearm(let deadline): self.scheduleIdleCheck(context, at: deadline)
            case .close: context.close(promise: nil)
            case .headTimeout:
                self.metrics.requestHeadTimedOut()
                let answer = self.box.snapshot.responses.error(
                    .requestTimeout, code: "header_timeout", message: "the request head was not complete in time")
                self.write(answer.encoded(), requestID: RequestID.next(), close: true, http10: false, context: context)
            }
        }
    }
}

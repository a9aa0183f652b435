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

    private let box: SnapshotBox
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let paid: PaidRequestHandler
    private let idleTimeout: TimeAmount
    private let headerTimeout: TimeAmount
    /// Tells this handler when a request head starts arriving (`limits.headerTimeout`).
    private let headWatch: RequestHeadWatch?
    private let connections: ConnectionLimiter
    /// This connection's admission under the connection limits, while it holds a place.
    private var admitted: ConnectionLimiter.Admission?
    /// The upstream connection of a WebSocket handshake in progress (closed if the client leaves).
    private var tunnelUpstream: (any Channel)?
    /// Why this connection was refused a place: its first request is answered 503, then it closes.
    private var refused: ConnectionLimiter.Admission?
    /// The answer to an intercepted request, written when its (discarded) body has been read.
    private var pending: (answer: EncodedAnswer, requestID: String, close: Bool, http10: Bool)?
    /// The connection's rules: queueing, read holds, closing, the idle timeout.
    private var state: ClientConnectionStateMachine
    private var idleCheck: Scheduled<Void>?
    private var idleCheckDeadline = NIODeadline.distantFuture
    /// The free request being proxied at the NIO level, if any.
    private var exchange: Exchange?
    /// The paid request in flight, if any.
    private var payment: PaidExchange?
    /// The request waiting for its free allowance to be counted in the store, if any.
    private var admission: AdmissionWait?
    /// How the body of the response being written is framed.
    private var framing = HTTPWire.Framing.none
    /// The response-timeout check of the exchanges on this connection (see `scheduleExchangeTimer`).
    private var exchangeTimer: Scheduled<Void>?
    private var exchangeTimerDeadline = NIODeadline.distantPast
    private var context: ChannelHandlerContext?
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
    private func bodySinkChanged(ready: Bool) {
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
    private func writeContinue(context: ChannelHandlerContext) {
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
    private func write(_ answer: EncodedAnswer, requestID: String, close: Bool, http10: Bool, context: ChannelHandlerContext) {
        let close = closeAfter(close)
        let bytes = answer.bytes(requestID: requestID, connection: close ? "close" : (http10 ? "keep-alive" : nil),
                                 allocator: context.channel.allocator)
        context.write(wrapOutboundOut(bytes), promise: nil)
        framing = .none
        endResponse(close: close, context: context)
    }

    /// Writes one part of a relayed response body, framed.
    private func writeBody(_ body: ByteBuffer, context: ChannelHandlerContext) -> EventLoopFuture<Void>? {
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
    private func endRelayedBody(close: Bool, context: ChannelHandlerContext) {
        if framing == .chunked { context.write(wrapOutboundOut(Self.lastChunk), promise: nil) }
        endResponse(close: close || framing == .untilClose, context: context)
        framing = .none
    }

    /// The response is written to the end: flush, and close the connection after it when asked.
    private func endResponse(close: Bool, context: ChannelHandlerContext) {
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
    private func closeAfter(_ requested: Bool) -> Bool { state.closesAfterAnswer(requested: requested) }

    /// The answer to the request in flight is complete (its object, exchange or payment, is gone):
    /// once the request has been read to its end too, what was queued behind it is handled.
    private func answerCompleted() {
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

// MARK: - Paid requests

extension GatewayHandler {
    /// A paid request: its body is read (bounded), then ``PaidRequestHandler`` runs in a task.
    final class PaidExchange {
        let head: HTTPRequestHead
        let decision: Decision.Paid
        let snapshot: GatewaySnapshot
        let requestID: String
        let forwarding: ReverseProxy.Forwarding
        let closeClient: Bool
        let http10: Bool
        var body: ByteBuffer?
        var requestEnded = false
        /// Answered (413) before the body ended; the connection closes after it.
        var answeredEarly = false
        /// The client connection ended or half-closed: nothing is settled (read from the payment's task).
        let gone = Flag()
        /// The request to the upstream, once the flow has sent it.
        var hop: Hop?

        final class Flag: Sendable {
            private let value = Atomic<Bool>(false)
            func set() { value.store(true, ordering: .relaxed) }
            var isSet: Bool { value.load(ordering: .relaxed) }
        }

        init(head: HTTPRequestHead, decision: Decision.Paid, snapshot: GatewaySnapshot, requestID: String,
             forwarding: ReverseProxy.Forwarding) {
            self.head = head
            self.decision = decision
            self.snapshot = snapshot
            self.requestID = requestID
            self.forwarding = forwarding
            self.closeClient = !head.isKeepAlive
            self.http10 = head.version.major == 1 && head.version.minor == 0
        }
    }

    private func startPayment(
        _ head: HTTPRequestHead, _ decision: Decision.Paid, snapshot: GatewaySnapshot, requestID: String,
        remoteAddress: String?, context: ChannelHandlerContext
    ) {
        metrics.requestStarted()
        let payment = PaidExchange(
            head: head, decision: decision, snapshot: snapshot, requestID: requestID,
            forwarding: Routing.forwardingInfo(head, peer: remoteAddress, snapshot: snapshot, requestID: requestID))
        self.payment = payment
        // Started after the client's end of input (it was queued): the client may be gone already.
        if state.clientInputClosed { payment.gone.set() }
        // Priced routes take a bounded request body, held so that nothing half-forwarded can be charged.
        if let length = head.headers.first(name: "content-length").flatMap(Int.init),
           length > snapshot.config.limits.maxPaidRequestBodyBytes {
            refuseOversizedBody(payment, context: context)
        }
    }

    private func paymentBody(_ body: ByteBuffer, _ payment: PaidExchange, context: ChannelHandlerContext) {
        if payment.answeredEarly { return }
        var body = body
        if payment.body == nil {
            payment.body = body
        } else {
            payment.body!.writeBuffer(&body)
        }
        if payment.body!.readableBytes > payment.snapshot.config.limits.maxPaidRequestBodyBytes {
            refuseOversizedBody(payment, context: context)
        }
    }

    private func refuseOversizedBody(_ payment: PaidExchange, context: ChannelHandlerContext) {
        payment.answeredEarly = true
        payment.body = nil
        payment.snapshot.routeMetrics[payment.decision.routeIndex].record(.badRequest)
        let answer = payment.snapshot.responses.error(
            .payloadTooLarge, code: "body_too_large", message: "request body exceeds the limit for priced routes",
            head: payment.head.method == .HEAD)
        // The rest of the body is not read: the connection ends with this answer.
        write(answer.encoded(), requestID: payment.requestID, close: true, http10: payment.http10, context: context)
    }

    private func paymentEnd(_ payment: PaidExchange, context: ChannelHandlerContext) {
        payment.requestEnded = true
        if payment.answeredEarly {
            finishPayment(payment)
            return
        }
        let snapshot = payment.snapshot
        let p = payment.decision
        let route = snapshot.table.routes[p.routeIndex]
        let counters = snapshot.routeMetrics[p.routeIndex]
        var logger = self.logger
        logger[metadataKey: "request.id"] = .string(payment.requestID)
        logger[metadataKey: "x402.route"] = .string(route.config.id)
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let current = NIOLoopBound(payment, eventLoop: loop)
        let paidContext = PaidRequestHandler.Context(
            head: payment.head, body: payment.body, path: p.path, route: route, counters: counters,
            resourceURL: p.resourceURL, snapshot: snapshot, forwarding: payment.forwarding, paywall: p.paywall, logger: logger,
            requestID: payment.requestID, clientGone: { [gone = payment.gone] in gone.isSet }, hop: ConnectionHop(handler: bound, payment: current),
            passPolicy: snapshot.passPolicies[p.routeIndex], routeIndex: p.routeIndex)
        payment.body = nil
        let handler = self.paid
        Task {
            let (result, outcome) = await handler.respond(paidContext, header: p.header, headerVersion: p.version)
            counters.record(outcome)
            switch result {
            case .answer(let answer):
                let encoded = answer.encoded()
                loop.execute { bound.value.paidAnswer(encoded, current.value) }
            case .upstream(let status, let headers, let extra, .buffered(let body)):
                loop.execute { bound.value.paidRelay(status, headers, extra, buffered: body, current.value) }
            case .upstream(let status, let headers, let extra, .relay):
                loop.execute { bound.value.paidRelay(status, headers, extra, buffered: nil, current.value) }
            case .streamed(let end):
                loop.execute { bound.value.paidStreamFinish(end, current.value) }
            }
        }
    }

    /// Asks the store to count the request's free allowance; reading stops until it answers.
    private func startAdmission(_ wait: AdmissionWait, context: ChannelHandlerContext) {
        admission = wait
        bodySinkChanged(ready: false)
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        let current = NIOLoopBound(wait, eventLoop: loop)
        wait.timer = loop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: Self.admissionTimeout) {
            self.admitted(wait, .unavailable)
        }
        let (limiter, a) = (wait.snapshot.limiter, wait.decision)
        let route = wait.snapshot.table.routes[a.routeIndex].config.id
        Task {
            let result = await limiter.takeFreeFromStore(route: route, client: a.client, allowance: a.allowance, now: a.now)
            loop.execute { bound.value.admitted(current.value, result) }
        }
    }

    /// The store's count (or the timeout): forward the request for free, or answer its 402.
    private func admitted(_ wait: AdmissionWait, _ result: RequestLimiter.FreeCheck) {
        guard admission === wait, let context else { return }
        admission = nil
        wait.timer?.cancel()
        let (a, snapshot) = (wait.decision, wait.snapshot)
        let limits = snapshot.limitMetrics[a.routeIndex]
        let counters = snapshot.routeMetrics[a.routeIndex]
        if result == .free, let upstream = snapshot.upstreams[a.upstream] {
            limits?.freeServed()
            let continueSent = wait.expectsContinue && !wait.ended
            if continueSent { writeContinue(context: context) }
            startExchange(wait.head, path: a.path, upstream: upstream.config, connections: upstream.connections, counters: counters,
                          snapshot: snapshot, requestID: wait.requestID, remoteAddress: wait.remoteAddress, continueSent: continueSent,
                          free: a.access, context: context)
            guard let exchange else { return }
            for part in wait.body { requestBody(part, exchange) }
            if wait.ended { requestEnd(exchange) }
            return
        }
        if result == .exhausted { limits?.freeExhausted() } else { limits?.freeUnavailable() }
        guard let challenge = a.challenge else {
            // A dynamic price that needs the body or the pricing endpoint: priced like a payment.
            startPayment(wait.head, a.quote!, snapshot: snapshot, requestID: wait.requestID, remoteAddress: wait.remoteAddress, context: context)
            guard let payment else { return }
            if wait.expectsContinue, !wait.ended, !payment.answeredEarly { writeContinue(context: context) }
            bodySinkChanged(ready: true)
            for part in wait.body { paymentBody(part, payment, context: context) }
            if wait.ended { paymentEnd(payment, context: context) }
            return
        }
        counters.challenged()
        counters.record(a.outcome)
        let close = !wait.head.isKeepAlive
        let http10 = wait.head.version.major == 1 && wait.head.version.minor == 0
        if wait.ended {
            write(challenge, requestID: wait.requestID, close: close, http10: http10, context: context)
            answerCompleted()
        } else if wait.expectsContinue {
            // The client waits for `100 Continue` before its body: the answer goes now, then the close.
            write(challenge, requestID: wait.requestID, close: true, http10: http10, context: context)
        } else {
            // The rest of the body is read and dropped; the answer goes at its end.
            pending = (challenge, wait.requestID, close, http10)
            bodySinkChanged(ready: true)
        }
    }

    private func isCurrent(_ payment: PaidExchange) -> Bool {
        self.payment === payment && context != nil
    }

    private func paidAnswer(_ answer: EncodedAnswer, _ payment: PaidExchange) {
        discardHop(payment)
        guard isCurrent(payment), let context else { return }
        write(answer, requestID: payment.requestID, close: payment.closeClient, http10: payment.http10, context: context)
        finishPayment(payment)
    }

    /// Writes the upstream's response: the head with `extra` fields, then the body, `buffered` or
    /// what the hop holds and what it reads from here on.
    private func paidRelay(
        _ status: HTTPResponseStatus, _ headers: HTTPHeaders, _ extra: [(String, String)], buffered: ByteBuffer?,
        _ payment: PaidExchange
    ) {
        guard isCurrent(payment), let context else {
            discardHop(payment)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 512)
        let close = closeAfter(payment.closeClient)
        framing = HTTPWire.writeRelayedHead(
            status: status, upstream: headers, extra: extra, requestID: payment.requestID, isHead: payment.head.method == .HEAD,
            clientIsHTTP10: payment.http10, close: close, into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: nil)
        let hop = buffered == nil ? payment.hop : nil
        if let body = buffered ?? hop?.body { _ = writeBody(body, context: context) }
        hop?.body = nil
        guard let hop, !hop.ended else {
            payment.hop = nil
            endRelayedBody(close: close, context: context)
            finishPayment(payment)
            return
        }
        guard let exchange, exchange.hop === hop else {
            // The upstream failed after its head: the head is out, so closing is the only honest way
            // left to say the body is incomplete.
            logger.warning("upstream failed mid-response", metadata: ["request.id": "\(payment.requestID)"])
            payment.hop = nil
            state.closeNow()
            finishPayment(payment)
            context.flush()
            context.close(promise: nil)
            return
        }
        // The rest comes through the exchange, which finishes the payment at its end.
        exchange.state.startRelaying()
        context.flush()
        if framing == .untilClose { exchange.closeClient = true }
        exchange.closeClient = exchange.closeClient || payment.closeClient
        exchange.connection?.read()
    }

    private func finishPayment(_ payment: PaidExchange) {
        guard self.payment === payment else { return }
        self.payment = nil
        metrics.requestEnded()
        answerCompleted()
    }
}

// MARK: - Free allowances counted in the store

extension GatewayHandler {
    /// A request on a priced route whose free allowance is being counted in the store: its body
    /// parts wait here (reads are held meanwhile) until the count says forward or 402.
    final class AdmissionWait {
        let head: HTTPRequestHead
        let decision: Decision.Admission
        let snapshot: GatewaySnapshot
        let requestID: String
        let remoteAddress: String?
        let expectsContinue: Bool
        var body: [ByteBuffer] = []
        var ended = false
        var timer: Scheduled<Void>?

        init(head: HTTPRequestHead, decision: Decision.Admission, snapshot: GatewaySnapshot, requestID: String,
             remoteAddress: String?, expectsContinue: Bool) {
            self.head = head
            self.decision = decision
            self.snapshot = snapshot
            self.requestID = requestID
            self.remoteAddress = remoteAddress
            self.expectsContinue = expectsContinue
        }
    }

    /// A count slower than this is taken as not recorded: the 402 (fail closed).
    static let admissionTimeout = TimeAmount.seconds(2)
}

// MARK: - NIO-level proxy for free routes

extension GatewayHandler: UpstreamExchangeDelegate {
    /// One request to a plain-`http` upstream over a pooled connection on this loop: a free request
    /// relayed as it comes, or a paid request's hop (`hop`), whose response waits for the flow. Its
    /// rules are ``UpstreamExchangeStateMachine``; this object holds the I/O side.
    final class Exchange {
        let requestID: String
        let isHead: Bool
        var closeClient: Bool
        let http10: Bool
        let counters: RouteMetrics
        let upstream: UpstreamConfig
        let connections: UpstreamConnections
        let started = ContinuousClock.now
        var state: UpstreamExchangeStateMachine
        var connection: UpstreamConnection?
        /// The request head as sent upstream (kept for one retry on a stale pooled connection).
        var requestHead: HTTPRequestHead?
        /// Parts waiting for the connection to be established.
        var buffered: [HTTPClientRequestPart] = []
        /// A `100 Continue` went to the client already (the gateway's own): the upstream's is not repeated.
        var continueSent = false
        /// Set when this is a paid request's hop to the upstream.
        var hop: Hop?
        /// Set when a pass opened this request on a priced route: its answer is marked private.
        var pass: Decision.PassAccess?
        /// Set when the route's free allowance opened this request: its answer is marked like a paid one.
        var free: Decision.FreeAccess?

        init(requestID: String, head: HTTPRequestHead, counters: RouteMetrics, upstream: UpstreamConfig,
             connections: UpstreamConnections, mode: UpstreamExchangeStateMachine.Mode, hasBody: Bool, now: NIODeadline) {
            self.requestID = requestID
            self.isHead = head.method == .HEAD
            self.closeClient = !head.isKeepAlive
            self.http10 = head.version.major == 1 && head.version.minor == 0
            self.counters = counters
            self.upstream = upstream
            self.connections = connections
            self.state = UpstreamExchangeStateMachine(
                mode: mode, method: head.method, requestEnded: mode == .paidHop, hasBody: hasBody,
                timeout: .milliseconds(upstream.timeout.wholeMilliseconds), now: now)
        }
    }

    private func startExchange(
        _ head: HTTPRequestHead, path: CanonicalPath, upstream: UpstreamConfig, connections: UpstreamConnections,
        counters: RouteMetrics, snapshot: GatewaySnapshot, requestID: String, remoteAddress: String?, continueSent: Bool,
        pass: Decision.PassAccess? = nil, free: Decision.FreeAccess? = nil, context: ChannelHandlerContext
    ) {
        metrics.requestStarted()
        let exchange = Exchange(requestID: requestID, head: head, counters: counters, upstream: upstream, connections: connections,
                                mode: .free, hasBody: false, now: context.eventLoop.now)
        exchange.continueSent = continueSent
        exchange.free = free
        var forwarding = Routing.forwardingInfo(head, peer: remoteAddress, snapshot: snapshot, requestID: requestID)
        if let pass {
            // As for a paid request: the verified payer, and the mark of a pass request (its expiry).
            exchange.pass = pass
            forwarding.extraHeaders.append((snapshot.config.payerHeader, pass.payer))
            forwarding.extraHeaders.append((PassCredentials.upstreamHeader, String(pass.expiresAt)))
        }
        var headers = ReverseProxy.upstreamHeaders(head.headers, upstream: upstream, forwarding: forwarding)
        // Body framing: the decoder validated it; the encoder frames the parts accordingly.
        if let length = head.headers.first(name: "content-length") {
            headers.add(name: "Content-Length", value: length)
        } else if head.headers.contains(name: "transfer-encoding") {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        let requestHead = HTTPRequestHead(
            version: .http1_1, method: head.method, uri: upstream.basePath + path.pathAndQuery, headers: headers)
        launch(exchange, requestHead, body: [], context: context)
    }

    /// Sends `requestHead` (and `body`, when the request has been read already) on a pooled or
    /// new connection.
    private func launch(_ exchange: Exchange, _ requestHead: HTTPRequestHead, body: [HTTPClientRequestPart], context: ChannelHandlerContext) {
        self.exchange = exchange
        exchange.buffered = [.head(requestHead)] + body
        exchange.requestHead = requestHead
        if exchangeTimer == nil || exchangeTimerDeadline > exchange.state.headDeadline {
            exchangeTimer?.cancel()
            scheduleExchangeTimer(context: context, at: exchange.state.headDeadline)
        }

        if let connection = exchange.connections.acquire(on: context.eventLoop) {
            attach(connection, to: exchange, reused: true)
            return
        }
        connectFresh(exchange, context: context)
    }

    private func connectFresh(_ exchange: Exchange, context: ChannelHandlerContext) {
        bodySinkChanged(ready: false)  // the request body waits for the connection
        exchange.connections.connect(on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard self.exchange === exchange, !exchange.state.isOver else {
                // The exchange ended (client gone, timeout) while connecting.
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel):
                guard let connection = try? channel.pipeline.syncOperations.handler(type: UpstreamConnection.self) else {
                    channel.close(promise: nil)
                    self.upstreamFailed(nil)
                    return
                }
                self.attach(connection, to: exchange, reused: false)
            case .failure(let error):
                self.upstreamFailed(error)
            }
        }
    }

    private func attach(_ connection: UpstreamConnection, to exchange: Exchange, reused: Bool) {
        exchange.connection = connection
        exchange.state.connectionAttached(reused: reused)
        connection.delegate = self
        for part in exchange.buffered { connection.write(part) }
        exchange.buffered = []
        connection.flush()
        connection.read()
        bodySinkChanged(ready: connection.isWritable)
    }

    private func requestBody(_ body: ByteBuffer, _ exchange: Exchange) {
        switch exchange.state.requestBodyPart() {
        case .write:
            exchange.connection?.write(.body(.byteBuffer(body)))
            exchange.connection?.flush()
        case .buffer:
            exchange.buffered.append(.body(.byteBuffer(body)))
        case .drop:
            break  // answered early: the rest of the body is discarded
        }
    }

    private func requestEnd(_ exchange: Exchange) {
        switch exchange.state.requestEnd(now: context?.eventLoop.now ?? .now()) {
        case .write:
            exchange.connection?.write(.end(nil))
            exchange.connection?.flush()
        case .buffer:
            exchange.buffered.append(.end(nil))
        case .drop:
            break
        }
    }

    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard let exchange, let context else { return }
        let action = exchange.state.responseHead(
            status: head.status, keepAlive: head.isKeepAlive, clientSpeaksHTTP11: !exchange.http10, now: context.eventLoop.now)
        switch action {
        case .ignore, .dropInterim:
            return
        case .relayInterim:
            // `100 Continue` once: the gateway may have sent its own to the client already.
            if head.status == .continue {
                if exchange.continueSent { return }
                exchange.continueSent = true
            }
            var buffer = context.channel.allocator.buffer(capacity: 256)
            HTTPWire.writeInterimHead(status: head.status, upstream: ReverseProxy.withoutGatewayOwnedResponseFields(head.headers),
                                      into: &buffer)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            return
        case .failUnexpectedUpgrade:
            // Never asked for (`Upgrade` is not forwarded). The connection's decoder has stopped: it
            // is closed, never pooled, and the client gets a 502.
            failBeforeHead(exchange, timedOut: false, why: "the upstream switched protocols (101) unasked", context: context)
            return
        case .deliver:
            break
        }
        // The receipt and the challenge are the gateway's: an upstream's copies never reach the client.
        var head = head
        head.headers = ReverseProxy.withoutGatewayOwnedResponseFields(head.headers)
        metrics.upstreamResponse(exchange.upstream.name, duration: ContinuousClock.now - exchange.started)
        if let hop = exchange.hop {
            let promise = hop.head
            hop.head = nil
            promise?.succeed(head)
            return
        }
        if let pass = exchange.pass {
            // A priced route's content, opened by a pass: private to its holder, like a paid answer.
            head.headers = PaidResponseHeaders.rewrite(
                head.headers, extra: [], caching: .private, allowOrigin: pass.allowOrigin, vary: PaidResponseHeaders.passRequestHeaders)
            exchange.counters.record(.pass)
        } else if let free = exchange.free {
            // A priced route's content under the free allowance: cached like a paid answer.
            head.headers = PaidResponseHeaders.rewrite(head.headers, extra: [], caching: free.caching, allowOrigin: free.allowOrigin)
            exchange.counters.record(.freeAllowance)
        } else {
            exchange.counters.record(.free)
        }
        var buffer = context.channel.allocator.buffer(capacity: 512)
        framing = HTTPWire.writeRelayedHead(
            status: head.status, upstream: head.headers, requestID: exchange.requestID, isHead: exchange.isHead,
            clientIsHTTP10: exchange.http10, close: closeAfter(exchange.closeClient), into: &buffer)
        if framing == .untilClose { exchange.closeClient = true }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard let exchange, let context else { return }
        switch exchange.state.responseBodyPart(now: context.eventLoop.now) {
        case .relay:
            if let hop = exchange.hop, hop.heldBack != nil {
                relayHoldingBack(body, hop, context: context)  // streamed upto
            } else {
                _ = writeBody(body, context: context)
            }
        case .hold: if let hop = exchange.hop { hold(body, hop, exchange) }
        case .ignore: break
        }
    }

    func upstreamResponseEnd() {
        guard let exchange, let context, case .finish(let reuse) = exchange.state.responseEnd() else { return }
        if let connection = exchange.connection {
            exchange.connection = nil
            connection.delegate = nil
            if reuse {
                exchange.connections.release(connection)
            } else {
                connection.close()
            }
        }
        if let hop = exchange.hop, !exchange.state.relaying {
            hop.ended = true
            self.exchange = nil
            if let (_, promise) = hop.collect {
                hop.collect = nil
                promise.succeed(hop.body ?? ByteBuffer())
                hop.body = nil
            }
            return
        }
        if let hop = exchange.hop, hop.streamEnd != nil {
            // Streamed upto: the held-back tail waits for the flow's settlement (``paidStreamFinish``).
            self.exchange = nil
            hop.ended = true
            completeStream(hop)
            return
        }
        endRelayedBody(close: closeAfter(exchange.closeClient), context: context)
        finishExchange(exchange)
    }

    func upstreamReadComplete() {
        guard let exchange, let context else { return }
        let holdingMore = exchange.hop.map { $0.collect != nil || ($0.body?.readableBytes ?? 0) < Hop.holdLimit } ?? false
        switch exchange.state.readComplete(clientWritable: context.channel.isWritable, holdingMore: holdingMore) {
        case .flushAndRead:
            context.flush()
            exchange.connection?.read()
        case .flushAndPause:
            context.flush()
        case .read:
            // Read on while the flow collects, or while what is held is small; else the flow's
            // decision (collect or relay) resumes reading.
            exchange.connection?.read()
        case .none:
            break
        }
    }

    func upstreamWritabilityChanged() {
        guard let exchange, let connection = exchange.connection else { return }
        bodySinkChanged(ready: connection.isWritable)
    }

    func upstreamFailed(_ error: (any Error)?) {
        guard let exchange, let context else { return }
        let timedOut = (error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false
        let action = exchange.state.connectionFailed(connectTimedOut: timedOut)
        if case .ignore = action { return }
        exchange.connection?.close()
        exchange.connection = nil
        switch action {
        case .ignore:
            return
        case .failAfterHead:
            if let hop = exchange.hop, !exchange.state.relaying {
                // Before the flow's decision: the flow learns it when it asks for the body.
                self.exchange = nil
                let failure = ReverseProxy.Failure.unavailable("upstream failed mid-response: \(error.map { "\($0)" } ?? "closed")")
                hop.failure = failure
                if let (_, promise) = hop.collect {
                    hop.collect = nil
                    promise.fail(failure)
                }
                return
            }
            // The head is out: the only honest way left to say the body is incomplete. A streamed
            // upto payment learns it too (nothing is settled).
            exchange.hop?.fail(.unavailable("upstream failed mid-response"))
            logger.warning("upstream failed mid-response", metadata: [
                "request.id": "\(exchange.requestID)", "x402.upstream": "\(exchange.upstream.name)", "error": "\(error.map { "\($0)" } ?? "closed")"])
            state.closeNow()
            context.close(promise: nil)
        case .retry(let withEnd):
            // A pooled connection the upstream closed just as it was reused: a safe request (GET,
            // HEAD, OPTIONS, no body) is sent once more on a fresh connection. Other requests are
            // not replayed: the upstream may have acted on them (RFC 9110 §9.2.2).
            guard let head = exchange.requestHead else { return }
            exchange.buffered = [.head(head)] + (withEnd ? [.end(nil)] : [])
            connectFresh(exchange, context: context)
        case .failBeforeHead(let timedOut):
            failBeforeHead(exchange, timedOut: timedOut, why: error.map { "\($0)" } ?? "connection closed", context: context)
        }
    }

    private func failBeforeHead(_ exchange: Exchange, timedOut: Bool, why: String, context: ChannelHandlerContext) {
        exchange.state.abandon()
        if let connection = exchange.connection {
            exchange.connection = nil
            connection.close()
        }
        exchange.buffered = []
        if let hop = exchange.hop {
            // The paid flow fails closed with its own answer.
            self.exchange = nil
            logger.warning(timedOut ? "upstream timed out" : "upstream unavailable", metadata: [
                "request.id": "\(exchange.requestID)", "x402.upstream": "\(exchange.upstream.name)", "error": "\(why)"])
            let promise = hop.head
            hop.head = nil
            promise?.fail(timedOut ? ReverseProxy.Failure.timeout : .unavailable(why))
            return
        }
        exchange.counters.record(.upstreamError)
        let responses = box.snapshot.responses
        let answer: Answer
        if timedOut {
            logger.warning("upstream timed out", metadata: ["request.id": "\(exchange.requestID)", "x402.upstream": "\(exchange.upstream.name)"])
            answer = responses.error(.gatewayTimeout, code: "upstream_timeout", message: "the upstream did not answer in time", head: exchange.isHead)
        } else {
            logger.warning("upstream unavailable", metadata: [
                "request.id": "\(exchange.requestID)", "x402.upstream": "\(exchange.upstream.name)", "error": "\(why)"])
            answer = responses.error(.badGateway, code: "upstream_unavailable", message: "the upstream could not be reached", head: exchange.isHead)
        }
        write(answer.encoded(), requestID: exchange.requestID, close: exchange.closeClient, http10: exchange.http10, context: context)
        finishExchange(exchange)
    }

    /// Response timeout: no head within `upstream.timeout` of the request's end answers 504 (an upload
    /// in progress is not timed here); once streaming, no upstream data for that long (while the
    /// client is keeping up) closes both connections. One timer per client connection, not per
    /// exchange: when it fires it checks the exchange in flight and re-arms for that exchange's
    /// deadline, so back-to-back requests schedule nothing.
    private func scheduleExchangeTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        exchangeTimerDeadline = deadline
        exchangeTimer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            self.exchangeTimer = nil
            guard let exchange = self.exchange else { return }
            let decisionPending = exchange.hop.map { $0.collect == nil } ?? false
            switch exchange.state.timerFired(now: context.eventLoop.now, decisionPending: decisionPending) {
            case .none:
                return
            case .rearm(let deadline):
                self.scheduleExchangeTimer(context: context, at: deadline)
            case .timeoutBeforeHead:
                self.failBeforeHead(exchange, timedOut: true, why: "timeout", context: context)
            case .stalled:
                self.upstreamFailed(ChannelError.inputClosed)
            }
        }
    }

    private func finishExchange(_ exchange: Exchange) {
        guard self.exchange === exchange else { return }
        self.exchange = nil
        if let hop = exchange.hop {
            hop.payment.hop = nil
            finishPayment(hop.payment)
            return
        }
        metrics.requestEnded()
        answerCompleted()
    }

    /// The client went away: the upstream connection is closed, never reused.
    private func abortExchange() {
        guard let exchange else { return }
        self.exchange = nil
        if let hop = exchange.hop { hop.fail(.unavailable("the client connection is gone")) } else { metrics.requestEnded() }
        exchange.state.abandon()
        exchange.connection?.close()
        exchange.connection = nil
    }
}

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

    fileprivate func startHop(
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

    fileprivate func collectHop(_ payment: PaidExchange, limit: Int, loop: any EventLoop) -> EventLoopFuture<ByteBuffer> {
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
    private func hold(_ body: ByteBuffer, _ hop: Hop, _ exchange: Exchange) {
        var body = body
        if hop.body == nil { hop.body = body } else { hop.body!.writeBuffer(&body) }
        if let (limit, _) = hop.collect, hop.body!.readableBytes > limit {
            hop.fail(.unavailable("response body over \(limit) bytes"))
            discardHop(hop.payment)
        }
    }

    /// Drops the hop's response (closing its connection if it is still being read).
    private func discardHop(_ payment: PaidExchange) {
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

// MARK: - Streamed upto: relayed with a hold-back, settled at the end

extension GatewayHandler {
    /// Sends the response head and relays the body as it comes, all but its last `limit` bytes;
    /// succeeds with what was counted once the upstream's body has ended (the tail still held).
    /// The head leaves chunked (so `PAYMENT-RESPONSE` can follow as a trailer) and without
    /// `Content-Length`.
    fileprivate func relayHop(_ payment: PaidExchange, status: HTTPResponseStatus, headers: HTTPHeaders, holdingBack limit: Int,
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
    private func relayHoldingBack(_ body: ByteBuffer, _ hop: Hop, context: ChannelHandlerContext) {
        hop.meter?.feed(body.readableBytesView)
        for part in hop.heldBack?.append(body) ?? [] { _ = writeBody(part, context: context) }
    }

    /// The upstream's body has ended: the flow gets what was counted (and settles).
    private func completeStream(_ hop: Hop) {
        guard let promise = hop.streamEnd else { return }
        hop.streamEnd = nil
        promise.succeed(StreamedBody(bytes: hop.meter?.bytes ?? 0, lastJSONEvent: hop.meter?.lastJSONEvent))
    }

    /// The flow's end of a streamed upto answer: the tail and the receipt (a trailer) once settled,
    /// else the connection closes with the tail unsent (the head is out: a truncated body is the
    /// only way left to say it).
    fileprivate func paidStreamFinish(_ end: PaidResult.StreamEnd, _ payment: PaidExchange) {
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

/// The `Date` header value, formatted once per second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, value: String)>((-1, ""))

    static func now() -> String {
        let second = Int(Date().timeIntervalSince1970)
        if let hit = cache.withLock({ $0.second == second ? $0.value : nil }) { return hit }
        var t = time_t(second)
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let value = "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
        cache.withLock { $0 = (second, value) }
        return value
    }
}

// MARK: - WebSocket tunnels

extension GatewayHandler {
    /// A WebSocket handshake on a free route (``WebSocketTunnel``): sent to the upstream on a
    /// connection of its own; on `101` this connection becomes one end of a tunnel, else the
    /// upstream's answer (or 502/504) is written and the connection closes.
    fileprivate func startTunnel(
        _ head: HTTPRequestHead, path: CanonicalPath, upstream: Upstream, counters: RouteMetrics, snapshot: GatewaySnapshot,
        requestID: String, remoteAddress: String?, context: ChannelHandlerContext
    ) {
        state.lastRequestOnConnection()
        metrics.requestStarted()
        let forwarding = Routing.forwardingInfo(head, peer: remoteAddress, snapshot: snapshot, requestID: requestID)
        var headers = ReverseProxy.upstreamHeaders(head.headers, upstream: upstream.config, forwarding: forwarding)
        headers.add(name: "Connection", value: "Upgrade")
        headers.add(name: "Upgrade", value: "websocket")
        let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: upstream.config.basePath + path.pathAndQuery, headers: headers)
        let timeout = TimeAmount.milliseconds(upstream.config.timeout.wholeMilliseconds)
        let ended = { (outcome: RequestOutcome) in
            counters.record(outcome)
            self.metrics.requestEnded()
        }
        upstream.connections.connectTunnel(on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard let context = self.context, context.channel.isActive else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                ended(.upstreamError)
                return
            }
            switch result {
            case .failure(let error):
                self.tunnelFailed(error, snapshot: snapshot, requestID: requestID, context: context)
                ended(.upstreamError)
            case .success(let channel):
                self.tunnelUpstream = channel
                let handshake = TunnelHandshake(request: request, timeout: timeout) { answer in
                    guard self.tunnelUpstream === channel, let context = self.context else {
                        channel.close(promise: nil)
                        ended(.upstreamError)
                        return
                    }
                    self.tunnelUpstream = nil
                    switch answer {
                    case .success(.switched(let answerHead)):
                        // On the next tick: the decoder is still delivering the 101's end here, and
                        // must finish before the upstream's pipeline changes.
                        context.eventLoop.assumeIsolated().execute {
                            guard let context = self.context, context.channel.isActive else {
                                channel.close(promise: nil)
                                return
                            }
                            self.switchToTunnel(answerHead, upstream: channel, requestID: requestID, context: context)
                        }
                        ended(.free)
                    case .success(.refused(let answerHead, let body)):
                        channel.close(promise: nil)
                        self.writeRefusal(answerHead, body: body, requestID: requestID, context: context)
                        ended(.free)
                    case .failure(let error):
                        channel.close(promise: nil)
                        self.tunnelFailed(error, snapshot: snapshot, requestID: requestID, context: context)
                        ended(.upstreamError)
                    }
                }
                do {
                    try channel.pipeline.syncOperations.addHandler(handshake)
                } catch {
                    self.tunnelUpstream = nil
                    channel.close(promise: nil)
                    self.tunnelFailed(error, snapshot: snapshot, requestID: requestID, context: context)
                    ended(.upstreamError)
                }
            }
        }
    }

    /// The upstream switched: the `101` goes to the client, then both connections carry bytes
    /// through a pair of ``TunnelGlue``s; this handler, the decoder and the head watch leave the
    /// client's pipeline, the HTTP codecs the upstream's. The connection keeps its place under the
    /// connection limits until the tunnel ends.
    private func switchToTunnel(_ answer: HTTPResponseHead, upstream: any Channel, requestID: String, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 256)
        HTTPWire.writeSwitchingProtocolsHead(upstream: answer.headers, requestID: requestID, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        let (limiter, metrics, admission) = (connections, self.metrics, admitted)
        admitted = nil  // released when the tunnel ends, not when this handler leaves
        let activity = TunnelActivity(now: context.eventLoop.now) {
            if let admission {
                limiter.release(admission)
                metrics.connectionClosed()
            }
        }
        let clientEnd = TunnelGlue(activity: activity, idleTimeout: idleTimeout)
        let upstreamEnd = TunnelGlue(activity: activity, idleTimeout: nil)
        clientEnd.partner = upstreamEnd
        upstreamEnd.partner = clientEnd
        do {
            let near = context.pipeline.syncOperations
            try near.addHandler(clientEnd, position: .last)
            if let headWatch { near.removeHandler(headWatch, promise: nil) }
            near.removeHandler(try near.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self), promise: nil)
            let far = upstream.pipeline.syncOperations
            try far.addHandler(upstreamEnd, position: .last)
            far.removeHandler(try far.handler(type: TunnelHandshake.self), promise: nil)
            far.removeHandler(try far.handler(type: HTTPRequestEncoder.self), promise: nil)
            // Bytes the upstream sent right after its 101 are passed on to `upstreamEnd` when the
            // decoder leaves (on the next tick), with no read-complete after them: flushed here.
            let decoderGone = upstream.eventLoop.makePromise(of: Void.self)
            far.removeHandler(try far.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self), promise: decoderGone)
            let client = context.channel
            decoderGone.futureResult.whenComplete { _ in client.flush() }
            upstream.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in upstream.close(promise: nil) }
        } catch {
            upstream.close(promise: nil)
            context.close(promise: nil)
            activity.end()
            return
        }
        let channel = context.channel
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        channel.read()
    }

    /// The upstream refused the handshake: its answer, framed by length, then the close.
    private func writeRefusal(_ answer: HTTPResponseHead, body: ByteBuffer, requestID: String, context: ChannelHandlerContext) {
        var headers = ReverseProxy.withoutGatewayOwnedResponseFields(answer.headers)
        headers.remove(name: "content-length")
        headers.remove(name: "transfer-encoding")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        var buffer = context.channel.allocator.buffer(capacity: 256 + body.readableBytes)
        _ = HTTPWire.writeRelayedHead(status: answer.status, upstream: headers, requestID: requestID, isHead: false,
                                      clientIsHTTP10: false, close: true, into: &buffer)
        buffer.writeImmutableBuffer(body)
        context.write(wrapOutboundOut(buffer), promise: nil)
        framing = .none
        endResponse(close: true, context: context)
        answerCompleted()
    }

    /// No handshake answer from the upstream: 504 after its timeout, else 502; then the close.
    private func tunnelFailed(_ error: any Error, snapshot: GatewaySnapshot, requestID: String, context: ChannelHandlerContext) {
        var timedOut = (error as? WebSocketTunnel.Failure) == .timeout
        if case ChannelError.connectTimeout = error { timedOut = true }
        let answer = timedOut
            ? snapshot.responses.error(.gatewayTimeout, code: "upstream_timeout", message: "the upstream did not answer the WebSocket handshake in time")
            : snapshot.responses.error(.badGateway, code: "upstream_unavailable", message: "the upstream could not take the WebSocket handshake")
        write(answer.encoded(), requestID: requestID, close: true, http10: false, context: context)
        answerCompleted()
    }
}


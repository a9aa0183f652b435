import Foundation
import GatewayCore
import NIOHTTP1
import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization
import X402

/// Answers what the gateway writes itself (402 challenges, 400s, 404s, preflights) right in the
/// channel pipeline, on the connection's event loop, without entering Hummingbird's async request
/// path: those answers need no I/O, and most of their cost was that path. Free requests to plain
/// `http` upstreams are proxied here too, at the NIO level (see the `Exchange` extension below):
/// the upstream connection lives on the same event loop and every part is relayed synchronously.
/// Everything else (paid requests, `https` upstreams) is passed on to Hummingbird unchanged.
///
/// Ordering: while a request passed on is unanswered, later requests on the connection are passed
/// on too, so pipelined answers never overtake each other. While a proxied exchange is in flight,
/// later requests are queued (and reading stops) until its answer has been written. The handler
/// also owns the connection's idle timeout (Hummingbird's own only sees the requests passed on).
final class FastAnswerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let box: SnapshotBox
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let idleTimeout: TimeAmount
    /// Requests passed on whose answer has not been written to the end.
    private var passedOn = 0
    /// The answer to an intercepted request, written when its (discarded) body has been read.
    private var pending: (answer: Answer, requestID: String, close: Bool)?
    private var lastActive = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?
    /// The free request being proxied at the NIO level, if any.
    private var exchange: Exchange?
    /// Request parts that arrived while an exchange was in flight, handled in order after it.
    private var queued = CircularBuffer<HTTPRequestPart>()
    /// A `read` held back (upstream not writable, or requests queued).
    private var readHeld = false
    /// Graceful shutdown asked for while an exchange was in flight: close once it is done.
    private var quiescing = false
    /// The client closed its sending side while an exchange was in flight: passed on after it.
    private var inputClosedDeferred = false
    /// A close is already scheduled after the last write.
    private var closing = false
    /// The response-timeout check of the exchanges on this connection (see `scheduleExchangeTimer`).
    private var exchangeTimer: Scheduled<Void>?
    private var exchangeTimerDeadline = NIODeadline.distantPast
    private var context: ChannelHandlerContext?

    init(box: SnapshotBox, logger: Logger, metrics: GatewayMetrics, idleTimeout: Duration) {
        self.box = box
        self.logger = logger
        self.metrics = metrics
        self.idleTimeout = .milliseconds(idleTimeout.wholeMilliseconds)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { scheduleIdleCheck(context, at: .now() + idleTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleIdleCheck(context, at: .now() + idleTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
        exchangeTimer?.cancel()
        exchangeTimer = nil
        abortExchange()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
        exchangeTimer?.cancel()
        exchangeTimer = nil
        abortExchange()
        queued.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActive = .now()
        let part = unwrapInboundIn(data)
        if !queued.isEmpty {
            queued.append(part)
            return
        }
        handle(part, context: context)
    }

    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            if exchange != nil {
                queued.append(part)
                return
            }
            if passedOn == 0 && pending == nil {
                switch intercept(head, context: context) {
                case .answered, .proxied: return
                case .passOn: break
                }
            }
            passedOn += 1
            context.fireChannelRead(wrapInboundOut(part))
        case .body(let body):
            if let exchange {
                if exchange.requestEnded { queued.append(part) } else { requestBody(body, exchange) }
                return
            }
            if pending == nil { context.fireChannelRead(wrapInboundOut(part)) }
        case .end:
            if let exchange {
                if exchange.requestEnded { queued.append(part) } else { requestEnd(exchange) }
                return
            }
            guard let (answer, requestID, close) = pending else {
                context.fireChannelRead(wrapInboundOut(part))
                return
            }
            pending = nil
            write(answer, requestID: requestID, close: close, context: context)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            passedOn -= 1
            lastActive = .now()
        }
        context.write(data, promise: promise)
    }

    func read(context: ChannelHandlerContext) {
        if mustHoldReads {
            readHeld = true
            return
        }
        context.read()
    }

    /// Reads stop while requests are queued, and while the upstream cannot take more request body.
    private var mustHoldReads: Bool {
        if !queued.isEmpty { return true }
        guard let exchange, !exchange.requestEnded, !exchange.responseDone else { return false }
        guard let connection = exchange.connection else { return true }
        return !connection.isWritable
    }

    private func resumeReadsIfHeld() {
        guard readHeld, !mustHoldReads, let context else { return }
        readHeld = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let exchange, exchange.paused, context.channel.isWritable {
            exchange.paused = false
            exchange.connection?.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent, exchange != nil || !queued.isEmpty {
            // Hummingbird sees no request in flight and would close the connection now.
            quiescing = true
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed, exchange != nil || !queued.isEmpty {
            // A half-closed client still gets its answer: Hummingbird, seeing nothing in flight,
            // would end the connection at once.
            inputClosedDeferred = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private enum Interception { case answered, proxied, passOn }

    /// Answers the request, or starts proxying it, or says to pass it on.
    private func intercept(_ head: HTTPRequest, context: ChannelHandlerContext) -> Interception {
        let requestID = head.headerFields[.xRequestID].flatMap(RequestID.accept) ?? RequestID.next()
        let snapshot = box.snapshot
        let remoteAddress = context.channel.remoteAddress
        let decision = GatewayResponder.decide(
            head, remoteAddress: remoteAddress, snapshot: snapshot, logger: logger, requestID: requestID)
        switch decision {
        case .answer(let answer, let counters, let outcome):
            counters.record(outcome)
            pending = (answer, requestID, Self.wantsClose(head))
            return .answered
        case .forward(let name, let path, let counters):
            guard let upstream = snapshot.upstreams[name] else {
                counters.record(.upstreamError)
                pending = (snapshot.responses.error(.badGateway, code: "upstream_unavailable", message: "upstream is not configured",
                                                    head: head.method == .head), requestID, Self.wantsClose(head))
                return .answered
            }
            guard let connections = upstream.connections else { return .passOn }
            startExchange(head, path: path, upstream: upstream.config, connections: connections, counters: counters,
                          snapshot: snapshot, requestID: requestID, remoteAddress: remoteAddress, context: context)
            return .proxied
        case .pay:
            return .passOn
        }
    }

    private static func wantsClose(_ head: HTTPRequest) -> Bool {
        head.headerFields[values: .connection].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "close" }
        }
    }

    private func write(_ answer: Answer, requestID: String, close: Bool, context: ChannelHandlerContext) {
        var headers = answer.headers
        if headers[.xRequestID] == nil { headers[.xRequestID] = requestID }
        headers[.date] = HTTPDate.now()
        if let body = answer.body, headers[.contentLength] == nil { headers[.contentLength] = String(body.readableBytes) }
        if close { headers[.connection] = "close" }
        context.write(wrapOutboundOut(.head(HTTPResponse(status: answer.status, headerFields: headers))), promise: nil)
        if let body = answer.body { context.write(wrapOutboundOut(.body(body)), promise: nil) }
        writeEnd(context: context, close: close)
    }

    private func writeEnd(context: ChannelHandlerContext, close: Bool) {
        if close {
            closing = true
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard idleCheck == nil else { return }
        idleCheck = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            self.idleCheck = nil
            let due = self.lastActive + self.idleTimeout
            if self.passedOn > 0 || self.pending != nil || self.exchange != nil || !self.queued.isEmpty || due > .now() {
                self.scheduleIdleCheck(context, at: max(due, .now() + .milliseconds(100)))
            } else {
                context.close(promise: nil)
            }
        }
    }
}

// MARK: - NIO-level proxy for free routes

extension FastAnswerHandler: UpstreamExchangeDelegate {
    /// One free request proxied to a plain-`http` upstream over a pooled connection on this loop.
    final class Exchange {
        let requestID: String
        let isHead: Bool
        let closeClient: Bool
        let counters: RouteMetrics
        let upstream: UpstreamConfig
        let connections: UpstreamConnections
        let started = ContinuousClock.now
        let timeout: TimeAmount
        var connection: UpstreamConnection?
        /// The request head as sent upstream (kept for one retry on a stale pooled connection).
        var requestHead: HTTPRequestHead?
        /// The connection came from the pool (the upstream may have closed it as we reused it).
        var reusedConnection = false
        /// Request body bytes went upstream: the request cannot be sent again.
        var sentBody = false
        var retried = false
        /// Parts waiting for the connection to be established.
        var buffered: [HTTPClientRequestPart] = []
        /// The client's request `.end` has been read.
        var requestEnded = false
        /// The request `.end` has been written upstream.
        var requestSent = false
        /// The response head has been written to the client.
        var responseStarted = false
        /// The answer (upstream response or the gateway's error) has been written to the end.
        var responseDone = false
        /// Upstream reads stopped because the client connection is not writable.
        var paused = false
        var upstreamKeepAlive = true
        var lastUpstreamActivity = NIODeadline.now()
        /// The response head is due by then.
        var headDeadline = NIODeadline.now()

        init(requestID: String, isHead: Bool, closeClient: Bool, counters: RouteMetrics, upstream: UpstreamConfig,
             connections: UpstreamConnections) {
            self.requestID = requestID
            self.isHead = isHead
            self.closeClient = closeClient
            self.counters = counters
            self.upstream = upstream
            self.connections = connections
            self.timeout = .milliseconds(upstream.timeout.wholeMilliseconds)
        }
    }

    private func startExchange(
        _ head: HTTPRequest, path: CanonicalPath, upstream: UpstreamConfig, connections: UpstreamConnections,
        counters: RouteMetrics, snapshot: GatewaySnapshot, requestID: String, remoteAddress: SocketAddress?,
        context: ChannelHandlerContext
    ) {
        metrics.requestStarted()
        let exchange = Exchange(
            requestID: requestID, isHead: head.method == .head, closeClient: Self.wantsClose(head), counters: counters,
            upstream: upstream, connections: connections)
        self.exchange = exchange

        let forwarding = GatewayResponder.forwardingInfo(head, remoteAddress: remoteAddress, snapshot: snapshot, requestID: requestID)
        var headers = ReverseProxy.upstreamHeaders(head.headerFields, upstream: upstream, forwarding: forwarding)
        // Body framing: the decoder validated it; the encoder frames the parts accordingly.
        if let length = head.headerFields[.contentLength] {
            headers.add(name: "Content-Length", value: length)
        } else if head.headerFields[.transferEncoding] != nil {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        let method = HTTPMethod(rawValue: head.method.rawValue)
        let requestHead = HTTPRequestHead(
            version: .http1_1, method: method, uri: upstream.basePath + path.pathAndQuery, headers: headers)
        exchange.buffered.append(.head(requestHead))
        exchange.requestHead = requestHead
        exchange.headDeadline = .now() + exchange.timeout
        if exchangeTimer == nil || exchangeTimerDeadline > exchange.headDeadline {
            exchangeTimer?.cancel()
            scheduleExchangeTimer(context: context, at: exchange.headDeadline)
        }

        if let connection = connections.acquire(on: context.eventLoop) {
            exchange.reusedConnection = true
            attach(connection, to: exchange)
            return
        }
        connectFresh(exchange, context: context)
    }

    private func connectFresh(_ exchange: Exchange, context: ChannelHandlerContext) {
        exchange.connections.connect(on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard self.exchange === exchange, !exchange.responseDone else {
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
                self.attach(connection, to: exchange)
            case .failure(let error):
                self.upstreamFailed(error)
            }
        }
    }

    private func attach(_ connection: UpstreamConnection, to exchange: Exchange) {
        exchange.connection = connection
        connection.delegate = self
        for part in exchange.buffered {
            connection.write(part)
            if case .end = part { exchange.requestSent = true }
        }
        exchange.buffered = []
        connection.flush()
        connection.read()
        resumeReadsIfHeld()
    }

    private func requestBody(_ body: ByteBuffer, _ exchange: Exchange) {
        if exchange.responseDone { return }  // answered early: the rest of the body is discarded
        exchange.sentBody = true
        if let connection = exchange.connection {
            connection.write(.body(.byteBuffer(body)))
            connection.flush()
        } else {
            exchange.buffered.append(.body(.byteBuffer(body)))
        }
    }

    private func requestEnd(_ exchange: Exchange) {
        exchange.requestEnded = true
        if exchange.responseDone {
            finishExchange(exchange)
            return
        }
        if let connection = exchange.connection {
            connection.write(.end(nil))
            connection.flush()
            exchange.requestSent = true
        } else {
            exchange.buffered.append(.end(nil))
        }
    }

    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard let exchange, let context, !exchange.responseDone else { return }
        exchange.lastUpstreamActivity = .now()
        exchange.responseStarted = true
        exchange.upstreamKeepAlive = head.isKeepAlive
        metrics.upstreamResponse(exchange.upstream.name, duration: ContinuousClock.now - exchange.started)
        exchange.counters.record(.free)
        var fields = ReverseProxy.relayedHeaders(head.headers)
        if fields[.xRequestID] == nil { fields[.xRequestID] = exchange.requestID }
        if exchange.closeClient || quiescing { fields[.connection] = "close" }
        let status = HTTPResponse.Status(code: Int(head.status.code), reasonPhrase: head.status.reasonPhrase)
        context.write(wrapOutboundOut(.head(HTTPResponse(status: status, headerFields: fields))), promise: nil)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard let exchange, let context, exchange.responseStarted, !exchange.responseDone else { return }
        exchange.lastUpstreamActivity = .now()
        context.write(wrapOutboundOut(.body(body)), promise: nil)
    }

    func upstreamResponseEnd() {
        guard let exchange, let context, exchange.responseStarted, !exchange.responseDone else { return }
        exchange.responseDone = true
        if let connection = exchange.connection {
            exchange.connection = nil
            connection.delegate = nil
            if exchange.requestSent && exchange.upstreamKeepAlive {
                exchange.connections.release(connection)
            } else {
                connection.close()
            }
        }
        writeEnd(context: context, close: exchange.closeClient || quiescing)
        if exchange.requestEnded { finishExchange(exchange) }
    }

    func upstreamReadComplete() {
        guard let exchange, let context, !exchange.responseDone else { return }
        context.flush()
        if context.channel.isWritable {
            exchange.connection?.read()
        } else {
            exchange.paused = true
        }
    }

    func upstreamWritabilityChanged() {
        resumeReadsIfHeld()
    }

    func upstreamFailed(_ error: (any Error)?) {
        guard let exchange, let context, !exchange.responseDone else { return }
        exchange.connection?.close()
        exchange.connection = nil
        if exchange.responseStarted {
            // The head is out: the only honest way left to say the body is incomplete.
            logger.warning("upstream failed mid-response", metadata: [
                "request.id": "\(exchange.requestID)", "x402.upstream": "\(exchange.upstream.name)", "error": "\(error.map { "\($0)" } ?? "closed")"])
            exchange.responseDone = true
            context.close(promise: nil)
            return
        }
        // A pooled connection the upstream closed just as it was reused: send a safe request
        // (GET, HEAD, OPTIONS, no body) once more on a fresh connection. Other requests are not
        // replayed: the upstream may have acted on them (RFC 9110 §9.2.2).
        if exchange.reusedConnection, !exchange.retried, !exchange.sentBody, let head = exchange.requestHead,
           [.GET, .HEAD, .OPTIONS].contains(head.method) {
            exchange.retried = true
            exchange.reusedConnection = false
            exchange.requestSent = false
            exchange.buffered = [.head(head)] + (exchange.requestEnded ? [.end(nil)] : [])
            connectFresh(exchange, context: context)
            return
        }
        let timedOut = (error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false
        failBeforeHead(exchange, timedOut: timedOut, why: error.map { "\($0)" } ?? "connection closed", context: context)
    }

    private func failBeforeHead(_ exchange: Exchange, timedOut: Bool, why: String, context: ChannelHandlerContext) {
        exchange.responseDone = true
        if let connection = exchange.connection {
            exchange.connection = nil
            connection.close()
        }
        exchange.buffered = []
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
        write(answer, requestID: exchange.requestID, close: exchange.closeClient || quiescing, context: context)
        if exchange.requestEnded { finishExchange(exchange) }
    }

    /// Response timeout: no head within `upstream.timeout` answers 504; once streaming, no upstream
    /// data for that long (while the client is keeping up) closes both connections. One timer per
    /// client connection, not per exchange: when it fires it checks the exchange in flight and
    /// re-arms for that exchange's deadline, so back-to-back requests schedule nothing.
    private func scheduleExchangeTimer(context: ChannelHandlerContext, at deadline: NIODeadline) {
        exchangeTimerDeadline = deadline
        exchangeTimer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            self.exchangeTimer = nil
            guard let exchange = self.exchange, !exchange.responseDone else { return }
            let now = NIODeadline.now()
            if !exchange.responseStarted {
                if exchange.headDeadline <= now {
                    self.failBeforeHead(exchange, timedOut: true, why: "timeout", context: context)
                } else {
                    self.scheduleExchangeTimer(context: context, at: exchange.headDeadline)
                }
                return
            }
            let due = exchange.lastUpstreamActivity + exchange.timeout
            if exchange.paused || due > now {
                self.scheduleExchangeTimer(context: context, at: max(due, now + .milliseconds(100)))
                return
            }
            self.upstreamFailed(ChannelError.inputClosed)
        }
    }

    private func finishExchange(_ exchange: Exchange) {
        guard self.exchange === exchange else { return }
        self.exchange = nil
        metrics.requestEnded()
        lastActive = .now()
        guard let context else { return }
        if quiescing {
            if !closing { context.close(promise: nil) }
            return
        }
        drainQueue(context: context)
        resumeReadsIfHeld()
        if inputClosedDeferred && self.exchange == nil && queued.isEmpty {
            inputClosedDeferred = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
    }

    /// Handles the requests that arrived during the exchange, until one starts another exchange.
    private func drainQueue(context: ChannelHandlerContext) {
        while let part = queued.first {
            if case .head = part, exchange != nil { return }
            queued.removeFirst()
            handle(part, context: context)
        }
    }

    /// The client went away: the upstream connection is closed, never reused.
    private func abortExchange() {
        guard let exchange else { return }
        self.exchange = nil
        metrics.requestEnded()
        exchange.responseDone = true
        exchange.connection?.close()
        exchange.connection = nil
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

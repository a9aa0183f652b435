import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

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

    func startExchange(
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
    func launch(_ exchange: Exchange, _ requestHead: HTTPRequestHead, body: [HTTPClientRequestPart], context: ChannelHandlerContext) {
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

    func requestBody(_ body: ByteBuffer, _ exchange: Exchange) {
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

    func requestEnd(_ exchange: Exchange) {
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
            // What this read released goes out now: with the exchange gone, this read's
            // `upstreamReadComplete` no longer flushes, and the settlement may take seconds.
            self.exchange = nil
            hop.ended = true
            context.flush()
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
    func abortExchange() {
        guard let exchange else { return }
        self.exchange = nil
        if let hop = exchange.hop { hop.fail(.unavailable("the client connection is gone")) } else { metrics.requestEnded() }
        exchange.state.abandon()
        exchange.connection?.close()
        exchange.connection = nil
    }
}

import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

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

    func startPayment(
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

    func paymentBody(_ body: ByteBuffer, _ payment: PaidExchange, context: ChannelHandlerContext) {
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

    func paymentEnd(_ payment: PaidExchange, context: ChannelHandlerContext) {
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
    func startAdmission(_ wait: AdmissionWait, context: ChannelHandlerContext) {
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
    func admitted(_ wait: AdmissionWait, _ result: RequestLimiter.FreeCheck) {
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

    func isCurrent(_ payment: PaidExchange) -> Bool {
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

    func finishPayment(_ payment: PaidExchange) {
        guard self.payment === payment else { return }
        self.payment = nil
        metrics.requestEnded()
        answerCompleted()
    }
}

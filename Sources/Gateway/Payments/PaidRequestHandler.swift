import BigInt
import GatewayCore
import GatewayStorage
import Logging
import NIOCore
import NIOHTTP1
import Paywall
import X402
import X402Facilitator

/// The async shell around ``PaymentFlow``: performs each action the flow asks for.
package struct PaidRequestHandler: Sendable {
    let store: any PaymentStore
    let metrics: GatewayMetrics
    let clock: @Sendable () -> UInt64
    /// This process's count of upstream runs each payer left unsettled (see ``UnsettledRuns``).
    let unsettledRuns = UnsettledRunCounter()
    /// The `settled` steps written while the answer goes out.
    package let ledgerWrites = LedgerWriteBehind()
    /// The settlement worker of `settlement: deferred` routes, and its exposure (none: nothing is deferred).
    var settlements: SettlementWorker? = nil

    package struct Context {
        package var head: HTTPRequestHead
        /// The request body, read to the end (bounded by `limits.maxPaidRequestBodyBytes`).
        package var body: ByteBuffer?
        package var path: CanonicalPath
        package var route: CompiledRoute
        package var counters: RouteMetrics
        package var resourceURL: String
        package var snapshot: GatewaySnapshot
        package var forwarding: ReverseProxy.Forwarding
        /// The browser paywall page, when the request came from a browser: refusals are shown on it.
        package var paywall: PaywallPage?
        package var logger: Logger
        package var requestID: String
        /// Whether the client connection has gone away (checked before settling).
        package var clientGone: @Sendable () -> Bool
        package var hop: any UpstreamHop
        /// The route's pass rules, when a settled payment on it earns a pass.
        package var passPolicy: RoutePassPolicy? = nil
        /// The route's position in the snapshot's table (its rate limit and counters).
        package var routeIndex: Int

        package init(head: HTTPRequestHead, body: ByteBuffer?, path: CanonicalPath, route: CompiledRoute, counters: RouteMetrics,
                     resourceURL: String, snapshot: GatewaySnapshot, forwarding: ReverseProxy.Forwarding, paywall: PaywallPage?,
                     logger: Logger, requestID: String, clientGone: @escaping @Sendable () -> Bool, hop: any UpstreamHop,
                     passPolicy: RoutePassPolicy? = nil, routeIndex: Int) {
            self.head = head
            self.body = body
            self.path = path
            self.route = route
            self.counters = counters
            self.resourceURL = resourceURL
            self.snapshot = snapshot
            self.forwarding = forwarding
            self.paywall = paywall
            self.logger = logger
            self.requestID = requestID
            self.clientGone = clientGone
            self.hop = hop
            self.passPolicy = passPolicy
            self.routeIndex = routeIndex
        }

        /// Paid requests only reach priced routes.
        var challenge: Challenge { route.challenge! }
    }

    package init(store: any PaymentStore, metrics: GatewayMetrics, clock: @escaping @Sendable () -> UInt64, settlements: SettlementWorker? = nil) {
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.settlements = settlements
    }

    /// The answer to a paid request, or, with no `header`, the 402 of a route whose price needed the
    /// body or the pricing endpoint. A route with a dynamic price is priced first: the payment is
    /// matched, verified and settled against the offer at this request's price.
    package func respond(_ context: Context, header: String?, headerVersion: Int) async -> (PaidResult, RequestOutcome) {
        let ctx: Context
        switch await priced(context) {
        case .success(let priced): ctx = priced
        case .failure(let refusal): return refusal.answer
        }
        guard let header else { return paymentRequired(ctx) }
        let responses = ctx.snapshot.responses
        let isHead = ctx.head.method == .HEAD
        let logger = ctx.logger
        let payment: PresentedPayment
        do {
            payment = try PresentedPayment.decode(header: header, headerVersion: headerVersion)
        } catch {
            logger.info("payment refused", metadata: ["x402.reason": "\(error.rawValue)"])
            metrics.paymentRefused(reason: error.rawValue)
            return (.answer(responses.paymentRequired(ctx.challenge, resourceURL: ctx.resourceURL, error: error.rawValue, head: isHead,
                                                      paywall: ctx.paywall, method: ctx.head.method.rawValue)), .refused)
        }
        guard let facilitator = ctx.snapshot.facilitator else {
            logger.error("payment presented but no facilitator is configured")
            return (.answer(responses.error(.badGateway, code: "facilitator_unavailable", message: "payments cannot be verified", head: isHead)),
                    .failedClosed)
        }
        // A payer whose upstream runs here keep ending unsettled pays first from now on. The payer is
        // the one the authorization names: the flow refuses it unless its signature says so.
        let limits = ctx.snapshot.config.limits
        let runs = UnsettledRuns.Key(route: ctx.route.config.id, payer: payment.from)
        var policy = ctx.route.config.settlement
        // Not upto: what it charges is only known once the upstream has answered.
        if policy != .before, ctx.route.config.upto == nil, let limit = limits.unsettledRunsPerPayer,
           unsettledRuns.mustSettleFirst(runs, limit: limit, window: limits.unsettledRunsWindow, now: clock()) {
            policy = .before
        }
        let admitted = policy == .deferred ? admitDeferral(payment, ctx: ctx) : nil
        if policy == .deferred, admitted == nil { policy = .afterSuccess }
        var flow = PaymentFlow(policy: policy, identifierMode: ctx.route.config.paymentIdentifier,
                               verification: ctx.route.config.deferral?.verify ?? .facilitator)
        var ledger = Ledger(store: store, logger: logger)
        var forwarded = false
        var streaming = false
        var answer = await drive(&flow, ledger: &ledger, forwarded: &forwarded, streaming: &streaming, payment: payment,
                                 facilitator: facilitator, ctx: ctx, logger: logger)
        if streaming {
            // The head is out: a settled answer ends with its tail and receipt, anything else is cut short.
            let trailer: (String, String)? = if case .upstream(_, _, let extra, _) = answer.0 { extra.first } else { nil }
            answer.0 = answer.1 == .paid ? .streamed(.release(trailer: trailer)) : .streamed(.abort)
        }
        if let admitted, flow.claim != .queued {
            settlements?.gate.release(route: admitted.route, payer: admitted.payer, amount: admitted.amount)
        }
        if forwarded, policy != .before, answer.1 != .paid, answer.1 != .deferred, let limit = limits.unsettledRunsPerPayer {
            unsettledRuns.record(runs, limit: limit, window: limits.unsettledRunsWindow, now: clock())
        }
        if policy != ctx.route.config.settlement, flow.settlement != nil {
            logger.notice("settled before forwarding: the payer reached limits.unsettledRunsPerPayer on this route")
            metrics.settledFirst()
        }
        // Record how the claim ended before answering, so a client's next request sees the final state.
        if ledger.ticket != nil {
            switch flow.claim {
            case .release: await ledger.step(ledger.refusal.map { .refused(reason: $0) } ?? .released(reason: answer.1.rawValue))
            case .unknown: await ledger.step(.unknown(reason: answer.1.rawValue))
            case .spend, .none, .queued: break
            }
        }
        if ledger.identifierTicket != nil {
            if flow.identifierDisposition == .complete, case .upstream(let status, let headers, let extra, let body) = answer.0 {
                await ledger.completeIdentifier(storedResponse(status: status, headers: headers, extra: extra, body: body, ctx: ctx))
            } else {
                await ledger.releaseIdentifier()
            }
        }
        // Every upstream answer on a priced route (paid, replayed, or an unsettled upstream error)
        // leaves private to its buyer, with its receipt readable cross-origin. Stored answers keep
        // the upstream's fields: a replay goes through here again.
        if case .upstream(let status, let headers, var extra, let body) = answer.0 {
            // A paid answer on a route with passes carries a new pass: never stored for a payment
            // identifier (a replay does not issue one), never with an unsettled answer.
            let pass = answer.1 == .paid ? issuePass(flow: flow, payment: payment, ctx: ctx) : nil
            if let pass { extra.append((PassCredentials.header, pass.token)) }
            var rewritten = PaidResponseHeaders.rewrite(
                headers, extra: extra, caching: ctx.route.config.cache, allowOrigin: ctx.snapshot.config.cors.allowOrigin,
                vary: pass == nil ? PaidResponseHeaders.paymentRequestHeaders : PaidResponseHeaders.passRequestHeaders)
            // Added after the rewrite, which replaces upstream fields named like the gateway's: the
            // upstream's own cookies stay.
            if let pass { rewritten.add(name: "Set-Cookie", value: pass.cookie) }
            return (.upstream(status: status, headers: rewritten, extra: [], body: body), answer.1)
        }
        return answer
    }

    /// A pass for the payment just settled, as the `PAYMENT-PASS` value and its cookie; nil when
    /// the route issues none.
    private func issuePass(flow: PaymentFlow, payment: PresentedPayment, ctx: Context) -> (token: String, cookie: String)? {
        guard let policy = ctx.passPolicy, let keyring = ctx.snapshot.passKeyring, let offerIndex = flow.offerIndex else { return nil }
        let now = clock()
        let claims = policy.claims(path: ctx.path.path, payer: flow.payer ?? payment.from,
                                   network: ctx.route.offers[offerIndex].offer.network.caip2, now: now)
        let token = keyring.issue(claims)
        // Secure when the buyer reached the gateway over https (the public URL says how).
        let secure = ctx.resourceURL.utf8.starts(with: "https://".utf8)
        metrics.passIssued()
        ctx.logger.info("pass issued", metadata: ["x402.pass.expires": "\(claims.expiresAt)", "x402.pass.key": "\(keyring.signingKeyID)"])
        return (token, policy.setCookie(token: token, path: ctx.path.path, maxAge: policy.seconds, secure: secure))
    }

    /// The paid answer as stored for its payment identifier: the status, the fields the client got
    /// (the upstream's minus hop-by-hop ones and `X-Request-Id`, then `PAYMENT-RESPONSE`), and the
    /// body when it was held back and is within `limits.maxStoredResponse` (else none: not replayable).
    private func storedResponse(status: HTTPResponseStatus, headers: HTTPHeaders, extra: [(String, String)], body: PaidResult.Body,
                                ctx: Context) -> StoredResponse {
        let listed = HTTPWire.connectionListed(headers)
        var fields: [HeaderField] = []
        for (name, value) in headers where HTTPWire.isRelayed(name, listed: listed) {
            if HTTPWire.nameEquals(name, "x-request-id") { continue }
            if extra.contains(where: { HTTPWire.equalsIgnoringCase($0.0, name) }) { continue }
            fields.append(HeaderField(name, value))
        }
        for (name, value) in extra { fields.append(HeaderField(name, value)) }
        fields.removeAll { $0.name.utf8.contains(where: { $0 == 13 || $0 == 10 }) || $0.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) }
        var stored: [UInt8]?
        if case .buffered(let buffer) = body, buffer.readableBytes <= ctx.snapshot.config.limits.maxStoredResponseBytes {
            stored = Array(buffer.readableBytesView)
        } else {
            ctx.logger.notice("paid answer too large to store for its payment identifier; a retry gets 409 with the receipt")
        }
        return StoredResponse(status: Int(status.code), headers: fields, body: stored)
    }

    /// The stored answer, as the client first got it (a fresh `X-Request-Id` is added on the way out).
    private func replay(_ response: StoredResponse, isHead: Bool) -> PaidResult {
        var headers = HTTPHeaders()
        for field in response.headers { headers.add(name: field.name, value: field.value) }
        let body = response.body ?? []
        let status = HTTPResponseStatus(statusCode: response.status)
        if !headers.contains(name: "content-length"), HTTPWire.allowsBody(status: status, isHead: isHead) {
            headers.add(name: "Content-Length", value: String(body.count))
        }
        return .upstream(status: status, headers: headers, extra: [], body: .buffered(ByteBuffer(bytes: isHead ? [] : body)))
    }

    /// How the identifier's record compares with this request.
    private func lookup(_ record: IdentifierRecord, paymentHash: String, bindingHash: String) -> PaymentFlow.IdentifierLookup {
        let samePayment = record.paymentHash == paymentHash, sameRequest = record.bindingHash == bindingHash
        switch record.state {
        case .completed:
            return .completed(samePayment: samePayment, sameRequest: sameRequest, replayable: record.response?.body != nil)
        case .inFlight, .released:
            return .inFlight(samePayment: samePayment, sameRequest: sameRequest)
        }
    }

    /// Performs the flow's actions until it produces the answer.
    /// `forwarded` is set once the request has gone to the upstream.
    private func drive(
        _ flow: inout PaymentFlow, ledger: inout Ledger, forwarded: inout Bool, streaming: inout Bool, payment: PresentedPayment,
        facilitator: any Facilitator,
        ctx: Context, logger: Logger
    ) async -> (PaidResult, RequestOutcome) {
        let responses = ctx.snapshot.responses
        let isHead = ctx.head.method == .HEAD
        var action = flow.start(payment, offers: ctx.route.offers, now: clock())
        // Every action but a refusal comes with the offer the payment matched.
        guard let offerIndex = flow.offerIndex else {
            switch action {
            case .refuse(let reason, let detail): return refusal(reason, detail: detail, ctx)
            case .rejectIdentifier(let problem): return identifierRejection(problem, ctx)
            default: return internalFailure("no offer matched, yet the flow asked for \(action)", ctx)
            }
        }
        let prepared = ctx.route.offers[offerIndex]
        let offer = prepared.offer
        // The payer the signature just proved is the rate limit's key: a limited payer costs no
        // store write and no facilitator call.
        let claimsFirst = switch action {
        case .claim, .claimPending, .claimIdentifier, .lookUpIdentifier: true
        default: false
        }
        if claimsFirst, let refusal = Routing.rateLimitAnswer(routeIndex: ctx.routeIndex, client: .payer(address: payment.from),
                                                 isHead: isHead, snapshot: ctx.snapshot, logger: logger, requestID: ctx.requestID) {
            return (.answer(refusal), .rateLimited)
        }
        var upstream: HTTPResponseHead?
        var buffered: ByteBuffer?
        /// Streamed upto: what the relayed body counted.
        var streamed: StreamedBody?
        /// The identifier's record as found (to replay, or to quote in a conflict).
        var identifierRecord: IdentifierRecord?
        while true {
            switch action {
            case .claimIdentifier(let id), .lookUpIdentifier(let id):
                let paymentHash = PaymentIdentifier.paymentHash(payment)
                let method = ctx.head.method.rawValue, path = ctx.path.pathAndQuery, routeID = ctx.route.config.id
                let bindingHash = if let body = ctx.body {
                    PaymentIdentifier.bindingHash(method: method, pathAndQuery: path, routeID: routeID, offer: offer, body: body.readableBytesView)
                } else {
                    PaymentIdentifier.bindingHash(method: method, pathAndQuery: path, routeID: routeID, offer: offer, body: EmptyCollection<UInt8>())
                }
                if case .lookUpIdentifier = action {
                    switch await ledger.lookUpIdentifier(routeID: routeID, id: id) {
                    case .success(let record?):
                        identifierRecord = record
                        action = flow.identifierChecked(lookup(record, paymentHash: paymentHash, bindingHash: bindingHash))
                    case .success(nil): action = flow.identifierChecked(.notFound)
                    case .failure: action = flow.storageFailed()
                    }
                    continue
                }
                let retention = ctx.snapshot.config.limits.storedResponseRetention
                let request = IdentifierClaimRequest(
                    routeID: routeID, id: id, paymentHash: paymentHash, bindingHash: bindingHash,
                    key: PaymentKey(network: offer.network.caip2, asset: offer.asset, payer: payment.from, nonce: payment.nonce),
                    requestID: ctx.requestID,
                    expiresAt: Int64(clamping: clock()) * 1000 + Int64(retention.components.seconds) * 1000)
                switch await ledger.claimIdentifier(request) {
                case .claimed?: action = flow.identifierChecked(.claimed)
                case .existing(let record)?:
                    identifierRecord = record
                    action = flow.identifierChecked(lookup(record, paymentHash: paymentHash, bindingHash: bindingHash))
                case nil: action = flow.storageFailed()
                }

            case .replay:
                // The flow replays only a record it was shown as completed with its answer.
                guard let record = identifierRecord, let stored = record.response else {
                    return internalFailure("replay without a stored answer", ctx)
                }
                logger.info("payment identifier replayed", metadata: ["x402.payment_identifier.request": "\(record.requestID)"])
                return (replay(stored, isHead: isHead), .replayed)

            case .rejectIdentifier(let problem):
                return identifierRejection(problem, ctx)

            case .identifierConflict(let conflict):
                logger.info("payment identifier conflict", metadata: ["x402.reason": "\(conflict.rawValue)"])
                let message = switch conflict {
                case .differentPayment: "this payment identifier was used with a different payment"
                case .differentRequest: "this payment identifier was used with this payment for a different request"
                case .inFlight: "the first request with this payment identifier is still being processed; retry later"
                case .notReplayable: "the request was paid and answered, but its answer was too large to store; PAYMENT-RESPONSE is the receipt, do not pay again"
                }
                var answer = responses.error(.conflict, code: conflict.rawValue, message: message, head: isHead)
                if conflict == .inFlight { answer.headers.add(name: "Retry-After", value: "2") }
                if conflict == .notReplayable {
                    for field in identifierRecord?.response?.headers ?? [] where HTTPWire.nameEquals(field.name, "payment-response")
                        || HTTPWire.nameEquals(field.name, "x-payment-response") {
                        answer.headers.add(name: field.name, value: field.value)
                    }
                }
                return (.answer(answer), .identifierConflict)

            case .refuse(let reason, let detail):
                return refusal(reason, detail: detail, ctx)

            case .claim:
                action = await claim(claimRequest(offer, payment, identifier: flow.identifier, ctx), &flow, &ledger, logger)

            case .claimPending:
                let request = claimRequest(offer, payment, identifier: flow.identifier, ctx)
                switch await ledger.claimPending(request, pendingSettlement(prepared, payment, ctx)) {
                case .some(.some):
                    ctx.counters.verified()
                    action = flow.claimed(.pending)
                case .some(.none): action = await claim(request, &flow, &ledger, logger)
                case .none: action = flow.storageFailed()
                }

            case .recordPending:
                action = await ledger.step(.pending(pendingSettlement(prepared, payment, ctx))) ? flow.pendingRecorded() : flow.storageFailed()

            case .handOver:
                // As before a settlement: a client gone before its answer is not charged.
                if ctx.clientGone() {
                    action = flow.clientGone()
                } else if let noted = ledger.takeNoted() {
                    // Written by the worker, off the answer's path (see ``SettlementWorker/handOver(_:_:)``),
                    // or here when it has stopped.
                    var written = settlements?.handOver(noted.ticket, noted.steps) == true
                    if !written { written = await ledger.write(noted.ticket, noted.steps) }
                    action = written ? flow.handedOver() : flow.storageFailed()
                } else {
                    action = flow.storageFailed()
                }

            case .deliverPending:
                guard let response = upstream else { return internalFailure("deliver without an upstream answer", ctx) }
                logger.info("payment accepted; settlement deferred")
                let pending = SettleResponse.pending(payer: flow.payer ?? payment.from, network: offer.network.caip2)
                return (.upstream(status: response.status, headers: response.headers, extra: [paymentResponse(pending, version: payment.version)],
                                  body: .relay), .deferred)

            case .verify:
                let requirements = requirementsJSON(prepared, payment, ctx)
                let verified = await call(.verify, logger) { () async throws(FacilitatorFailure) in
                    try await facilitator.verify(version: payment.version, paymentPayload: payment.rawJSON, requirements: requirements)
                }
                if case .success(let response) = verified, !response.isValid { ledger.refusal = response.invalidReason ?? "invalid_payment" }
                action = flow.verified(verified)
                switch action {
                case .forward, .settle, .recordPending:
                    ctx.counters.verified()
                    ledger.note(.verified(payer: flow.payer ?? payment.from))
                default: break
                }

            case .forward:
                var forwarding = ctx.forwarding
                forwarding.extraHeaders.append((ctx.snapshot.config.payerHeader, flow.payer ?? payment.from))
                do throws(ReverseProxy.Failure) {
                    guard let target = ctx.snapshot.upstreams[ctx.route.config.upstream] else { throw .unavailable("not configured") }
                    forwarded = true
                    let response = try await ctx.hop.send(ctx.head, path: ctx.path, to: target, forwarding: forwarding, body: ctx.body)
                    upstream = response
                    let handling = PaidBodyHandling(policy: flow.policy, status: Int(response.status.code), holdBack: ctx.route.config.upto?.holdBack,
                                                    bufferLimit: ctx.snapshot.config.limits.maxBufferedResponseBytes)
                    do throws(ReverseProxy.Failure) {
                        switch handling {
                        case .relay: break
                        case .holdWhole(let limit): buffered = try await ctx.hop.collect(upTo: limit)
                        case .holdTail(let holdBack):
                            streaming = true
                            streamed = try await ctx.hop.relay(status: response.status, headers: UptoSettlement.streamedHeaders(response, ctx),
                                                               holdingBack: holdBack)
                        }
                    } catch {
                        logger.warning(streaming ? "upstream stream ended early" : "upstream response too large to hold back",
                                       metadata: ["x402.stage": "upstream", "error": "\(error)"])
                        action = flow.upstreamFailed(.unavailable)
                        continue
                    }
                    if flow.settlement == nil {
                        ledger.note(.forwarded(upstreamStatus: Int(response.status.code)))
                    } else {
                        // Under `before` the payment is settled already: a failed write cannot undo that, so it is only logged.
                        await ledger.step(.forwarded(upstreamStatus: Int(response.status.code)))
                    }
                    action = flow.upstreamResponded(status: Int(response.status.code))
                } catch {
                    action = flow.upstreamFailed(error == .timeout ? .timeout : .unavailable)
                }

            case .settle:
                if ctx.clientGone() {
                    action = flow.clientGone()
                    continue
                }
                // upto: the charge depends on the answer (held back whole, or streamed and counted).
                var upto: UptoCharge?
                if let metering = ctx.route.config.upto {
                    // upto routes settle after the upstream's answer only (the loader refuses other policies).
                    guard let response = upstream else { return internalFailure("an upto charge without an upstream answer", ctx) }
                    upto = UptoSettlement.charge(offer, metering, response: response,
                                                 bodyBytes: streamed?.bytes ?? buffered?.readableBytes ?? 0,
                                                 json: streamed.map(\.lastJSONEvent) ?? UptoSettlement.json(metering, body: buffered), logger: logger)
                }
                // The row says "settling" (and what it charges) on disk before money can move: a crash
                // from here on leaves an unknown, never nothing.
                if await !ledger.step(.settling, charge: upto.map(UptoSettlement.ledgerCharge)) {
                    action = flow.storageFailed()
                    continue
                }
                let requirements = upto.map { UptoSettlement.requirementsJSON(offer, amount: $0.amount) }
                    ?? requirementsJSON(prepared, payment, ctx)
                let result: Result<SettleResponse, PaymentFlow.CallFailure> = if upto?.amount == 0 {
                    .success(UptoSettlement.nothingMoved(payer: flow.payer ?? payment.from, network: offer.network.caip2))
                } else {
                    await call(.settle, logger) { () async throws(FacilitatorFailure) in
                        try await facilitator.settle(version: payment.version, paymentPayload: payment.rawJSON, requirements: requirements)
                    }
                }
                switch result {
                case .success(let settlement) where settlement.success:
                    metrics.settlement(outcome: "settled")
                    metrics.settled(network: offer.network.caip2, asset: offer.asset, amount: upto?.amount ?? offer.amount)
                    if flow.policy == .before {
                        // The upstream is asked next, and its step must follow this one.
                        await ledger.step(.settled(transaction: settlement.transaction))
                    } else {
                        // The last step: the answer does not wait for its commit (`settling` is on disk).
                        ledger.stepWithoutWaiting(.settled(transaction: settlement.transaction), in: ledgerWrites)
                    }
                case .success(let settlement):
                    metrics.settlement(outcome: "failed")
                    ledger.refusal = settlement.errorReason ?? "settlement_failed"
                case .failure: metrics.settlement(outcome: "unknown")
                }
                action = flow.settled(result)

            case .deliver(let settlement):
                logger.info("payment settled", metadata: ["x402.transaction": "\(settlement.transaction)", "x402.network": "\(settlement.network)"])
                guard let response = upstream else { return internalFailure("deliver without an upstream answer", ctx) }
                let extra = [paymentResponse(settlement, version: payment.version)]
                return (.upstream(status: response.status, headers: response.headers, extra: extra,
                                  body: buffered.map { .buffered($0) } ?? .relay), .paid)

            case .deliverUnsettled:
                guard let response = upstream else { return internalFailure("deliver without an upstream answer", ctx) }
                logger.info("upstream failed; payment not settled", metadata: ["x402.status": "\(response.status.code)"])
                return (.upstream(status: response.status, headers: response.headers, extra: [], body: .relay), .unsettled)

            case .settlementFailed(let settlement):
                logger.warning("settlement refused; content withheld", metadata: ["x402.reason": "\(settlement.errorReason ?? "")"])
                if let mapped = FacilitatorRefusal.answer(for: settlement.errorReason) {
                    var answer = refusalAnswer(mapped, ctx)
                    let (name, value) = paymentResponse(settlement, version: payment.version)
                    answer.headers.add(name: name, value: value)
                    return (.answer(answer), .settlementFailed)
                }
                var headers: HTTPHeaders = ["Content-Type": "application/json", "Cache-Control": "no-store"]
                responses.addCORS(&headers)
                let (name, value) = paymentResponse(settlement, version: payment.version)
                headers.add(name: name, value: value)
                if isHead { headers.add(name: "Content-Length", value: "2") }
                return (.answer(Answer(status: .paymentRequired, headers: headers, body: isHead ? nil : ByteBuffer(string: "{}"))),
                        .settlementFailed)

            case .abandon:
                logger.notice("client went away before settlement; nothing charged")
                return (.answer(responses.error(.badGateway, code: "client_gone", message: "the client went away", head: isHead)), .clientGone)

            case .failClosed(let failure, let stage):
                let decided = FailClosedAnswer(failure, stage: stage, settled: flow.settlement != nil,
                                               retryAfterUnknownOutcome: flow.isRetryAfterUnknownOutcome)
                if stage != .storage { logger.warning("failing closed", metadata: ["x402.stage": "\(stage.rawValue)"]) }
                var answer = responses.error(HTTPResponseStatus(statusCode: decided.status), code: decided.code, message: decided.message,
                                             head: isHead)
                if decided.carriesReceipt, let settlement = flow.settlement {
                    // `before`: the payment was settled, then the upstream failed. Say so, with the receipt.
                    logger.error("upstream failed after settlement", metadata: ["x402.transaction": "\(settlement.transaction)"])
                    let (name, value) = paymentResponse(settlement, version: payment.version)
                    answer.headers.add(name: name, value: value)
                }
                return (.answer(answer), .failedClosed)
            }
        }
    }

    /// The ordinary claim, its answer given to the flow.
    private func claim(_ request: ClaimRequest, _ flow: inout PaymentFlow, _ ledger: inout Ledger, _ logger: Logger) async -> PaymentFlow.Action {
        switch await ledger.claim(request) {
        case .claimed?: return flow.claimed(.fresh)
        case .claimedAfterUnknownOutcome?:
            logger.notice("retrying a payment whose earlier settlement outcome is unknown")
            return flow.claimed(.afterUnknownOutcome)
        case .taken?: return flow.claimed(.taken)
        case nil: return flow.storageFailed()
        }
    }

    /// One facilitator call, its transport trouble reduced to what the flow needs to know.
    /// A failed settle is logged as an error: its outcome is unknown.
    private func call<T>(
        _ stage: PaymentFlow.Stage, _ logger: Logger, _ body: () async throws(FacilitatorFailure) -> T
    ) async -> Result<T, PaymentFlow.CallFailure> {
        do throws(FacilitatorFailure) {
            return .success(try await body())
        } catch {
            logger.log(level: stage == .settle ? .error : .warning, "facilitator call failed",
                       metadata: ["x402.stage": "\(stage.rawValue)", "error": "\(error)"])
            return .failure(error == .timeout ? .timeout : .unavailable)
        }
    }

    /// The requirements sent to the facilitator: ours (never the client's copy), in the payment's version.
    func requirementsJSON(_ prepared: PreparedOffer, _ payment: PresentedPayment, _ ctx: Context) -> [UInt8] {
        if payment.version == 1, let v1 = prepared.offer.requirementsV1(
            resourceURL: ctx.resourceURL, description: ctx.route.config.description, mimeType: ctx.route.config.mimeType,
            method: ctx.route.config.pattern.method), let json = try? HeaderCodec.compactJSON(v1)
        {
            return json
        }
        return prepared.requirementsJSON
    }

    /// A facilitator refusal the buyer can act on (see ``FacilitatorRefusal``): its status, code and
    /// advice, with the route's offer in `PAYMENT-REQUIRED` so the buyer can pay again once it has acted.
    /// The fresh 402 (or the mapped answer of a facilitator's reason) for a refused payment.
    private func refusal(_ reason: RefusalReason, detail: String?, _ ctx: Context) -> (PaidResult, RequestOutcome) {
        ctx.logger.info("payment refused", metadata: ["x402.reason": "\(reason.rawValue)", "x402.detail": "\(detail ?? "")"])
        metrics.paymentRefused(reason: reason.rawValue)
        if let mapped = FacilitatorRefusal.answer(for: detail) {
            return (.answer(refusalAnswer(mapped, ctx)), .refused)
        }
        let response = ctx.snapshot.responses.paymentRequired(
            ctx.challenge, resourceURL: ctx.resourceURL, error: detail ?? reason.rawValue, head: ctx.head.method == .HEAD, paywall: ctx.paywall,
            method: ctx.head.method.rawValue)
        return (.answer(response), .refused)
    }

    /// 400 for a payment identifier missing where required, or malformed.
    private func identifierRejection(_ problem: PaymentFlow.IdentifierProblem, _ ctx: Context) -> (PaidResult, RequestOutcome) {
        let (code, message) = switch problem {
        case .missing: ("payment_identifier_required",
                        "this route requires the payment-identifier extension: put an id in the payment's extensions[\"payment-identifier\"].info.id")
        case .invalid(let why): ("invalid_payment_identifier", why)
        }
        ctx.logger.info("payment identifier refused", metadata: ["x402.reason": "\(code)"])
        return (.answer(ctx.snapshot.responses.error(.badRequest, code: code, message: message, head: ctx.head.method == .HEAD)), .badRequest)
    }

    /// 500 for a flow that asked for something its state rules out (a bug): nothing was settled for
    /// it by this step, and the claim ends as the flow's disposition says.
    private func internalFailure(_ what: String, _ ctx: Context) -> (PaidResult, RequestOutcome) {
        ctx.logger.critical("paid request flow out of order; failing closed", metadata: ["x402.detail": "\(what)"])
        return (.answer(ctx.snapshot.responses.error(.internalServerError, code: "internal_error", message: "the request could not be completed",
                                                     head: ctx.head.method == .HEAD)), .failedClosed)
    }

    private func refusalAnswer(_ refusal: FacilitatorRefusal, _ ctx: Context) -> Answer {
        var answer = ctx.snapshot.responses.error(HTTPResponseStatus(statusCode: refusal.status), code: refusal.code,
                                                  message: refusal.message, head: ctx.head.method == .HEAD)
        answer.headers.add(name: X402Header.paymentRequired, value: ctx.challenge.header(resourceURL: ctx.resourceURL, error: refusal.code))
        return answer
    }

    /// The `PAYMENT-RESPONSE` (v2) or `X-PAYMENT-RESPONSE` (v1) header.
    func paymentResponse(_ settlement: SettleResponse, version: Int) -> (String, String) {
        var settlement = settlement
        if version == 1, let name = Networks.named(settlement.network)?.v1Name { settlement.network = name }
        return (version == 1 ? X402Header.xPaymentResponse : X402Header.paymentResponse,
                Base64.encode(Array(settlement.compactJSON.utf8)))
    }
}

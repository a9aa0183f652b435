import AsyncHTTPClient
import GatewayCore
import GatewayStorage
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Paywall
import X402
import X402Facilitator

/// The async shell around ``PaymentFlow``: performs each action the flow asks for.
struct PaidRequestHandler: Sendable {
    let replay: any ReplayGuard
    let metrics: GatewayMetrics
    let clock: @Sendable () -> UInt64

    struct Context {
        var request: Request
        var path: CanonicalPath
        var route: CompiledRoute
        var counters: RouteMetrics
        var resourceURL: String
        var snapshot: GatewaySnapshot
        var forwarding: ReverseProxy.Forwarding
        /// The browser paywall page, when the request came from a browser: refusals are shown on it.
        var paywall: PaywallPage?
        var logger: Logger

        /// Paid requests only reach priced routes.
        var challenge: Challenge { route.challenge! }
    }

    func respond(_ ctx: Context, header: String, headerVersion: Int) async -> (Response, RequestOutcome) {
        let responses = ctx.snapshot.responses
        let isHead = ctx.request.method == .head
        let logger = ctx.logger
        let payment: PresentedPayment
        do {
            payment = try PresentedPayment.decode(header: header, headerVersion: headerVersion)
        } catch {
            logger.info("payment refused", metadata: ["x402.reason": "\(error.rawValue)"])
            metrics.paymentRefused(reason: error.rawValue)
            return (responses.paymentRequired(ctx.challenge, resourceURL: ctx.resourceURL, error: error.rawValue, head: isHead,
                                              paywall: ctx.paywall, method: ctx.request.method.rawValue).response, .refused)
        }
        guard let facilitator = ctx.snapshot.facilitator else {
            logger.error("payment presented but no facilitator is configured")
            return (responses.error(.badGateway, code: "facilitator_unavailable", message: "payments cannot be verified", head: isHead).response,
                    .failedClosed)
        }
        // Priced routes take a bounded request body, held so that nothing half-forwarded can be charged.
        var requestBody: ByteBuffer?
        var request = ctx.request
        if request.headers[.contentLength] != nil || request.headers[.transferEncoding] != nil {
            do {
                requestBody = try await request.collectBody(upTo: ctx.snapshot.config.limits.maxPaidRequestBodyBytes)
            } catch {
                return (responses.error(.contentTooLarge, code: "body_too_large", message: "request body exceeds the limit for priced routes", head: isHead).response,
                        .badRequest)
            }
        }

        var flow = PaymentFlow(policy: ctx.route.config.settlement)
        var key: PaymentKey?
        let answer = await drive(&flow, key: &key, payment: payment, request: request, requestBody: requestBody,
                                   facilitator: facilitator, ctx: ctx, logger: logger)
        // Settle the claim before answering, so a client's next request sees the final state.
        if let key {
            switch flow.claim {
            case .release: await replay.release(key)
            case .spend: await replay.markSpent(key)
            case .unknown: await replay.markUnknown(key)
            case .none: break
            }
        }
        return answer
    }

    /// Performs the flow's actions until it produces the answer.
    private func drive(
        _ flow: inout PaymentFlow, key: inout PaymentKey?, payment: PresentedPayment, request: Request, requestBody: ByteBuffer?,
        facilitator: any Facilitator, ctx: Context, logger: Logger
    ) async -> (Response, RequestOutcome) {
        let responses = ctx.snapshot.responses
        let isHead = request.method == .head
        var action = flow.start(payment, offers: ctx.route.offers, now: clock())
        var upstream: HTTPClientResponse?
        var buffered: ByteBuffer?
        while true {
            switch action {
            case .refuse(let reason, let detail):
                logger.info("payment refused", metadata: ["x402.reason": "\(reason.rawValue)", "x402.detail": "\(detail ?? "")"])
                metrics.paymentRefused(reason: reason.rawValue)
                let response = responses.paymentRequired(ctx.challenge, resourceURL: ctx.resourceURL, error: detail ?? reason.rawValue,
                                                         head: isHead, paywall: ctx.paywall, method: request.method.rawValue).response
                return (response, .refused)

            case .claim:
                let offer = ctx.route.offers[flow.offerIndex!].offer
                let k = PaymentKey(network: offer.network.caip2, asset: offer.asset, from: payment.payload.authorization.from,
                                   nonce: payment.payload.authorization.nonce)
                let result = await replay.claim(k)
                switch result {
                case .claimed:
                    key = k
                    action = flow.claimed(.fresh)
                case .claimedAfterUnknownOutcome:
                    key = k
                    logger.notice("retrying a payment whose earlier settlement outcome is unknown")
                    action = flow.claimed(.afterUnknownOutcome)
                case .taken:
                    action = flow.claimed(.taken)
                }

            case .verify:
                let requirements = requirementsJSON(ctx.route.offers[flow.offerIndex!], payment, ctx)
                action = flow.verified(await call(.verify, logger) { () async throws(FacilitatorFailure) in
                    try await facilitator.verify(version: payment.version, paymentPayload: payment.rawJSON, requirements: requirements)
                })
                switch action {
                case .forward, .settle: ctx.counters.verified()
                default: break
                }

            case .forward:
                var forwarding = ctx.forwarding
                forwarding.extraHeaders.append((ctx.snapshot.config.payerHeader, flow.payer ?? payment.payload.authorization.from))
                do throws(ReverseProxy.Failure) {
                    guard let target = ctx.snapshot.upstreams[ctx.route.config.upstream] else { throw .unavailable("not configured") }
                    let response = try await ReverseProxy.forward(
                        request, path: ctx.path, to: target, forwarding: forwarding, body: requestBody, metrics: metrics, logger: logger)
                    upstream = response
                    if flow.policy == .afterSuccess && response.status.code < 400 {
                        do {
                            buffered = try await response.body.collect(upTo: ctx.snapshot.config.limits.maxBufferedResponseBytes)
                        } catch {
                            logger.warning("upstream response too large to hold back", metadata: ["x402.stage": "upstream"])
                            action = flow.upstreamFailed(.unavailable)
                            continue
                        }
                    }
                    action = flow.upstreamResponded(status: Int(response.status.code))
                } catch {
                    action = flow.upstreamFailed(error == .timeout ? .timeout : .unavailable)
                }

            case .settle:
                let requirements = requirementsJSON(ctx.route.offers[flow.offerIndex!], payment, ctx)
                let result = await call(.settle, logger) { () async throws(FacilitatorFailure) in
                    try await facilitator.settle(version: payment.version, paymentPayload: payment.rawJSON, requirements: requirements)
                }
                switch result {
                case .success(let settlement) where settlement.success:
                    metrics.settlement(outcome: "settled")
                    let offer = ctx.route.offers[flow.offerIndex!].offer
                    metrics.settled(network: offer.network.caip2, asset: offer.asset, amount: offer.amount)
                case .success: metrics.settlement(outcome: "failed")
                case .failure: metrics.settlement(outcome: "unknown")
                }
                action = flow.settled(result)

            case .deliver(let settlement):
                logger.info("payment settled", metadata: ["x402.transaction": "\(settlement.transaction)", "x402.network": "\(settlement.network)"])
                let response = upstream!
                var headers = ReverseProxy.relayedHeaders(response.headers)
                setPaymentResponse(&headers, settlement, version: payment.version)
                let status = HTTPResponse.Status(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase)
                if let buffered {
                    return (Response(status: status, headers: headers, body: ResponseBody(byteBuffer: buffered)), .paid)
                }
                return (Response(status: status, headers: headers, body: ResponseBody(asyncSequence: response.body)), .paid)

            case .deliverUnsettled:
                logger.info("upstream failed; payment not settled", metadata: ["x402.status": "\(upstream!.status.code)"])
                let response = upstream!
                let status = HTTPResponse.Status(code: Int(response.status.code), reasonPhrase: response.status.reasonPhrase)
                return (Response(status: status, headers: ReverseProxy.relayedHeaders(response.headers),
                                 body: ResponseBody(asyncSequence: response.body)), .unsettled)

            case .settlementFailed(let settlement):
                logger.warning("settlement refused; content withheld", metadata: ["x402.reason": "\(settlement.errorReason ?? "")"])
                var headers = HTTPFields()
                headers[.contentType] = "application/json"
                headers[.cacheControl] = "no-store"
                responses.addCORS(&headers)
                setPaymentResponse(&headers, settlement, version: payment.version)
                return (Response(status: .paymentRequired, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: "{}"))),
                        .settlementFailed)

            case .failClosed(let failure, let stage):
                logger.warning("failing closed", metadata: ["x402.stage": "\(stage.rawValue)"])
                let status: HTTPResponse.Status = failure == .timeout ? .gatewayTimeout : .badGateway
                let code = "\(stage == .upstream ? "upstream" : "facilitator")_\(failure == .timeout ? "timeout" : "unavailable")"
                let message = stage == .settle
                    ? "the payment's settlement outcome is unknown; do not pay again, retry later with the same payment"
                    : "the request could not be completed; nothing was charged"
                return (responses.error(status, code: code, message: message, head: isHead).response, .failedClosed)
            }
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
    private func requirementsJSON(_ prepared: PreparedOffer, _ payment: PresentedPayment, _ ctx: Context) -> [UInt8] {
        if payment.version == 1, let v1 = prepared.offer.requirementsV1(
            resourceURL: ctx.resourceURL, description: ctx.route.config.description, mimeType: ctx.route.config.mimeType,
            method: ctx.route.config.pattern.method), let json = try? HeaderCodec.compactJSON(v1)
        {
            return json
        }
        return prepared.requirementsJSON
    }

    private func setPaymentResponse(_ headers: inout HTTPFields, _ settlement: SettleResponse, version: Int) {
        var settlement = settlement
        if version == 1, let name = Networks.named(settlement.network)?.v1Name { settlement.network = name }
        guard let value = try? HeaderCodec.encode(settlement) else { return }
        headers[version == 1 ? .xPaymentResponse : .paymentResponse] = value
    }
}

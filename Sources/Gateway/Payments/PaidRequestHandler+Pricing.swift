import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import X402

/// Dynamic prices on the paid path: the request is priced (rules, or the pricing endpoint) and the
/// rest of the flow sees the route at that price: its offers are what the payment must match, what
/// is verified and what is settled; its challenge is what a refusal answers with.
extension PaidRequestHandler {
    /// A request that could not be priced, answered.
    struct PricingRefusal: Error {
        let answer: (PaidResult, RequestOutcome)
    }

    /// `ctx` with its route (and paywall page) at the request's price; unchanged for a fixed price.
    /// The pricing endpoint failing is answered 503 (fail closed: nothing forwarded, nothing charged).
    func priced(_ ctx: Context) async -> Result<Context, PricingRefusal> {
        guard let pricing = ctx.snapshot.pricing[ctx.routeIndex] else { return .success(ctx) }
        let body = pricing.price.readsBody ? ctx.body.map { Array($0.readableBytesView) } : nil
        switch await pricing.price(RoutePricing.request(head: ctx.head, path: ctx.path, body: body), metrics: metrics) {
        case .priced(let variant, let amount):
            var ctx = ctx
            ctx.route = variant.route
            if ctx.paywall != nil { ctx.paywall = variant.paywall }
            ctx.logger[metadataKey: "x402.price"] = "\(amount)"
            return .success(ctx)
        case .failed(let why):
            ctx.logger.warning("pricing endpoint failed: request refused", metadata: ["x402.reason": "\(why)"])
            var answer = ctx.snapshot.responses.error(
                .serviceUnavailable, code: "pricing_unavailable", message: "the price of this request cannot be determined right now",
                head: ctx.head.method == .HEAD)
            answer.headers.add(name: "Retry-After", value: "1")
            return .failure(PricingRefusal(answer: (.answer(answer), .failedClosed)))
        }
    }

    /// The 402 of a request without a payment whose price needed its body or the pricing endpoint.
    func paymentRequired(_ ctx: Context) -> (PaidResult, RequestOutcome) {
        ctx.counters.challenged()
        let answer = ctx.snapshot.responses.paymentRequired(
            ctx.challenge, resourceURL: ctx.resourceURL, head: ctx.head.method == .HEAD, paywall: ctx.paywall,
            method: ctx.head.method.rawValue)
        return (.answer(answer), .paymentRequired)
    }
}

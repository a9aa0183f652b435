import BigInt
import GatewayCore
import GatewayStorage
import Logging
import NIOHTTP1
import X402

/// The paid path's part of deferred settlement: whether a payment may be served before its
/// settlement, and what is written for the settlement worker.
extension PaidRequestHandler {
    /// A payment admitted to deferral, as counted in the exposure.
    struct Admitted {
        var route: String
        var payer: String
        var amount: BigUInt
    }

    /// Asks the route's risk budget whether this payment may be served before its settlement; nil:
    /// it is served after-success. The payer and amount are the authorization's (the flow refuses
    /// the payment unless its signature and the offer agree; the amount counted is then taken back).
    func admitDeferral(_ payment: PresentedPayment, ctx: Context) -> Admitted? {
        guard let deferral = ctx.route.config.deferral, let settlements, settlements.isReady else { return nil }
        guard let amount = BigUInt(payment.payload.value) else { return nil }
        let route = ctx.route.config.id
        let decision = settlements.gate.admit(route: route, payer: payment.from, amount: amount, deferral: deferral,
                                              config: ctx.snapshot.config.deferredSettlement, now: Int64(clamping: clock()) * 1000)
        guard decision == .deferred else {
            ctx.logger.info("payment not deferred; settled before delivery", metadata: ["x402.reason": "\(decision.rawValue)"])
            metrics.deferralDeclined(decision.rawValue)
            return nil
        }
        return Admitted(route: route, payer: payment.from, amount: amount)
    }

    /// What the ledger's claim of this payment holds.
    func claimRequest(_ offer: Offer, _ payment: PresentedPayment, identifier: String?, _ ctx: Context) -> ClaimRequest {
        ClaimRequest(
            key: PaymentKey(network: offer.network.caip2, asset: offer.asset, payer: payment.from, nonce: payment.nonce),
            offer: PaymentOffer(scheme: offer.scheme, network: offer.network.caip2, asset: offer.asset, amount: String(offer.amount),
                                payTo: offer.payTo, transferMethod: offer.transferMethod.rawValue),
            routeID: ctx.route.config.id, method: ctx.head.method.rawValue, path: ctx.path.path, requestID: ctx.requestID,
            validBefore: UInt64(payment.payload.validBefore) ?? 0, paymentIdentifier: identifier)
    }

    /// The payment as the settlement worker will send it to `/settle`: the client's payload, and
    /// our requirements in its version.
    func pendingSettlement(_ prepared: PreparedOffer, _ payment: PresentedPayment, _ ctx: Context) -> PendingSettlement {
        PendingSettlement(x402Version: payment.version, payload: String(decoding: payment.rawJSON, as: UTF8.self),
                          requirements: String(decoding: requirementsJSON(prepared, payment, ctx), as: UTF8.self))
    }
}

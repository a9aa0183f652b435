import BigInt
import GatewayCore
import GatewayStorage
import Logging
import NIOCore
import NIOHTTP1
import X402

/// What a streamed `upto` answer counted while it was relayed (``UpstreamHop/relay``).
package struct StreamedBody: Sendable {
    package var bytes: Int
    /// The data of its last server-sent event that is a JSON object (for `perUnit`).
    package var lastJSONEvent: [UInt8]?

    package init(bytes: Int, lastJSONEvent: [UInt8]?) {
        self.bytes = bytes
        self.lastJSONEvent = lastJSONEvent
    }
}

/// The `upto` part of a paid request once the upstream has answered: what to charge (from the
/// upstream's `Settlement-Overrides`, the route's rule, or the maximum; see ``UptoCharge``), and
/// the requirements that ask the facilitator to settle that amount. The header itself never
/// reaches the client (``HTTPWire/unrelayedResponseHeaders``), on any route.
enum UptoSettlement {
    /// The charge for the answer held back in `body` (or, streamed, `relayedBytes` and the last
    /// JSON event). A report the gateway could not use, or one above the maximum, is the
    /// upstream's error: logged, and the charge falls through to the rule or is capped.
    static func charge(_ offer: Offer, _ metering: UptoMetering, response: HTTPResponseHead, bodyBytes: Int, json: [UInt8]?,
                       logger: Logger) -> UptoCharge
    {
        let report = response.headers.first(name: SettlementOverride.header)
        let charge = UptoCharge.decide(offer: offer, metering: metering, report: report, bodyBytes: bodyBytes, json: json)
        if charge.problem != nil || charge.capped {
            logger.warning("upstream usage report not used as sent (the upstream's error)", metadata: [
                "x402.upto.problem": "\(charge.problem ?? "more than the maximum")", "x402.upto.basis": "\(charge.ledgerBasis)",
                "x402.upto.charged": "\(charge.amount)", "x402.upto.maximum": "\(offer.amount)",
            ])
        }
        return charge
    }

    /// The head of a streamed answer, sent before the settlement: rewritten as every paid answer is
    /// (private, `Vary`, CORS; see ``PaidResponseHeaders``). The receipt follows as a trailer.
    static func streamedHeaders(_ response: HTTPResponseHead, _ ctx: PaidRequestHandler.Context) -> HTTPHeaders {
        PaidResponseHeaders.rewrite(response.headers, extra: [], caching: ctx.route.config.cache, allowOrigin: ctx.snapshot.config.cors.allowOrigin)
    }

    /// The JSON body the per-unit rule reads from a held-back answer; nil for other rules (not parsed).
    static func json(_ metering: UptoMetering, body: ByteBuffer?) -> [UInt8]? {
        guard case .perUnit? = metering.rule, let body else { return nil }
        return Array(body.readableBytesView)
    }

    /// The requirements of `/settle`: the offer's, its amount the charge (the x402 `upto` scheme's
    /// settle-time meaning of `amount`; the facilitator checks the signature against the maximum).
    static func requirementsJSON(_ offer: Offer, amount: BigUInt) -> [UInt8] {
        var requirements = offer.requirements
        requirements.amount = String(amount)
        return (try? HeaderCodec.compactJSON(requirements)) ?? []
    }

    /// A charge of zero moves nothing: no facilitator call, no transaction (`transaction: ""`).
    static func nothingMoved(payer: String, network: String) -> SettleResponse {
        SettleResponse(success: true, payer: payer, transaction: "", network: network, amount: "0")
    }

    /// How the ledger records the charge.
    static func ledgerCharge(_ charge: UptoCharge) -> PaymentCharge {
        PaymentCharge(amount: String(charge.amount), basis: charge.ledgerBasis)
    }
}

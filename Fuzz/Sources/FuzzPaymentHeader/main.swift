// Payment header decoding: base64, the strict JSON reader, the mapping into the v1 and v2 models,
// and the offer matching and local pre-verification that follow.
//
// Input: byte 0 even → the rest is the header text as sent; odd → the rest is the JSON, sent as
// its base64 (so the fuzzer works on JSON directly). Properties:
// - base64: what decodes re-encodes to the same text (padding aside) and back;
// - JSON: a refusal points inside the input; what parses, written back, parses to the same tree;
// - the models (v2 `PaymentPayload`, v1 `PaymentPayloadV1`): decode → encode → decode gives the same value;
// - `PresentedPayment.decode` agrees with them: a header it accepts has a JSON object that maps
//   to the model of its version, and its raw JSON is the header's bytes exactly;
// - matching against the route's offers and pre-verification (signature recovery included) never trap.
import BigInt
@testable import GatewayCore
import X402
import FuzzSupport

func trimmedPadding(_ s: String) -> Substring {
    var s = Substring(s)
    while s.hasSuffix("=") { s = s.dropLast() }
    return s
}

let baseSepolia = Networks.named("base-sepolia")!
let offers = [
    PreparedOffer(offer: Offer(
        network: baseSepolia, amount: 1000, asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", maxTimeoutSeconds: 60,
        extra: ["name": .string("USDC"), "version": .string("2")], decimals: 6, symbol: "USDC")),
    PreparedOffer(offer: Offer(
        network: Networks.named("base")!, amount: BigUInt(10).power(18), asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", maxTimeoutSeconds: 300,
        extra: ["name": .string("USD Coin"), "version": .string("2")], decimals: 6, symbol: "USDC")),
]

func roundTrip<T: Encodable & Equatable>(_ value: T, _ decode: (JSONNode) throws -> T, _ what: String) {
    let encoded: [UInt8]
    do {
        encoded = try HeaderCodec.compactJSON(value)
    } catch {
        require(false, "\(what) does not encode: \(error) \(value)")
        return
    }
    do {
        let again = try decode(try JSONReader.parse(encoded))
        require(again == value, "\(what) changed in a round trip: \(value) → \(String(decoding: encoded, as: UTF8.self)) → \(again)")
    } catch {
        require(false, "\(what) encoded as \(String(decoding: encoded, as: UTF8.self)) does not decode: \(error)")
    }
}

Fuzzer.run { bytes in
    var input = FuzzInput(bytes)
    let mode = input.byte()
    let rest = input.rest()
    let header = mode & 1 == 0 ? String(decoding: rest, as: UTF8.self) : Base64.encode(rest)

    guard let json = Base64.decode(header) else {
        for version in [1, 2] {
            do throws(RefusalReason) {
                _ = try PresentedPayment.decode(header: header, headerVersion: version)
                require(false, "\(header) is not base64 yet decodes as a payment")
            } catch {
                require(error == .malformed, "\(header) is not base64: \(error)")
            }
        }
        return
    }
    let reencoded = Base64.encode(json)
    require(trimmedPadding(reencoded) == trimmedPadding(header), "base64 \(header) re-encodes as \(reencoded)")
    require(Base64.decode(reencoded) == json, "base64 \(reencoded) does not decode to its bytes")

    var root: JSONNode?
    do throws(JSONReaderError) {
        let node = try JSONReader.parse(json)
        let written = JSONNodeWriter.write(node)
        do {
            let again = try JSONReader.parse(written)
            require(again == node, "JSON changed when written back: \(String(decoding: written, as: UTF8.self))")
        } catch {
            require(false, "JSON written back is refused: \(error) in \(String(decoding: written, as: UTF8.self))")
        }
        root = node
    } catch {
        require(error.offset >= 0 && error.offset <= json.count, "\(error) outside \(json.count) bytes")
    }

    var v2: PaymentPayload?
    var v1: PaymentPayloadV1?
    if let root {
        v2 = try? PaymentPayload(json: root)
        v1 = try? PaymentPayloadV1(json: root)
        if let v2 { roundTrip(v2, { try PaymentPayload(json: $0) }, "v2 payload") }
        if let v1 { roundTrip(v1, { try PaymentPayloadV1(json: $0) }, "v1 payload") }
    }

    for headerVersion in [1, 2] {
        let payment: PresentedPayment
        do {
            payment = try PresentedPayment.decode(header: header, headerVersion: headerVersion)
        } catch {
            continue
        }
        require(root != nil && json.starts(with: [0xEF, 0xBB, 0xBF]) == false, "accepted a payment without a JSON object: \(header)")
        require(payment.rawJSON == json, "raw JSON differs from the header's bytes")
        switch payment.version {
        case 2:
            require(v2 != nil, "accepted as v2 without a v2 payload: \(header)")
            require(payment.accepted == v2?.accepted && payment.payload == v2?.payload, "v2 payment differs from its model")
        case 1:
            require(v1 != nil, "accepted as v1 without a v1 payload: \(header)")
            require(v1.map { EVMPayload.eip3009($0.payload) } == payment.payload && payment.scheme == v1?.scheme, "v1 payment differs from its model")
            require(Networks.named(v1!.network)?.caip2 == payment.network, "v1 network \(v1!.network) mapped to \(payment.network)")
        default:
            require(false, "accepted version \(payment.version)")
        }
        if case .valid(let id) = payment.identifier {
            require(PaymentIdentifier.isValid(id), "accepted an invalid payment identifier \(id)")
        }
        switch PaymentCheck.match(payment, offers: offers) {
        case .success(let n):
            require(offers.indices.contains(n), "matched offer \(n) of \(offers.count)")
            let offer = offers[n].offer
            require(offer.network.caip2 == payment.network && offer.scheme == payment.scheme, "matched an offer of another network or scheme")
            require(Money.atomicUnits(fromInteger: payment.payload.value) == offer.amount, "matched another amount")
            _ = PaymentCheck.preVerify(payment, offer: offers[n], now: 1_750_000_000)
        case .failure:
            break
        }
    }
}

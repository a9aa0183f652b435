// Facilitator answer decoding: the bodies of `/verify`, `/settle` and `/supported` as the
// facilitator client decodes them (the strict JSON reader, then the model).
//
// Input: the body. Properties, for each of the three answers:
// - decoding never traps; a body that is not JSON is `.malformedResponse`;
// - what decodes, encoded again (`JSONEncoder`, as the gateway writes models), decodes to the same value;
// - a settlement's `compactJSON` (the `PAYMENT-RESPONSE` the gateway sends) is byte for byte the
//   encoder's JSON, and the header decodes back to the settlement.
import NIOCore
import X402
@testable import X402Facilitator
import FuzzSupport

func check<T: JSONNodeDecodable & Codable & Equatable>(_ type: T.Type, _ body: ByteBuffer, parsed: Bool) {
    let value: T
    do throws(FacilitatorFailure) {
        value = try HTTPFacilitatorClient.decode(body)
    } catch {
        require(error == .malformedResponse, "\(T.self): \(error)")
        return
    }
    require(parsed, "\(T.self) decoded from a body the JSON reader refuses")
    let encoded: [UInt8]
    do {
        encoded = try HeaderCodec.compactJSON(value)
    } catch {
        require(false, "\(T.self) does not encode: \(error)")
        return
    }
    do {
        let again: T = try HTTPFacilitatorClient.decode(ByteBuffer(bytes: encoded))
        require(again == value, "\(T.self) changed in a round trip: \(value) → \(again)")
    } catch {
        require(false, "\(T.self) encoded as \(String(decoding: encoded, as: UTF8.self)) does not decode")
    }
    if let settlement = value as? SettleResponse {
        let compact = settlement.compactJSON
        require(Array(compact.utf8) == encoded, "compactJSON \(compact) is not the encoder's \(String(decoding: encoded, as: UTF8.self))")
        let header = Base64.encode(Array(compact.utf8))
        do {
            let decoded = try HeaderCodec.decode(SettleResponse.self, from: header)
            require(decoded == settlement, "PAYMENT-RESPONSE decodes to \(decoded), not the settlement")
        } catch {
            require(false, "PAYMENT-RESPONSE \(header) does not decode: \(error)")
        }
    }
}

Fuzzer.run { bytes in
    let body = ByteBuffer(bytes: bytes)
    let parsed = (try? JSONReader.parse(bytes)) != nil
    check(VerifyResponse.self, body, parsed: parsed)
    check(SettleResponse.self, body, parsed: parsed)
    check(SupportedResponse.self, body, parsed: parsed)
}

import Foundation
import Testing
import X402

/// Facilitator answers read with `JSONReader` agree with `JSONDecoder` on what both accept.
@Suite("Facilitator answers from JSONNode")
struct FacilitatorAnswerDecodeTests {
    static let verify = [
        #"{"isValid":true,"payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#,
        #"{"isValid":false,"invalidReason":"insufficient_funds","invalidMessage":"balance 0","payer":null}"#,
    ]
    static let settle = [
        #"{"success":true,"transaction":"0xabc","network":"eip155:84532","payer":"0x85","amount":"1000"}"#,
        #"{"success":false,"errorReason":"invalid_transaction_state","transaction":"","network":"base-sepolia"}"#,
    ]
    static let supported = [
        #"{"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:84532"},{"x402Version":1,"scheme":"exact","network":"base-sepolia","extra":{"feePayer":"x","n":2}}],"extensions":["bazaar"],"signers":{"eip155:*":["0x1"]}}"#,
        #"{"kinds":[]}"#,
    ]

    @Test("the same values as JSONDecoder", arguments: 0..<2)
    func agrees(index: Int) throws {
        func both<T: Decodable & Equatable>(_ text: String, _ make: (JSONNode) throws -> T) throws {
            let ours = try make(try JSONReader.parse(Array(text.utf8)))
            #expect(ours == (try JSONDecoder().decode(T.self, from: Data(text.utf8))))
        }
        try both(Self.verify[index], VerifyResponse.init(json:))
        try both(Self.settle[index], SettleResponse.init(json:))
        try both(Self.supported[index], SupportedResponse.init(json:))
    }

    @Test("wrong shapes are refused", arguments: [
        #"{"isValid":"true"}"#, #"{"payer":"0x1"}"#, #"[]"#, #"{"isValid":null}"#,
    ])
    func refusesVerify(text: String) throws {
        let node = try JSONReader.parse(Array(text.utf8))
        #expect(throws: JSONShapeError.self) { try VerifyResponse(json: node) }
    }

    @Test("a settle answer without its transaction or network is refused", arguments: [
        #"{"success":true,"network":"eip155:84532"}"#, #"{"success":true,"transaction":"0x1"}"#, #"{"success":1,"transaction":"","network":""}"#,
    ])
    func refusesSettle(text: String) throws {
        let node = try JSONReader.parse(Array(text.utf8))
        #expect(throws: JSONShapeError.self) { try SettleResponse(json: node) }
    }
}

@Suite("PAYMENT-RESPONSE JSON")
struct SettleResponseJSONTests {
    @Test("compactJSON is byte for byte what HeaderCodec.compactJSON (JSONEncoder) writes", arguments: [
        SettleResponse(success: true, payer: "0x85", transaction: "0xabc", network: "eip155:84532"),
        SettleResponse(success: false, errorReason: "invalid/reason", errorMessage: "tab\tquote\"back\\slash é \u{1}",
                       transaction: "", network: "base-sepolia", amount: "1000"),
    ])
    func sameBytes(settlement: SettleResponse) throws {
        #expect(Array(settlement.compactJSON.utf8) == (try HeaderCodec.compactJSON(settlement)))
    }
}

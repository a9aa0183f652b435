import Foundation
import Testing
import X402

@Suite("Header codecs")
struct HeaderCodecTests {
    static let settleFailure = "eyJzdWNjZXNzIjpmYWxzZSwiZXJyb3JSZWFzb24iOiJpbnN1ZmZpY2llbnRfZnVuZHMiLCJ0cmFuc2FjdGlvbiI6IiIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9"

    @Test("spec base64 vectors decode to the documented JSON and re-encode identically", arguments: [
        (settleFailure, #"{"success":false,"errorReason":"insufficient_funds","transaction":"","network":"eip155:84532","payer":"0x857b06519E91e3A54538791bDbb0E22373e36b66"}"#),
        ("eyJiYXphYXIiOnsic3RhdHVzIjoic3VjY2VzcyJ9fQ==", #"{"bazaar":{"status":"success"}}"#),
        ("eyJkIjoiY2Fmw6kifQ==", #"{"d":"café"}"#),
    ])
    func vectors(encoded: String, json: String) throws {
        let bytes = try #require(Base64.decode(encoded))
        #expect(String(decoding: bytes, as: UTF8.self) == json)
        #expect(Base64.encode(Array(json.utf8)) == encoded)
    }

    @Test("a settle response decodes from its header")
    func settleResponse() throws {
        let r = try HeaderCodec.decode(SettleResponse.self, from: Self.settleFailure)
        #expect(!r.success)
        #expect(r.errorReason == "insufficient_funds")
        #expect(r.network == "eip155:84532")
    }

    @Test("unpadded standard base64 is accepted")
    func unpadded() {
        #expect(Base64.decode("eyJiYXphYXIiOnsic3RhdHVzIjoic3VjY2VzcyJ9fQ") == Base64.decode("eyJiYXphYXIiOnsic3RhdHVzIjoic3VjY2VzcyJ9fQ=="))
    }

    @Test("anything but standard base64 is refused", arguments: [
        "eyJk-IjoiY2Fmw6kifQ==", "eyJk_IjoiY2Fmw6kifQ==", "eyJkIjoi Y2Fmw6kifQ==", "eyJkIjoiY2Fmw6kifQ===", "e",
        "eyJkIjoiY2Fmw6kifQ=\n", "QR==", "=",
    ])
    func refuses(text: String) {
        #expect(Base64.decode(text) == nil)
    }

    @Test("base64 round-trips every length", arguments: 0..<40)
    func roundTrip(length: Int) {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let encoded = Base64.encode(bytes)
        #expect(encoded == Data(bytes).base64EncodedString())
        #expect(Base64.decode(encoded) == bytes)
    }

    struct Text: Codable { var s: String }

    /// Found by fuzzing (FuzzFacilitatorAnswer, FuzzRoundTrip): `JSONString` wrote U+0008 and
    /// U+000C as `\u0008` and `\u000c` where the encoder writes `\b` and `\f`, so a receipt or a
    /// challenge carrying them was not the encoder's bytes, as both promise.
    @Test("JSONString writes every control character, quote, backslash, slash, DEL and U+2028 as JSONEncoder does")
    func quotedLikeTheEncoder() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        var texts = (0..<0x20).map { String(UnicodeScalar(UInt8($0))) }
        texts += ["\"", "\\", "/", "\u{7F}", "\u{2028}", "é", "a\u{8}b\u{C}c", ""]
        for text in texts {
            let encoded = String(decoding: try encoder.encode(Text(s: text)), as: UTF8.self)
            #expect("{\"s\":" + JSONString.quoted(text) + "}" == encoded, "\(text.unicodeScalars.map(\.value))")
        }
    }

    @Test("a receipt whose texts hold a backspace and a form feed is byte for byte the encoder's JSON")
    func receiptWithBackspace() throws {
        let settlement = SettleResponse(success: false, errorReason: "a\u{8}", errorMessage: "caf\u{E9} \"\\\u{8}\u{C}\u{2028}", payer: "\u{C}",
                                        transaction: "", network: "eip155:84532", amount: "1000")
        #expect(Array(settlement.compactJSON.utf8) == (try HeaderCodec.compactJSON(settlement)))
        #expect(try HeaderCodec.decode(SettleResponse.self, from: Base64.encode(Array(settlement.compactJSON.utf8))) == settlement)
    }
}

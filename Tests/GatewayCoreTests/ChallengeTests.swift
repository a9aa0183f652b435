import BigInt
import Foundation
import GatewayCore
import Testing
import X402

@Suite("402 challenges")
struct ChallengeTests {
    @Test("the PAYMENT-REQUIRED header is padded base64 of compact v2 JSON with the request's URL")
    func v2Header() throws {
        let r = try route("GET /weather")
        let challenge = try #require(CompiledRoute(config: r).challenge)
        let url = "https://api.example.com/weather?city=\"Paris\"&x=</script>"
        let header = challenge.header(resourceURL: url)
        #expect(header.count % 4 == 0)
        let bytes = try #require(Base64.decode(header))
        let decoded = try JSONDecoder().decode(PaymentRequired.self, from: Data(bytes))
        #expect(decoded.x402Version == 2)
        #expect(decoded.error == "Payment required")
        #expect(decoded.resource.url == url)
        #expect(decoded.accepts.count == 1)
        #expect(decoded.accepts[0].amount == "1000")
        #expect(decoded.accepts[0].network == "eip155:84532")
        #expect(decoded.accepts[0].asset == "0x036CbD53842c5426634e7929541eC2318f3dCF7e")
        #expect(decoded.accepts[0].extra?["name"] == .string("USDC"))
        // The template gives byte-for-byte what encoding the filled-in value would.
        let direct = try HeaderCodec.compactJSON(decoded)
        #expect(bytes == direct)
    }

    /// Found by fuzzing (FuzzRoundTrip): the templates' holes were escaped unlike the encoder.
    @Test("a description, URL and error with a backspace or form feed still render byte for byte as the encoder writes them")
    func controlCharactersInHoles() throws {
        var r = try route("GET /weather")
        r.description = "temp\u{8}rature\u{C}"
        let challenge = try #require(CompiledRoute(config: r).challenge)
        let url = "https://h/\u{8}", error = "\u{C}refused\u{1}"
        let bytes = challenge.paymentRequired(resourceURL: url, error: error)
        let decoded = try JSONDecoder().decode(PaymentRequired.self, from: Data(bytes))
        #expect(decoded.resource.description == r.description && decoded.resource.url == url && decoded.error == error)
        #expect(bytes == (try HeaderCodec.compactJSON(decoded)))
        let v1 = challenge.v1Body(resourceURL: url, error: error)
        #expect(v1 == (try HeaderCodec.compactJSON(try JSONDecoder().decode(PaymentRequiredV1.self, from: Data(v1)))))
    }

    @Test("the body is a v1 PaymentRequirementsResponse with v1 network names and per-offer resources")
    func v1Body() throws {
        let challenge = try #require(CompiledRoute(config: try route("GET /weather")).challenge)
        let body = challenge.v1Body(resourceURL: "http://h/weather", error: "X-PAYMENT header is required")
        let decoded = try JSONDecoder().decode(PaymentRequiredV1.self, from: Data(body))
        #expect(decoded.x402Version == 1)
        #expect(decoded.error == "X-PAYMENT header is required")
        #expect(decoded.accepts.map(\.network) == ["base-sepolia"])
        #expect(decoded.accepts[0].maxAmountRequired == "1000")
        #expect(decoded.accepts[0].resource == "http://h/weather")
    }

    @Test("offers on networks without a v1 name are left out of the v1 body only")
    func noV1Name() throws {
        let arb = try #require(Networks.named("eip155:42161"))
        var r = try route("GET /x")
        guard case .priced(var offers) = r.access else { Issue.record("not priced"); return }
        offers.append(Offer(network: arb, amount: 5, asset: arb.defaultAsset!.address, payTo: offers[0].payTo,
                            maxTimeoutSeconds: 60, extra: [:], decimals: 6, symbol: "USDC"))
        r.access = .priced(offers)
        let challenge = try #require(CompiledRoute(config: r).challenge)
        let v2 = try JSONDecoder().decode(PaymentRequired.self, from: Data(challenge.paymentRequired(resourceURL: "u")))
        let v1 = try JSONDecoder().decode(PaymentRequiredV1.self, from: Data(challenge.v1Body(resourceURL: "u")))
        #expect(v2.accepts.count == 2)
        #expect(v1.accepts.count == 1)
    }

    @Test("routes sharing offers share one encoded shape, and each still gets byte for byte its own description and MIME type", arguments: [
        ("Current weather", "application/json"),
        ("", ""),
        ("quotes \" and \\ backslash, </script>", "text/plain; charset=\"utf-8\""),
        ("control \u{01}\t\n and non-ASCII café ☕ \u{2028}", "x/y"),
    ])
    func sharedShape(description: String, mimeType: String) throws {
        var plain = try route("GET /weather")
        var other = try route("GET /other")
        plain.description = description
        plain.mimeType = mimeType
        other.description = "another route"
        let table = RouteTable(routes: [other, plain])
        let challenge = try #require(table.routes[1].challenge)
        let v2 = try JSONDecoder().decode(PaymentRequired.self, from: Data(challenge.paymentRequired(resourceURL: "https://h/w")))
        let v1 = try JSONDecoder().decode(PaymentRequiredV1.self, from: Data(challenge.v1Body(resourceURL: "https://h/w")))
        #expect(v2.resource.description == description && v2.resource.mimeType == mimeType)
        #expect(v1.accepts.allSatisfy { $0.description == description && $0.mimeType == mimeType })
        #expect(challenge.paymentRequired(resourceURL: "https://h/w") == (try HeaderCodec.compactJSON(v2)))
        #expect(challenge.v1Body(resourceURL: "https://h/w") == (try HeaderCodec.compactJSON(v1)))
        let otherV2 = try JSONDecoder().decode(PaymentRequired.self, from: Data(try #require(table.routes[0].challenge).paymentRequired(resourceURL: "u")))
        #expect(otherV2.resource.description == "another route")
    }
}

import BigInt
import Foundation
import GatewayCore
import Testing
import X402
import X402Crypto

private let key = Hex.decode("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", prefixed: true)!

/// A signed v2 payment for `offer` whose `extensions` are `extensions` (raw JSON text), with a fixed
/// nonce when given (to build the same payment again).
private func payment(for offer: Offer, now: UInt64, extensions: String?, nonce: String? = nil, validBefore: UInt64? = nil,
                     spacing: String = "") throws -> PresentedPayment {
    let from = EIP55.checksummed(try Secp256k1.shared.address(ofPrivateKey: key))
    let auth = EIP3009Authorization(
        from: from, to: offer.payTo, value: String(offer.amount), validAfter: String(now - 60),
        validBefore: String(validBefore ?? now + 300), nonce: nonce ?? "0x" + Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255) }))
    let digest = try EIP3009.digest(
        auth, name: "USDC", version: "2", chainId: offer.network.chainId, verifyingContract: EVMAddress(hex: offer.asset)!)
    let signature = "0x" + Hex.encode(try Secp256k1.shared.sign(digest: digest, privateKey: key))
    let body = PaymentPayload(resource: nil, accepted: offer.requirements, payload: ExactEVMPayload(signature: signature, authorization: auth))
    var json = String(decoding: try HeaderCodec.compactJSON(body), as: UTF8.self)
    if let extensions {
        json.removeLast()
        json += ",\(spacing)\"extensions\":\(spacing)\(extensions)}"
    }
    return try PresentedPayment.decode(header: Base64.encode(Array(json.utf8)), headerVersion: 2)
}

private func extensions(id: String, required: Bool = false) -> String {
    "{\"payment-identifier\":{\"info\":{\"required\":\(required),\"id\":\"\(id)\"},\"schema\":{\"type\":\"object\"}}}"
}

private let settled = SettleResponse(success: true, payer: "0xpayer", transaction: "0xabc", network: "eip155:84532")
private let valid = VerifyResponse(isValid: true, payer: "0xpayer")
private let goodID = "pay_7d5d747be160e280504c099d984bcfe0"

@Suite("payment-identifier: declaration, parsing, digests")
struct PaymentIdentifierParsingTests {
    let now: UInt64 = 1_800_000_000

    @Test("ids of 16 to 128 characters from [A-Za-z0-9_-] are valid; others are not", arguments: [
        ("pay_7d5d747be160e280504c099d984bcfe0", true), (String(repeating: "a", count: 16), true),
        (String(repeating: "Z", count: 128), true), ("a-b_c-D_0123456789", true), (String(repeating: "a", count: 15), false),
        (String(repeating: "a", count: 129), false), ("pay_7d5d747be160e28!", false), ("pay 7d5d747be160e280", false),
        ("pay_7d5d747be160e28é", false), ("", false), ("pay_7d5d747be160e280\n", false),
    ])
    func validity(id: String, valid: Bool) {
        #expect(PaymentIdentifier.isValid(id) == valid)
    }

    @Test("the id is read from extensions[\"payment-identifier\"].info.id; malformed extensions are named", arguments: [
        (nil, PresentedIdentifier.absent),
        ("{}", .absent),
        ("{\"payment-identifier\":null}", .absent),
        ("{\"payment-identifier\":{\"info\":{\"required\":true}}}", .absent),
        ("{\"payment-identifier\":{\"info\":{\"required\":false,\"id\":\"\(goodID)\"}}}", .valid(goodID)),
        ("{\"payment-identifier\":{\"info\":{\"id\":\"\(goodID)\"}}}", .valid(goodID)),
        ("{\"payment-identifier\":{\"info\":{\"required\":false,\"id\":\"short\"}}}",
         .invalid("payment-identifier info.id must be 16 to 128 characters of A-Z, a-z, 0-9, '_' or '-'")),
        ("{\"payment-identifier\":{\"info\":{\"required\":false,\"id\":12345678901234567}}}", .invalid("payment-identifier info.id must be a string")),
        ("{\"payment-identifier\":{\"info\":{\"required\":\"yes\",\"id\":\"\(goodID)\"}}}",
         .invalid("payment-identifier info.required must be a boolean")),
        ("{\"payment-identifier\":{\"id\":\"\(goodID)\"}}", .invalid("extensions[\"payment-identifier\"] must have an \"info\" object")),
        ("{\"payment-identifier\":\"\(goodID)\"}", .invalid("extensions[\"payment-identifier\"] must be an object")),
    ] as [(String?, PresentedIdentifier)])
    func reading(extensions: String?, expected: PresentedIdentifier) throws {
        let offer = try #require(CompiledRoute(config: try route("GET /paid")).offers.first).offer
        #expect(try payment(for: offer, now: now, extensions: extensions).identifier == expected)
    }

    @Test("the JSON with the extension is read strictly: a duplicate key is a malformed payment, not an id")
    func strictJSON() throws {
        let offer = try #require(CompiledRoute(config: try route("GET /paid")).offers.first).offer
        #expect(throws: RefusalReason.malformed) {
            try payment(for: offer, now: now, extensions: "{\"payment-identifier\":{\"info\":{\"id\":\"\(goodID)\",\"id\":\"\(goodID)x\"}}}")
        }
    }

    @Test("v1 payments carry no identifier")
    func v1HasNone() throws {
        let json = "{\"x402Version\":1,\"scheme\":\"exact\",\"network\":\"base-sepolia\",\"payload\":{\"signature\":\"0x00\",\"authorization\":"
            + "{\"from\":\"0x0\",\"to\":\"0x0\",\"value\":\"1\",\"validAfter\":\"0\",\"validBefore\":\"1\",\"nonce\":\"0x00\"}},"
            + "\"extensions\":\(extensions(id: goodID))}"
        let decoded = try PresentedPayment.decode(header: Base64.encode(Array(json.utf8)), headerVersion: 1)
        #expect(decoded.identifier == .absent)
    }

    @Test("the 402 of a route offering payment-identifier declares it in the v2 header only, with the spec's schema",
          arguments: [PaymentIdentifierMode.optional, .required])
    func declared(mode: PaymentIdentifierMode) throws {
        var config = try route("GET /paid")
        config.paymentIdentifier = mode
        let challenge = try #require(CompiledRoute(config: config).challenge)
        let bytes = challenge.paymentRequired(resourceURL: "http://h/paid")
        let decoded = try JSONDecoder().decode(PaymentRequired.self, from: Data(bytes))
        let declaration = try #require(decoded.extensions?["payment-identifier"])
        #expect(declaration == PaymentIdentifier.declaration(required: mode == .required))
        #expect(declaration["info"]?["required"] == .bool(mode == .required))
        let schema = try #require(declaration["schema"])
        #expect(schema["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
        #expect(schema["properties"]?["id"]?["minLength"] == .number("16"))
        #expect(schema["properties"]?["id"]?["maxLength"] == .number("128"))
        #expect(schema["properties"]?["id"]?["pattern"] == .string("^[a-zA-Z0-9_-]+$"))
        #expect(schema["required"] == .array([.string("required")]))
        // Still a template: the URL and error are filled in, the rest byte-for-byte as encoding the value.
        #expect(bytes == (try HeaderCodec.compactJSON(decoded)))
        #expect(String(decoding: challenge.v1Body(resourceURL: "u"), as: UTF8.self).contains("payment-identifier") == false)
        // Routes that do not offer it do not declare it (their bazaar declaration stays).
        let plain = try #require(CompiledRoute(config: try route("GET /paid")).challenge)
        let plainExtensions = try JSONDecoder().decode(PaymentRequired.self, from: Data(plain.paymentRequired(resourceURL: "u"))).extensions
        #expect(plainExtensions?["payment-identifier"] == nil && plainExtensions?["bazaar"] != nil)
    }

    @Test("the payment digest ignores JSON spelling and the id, and changes with anything signed")
    func paymentDigest() throws {
        let offer = try #require(CompiledRoute(config: try route("GET /paid")).offers.first).offer
        let nonce = "0x" + String(repeating: "ab", count: 32)
        let a = try payment(for: offer, now: now, extensions: extensions(id: goodID), nonce: nonce)
        let spaced = try payment(for: offer, now: now, extensions: extensions(id: goodID), nonce: nonce, spacing: " ")
        let otherID = try payment(for: offer, now: now, extensions: extensions(id: goodID + "x"), nonce: nonce)
        let otherNonce = try payment(for: offer, now: now, extensions: extensions(id: goodID))
        let otherWindow = try payment(for: offer, now: now, extensions: extensions(id: goodID), nonce: nonce, validBefore: now + 301)
        #expect(a.rawJSON != spaced.rawJSON)
        #expect(PaymentIdentifier.paymentHash(a) == PaymentIdentifier.paymentHash(spaced))
        #expect(PaymentIdentifier.paymentHash(a) == PaymentIdentifier.paymentHash(otherID))
        #expect(PaymentIdentifier.paymentHash(a) != PaymentIdentifier.paymentHash(otherNonce))
        #expect(PaymentIdentifier.paymentHash(a) != PaymentIdentifier.paymentHash(otherWindow))
        #expect(PaymentIdentifier.paymentHash(a).count == 64)
    }

    @Test("the request digest changes with the method, path, query, route, offer and body")
    func bindingDigest() throws {
        let offer = try #require(CompiledRoute(config: try route("GET /paid")).offers.first).offer
        var dearer = offer
        dearer.amount += 1
        func h(_ method: String = "GET", _ path: String = "/paid?x=1", _ route: String = "r", _ o: Offer? = nil, _ body: [UInt8] = [])
            -> String
        {
            PaymentIdentifier.bindingHash(method: method, pathAndQuery: path, routeID: route, offer: o ?? offer, body: body)
        }
        let base = h()
        #expect(base == h())
        for other in [h("POST"), h("GET", "/paid?x=2"), h("GET", "/paid"), h("GET", "/paid?x=1", "s"), h("GET", "/paid?x=1", "r", dearer),
                      h("GET", "/paid?x=1", "r", nil, [1])] {
            #expect(other != base)
        }
        // Fields are length-prefixed: moving a character from one field to the next is a different request.
        #expect(h("GET", "/a", "b") != h("GET", "/ab", ""))
    }
}

@Suite("Payment flow with payment-identifier")
struct PaymentIdentifierFlowTests {
    let now: UInt64 = 1_800_000_000

    func started(_ mode: PaymentIdentifierMode?, extensions ext: String?, policy: SettlementPolicy = .afterSuccess,
                 validBefore: UInt64? = nil) throws -> (PaymentFlow, PaymentFlow.Action) {
        let compiled = CompiledRoute(config: try route("GET /paid"))
        var flow = PaymentFlow(policy: policy, identifierMode: mode)
        let p = try payment(for: compiled.offers[0].offer, now: now, extensions: ext, validBefore: validBefore)
        let action = flow.start(p, offers: compiled.offers, now: now)
        return (flow, action)
    }

    @Test("a new id is claimed before the payment; a paid answer is stored for it")
    func newIDStored() throws {
        var (flow, action) = try started(.optional, extensions: extensions(id: goodID))
        #expect(action == .claimIdentifier(goodID))
        #expect(flow.identifier == goodID)
        #expect(flow.identifierChecked(.claimed) == .claim)
        #expect(flow.identifierDisposition == .release)
        #expect(flow.claimed(.fresh) == .verify)
        #expect(flow.verified(.success(valid)) == .forward)
        #expect(flow.upstreamResponded(status: 200) == .settle)
        #expect(flow.settled(.success(settled)) == .deliver(settled))
        #expect(flow.identifierDisposition == .complete)
    }

    @Test("only a paid answer is stored: refusals, upstream failures, unknown outcomes and departures release the id")
    func nothingElseStored() throws {
        let ext = extensions(id: goodID)
        func claimed() throws -> PaymentFlow {
            var (flow, _) = try started(.optional, extensions: ext)
            _ = flow.identifierChecked(.claimed)
            return flow
        }
        var taken = try claimed()
        #expect(taken.claimed(.taken) == .refuse(.alreadyUsed, detail: nil))
        var refused = try claimed()
        _ = refused.claimed(.fresh)
        #expect(refused.verified(.success(VerifyResponse(isValid: false, invalidReason: "x"))) == .refuse(.facilitatorRefused, detail: "x"))
        var upstream = try claimed()
        _ = upstream.claimed(.fresh)
        _ = upstream.verified(.success(valid))
        #expect(upstream.upstreamResponded(status: 500) == .deliverUnsettled)
        var unknown = try claimed()
        _ = unknown.claimed(.fresh)
        _ = unknown.verified(.success(valid))
        _ = unknown.upstreamResponded(status: 200)
        #expect(unknown.settled(.failure(.timeout)) == .failClosed(.timeout, stage: .settle))
        var settleRefused = try claimed()
        _ = settleRefused.claimed(.fresh)
        _ = settleRefused.verified(.success(valid))
        _ = settleRefused.upstreamResponded(status: 200)
        _ = settleRefused.settled(.success(SettleResponse(success: false, errorReason: "no", transaction: "", network: "n")))
        var gone = try claimed()
        _ = gone.claimed(.fresh)
        _ = gone.verified(.success(valid))
        _ = gone.upstreamResponded(status: 200)
        #expect(gone.clientGone() == .abandon)
        var storage = try claimed()
        #expect(storage.storageFailed() == .failClosed(.unavailable, stage: .storage))
        for flow in [taken, refused, upstream, unknown, settleRefused, gone, storage] {
            #expect(flow.identifierDisposition == .release)
        }
        #expect(storage.claim == .none)
    }

    @Test("the store's answer decides: replay, 409 in flight, 409 for another payment or request, 409 when not stored", arguments: [
        (PaymentFlow.IdentifierLookup.completed(samePayment: true, sameRequest: true, replayable: true), PaymentFlow.Action.replay),
        (.completed(samePayment: true, sameRequest: true, replayable: false), .identifierConflict(.notReplayable)),
        (.completed(samePayment: false, sameRequest: true, replayable: true), .identifierConflict(.differentPayment)),
        (.completed(samePayment: true, sameRequest: false, replayable: true), .identifierConflict(.differentRequest)),
        (.completed(samePayment: false, sameRequest: false, replayable: true), .identifierConflict(.differentPayment)),
        (.inFlight(samePayment: true, sameRequest: true), .identifierConflict(.inFlight)),
        (.inFlight(samePayment: false, sameRequest: true), .identifierConflict(.differentPayment)),
        (.inFlight(samePayment: true, sameRequest: false), .identifierConflict(.differentRequest)),
    ])
    func decisions(lookup: PaymentFlow.IdentifierLookup, expected: PaymentFlow.Action) throws {
        var (flow, _) = try started(.optional, extensions: extensions(id: goodID))
        #expect(flow.identifierChecked(lookup) == expected)
        #expect(flow.identifierDisposition == .none)
        #expect(flow.claim == .none)
    }

    @Test("required: a payment without an id is rejected with 400 before anything; optional: it is served as usual")
    func requiredMissing() throws {
        #expect(try started(.required, extensions: nil).1 == .rejectIdentifier(.missing))
        #expect(try started(.required, extensions: "{\"payment-identifier\":{\"info\":{\"required\":true}}}").1 == .rejectIdentifier(.missing))
        #expect(try started(.optional, extensions: nil).1 == .claim)
        #expect(try started(.required, extensions: extensions(id: goodID, required: true)).1 == .claimIdentifier(goodID))
    }

    @Test("a malformed id is rejected with 400 on routes offering the extension, and ignored elsewhere")
    func invalidID() throws {
        let bad = extensions(id: "too-short")
        guard case .rejectIdentifier(.invalid) = try started(.optional, extensions: bad).1 else {
            Issue.record("a malformed id must be rejected")
            return
        }
        let (flow, action) = try started(nil, extensions: bad)
        #expect(action == .claim)
        #expect(flow.identifier == nil)
        #expect(try started(nil, extensions: extensions(id: goodID)).1 == .claim)
    }

    @Test("an expired payment with an id is only looked up: its stored answer is replayed, else it is refused as expired")
    func expiredLookup() throws {
        var (found, action) = try started(.optional, extensions: extensions(id: goodID), validBefore: now + 2)
        #expect(action == .lookUpIdentifier(goodID))
        #expect(found.identifierChecked(.completed(samePayment: true, sameRequest: true, replayable: true)) == .replay)
        var (missing, _) = try started(.optional, extensions: extensions(id: goodID), validBefore: now + 2)
        #expect(missing.identifierChecked(.notFound) == .refuse(.expired, detail: nil))
        #expect(missing.identifierDisposition == .none)
        #expect(try started(.optional, extensions: nil, validBefore: now + 2).1 == .refuse(.expired, detail: nil))
    }
}

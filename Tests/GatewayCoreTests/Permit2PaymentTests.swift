import BigInt
import GatewayCore
import Testing
import X402
import X402Crypto

/// Permit2 payments (`exact` with `assetTransferMethod: permit2`, and `upto`): decoding, matching
/// and local pre-verification, with signatures made here (Hardhat key #0).
@Suite("Permit2 payments: decode, match, pre-verify")
struct Permit2PaymentTests {
    static let key = Hex.decode("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", prefixed: true)!
    static let payer = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    static let facilitator = "0x1Ab4973a48dc892Cd9971ECE8e01DcC7688f8F23"
    static let payTo = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
    let now: UInt64 = 1_800_000_000

    static func offer(scheme: String, method: AssetTransferMethod = .permit2, facilitator: String? = Self.facilitator) -> Offer {
        let network = Networks.named("eip155:84532")!
        var extra: [String: JSONValue] = ["name": .string("USDC"), "version": .string("2")]
        if method == .permit2 { extra["assetTransferMethod"] = .string("permit2") }
        if scheme == "upto", let facilitator { extra["facilitatorAddress"] = .string(facilitator) }
        return Offer(scheme: scheme, network: network, amount: 50_000, asset: network.defaultAsset!.address, payTo: payTo,
                     maxTimeoutSeconds: 300, extra: extra, decimals: 6, symbol: "USDC", transferMethod: method)
    }

    static func prepared(_ offers: Offer...) throws -> [PreparedOffer] {
        CompiledRoute(config: RouteConfig(id: "r", pattern: try RoutePattern("GET /r"), upstream: "api", access: .priced(offers))).offers
    }

    /// A signed Permit2 payment for `offer`, each field overridable.
    func payment(for offer: Offer, edit: (inout Permit2Authorization) -> Void = { _ in }, witness: Permit2.Witness? = nil,
                 signature: String? = nil) throws -> PresentedPayment {
        let upto = offer.scheme == "upto"
        var auth = Permit2Authorization(
            from: Self.payer, permitted: Permit2TokenPermissions(token: offer.asset, amount: String(offer.amount)),
            spender: upto ? Permit2Contracts.uptoProxy : Permit2Contracts.exactProxy, nonce: "123456789",
            deadline: String(now + 300), witness: Permit2Witness(to: offer.payTo, facilitator: upto ? Self.facilitator : nil, validAfter: "0"))
        edit(&auth)
        // A message that cannot be hashed (a field malformed on purpose) gets a placeholder signature.
        let digest = try? Permit2.digest(auth, witness: witness ?? (upto ? .upto : .exact), chainId: offer.network.chainId)
        let signed = try digest.map { "0x" + Hex.encode(try Secp256k1.shared.sign(digest: $0, privateKey: Self.key)) }
            ?? "0x" + String(repeating: "11", count: 65)
        let body = PaymentPayload(resource: nil, accepted: offer.requirements,
                                  payload: .permit2(Permit2Payload(signature: signature ?? signed, permit2Authorization: auth)))
        return try PresentedPayment.decode(header: try HeaderCodec.encode(body), headerVersion: 2)
    }

    @Test("A Permit2 payload decodes as one, with the SDK's field names; the key is (from, decimal nonce)")
    func decodes() throws {
        let json = #"""
        {"x402Version":2,"accepted":{"scheme":"upto","network":"eip155:84532","amount":"50000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e",
         "payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":300},
         "payload":{"signature":"0x12","permit2Authorization":{"from":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
          "permitted":{"token":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","amount":"50000"},
          "spender":"0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002","nonce":"42","deadline":"1800000300",
          "witness":{"to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","facilitator":"0x1Ab4973a48dc892Cd9971ECE8e01DcC7688f8F23","validAfter":"0"}}}}
        """#
        let payment = try PresentedPayment.decode(header: Base64.encode(Array(json.utf8)), headerVersion: 2)
        guard case .permit2(let permit) = payment.payload else {
            Issue.record("decoded as EIP-3009")
            return
        }
        #expect(permit.permit2Authorization.witness.facilitator == Self.facilitator)
        #expect(payment.key == (Self.payer, "42"))
        #expect(payment.payload.value == "50000" && payment.payload.validBefore == "1800000300")
    }

    @Test("A Permit2 payload missing a member, or with a number where a string belongs, is malformed", arguments: [
        #""witness":{"to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C"}"#,
        #""witness":{"to":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","validAfter":0}"#,
        #""witness":null"#,
    ])
    func malformedPayload(witness: String) {
        let json = #"{"x402Version":2,"accepted":{"scheme":"exact","network":"eip155:84532","amount":"1","asset":"0x0","payTo":"0x0","maxTimeoutSeconds":1},"#
            + #""payload":{"signature":"0x12","permit2Authorization":{"from":"0x0","permitted":{"token":"0x0","amount":"1"},"#
            + #""spender":"0x0","nonce":"1","deadline":"1",\#(witness)}}}"#
        #expect(throws: RefusalReason.malformed) { try PresentedPayment.decode(header: Base64.encode(Array(json.utf8)), headerVersion: 2) }
    }

    @Test("exact through Permit2 and upto pass pre-verification when signed as the SDK signs them", arguments: ["exact", "upto"])
    func valid(scheme: String) throws {
        let offers = try Self.prepared(Self.offer(scheme: scheme))
        let payment = try payment(for: offers[0].offer)
        #expect(try PaymentCheck.match(payment, offers: offers).get() == 0)
        #expect(PaymentCheck.preVerify(payment, offer: offers[0], now: now) == nil)
    }

    @Test("An EIP-3009 offer is not paid with Permit2, nor a Permit2 offer with EIP-3009")
    func methodMismatch() throws {
        let eip3009 = try Self.prepared(Self.offer(scheme: "exact", method: .eip3009))
        let viaPermit2 = try payment(for: Self.offer(scheme: "exact"))
        #expect(PaymentCheck.match(viaPermit2, offers: eip3009) == .failure(.transferMethodMismatch))
        // Both offered: the payment picks the offer of its method.
        let both = try Self.prepared(Self.offer(scheme: "exact", method: .eip3009), Self.offer(scheme: "exact"))
        #expect(PaymentCheck.match(viaPermit2, offers: both) == .success(1))
    }

    @Test("Pre-verification refuses what the facilitator would, with the precise reason", arguments: [
        ("exact", "spender: the upto proxy", RefusalReason.permit2Spender),
        ("upto", "spender: the exact proxy", .permit2Spender),
        ("exact", "token: another", .assetMismatch),
        ("upto", "facilitator: another", .uptoFacilitator),
        ("upto", "facilitator: none", .uptoFacilitator),
        ("exact", "nonce: leading zero", .malformed),
        ("exact", "nonce: hex", .malformed),
        ("exact", "deadline: passed", .expired),
        ("upto", "validAfter: future", .notYetValid),
        ("exact", "signed as upto", .badSignature),
        ("upto", "signed as exact", .badSignature),
        ("exact", "signed by another key", .badSignature),
    ])
    func refusals(scheme: String, change: String, expected: RefusalReason) throws {
        let offers = try Self.prepared(Self.offer(scheme: scheme))
        let offer = offers[0].offer
        let other = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        var witness: Permit2.Witness?
        var signature: String?
        let edit: (inout Permit2Authorization) -> Void
        switch change {
        case "spender: the upto proxy": edit = { $0.spender = Permit2Contracts.uptoProxy }
        case "spender: the exact proxy": edit = { $0.spender = Permit2Contracts.exactProxy }
        case "token: another": edit = { $0.permitted.token = other }
        case "facilitator: another": edit = { $0.witness.facilitator = other }
        case "facilitator: none": edit = { $0.witness.facilitator = nil }
        case "nonce: leading zero": edit = { $0.nonce = "0123" }
        case "nonce: hex": edit = { $0.nonce = "0x7b" }
        case "deadline: passed": edit = { $0.deadline = String(self.now - 1) }
        case "validAfter: future": edit = { $0.witness.validAfter = String(self.now + 60) }
        case "signed as upto":
            edit = { $0.witness.facilitator = Self.facilitator }
            witness = .upto
        case "signed as exact": edit = { _ in }; witness = .exact
        default:
            edit = { _ in }
            let auth = try payment(for: offer).payload
            guard case .permit2(let p) = auth else { return }
            let digest = try Permit2.digest(p.permit2Authorization, witness: scheme == "upto" ? .upto : .exact, chainId: 84532)
            let otherKey = Hex.decode("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", prefixed: true)!
            signature = "0x" + Hex.encode(try Secp256k1.shared.sign(digest: digest, privateKey: otherKey))
        }
        let payment = try payment(for: offer, edit: edit, witness: witness, signature: signature)
        #expect(PaymentCheck.preVerify(payment, offer: offers[0], now: now) == expected)
    }

    @Test("An upto offer whose facilitator address is not known yet takes no payment")
    func uptoWithoutFacilitatorAddress() throws {
        let offers = try Self.prepared(Self.offer(scheme: "upto", facilitator: nil))
        let payment = try payment(for: Self.offer(scheme: "upto"))
        #expect(PaymentCheck.preVerify(payment, offer: offers[0], now: now) == .uptoFacilitator)
    }

    @Test("Permit2 offers are not offered to v1 clients; the 402 entry says assetTransferMethod permit2")
    func noV1() {
        for offer in [Self.offer(scheme: "exact"), Self.offer(scheme: "upto")] {
            #expect(offer.requirementsV1(resourceURL: "https://x/r", description: "", mimeType: "", method: "GET") == nil)
            #expect(offer.requirements.extra?["assetTransferMethod"] == .string("permit2"))
        }
        #expect(Self.offer(scheme: "exact", method: .eip3009).requirementsV1(resourceURL: "https://x/r", description: "", mimeType: "",
                                                                                method: "GET") != nil)
    }
}

import Crypto
import Foundation
import GatewayCore
import Testing
import X402

private let secretA = Array("x402-gateway pass test key, 32+ bytes long".utf8)
private let secretB = Array("another key of the gateway, also 32+ bytes".utf8)
private let payer = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

private func ring(_ keys: (String, [UInt8])...) -> PassKeyring {
    PassKeyring(PassesConfig(keys: keys.map { PassKey(id: $0.0, secret: $0.1) }))!
}

/// base64url without padding, as the pass format writes it (independent of the code under test).
private func base64url(_ bytes: [UInt8]) -> String {
    // Character mapping, not a fixture edit: Foundation's method (`options:`), where absence is fine.
    Base64.encode(bytes).replacingOccurrences(of: "+", with: "-", options: .literal).replacingOccurrences(of: "/", with: "_", options: .literal)
        .replacingOccurrences(of: "=", with: "", options: .literal)
}

@Suite("Route passes: format, signing, verification")
struct PassKeyringTests {
    let now: UInt64 = 1_800_000_000
    var claims: PassClaims {
        PassClaims(route: "GET /articles/:id", path: "/articles/42", payer: payer, network: "eip155:84532",
                   issuedAt: now, expiresAt: now + 86_400)
    }

    @Test("a pass is exactly the documented format: a known-answer vector computed with Python's hmac")
    func knownAnswer() {
        let token = ring(("k1", secretA)).issue(claims)
        #expect(token == "x402pass1.k1.eyJleHAiOjE4MDAwODY0MDAsImlhdCI6MTgwMDAwMDAwMCwibmV0IjoiZWlwMTU1Ojg0NTMyIiwicCI6Ii9hcnRpY2xlcy80MiIsInIiOiJHRVQgL2FydGljbGVzLzppZCIsInN1YiI6IjB4NzA5OTc5NzBDNTE4MTJkYzNBMDEwQzdkMDFiNTBlMGQxN2RjNzlDOCJ9.4IAnNA4DjSgMRaQRJTNeOd0cnGYlrLIaed-HClmvEBg")
    }

    @Test("an issued pass verifies to the claims it was issued with, until the second before it expires")
    func roundTrip() throws {
        let keys = ring(("k1", secretA))
        let token = keys.issue(claims)
        #expect(try keys.verify(token, now: now).get() == claims)
        #expect(try keys.verify(token, now: now + 86_399).get() == claims)
        #expect(keys.verify(token, now: now + 86_400) == .failure(.expired))
        #expect(keys.verify(token, now: now + 10 * 86_400) == .failure(.expired))
    }

    @Test("claims of every shape survive the round trip (random routes, groups, paths, unicode)")
    func randomRoundTrips() throws {
        let keys = ring(("k1", secretA))
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("abcXYZ019/:*-_.~ %\"\\\u{0}\u{7f}é漢🙂")
        for _ in 0..<300 {
            func text() -> String { String((0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }) }
            let grouped = Bool.random(using: &rng)
            let issued = UInt64.random(in: 0...now, using: &rng)
            let c = PassClaims(route: grouped ? nil : text(), group: grouped ? text() : nil, path: Bool.random(using: &rng) ? text() : nil,
                               payer: text(), network: text(), issuedAt: issued, expiresAt: issued + UInt64.random(in: 1...1_000_000, using: &rng))
            #expect(try keys.verify(keys.issue(c), now: c.issuedAt).get() == c)
        }
    }

    @Test("a pass issued in the future is refused beyond a minute of clock skew")
    func notYetValid() throws {
        let keys = ring(("k1", secretA))
        var future = claims
        future.issuedAt = now + 60
        #expect(try keys.verify(keys.issue(future), now: now).get() == future)
        future.issuedAt = now + 61
        #expect(keys.verify(keys.issue(future), now: now) == .failure(.notYetValid))
    }

    @Test("a forged pass is refused: claims changed under the old signature, a signature changed, a signature made up")
    func forged() {
        let keys = ring(("k1", secretA))
        let parts = keys.issue(claims).split(separator: ".").map(String.init)
        var richer = claims
        richer.path = nil  // the whole route instead of one path
        richer.expiresAt += 365 * 86_400
        let otherClaims = ring(("k1", secretA)).issue(richer).split(separator: ".").map(String.init)[2]
        #expect(keys.verify([parts[0], parts[1], otherClaims, parts[3]].joined(separator: "."), now: now) == .failure(.badSignature))
        var mac = Array(parts[3])
        mac[5] = mac[5] == "A" ? "B" : "A"
        #expect(keys.verify([parts[0], parts[1], parts[2], String(mac)].joined(separator: "."), now: now) == .failure(.badSignature))
        let madeUp = base64url(Array(repeating: 7, count: 32))
        #expect(keys.verify([parts[0], parts[1], parts[2], madeUp].joined(separator: "."), now: now) == .failure(.badSignature))
    }

    @Test("a pass naming a key id this gateway holds but signed with another secret is refused")
    func wrongKeyUnderKnownID() {
        let impostor = ring(("k1", secretB)).issue(claims)
        #expect(ring(("k1", secretA)).verify(impostor, now: now) == .failure(.badSignature))
    }

    @Test("a pass signed with a key id this gateway does not hold is refused as unknown_key")
    func unknownKey() {
        let foreign = ring(("other", secretA)).issue(claims)
        #expect(ring(("k1", secretA)).verify(foreign, now: now) == .failure(.unknownKey))
    }

    @Test("the key id cannot be swapped: it is under the signature")
    func keyIDSwap() {
        // Two keys with the same secret: a pass by k1 relabelled k2 must still fail.
        let keys = ring(("k1", secretA), ("k2", secretB))
        let parts = keys.issue(claims).split(separator: ".").map(String.init)
        #expect(parts[1] == "k1")
        #expect(keys.verify([parts[0], "k2", parts[2], parts[3]].joined(separator: "."), now: now) == .failure(.badSignature))
    }

    @Test("rotation: the first key signs, every listed key verifies, and removing a key revokes its passes")
    func rotation() throws {
        let before = ring(("old", secretA))
        let oldPass = before.issue(claims)
        let during = ring(("new", secretB), ("old", secretA))
        #expect(during.signingKeyID == "new")
        #expect(try during.verify(oldPass, now: now).get() == claims)
        let newPass = during.issue(claims)
        #expect(newPass.split(separator: ".")[1] == "new")
        #expect(before.verify(newPass, now: now) == .failure(.unknownKey))
        let after = ring(("new", secretB))
        #expect(try after.verify(newPass, now: now).get() == claims)
        #expect(after.verify(oldPass, now: now) == .failure(.unknownKey))
    }

    static let malformed: [String] = [
        "", "x402pass1", "x402pass1.k1", "x402pass1.k1.e30", "x402pass1..e30.AAAA",
        "x402pass2.k1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x402pass1.k1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.extra",
        "x402pass1.k1.e30=.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x402pass1.k1.e+0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x402pass1.k1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x402pass1.k1.e30.AAAA",
        "x402pass1.k1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/",
        "x402pass1.k1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA===",
        " x402pass1.k1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x402pass1.k1." + String(repeating: "A", count: 3000) + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]

    @Test("malformed passes are refused as malformed, before any key is looked up", arguments: malformed)
    func malformedPasses(token: String) {
        #expect(ring(("k1", secretA)).verify(token, now: now) == .failure(.malformed))
    }

    @Test("a correctly signed pass whose claims are not a pass (not JSON, route and group both, neither) is malformed")
    func signedGarbage() throws {
        let keys = ring(("k1", secretA))
        func signed(_ json: String) -> String {
            // Signed by hand with the right key, as the format says (the keyring only signs claims it encodes itself).
            let body = "x402pass1.k1." + base64url(Array(json.utf8))
            return body + "." + base64url(Array(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: secretA))))
        }
        #expect(keys.verify(signed("not json"), now: now) == .failure(.malformed))
        #expect(keys.verify(signed(#"{"r":"a","g":"b","sub":"x","net":"n","iat":1,"exp":9999999999}"#), now: now) == .failure(.malformed))
        #expect(keys.verify(signed(#"{"sub":"x","net":"n","iat":1,"exp":9999999999}"#), now: now) == .failure(.malformed))
        // The same hand-made signature over good claims is accepted: the helper is right.
        #expect(try keys.verify(signed(#"{"r":"a","sub":"x","net":"n","iat":1,"exp":9999999999}"#), now: now).get().route == "a")
    }

    @Test("a key's description never shows its secret")
    func secretNotPrinted() {
        let key = PassKey(id: "k1", secret: secretA)
        #expect("\(key)" == "PassKey(k1)")
        #expect(!"\(PassesConfig(keys: [key]))".contains("x402-gateway pass test key"))
    }
}

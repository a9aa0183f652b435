import Crypto
import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import Logging
import NIOPosix
import Testing
import X402
import X402Facilitator

/// CDP's facilitator authentication: every call carries a fresh JWT signed with the API key,
/// checked here by a verifier of our own (swift-crypto, not the library that signed it).
@Suite("CDP facilitator authentication")
struct CDPAuthenticationTests {
    /// A P-256 key in SEC 1 form, as the CDP portal downloads an ECDSA key (made for this test with
    /// `openssl ecparam -name prime256v1 -genkey -noout`; it guards nothing).
    static let sec1PEM = """
        -----BEGIN EC PRIVATE KEY-----
        MHcCAQEEIGoWffPhj/EjzgHvxOywcCr8lWII4toyeyzgGvXqVpQBoAoGCCqGSM49
        AwEHoUQDQgAEPFwmyQ+GCvfrARjiDJ5Vow3Q0wuaYnS/TDhKpd9if2W+UMz3toBs
        ACwzpiV44rVJuo2T0cowvBT4Xa+WaM/KQg==
        -----END EC PRIVATE KEY-----
        """

    enum Key: String, CaseIterable, CustomTestStringConvertible {
        case es256SEC1 = "ES256 (SEC 1 PEM, with \\n written out)", es256PKCS8 = "ES256 (PKCS #8 PEM)", ed25519 = "Ed25519 (base64 seed + public key)"
        var testDescription: String { rawValue }
    }

    /// The secret as CDP gives it, and a check of a signature over the signing input.
    static func material(_ key: Key) throws -> (secret: String, verify: @Sendable (Data, Data) -> Bool) {
        switch key {
        case .es256SEC1:
            let publicKey = try P256.Signing.PrivateKey(pemRepresentation: sec1PEM).publicKey
            return (sec1PEM.replacingOccurrences(of: "\n", with: "\\n"), { signature, input in
                (try? P256.Signing.ECDSASignature(rawRepresentation: signature)).map { publicKey.isValidSignature($0, for: input) } ?? false
            })
        case .es256PKCS8:
            let privateKey = P256.Signing.PrivateKey()
            let publicKey = privateKey.publicKey
            return (privateKey.pemRepresentation, { signature, input in
                (try? P256.Signing.ECDSASignature(rawRepresentation: signature)).map { publicKey.isValidSignature($0, for: input) } ?? false
            })
        case .ed25519:
            let privateKey = Curve25519.Signing.PrivateKey()
            let publicKey = privateKey.publicKey
            let secret = (privateKey.rawRepresentation + publicKey.rawRepresentation).base64EncodedString()
            return (secret, { signature, input in publicKey.isValidSignature(signature, for: input) })
        }
    }

    static func base64URL(_ text: Substring) -> Data? {
        // Character mapping, not a fixture edit: Foundation's method (`options:`), where absence is fine.
        var base64 = text.replacingOccurrences(of: "-", with: "+", options: .literal).replacingOccurrences(of: "_", with: "/", options: .literal)
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    /// Checks one token completely; returns its nonce.
    static func check(
        _ authorization: String?, keyId: String, algorithm: String, uri: String, verify: (Data, Data) -> Bool
    ) throws -> String {
        let token = try #require(authorization?.split(separator: " ", maxSplits: 1).last.map(String.init))
        #expect(authorization?.hasPrefix("Bearer ") == true)
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        try #require(parts.count == 3)
        let headerJSON = try #require(base64URL(parts[0]))
        let claimsJSON = try #require(base64URL(parts[1]))
        let header = try #require(try JSONSerialization.jsonObject(with: headerJSON) as? [String: Any])
        let claims = try #require(try JSONSerialization.jsonObject(with: claimsJSON) as? [String: Any])
        let signature = try #require(base64URL(parts[2]))
        #expect(header["alg"] as? String == algorithm)
        #expect(header["kid"] as? String == keyId)
        #expect(header["typ"] as? String == "JWT")
        let nonce = try #require(header["nonce"] as? String)
        #expect(nonce.count == 32 && nonce.allSatisfy(\.isHexDigit))
        #expect(claims["sub"] as? String == keyId)
        #expect(claims["iss"] as? String == "cdp")
        #expect(claims["aud"] as? [String] == ["cdp_service"])
        #expect(claims["uris"] as? [String] == [uri])
        let now = Int(Date().timeIntervalSince1970)
        let issued = try #require(claims["iat"] as? Int)
        // Minted for this call (a token lives 120 s); 5 s of slack failed in a loaded full run.
        #expect(abs(issued - now) <= 30)
        #expect(claims["nbf"] as? Int == issued)
        #expect(claims["exp"] as? Int == issued + 120)
        let input = Data((parts[0] + "." + parts[1]).utf8)
        #expect(verify(signature, input), "the signature checks with the key's public half")
        // The verifier is not a yes-sayer: a changed claim fails it.
        let forged = Data((parts[0] + "." + parts[1].dropLast()).utf8)
        #expect(!verify(signature, forged))
        return nonce
    }

    @Test("each call carries a fresh token for exactly its method, host and path, signed with the key", arguments: Key.allCases)
    func signedCalls(_ key: Key) async throws {
        let (secret, verify) = try Self.material(key)
        let keyId = "organizations/org-1/apiKeys/key-\(key.hashValue & 0xffff)"
        let authenticator = try CDPAuthenticator(keyId: keyId, keySecret: secret)
        let algorithm = key == .ed25519 ? "EdDSA" : "ES256"
        #expect(authenticator.algorithm.rawValue == algorithm)
        try await FacilitatorClientTests.withServer { server, port in
            let client = HTTPFacilitatorClient(
                baseURL: "http://127.0.0.1:\(port)/platform/v2/x402", headers: ["X-Extra": "kept"], timeout: .seconds(10),
                authenticator: authenticator, eventLoopGroup: MultiThreadedEventLoopGroup.singleton.next(),
                logger: FacilitatorClientTests.logger)
            _ = try await client.verify(version: 2, paymentPayload: FacilitatorClientTests.payload, requirements: FacilitatorClientTests.requirements)
            _ = try await client.verify(version: 2, paymentPayload: FacilitatorClientTests.payload, requirements: FacilitatorClientTests.requirements)
            _ = try await client.settle(version: 2, paymentPayload: FacilitatorClientTests.payload, requirements: FacilitatorClientTests.requirements)
            _ = try await client.supported()
            await client.shutdown()
            let requests = server.requests
            try #require(requests.count == 4)
            var nonces: Set<String> = []
            for request in requests {
                let uri = "\(request.method) 127.0.0.1:\(port)\(request.uri)"
                nonces.insert(try Self.check(request.header("Authorization"), keyId: keyId, algorithm: algorithm, uri: uri, verify: verify))
                #expect(request.header("X-Extra") == "kept")
            }
            #expect(requests.map(\.uri) == ["/platform/v2/x402/verify", "/platform/v2/x402/verify", "/platform/v2/x402/settle",
                                           "/platform/v2/x402/supported"])
            #expect(nonces.count == 4, "no two requests share a token")
        }
    }

    @Test("a secret that is no usable key is refused, without quoting it", arguments: [
        ("not a key at all", "neither a PEM EC private key"),
        (Data(repeating: 7, count: 32).base64EncodedString(), "neither a PEM EC private key"),
        ("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----", "not a P-256 EC private key"),
    ])
    func badSecrets(_ secret: String, _ reason: String) {
        let error = #expect(throws: CDPKeyError.self) { try CDPAuthenticator(keyId: "k", keySecret: secret) }
        #expect(error?.description.contains(reason) == true)
        #expect(error?.description.contains(secret) == false)
    }

    @Test("an Ed25519 secret whose public half is another key's is refused; an empty key id too")
    func mismatchedEd25519() throws {
        let seed = Curve25519.Signing.PrivateKey().rawRepresentation
        let other = Curve25519.Signing.PrivateKey().publicKey.rawRepresentation
        let error = #expect(throws: CDPKeyError.self) { try CDPAuthenticator(keyId: "k", keySecret: (seed + other).base64EncodedString()) }
        #expect(error?.description.contains("public half") == true)
        #expect(throws: CDPKeyError.self) { try CDPAuthenticator(keyId: "  ", keySecret: Self.sec1PEM) }
    }

    @Test("check: facilitator.cdp keys from the environment; a bad secret is reported at its position and never printed")
    func configuration() throws {
        let base = """
            upstreams:
              api: { url: "http://127.0.0.1:9" }
            payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
            network: eip155:84532
            routes:
              - { match: /a, price: $0.01 }

            """
        func yaml(_ cdp: String, headers: String = "") -> String {
            "facilitator:\n  url: https://api.cdp.coinbase.com/platform/v2/x402\n\(headers)  cdp: \(cdp)\n" + base
        }
        let environment = ["CDP_API_KEY_ID": "key-1", "CDP_API_KEY_SECRET": Self.sec1PEM]
        let config = try ConfigLoader.parse(
            yaml: yaml(#"{ keyId: "${CDP_API_KEY_ID}", keySecret: "${CDP_API_KEY_SECRET}" }"#), file: "g.yaml", environment: environment)
        #expect(config.facilitator?.cdp?.keyId == "key-1")
        #expect(config.facilitator?.cdp.map { "\($0)" }?.contains("MHcCAQEE") == false)

        let problems = { (text: String) in ConfigProblems.with(text, environment: ["CDP_API_KEY_SECRET": "hunter2-not-a-key"]) }
        let bad = problems(yaml(#"{ keyId: k, keySecret: "${CDP_API_KEY_SECRET}" }"#))
        #expect(bad.contains("g.yaml:3:31: facilitator.cdp: the key secret is neither"), "\(bad)")
        #expect(!bad.contains("hunter2"))
        #expect(problems(yaml("{ keyId: k }")).contains("facilitator.cdp needs keyId and keySecret"))
        #expect(problems(yaml(#"{ keyId: k, keySecret: "${CDP_API_KEY_SECRET}", extra: 1 }"#)).contains("extra"))
        let withHeader = ConfigProblems.with(
            yaml(#"{ keyId: k, keySecret: "${S}" }"#, headers: "  headers: { Authorization: Bearer x }\n"), environment: ["S": Self.sec1PEM])
        #expect(withHeader.contains("remove Authorization from facilitator.headers"))
    }
}

import Foundation
import JWTKit
import X402

/// The short-lived JWT that Coinbase's CDP facilitator expects on every call, signed with the CDP
/// API key: `Authorization: Bearer <jwt>`, a fresh one per request.
///
/// The token's shape is CDP's (as its SDK builds it: coinbase/cdp-sdk, `auth/utils/jwt.ts`):
/// header `alg` (`ES256` for an EC key, `EdDSA` for an Ed25519 key), `kid` = the key id,
/// `typ: JWT` and a random 16-byte hex `nonce`; claims `sub` = the key id, `iss: cdp`,
/// `aud: ["cdp_service"]`, `uris: ["METHOD host/path"]` (the one request it authorizes), `iat` =
/// `nbf` = now and `exp` = now + 120 s.
///
/// The key is read once, when the configuration is loaded: a secret that is no key is a `check`
/// error, never a failure at the first payment.
public struct CDPAuthenticator: Sendable {
    public enum Algorithm: String, Sendable {
        case es256 = "ES256"
        case eddsa = "EdDSA"
    }

    private enum SigningKey: Sendable {
        case es256(ES256PrivateKey)
        case eddsa(EdDSA.PrivateKey)
    }

    public let keyId: String
    private let key: SigningKey
    public var algorithm: Algorithm {
        switch key {
        case .es256: .es256
        case .eddsa: .eddsa
        }
    }

    /// Seconds a token is valid for.
    public static let lifetime = 120

    /// - Parameter keySecret: a PEM EC private key (P-256, SEC 1 or PKCS #8; `\n` written as two
    ///   characters, as environment files often hold it, is read as a line break), or the base64 of an
    ///   Ed25519 key's 32-byte seed followed by its 32-byte public key, as the CDP portal gives them.
    public init(keyId: String, keySecret: String) throws(CDPKeyError) {
        let keyId = keyId.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !keyId.isEmpty else { throw CDPKeyError("the key id is empty") }
        self.keyId = keyId
        let secret = keySecret.replacingOccurrences(of: "\\n", with: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        if secret.hasPrefix("-----BEGIN") {
            do {
                key = .es256(try ES256PrivateKey(pem: secret))
            } catch {
                throw CDPKeyError("the PEM key is not a P-256 EC private key (ES256)")
            }
            return
        }
        guard let bytes = Base64.decode(secret), bytes.count == 64 else {
            throw CDPKeyError("the key secret is neither a PEM EC private key (ES256) nor the base64 of a 64-byte Ed25519 key")
        }
        let seed = bytes.prefix(32), publicHalf = bytes.suffix(32)
        let parsed: EdDSA.PrivateKey
        do {
            parsed = try EdDSA.PrivateKey(d: Base64.encodeURL(seed), curve: .ed25519)
        } catch {
            throw CDPKeyError("the Ed25519 seed is not usable")
        }
        guard Array(parsed.publicKey.rawRepresentation) == Array(publicHalf) else {
            throw CDPKeyError("the Ed25519 key's public half does not belong to its seed")
        }
        key = .eddsa(parsed)
    }

    /// `Bearer <jwt>` for one request: `method` (`POST`), `host` (`api.cdp.coinbase.com`, with its
    /// port when not the scheme's default) and `path` (`/platform/v2/x402/verify`).
    public func authorization(method: String, host: String, path: String, now: Date = Date()) async throws -> String {
        let issued = Int(now.timeIntervalSince1970)
        let claims = CDPClaims(
            sub: keyId, iss: "cdp", aud: ["cdp_service"], uris: ["\(method) \(host)\(path)"],
            iat: issued, nbf: issued, exp: issued + Self.lifetime)
        let keys = JWTKeyCollection()
        let kid = JWKIdentifier(string: keyId)
        switch key {
        case .es256(let key): await keys.add(ecdsa: key, kid: kid)
        case .eddsa(let key): await keys.add(eddsa: key, kid: kid)
        }
        let nonce = Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
        let header: JWTHeader = ["typ": .string("JWT"), "nonce": .string(nonce)]
        return "Bearer " + (try await keys.sign(claims, kid: kid, header: header))
    }
}

/// The claims of a CDP token (see ``CDPAuthenticator``).
public struct CDPClaims: JWTPayload, Equatable {
    public var sub: String
    public var iss: String
    public var aud: [String]
    public var uris: [String]
    public var iat: Int
    public var nbf: Int
    public var exp: Int

    /// Signing needs no check; a verifier (the tests') checks the claims itself.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Why a CDP key cannot be used (never quoting the secret).
public struct CDPKeyError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

import Crypto
import Foundation
import X402

/// Issues and verifies passes with the configured HMAC-SHA256 keys. Stateless: any instance holding
/// the same keys accepts any instance's passes.
///
/// A pass is `x402pass1.<key id>.<claims>.<mac>`: `claims` is base64url (no padding) of the
/// ``PassClaims`` JSON, `mac` base64url of HMAC-SHA256(key, `x402pass1.<key id>.<claims>`). The
/// key id and the version are under the MAC, so neither can be swapped. Verification checks the
/// shape, the key, the MAC (in constant time), then the times; the scope is checked by
/// ``RoutePassPolicy``.
public struct PassKeyring: Sendable {
    public static let prefix = "x402pass1"
    /// Passes longer than this are refused unread (a cookie holds 4 KiB at most anyway).
    public static let maxTokenLength = 2048
    /// A pass issued up to this far in the future (another instance's clock) is accepted.
    public static let allowedClockSkew: UInt64 = 60

    private let keys: [(id: String, key: SymmetricKey)]

    /// `keys`: the first signs; all verify. Nil when there is none.
    public init?(_ config: PassesConfig) {
        guard !config.keys.isEmpty else { return nil }
        keys = config.keys.map { ($0.id, SymmetricKey(data: $0.secret)) }
    }

    /// The id of the key new passes are signed with.
    public var signingKeyID: String { keys[0].id }

    /// A signed pass carrying `claims`, signed with the first key.
    public func issue(_ claims: PassClaims) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding these plain fields cannot fail.
        let json = (try? encoder.encode(claims)) ?? Data()
        let signed = "\(Self.prefix).\(keys[0].id).\(Base64.encodeURL(json))"
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signed.utf8), using: keys[0].key)
        return signed + "." + Base64.encodeURL(Data(mac))
    }

    /// The claims of a pass this keyring signed and that is valid at `now` (unix seconds).
    public func verify(_ token: some StringProtocol, now: UInt64) -> Result<PassClaims, PassRejection> {
        guard token.utf8.count <= Self.maxTokenLength else { return .failure(.malformed) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == Self.prefix, !parts[1].isEmpty else { return .failure(.malformed) }
        guard let claimsBytes = Base64.decodeURL(parts[2]), let mac = Base64.decodeURL(parts[3]),
              mac.count == 32
        else { return .failure(.malformed) }
        guard let key = keys.first(where: { $0.id.utf8.elementsEqual(parts[1].utf8) })?.key else { return .failure(.unknownKey) }
        let signed = token.utf8.prefix(parts[0].utf8.count + parts[1].utf8.count + parts[2].utf8.count + 2)
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Array(signed), using: key) else {
            return .failure(.badSignature)
        }
        guard let claims = try? JSONDecoder().decode(PassClaims.self, from: Data(claimsBytes)),
              (claims.route == nil) != (claims.group == nil)
        else { return .failure(.malformed) }
        if claims.expiresAt <= now { return .failure(.expired) }
        if claims.issuedAt > now + Self.allowedClockSkew { return .failure(.notYetValid) }
        return .success(claims)
    }
}

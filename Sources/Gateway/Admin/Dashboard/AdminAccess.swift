import X402
import X402Crypto

/// Who may use the admin listener when `admin.token` is set: a request carrying the token as
/// `Authorization: Bearer <token>`, or (for reading: GET and HEAD) a session cookie that the login
/// form sets. `/healthz`, `/readyz` and the login form stay open (probes; the form). Without a
/// token everything is open, as before: the listener's address is then the only protection.
///
/// The cookie is not the token: it is `v1.<expiry>.<MAC>` with the MAC a Keccak-256 of the token
/// and the expiry, so it ends after ``sessionSeconds`` and with any change of the token. Tokens and
/// MACs are compared in constant time (digests of equal length, every byte looked at).
package struct AdminAccess: Sendable {
    package let token: String?

    package init(token: String?) { self.token = token }

    package static let cookieName = "x402_admin"
    package static let sessionSeconds: Int64 = 12 * 3600
    static let openPaths: Set<String> = ["/healthz", "/readyz", "/login", "/logout"]

    enum Credential: Equatable {
        case bearer, cookie
    }

    /// Whether a request may go on, and how it proved it (nil: refused). `authorization` and
    /// `cookies` are the values of those header fields; `now` is unix seconds.
    package func admits(path: String, method: String, authorization: [String], cookies: [String], now: Int64) -> Bool {
        guard let token else { return true }
        if Self.openPaths.contains(path) { return true }
        return credential(token: token, method: method, authorization: authorization, cookies: cookies, now: now) != nil
    }

    func credential(token: String, method: String, authorization: [String], cookies: [String], now: Int64) -> Credential? {
        for value in authorization {
            let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if parts.count == 2, parts[0].lowercased() == "bearer", Self.sameSecret(String(parts[1].trimmingASCIISpaces()), token) { return .bearer }
        }
        // The cookie reads only: a page elsewhere cannot make the browser reload the gateway with it.
        guard method == "GET" || method == "HEAD" else { return nil }
        for value in Self.cookieValues(cookies, named: Self.cookieName) where verify(session: value, now: now) { return .cookie }
        return nil
    }

    /// A session cookie value valid until `now + sessionSeconds`.
    package func session(now: Int64) -> String? {
        guard let token else { return nil }
        let expiry = now + Self.sessionSeconds
        return "v1.\(expiry).\(Self.mac(token: token, expiry: expiry))"
    }

    package func verify(session value: String, now: Int64) -> Bool {
        guard let token else { return false }
        let parts = value.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let expiry = Int64(parts[1]), expiry > now,
              expiry <= now + Self.sessionSeconds
        else { return false }
        return Self.constantTimeEquals(Array(parts[2].utf8), Array(Self.mac(token: token, expiry: expiry).utf8))
    }

    /// Whether the login form's token is the configured one.
    package func accepts(formToken: String) -> Bool {
        guard let token else { return false }
        return Self.sameSecret(formToken, token)
    }

    // MARK: Pieces

    static func mac(token: String, expiry: Int64) -> String {
        let key = Array(token.utf8)
        var message: [UInt8] = Array("x402-gateway admin session v1".utf8) + [0]
        message += withUnsafeBytes(of: UInt64(key.count).bigEndian) { Array($0) } + key + [0] + Array(String(expiry).utf8)
        return Hex.encode(Keccak256.hash(message))
    }

    /// Compares two secrets without an early exit: their digests (equal length) byte by byte.
    static func sameSecret(_ presented: String, _ expected: String) -> Bool {
        constantTimeEquals(Keccak256.hash(Array(presented.utf8)), Keccak256.hash(Array(expected.utf8)))
    }

    package static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// The values of the cookies called `name` in `Cookie` header values.
    package static func cookieValues(_ headers: [String], named name: String) -> [String] {
        headers.flatMap { HTTPWire.cookieValues($0, named: name) }.map(String.init)
    }

    /// The `token` field of an `application/x-www-form-urlencoded` body.
    package static func formField(_ body: String, named name: String) -> String? {
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, formDecode(parts[0]) == name else { continue }
            return formDecode(parts[1])
        }
        return nil
    }

    static func formDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            switch byte {
            case UInt8(ascii: "+"): bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            default: bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// `Set-Cookie` for a session (HttpOnly, SameSite=Strict, the whole listener). Not `Secure`:
    /// the admin listener speaks plain HTTP (put TLS in front of it before exposing it).
    static func setCookie(_ value: String) -> String {
        "\(cookieName)=\(value); Path=/; Max-Age=\(sessionSeconds); HttpOnly; SameSite=Strict"
    }

    static let clearCookie = "\(cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
}

/// One HMAC key of `passes.keys`. The secret is never printed (`description` shows the id only).
public struct PassKey: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Written into every pass the key signs, so a verifier knows which key to use (1–16 of
    /// `A-Z a-z 0-9 _ -`).
    public var id: String
    public var secret: [UInt8]

    public init(id: String, secret: [UInt8]) {
        self.id = id
        self.secret = secret
    }

    public var description: String { "PassKey(\(id))" }
    public var debugDescription: String { description }

    /// Shortest secret accepted: 32 bytes, the HMAC-SHA256 block's half and the hash's size.
    public static let minimumSecretBytes = 32

    /// Whether `id` is a usable key id.
    public static func isValidID(_ id: String) -> Bool {
        (1...16).contains(id.utf8.count) && id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "-")
                || c == UInt8(ascii: "_")
        }
    }
}

/// `passes:`: the keys passes are signed and verified with. The first key signs new passes; every
/// key verifies, so a key can be rotated in (put first) and out (removed once its passes expired:
/// removing it revokes every pass it signed).
public struct PassesConfig: Sendable, Hashable {
    public var keys: [PassKey]

    public init(keys: [PassKey]) { self.keys = keys }
}

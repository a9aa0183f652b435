import X402

/// EIP-55 mixed-case checksummed addresses.
public enum EIP55 {
    public static func checksummed(_ address: EVMAddress) -> String {
        let lower = Array(X402.Hex.encode(address.bytes).utf8)
        let hash = Keccak256.hash(lower)
        var out = [UInt8]("0x".utf8)
        for (i, c) in lower.enumerated() {
            let nibble = (hash[i / 2] >> (i % 2 == 0 ? 4 : 0)) & 0x0F
            out.append(c >= UInt8(ascii: "a") && nibble >= 8 ? c - 32 : c)
        }
        return String(decoding: out, as: UTF8.self)
    }

    public enum Check: Sendable, Equatable {
        /// Well-formed; the checksummed spelling.
        case valid(String)
        case malformed
        /// Mixed case that does not match the checksum (a typo).
        case badChecksum(expected: String)
    }

    /// All-lowercase and all-uppercase addresses carry no checksum and are accepted; mixed case must match.
    public static func check(_ text: String) -> Check {
        guard let address = EVMAddress(hex: text) else { return .malformed }
        let expected = checksummed(address)
        let body = text.dropFirst(2)
        let hasLower = body.contains { $0 >= "a" && $0 <= "f" }
        let hasUpper = body.contains { $0 >= "A" && $0 <= "F" }
        if hasLower && hasUpper && text != expected && "0x" + body != expected { return .badChecksum(expected: expected) }
        return .valid(expected)
    }
}

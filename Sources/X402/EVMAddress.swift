/// A 20-byte EVM address. Parsing checks the shape only; EIP-55 checksums live in X402Crypto.
public struct EVMAddress: Sendable, Hashable {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 20 else { return nil }
        self.bytes = bytes
    }

    /// Accepts `0x` followed by exactly 40 hex digits, in any case.
    public init?(hex text: String) {
        guard let bytes = Hex.decode(text, prefixed: true), bytes.count == 20 else { return nil }
        self.bytes = bytes
    }

    public var lowercaseHex: String { "0x" + Hex.encode(bytes) }
}

public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex; with `prefixed` a leading `0x` is required. Odd lengths and non-hex characters fail.
    public static func decode(_ text: String, prefixed: Bool) -> [UInt8]? {
        var utf8 = Substring(text).utf8
        if prefixed {
            guard utf8.count >= 2, utf8.first == UInt8(ascii: "0"),
                  utf8.dropFirst().first == UInt8(ascii: "x") || utf8.dropFirst().first == UInt8(ascii: "X")
            else { return nil }
            utf8 = utf8.dropFirst(2)
        }
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var high: UInt8?
        for c in utf8 {
            let v: UInt8
            switch c {
            case 0x30...0x39: v = c - 0x30
            case 0x61...0x66: v = c - 0x61 + 10
            case 0x41...0x46: v = c - 0x41 + 10
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return out
    }
}

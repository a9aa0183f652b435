/// Standard base64 (RFC 4648 §4). Encoding always pads; decoding accepts the standard alphabet with
/// or without padding and rejects everything else (base64url, whitespace, stray characters).
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    public static func encode<Bytes: Collection>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let input = Array(bytes)
        let outLength = ((input.count + 2) / 3) * 4
        return String(unsafeUninitializedCapacity: outLength) { out in
            var o = 0
            var i = 0
            while i + 3 <= input.count {
                let n = (UInt32(input[i]) << 16) | (UInt32(input[i + 1]) << 8) | UInt32(input[i + 2])
                out[o] = alphabet[Int((n >> 18) & 63)]
                out[o + 1] = alphabet[Int((n >> 12) & 63)]
                out[o + 2] = alphabet[Int((n >> 6) & 63)]
                out[o + 3] = alphabet[Int(n & 63)]
                i += 3
                o += 4
            }
            let rest = input.count - i
            if rest > 0 {
                var n = UInt32(input[i]) << 16
                if rest == 2 { n |= UInt32(input[i + 1]) << 8 }
                out[o] = alphabet[Int((n >> 18) & 63)]
                out[o + 1] = alphabet[Int((n >> 12) & 63)]
                out[o + 2] = rest == 2 ? alphabet[Int((n >> 6) & 63)] : UInt8(ascii: "=")
                out[o + 3] = UInt8(ascii: "=")
                o += 4
            }
            return o
        }
    }

    /// Returns nil for anything that is not standard base64.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var chars = Array(text.utf8)
        var padding = 0
        while chars.last == UInt8(ascii: "=") {
            chars.removeLast()
            padding += 1
        }
        if padding > 2 { return nil }
        if padding > 0 && (chars.count + padding) % 4 != 0 { return nil }
        if chars.count % 4 == 1 { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in chars {
            let v = decodeTable[Int(c)]
            if v == 0xFF { return nil }
            acc = (acc << 6) | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        // Non-canonical trailing bits (e.g. "QR==") are rejected: they mean a corrupted value.
        if bits > 0 && (acc & ((1 << UInt32(bits)) - 1)) != 0 { return nil }
        return out
    }

    // MARK: base64url (RFC 4648 §5), no padding: JWTs, route passes

    public static func encodeURL(_ bytes: some Collection<UInt8>) -> String {
        var text = Array(encode(bytes).utf8)
        while text.last == UInt8(ascii: "=") { text.removeLast() }
        for i in text.indices {
            if text[i] == UInt8(ascii: "+") { text[i] = UInt8(ascii: "-") } else if text[i] == UInt8(ascii: "/") { text[i] = UInt8(ascii: "_") }
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Nil unless `text` is non-empty unpadded base64url.
    public static func decodeURL(_ text: some StringProtocol) -> [UInt8]? {
        guard !text.isEmpty else { return nil }
        var standard: [UInt8] = []
        standard.reserveCapacity(text.utf8.count)
        for c in text.utf8 {
            switch c {
            case UInt8(ascii: "-"): standard.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): standard.append(UInt8(ascii: "/"))
            case UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="): return nil
            default: standard.append(c)
            }
        }
        return decode(String(decoding: standard, as: UTF8.self))
    }
}

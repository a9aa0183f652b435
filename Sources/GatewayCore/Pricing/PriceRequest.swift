import X402

/// What a dynamic price may read of one request: its query, its headers, its JSON body. The body
/// is parsed once, and only when the caller passed it (routes whose rules or key name a body field).
public struct PriceRequest {
    private let query: Substring?
    private let header: (String) -> String?
    private let body: JSONNode?

    /// - Parameters:
    ///   - query: the raw query (after `?`), nil when there is none.
    ///   - header: the first value of a (lower-cased) header name.
    ///   - body: the request body; not JSON is as good as no body (body fields are absent).
    public init(query: String?, header: @escaping (String) -> String?, body: [UInt8]?) {
        self.query = query.map { Substring($0) }
        self.header = header
        self.body = body.flatMap { try? JSONReader.parse($0) }
    }

    /// The field's value as text, or nil when the request does not have it. A body field counts
    /// when it is a string (its text), a number (as written) or a boolean (`true`/`false`);
    /// `null`, objects and arrays do not.
    public func value(of field: PriceField) -> String? {
        switch field {
        case .query(let name): queryValue(name)
        case .header(let name): header(name)
        case .body(let path):
            switch body.flatMap({ JSONFieldPath(keys: path).value(in: $0) }) {
            case .string(let s)?: s
            case .number(let n)?: n
            case .bool(let b)?: b ? "true" : "false"
            default: nil
            }
        }
    }

    /// The first `name=value` pair's value, percent-decoded (`+` is a space); `name` alone is "".
    private func queryValue(_ name: String) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard Self.decode(parts[0]) == name else { continue }
            return parts.count > 1 ? Self.decode(parts[1]) : ""
        }
        return nil
    }

    /// Form decoding: `+` → space, `%XX` → its byte; a malformed escape stays as written; bytes
    /// that are not UTF-8 are replaced.
    static func decode(_ text: Substring) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else { return String(text) }
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let byte = bytes.popFirst() {
            if byte == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), bytes.count >= 2,
                      let high = hex(bytes[bytes.startIndex]), let low = hex(bytes[bytes.startIndex + 1]) {
                out.append(high << 4 | low)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
}

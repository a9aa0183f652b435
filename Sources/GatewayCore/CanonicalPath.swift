/// The one canonical form of a request path. The gateway matches routes on it and forwards exactly
/// it upstream, so what was priced is what the upstream serves.
///
/// Rules, applied once:
/// - the request target must be origin-form (`/…`), printable ASCII, without `#`, `\` or `;`;
/// - `%XX` escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded; every other escape
///   is kept, with upper-case hex;
/// - escapes that would change the path's structure or meaning are refused: `%2F` (`/`), `%5C` (`\`),
///   `%3B` (`;`), `%00` and other control bytes, malformed escapes, and escapes that do not decode to
///   valid UTF-8 (overlong forms included);
/// - a double-encoded `.`, `/`, `\` or `;` (`%25` followed by `2E`, `2F`, `5C` or `3B`, any case, also
///   when spelled with escaped digits such as `%25%32%65`) is refused: an upstream that decodes
///   twice would read a dot segment, a slash or a parameter the route table never saw;
/// - empty segments (`//`) are collapsed and `.`/`..` segments resolved (never above the root).
public struct CanonicalPath: Sendable, Hashable {
    /// Canonical path, always starting with `/`.
    public let path: String
    /// Raw query string without the `?`, passed through untouched.
    public let query: String?

    public var pathAndQuery: String { query.map { path + "?" + $0 } ?? path }

    public enum Rejection: Error, Sendable, Equatable, CustomStringConvertible {
        case notOriginForm
        case invalidCharacter
        case backslash
        case pathParameters
        case malformedEscape
        case encodedSlash
        case encodedBackslash
        case encodedControl
        case invalidUTF8
        case encodedSemicolon
        case doubleEncoded

        public var description: String {
            switch self {
            case .notOriginForm: return "request target must be an absolute path"
            case .invalidCharacter: return "request path contains a character that must be percent-encoded"
            case .backslash: return "request path contains a backslash"
            case .pathParameters: return "request path contains ';' path parameters"
            case .malformedEscape: return "request path contains a malformed percent-escape"
            case .encodedSlash: return "request path contains an encoded slash (%2F)"
            case .encodedBackslash: return "request path contains an encoded backslash (%5C)"
            case .encodedControl: return "request path contains an encoded control character"
            case .invalidUTF8: return "request path does not decode to valid UTF-8"
            case .encodedSemicolon: return "request path contains an encoded semicolon (%3B)"
            case .doubleEncoded: return "request path contains a double-encoded '.', '/', '\\' or ';' (%25 followed by 2E, 2F, 5C or 3B)"
            }
        }
    }

    /// Canonicalises a raw HTTP request target (`/a/b?x=1`).
    public static func parse(target: String) throws(Rejection) -> CanonicalPath {
        var utf8 = Substring(target).utf8
        var query: String?
        if let q = utf8.firstIndex(of: UInt8(ascii: "?")) {
            query = String(Substring(utf8[utf8.index(after: q)...]))
            utf8 = utf8[..<q]
        }
        return CanonicalPath(path: try canonicalize(path: utf8), query: query)
    }

    public init(path: String, query: String? = nil) {
        self.path = path
        self.query = query
    }

    static func isUnreserved(_ c: UInt8) -> Bool {
        switch c {
        case 0x41...0x5A, 0x61...0x7A, 0x30...0x39, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    private static let hexUpper: [UInt8] = Array("0123456789ABCDEF".utf8)

    static func canonicalize(path raw: Substring.UTF8View) throws(Rejection) -> String {
        guard raw.first == UInt8(ascii: "/") else { throw .notOriginForm }
        if isAlreadyCanonical(raw) { return String(Substring(raw)) }
        // Pass 1: validate characters and escapes, producing segments with unreserved escapes decoded.
        var segments: [[UInt8]] = []
        var current: [UInt8] = []
        var decodedForUTF8Check: [UInt8] = []
        var hasEscapedNonASCII = false
        /// A `%25` was kept: only then can a segment hold a double-encoded delimiter.
        var keptEscapedPercent = false
        let bytes = Array(raw)
        var i = 0
        func endSegment() {
            segments.append(current)
            current = []
        }
        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "/"):
                endSegment()
                // Kept in the decoded bytes: each segment's escapes must be valid UTF-8 on their own
                // (`%E2%82/%80` is not `%E2%82%80`), whatever a re-spelling puts between segments.
                decodedForUTF8Check.append(c)
                i += 1
                continue
            case UInt8(ascii: "\\"):
                throw .backslash
            case UInt8(ascii: ";"):
                throw .pathParameters
            case UInt8(ascii: "%"):
                guard i + 2 < bytes.count, let h = hexValue(bytes[i + 1]), let l = hexValue(bytes[i + 2]) else {
                    throw .malformedEscape
                }
                let v = h << 4 | l
                switch v {
                case UInt8(ascii: "/"): throw .encodedSlash
                case UInt8(ascii: "\\"): throw .encodedBackslash
                case UInt8(ascii: ";"): throw .encodedSemicolon
                case 0x00...0x1F, 0x7F: throw .encodedControl
                default: break
                }
                decodedForUTF8Check.append(v)
                if v >= 0x80 { hasEscapedNonASCII = true }
                if v == UInt8(ascii: "%") { keptEscapedPercent = true }
                if isUnreserved(v) {
                    current.append(v)
                } else {
                    current.append(contentsOf: [UInt8(ascii: "%"), hexUpper[Int(v >> 4)], hexUpper[Int(v & 0x0F)]])
                }
                i += 3
                continue
            case 0x21...0x7E:
                guard c != UInt8(ascii: "#") else { throw .invalidCharacter }
                current.append(c)
                decodedForUTF8Check.append(c)
            default:
                // Space, controls, DEL and raw non-ASCII bytes are never valid in a request target.
                throw .invalidCharacter
            }
            i += 1
        }
        endSegment()
        if keptEscapedPercent {
            for segment in segments where hasDoubleEncodedDelimiter(segment) { throw .doubleEncoded }
        }
        if hasEscapedNonASCII {
            // Swift's validating decoder refuses overlong forms, surrogates and truncated sequences.
            guard String(validating: decodedForUTF8Check, as: UTF8.self) != nil else { throw .invalidUTF8 }
        }
        // Pass 2: collapse empty segments and resolve dot segments.
        var output: [[UInt8]] = []
        let trailingSlash = segments.count > 1 && (segments.last!.isEmpty || isDotSegment(segments.last!))
        for segment in segments.dropFirst() {  // the first is the empty string before the leading "/"
            if segment.isEmpty || segment == [UInt8(ascii: ".")] { continue }
            if segment == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                if !output.isEmpty { output.removeLast() }
                continue
            }
            output.append(segment)
        }
        var result: [UInt8] = [UInt8(ascii: "/")]
        for (n, segment) in output.enumerated() {
            if n > 0 { result.append(UInt8(ascii: "/")) }
            result.append(contentsOf: segment)
        }
        if trailingSlash && !output.isEmpty { result.append(UInt8(ascii: "/")) }
        return String(decoding: result, as: UTF8.self)
    }

    /// Whether a path (starting with `/`) is its own canonical form, checked in one pass without
    /// allocating: most requests' paths are. True only when every byte is printable ASCII other than
    /// `%`, `#`, `\` and `;` (no escape to decode, nothing to refuse), no segment but the last is
    /// empty (no `//` to collapse) and no segment is `.` or `..`; then ``canonicalize(path:)``'s two
    /// passes would give back the same bytes. Anything else takes those passes.
    static func isAlreadyCanonical(_ raw: Substring.UTF8View) -> Bool {
        var segmentLength = 0
        var dots = 0  // how many of the segment's bytes so far are "."
        var first = true  // the empty segment before the leading "/"
        for c in raw {
            switch c {
            case UInt8(ascii: "/"):
                if !first && (segmentLength == 0 || segmentLength == dots && dots <= 2) { return false }
                first = false
                segmentLength = 0
                dots = 0
            case UInt8(ascii: "%"), UInt8(ascii: "#"), UInt8(ascii: "\\"), UInt8(ascii: ";"):
                return false
            case 0x21...0x7E:
                segmentLength += 1
                if c == UInt8(ascii: ".") { dots += 1 }
            default:
                return false
            }
        }
        // The last segment may be empty (a trailing slash is kept), not "." or "..".
        return !(segmentLength > 0 && segmentLength == dots && dots <= 2)
    }

    /// Whether a segment (unreserved escapes already decoded, others kept as `%XX`) holds `%25`
    /// followed by the hex digits of `.`, `/`, `\` or `;`: what a second decoding turns into one.
    static func hasDoubleEncodedDelimiter(_ segment: [UInt8]) -> Bool {
        guard segment.count >= 5 else { return false }
        for i in 0...(segment.count - 5) where segment[i] == UInt8(ascii: "%") && segment[i + 1] == UInt8(ascii: "2")
            && segment[i + 2] == UInt8(ascii: "5")
        {
            guard let h = hexValue(segment[i + 3]), let l = hexValue(segment[i + 4]) else { continue }
            switch h << 4 | l {
            case UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: ";"): return true
            default: continue
            }
        }
        return false
    }

    private static func isDotSegment(_ s: [UInt8]) -> Bool {
        s == [UInt8(ascii: ".")] || s == [UInt8(ascii: "."), UInt8(ascii: ".")]
    }
}

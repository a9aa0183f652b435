import GatewayCore

/// The reference model of request-target canonicalisation, written from the rules in
/// ``CanonicalPath``'s documentation rather than from its code: split the target into segments at
/// the literal slashes, percent-decode each segment whole, judge the decoded bytes, then spell each
/// segment again (unreserved bytes as themselves, escaped bytes as upper-case escapes, everything
/// else as it came) and resolve empty and dot segments the way RFC 3986 §5.2.4 does, never above
/// the root. Slow and plain on purpose; it reports every problem it sees, not only the first.
struct ReferenceCanonicalPath {
    /// What a target canonicalises to: its path and query, or the problems found in it.
    enum Outcome: Equatable {
        case path(String, query: String?)
        case refused(Set<CanonicalPath.Rejection>)
    }

    /// One byte of a decoded segment and whether it was written as an escape.
    struct Unit: Equatable {
        var byte: UInt8
        var escaped: Bool
    }

    static func canonicalise(_ target: String) -> Outcome {
        var pathText = Substring(target)
        var query: String?
        if let mark = target.firstIndex(of: "?") {
            pathText = target[..<mark]
            query = String(target[target.index(after: mark)...])
        }
        guard pathText.hasPrefix("/") else { return .refused([.notOriginForm]) }
        var problems = Set<CanonicalPath.Rejection>()
        let rawSegments = pathText.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        var segments: [[Unit]] = []
        var allDecoded: [UInt8] = []
        for raw in rawSegments {
            let units = decode(Array(raw), problems: &problems)
            allDecoded += units.map(\.byte)
            segments.append(units)
            if hasDoubleEncoding(units) { problems.insert(.doubleEncoded) }
        }
        if String(validating: allDecoded, as: UTF8.self) == nil { problems.insert(.invalidUTF8) }
        guard problems.isEmpty else { return .refused(problems) }

        // RFC 3986 §5.2.4 on the decoded segments, with empty segments dropped.
        var output: [[Unit]] = []
        for segment in segments {
            let text = segment.map(\.byte)
            if text.isEmpty || text == Array(".".utf8) { continue }
            if text == Array("..".utf8) {
                _ = output.popLast()
                continue
            }
            output.append(segment)
        }
        let last = segments.last.map { $0.map(\.byte) }
        let endsAsFolder = last == [] || last == Array(".".utf8) || last == Array("..".utf8)
        var path = "/" + output.map(spell).joined(separator: "/")
        if endsAsFolder && !output.isEmpty { path += "/" }
        return .path(path, query: query)
    }

    static func isUnreserved(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || "-._~".utf8.contains(c)
    }

    /// Percent-decodes one segment, noting every problem with its raw characters and escapes.
    static func decode(_ raw: [UInt8], problems: inout Set<CanonicalPath.Rejection>) -> [Unit] {
        var units: [Unit] = []
        var i = 0
        while i < raw.count {
            let c = raw[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < raw.count, let value = UInt8(String(decoding: raw[(i + 1)...(i + 2)], as: UTF8.self), radix: 16),
                      raw[(i + 1)...(i + 2)].allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "-") })
                else {
                    problems.insert(.malformedEscape)
                    i += 1
                    continue
                }
                switch value {
                case UInt8(ascii: "/"): problems.insert(.encodedSlash)
                case UInt8(ascii: "\\"): problems.insert(.encodedBackslash)
                case UInt8(ascii: ";"): problems.insert(.encodedSemicolon)
                case 0x00..<0x20, 0x7F: problems.insert(.encodedControl)
                default: break
                }
                units.append(Unit(byte: value, escaped: true))
                i += 3
                continue
            }
            switch c {
            case UInt8(ascii: "\\"): problems.insert(.backslash)
            case UInt8(ascii: ";"): problems.insert(.pathParameters)
            case UInt8(ascii: "#"), 0x00...0x20, 0x7F...0xFF: problems.insert(.invalidCharacter)
            default: break
            }
            units.append(Unit(byte: c, escaped: false))
            i += 1
        }
        return units
    }

    /// Whether the segment, spelled canonically, holds `%25` and then the hex digits of `.`, `/`,
    /// `\` or `;` (what a second decoding would turn into one of them).
    static func hasDoubleEncoding(_ units: [Unit]) -> Bool {
        let spelled = Array(spell(units).utf8)
        let delimiters: [[UInt8]] = ["2E", "2F", "5C", "3B"].map { Array($0.utf8) }
        for i in spelled.indices where spelled[i...].starts(with: Array("%25".utf8)) {
            let next = Array(spelled[(i + 3)...].prefix(2)).map { $0 >= 0x61 ? $0 - 0x20 : $0 }
            if delimiters.contains(next) { return true }
        }
        return false
    }

    /// A decoded segment spelled canonically.
    static func spell(_ units: [Unit]) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for unit in units {
            if unit.escaped && !isUnreserved(unit.byte) {
                out += [UInt8(ascii: "%"), hex[Int(unit.byte >> 4)], hex[Int(unit.byte & 0x0F)]]
            } else {
                out.append(unit.byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

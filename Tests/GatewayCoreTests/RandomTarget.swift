import PropertyBased

/// A random request target built from segments of tokens drawn from small vocabularies that hit
/// the canonicalisation rules (unreserved and reserved characters, escapes of every kind, double
/// encodings, malformed escapes, characters that must be refused, dot segments), and equivalent
/// re-spellings of it.
struct RandomTarget: Sendable, CustomStringConvertible {
    /// Each segment's tokens; a segment is written after a `/`.
    var segments: [[String]]
    var query: String?

    var text: String { segments.map { "/" + $0.joined() }.joined().ifEmpty("/") + (query.map { "?" + $0 } ?? "") }
    var description: String { text.debugDescription }

    static let plain = ["a", "B", "z", "q", "0", "9", "-", ".", "_", "~", "api", "v1", "x.json"]
    static let reserved = ["!", "$", "&", "'", "(", ")", "*", "+", ",", "=", ":", "@"]
    static let escapes = ["%41", "%61", "%7E", "%7e", "%2E", "%2e", "%20", "%21", "%3A", "%3a", "%40", "%C3%A9", "%c3%a9",
                          "%E2%82%AC", "%F0%9F%98%80", "%25", "%2525", "%22", "%3F", "%23"]
    static let tricky = ["%252e", "%252E", "%25%32%65", "%25%32%45", "%25%32%66", "%252F", "%253B", "%253b", "%255C", "%25%33%42",
                         "%2F", "%2f", "%5C", "%3B", "%3b", "%00", "%1F", "%7F", "%C0%AF", "%C0%AE", "%ED%A0%80", "%FF", "%80",
                         "%E2%82", "%", "%4", "%G1", "%%", "%+1", "%-1", "\\", ";", "#", " ", "é", "\u{7F}", "\t", "?"]
    static let specialSegments = [[""], ["."], [".."], ["%2E"], ["%2E%2E"], [".", "%2e"], ["%2e", "."]]
    static let queries = ["a=b", "", "x=%2F&y=/..", "?", "a#b", "%ZZ"]

    static func make<R: RandomNumberGenerator>(trickyOneIn: Int = 12, using rng: inout R) -> RandomTarget {
        var segments: [[String]] = []
        for _ in 0..<Int.random(in: 0...6, using: &rng) {
            if Int.random(in: 0..<6, using: &rng) == 0 {
                segments.append(specialSegments.randomElement(using: &rng)!)
                continue
            }
            var tokens: [String] = []
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<trickyOneIn, using: &rng) {
                case 0: tokens.append(tricky.randomElement(using: &rng)!)
                case 1, 2: tokens.append(reserved.randomElement(using: &rng)!)
                case 3, 4, 5: tokens.append(escapes.randomElement(using: &rng)!)
                default: tokens.append(plain.randomElement(using: &rng)!)
                }
            }
            segments.append(tokens)
        }
        let query = Int.random(in: 0..<4, using: &rng) == 0 ? queries.randomElement(using: &rng)! : nil
        return RandomTarget(segments: segments, query: query)
    }

    /// An equivalent spelling: unreserved characters written as escapes and back, the hex digits of
    /// escapes in the other case, and empty, `.` and `x/..` segments inserted before a segment
    /// (never at the end, where they would add a trailing slash), `..` at the root; nothing after a
    /// `?` changes.
    func respelled<R: RandomNumberGenerator>(using rng: inout R) -> RandomTarget {
        var out: [[String]] = []
        if Int.random(in: 0..<4, using: &rng) == 0 { out.append([".."]) }
        var inQuery = false
        for segment in segments {
            // After a `?` token the rest is the query, which is passed on as it is.
            if inQuery || segment.contains("?") {
                inQuery = true
                out.append(segment)
                continue
            }
            switch Int.random(in: 0..<8, using: &rng) {
            case 0: out.append([""])
            case 1: out.append(["."])
            case 2: out.append(["%2e"])
            case 3: out += [["x"], [".."]]
            case 4: out += [["%7A%7a"], ["%2E."]]
            default: break
            }
            // A segment with a refused token stays as it is: an incomplete escape such as `%4`
            // takes its digits from the next token, which must not be re-spelled.
            out.append(segment.contains(where: Self.tricky.contains) ? segment : segment.map { Self.respell($0, using: &rng) })
        }
        return RandomTarget(segments: out, query: query)
    }

    static func respell<R: RandomNumberGenerator>(_ token: String, using rng: inout R) -> String {
        var out = ""
        let bytes = Array(token.utf8)
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "%"), i + 2 < bytes.count, let value = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                // An escaped unreserved character may be written as itself.
                if ReferenceCanonicalPath.isUnreserved(value), Bool.random(using: &rng) {
                    out.append(Character(Unicode.Scalar(value)))
                } else {
                    let hex = String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self)
                    out += "%" + (Bool.random(using: &rng) ? hex.lowercased() : hex.uppercased())
                }
                i += 3
                continue
            }
            if ReferenceCanonicalPath.isUnreserved(c), Int.random(in: 0..<3, using: &rng) == 0 {
                let hex = String(c, radix: 16, uppercase: Bool.random(using: &rng))
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            } else {
                out.append(Character(Unicode.Scalar(c)))
            }
            i += 1
        }
        return out
    }
}

extension String {
    fileprivate func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}

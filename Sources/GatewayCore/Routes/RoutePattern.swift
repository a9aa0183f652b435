/// A route's `match`: optional method plus a path pattern.
///
/// Path syntax: literal segments, `:name` (exactly one segment) and `*` (any run of characters,
/// `/` included, possibly empty). Patterns are canonicalised like request paths, and matching
/// ignores one trailing slash, so `/weather/` is priced like `/weather`.
public struct RoutePattern: Sendable, Hashable, CustomStringConvertible {
    public let method: String?
    /// Canonical pattern text, e.g. `/items/:id`.
    public let path: String
    let pieces: [Piece]
    public let caseSensitive: Bool

    enum Piece: Sendable, Hashable {
        case literal([UInt8])
        case segment  // one or more non-"/" bytes
        case any  // zero or more bytes
    }

    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case badMethod(String)
        case notAbsolute
        case badPath(String)
        case emptyParameterName

        public var description: String {
            switch self {
            case .empty: return "match is empty"
            case .badMethod(let m): return "\"\(m)\" is not an HTTP method (write e.g. \"GET /path\")"
            case .notAbsolute: return "path pattern must start with \"/\""
            case .badPath(let why): return "path pattern is not canonical: \(why)"
            case .emptyParameterName: return "path parameter needs a name, e.g. \":id\""
            }
        }
    }

    public var description: String { method.map { "\($0) \(path)" } ?? path }

    /// Parses `"GET /weather"`, `"/api/*"`, `"* /x"` or `"*"`.
    public init(_ text: String, caseSensitive: Bool = false) throws(ParseError) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        var method: String?
        var pathText: Substring
        switch parts.count {
        case 0: throw .empty
        case 1: pathText = parts[0]
        case 2:
            let m = parts[0]
            guard m == "*" || (m.utf8.allSatisfy { $0 >= 0x41 && $0 <= 0x5A }) else { throw .badMethod(String(m)) }
            method = m == "*" ? nil : String(m)
            pathText = parts[1]
        default: throw .badPath("unexpected spaces")
        }
        if pathText == "*" { pathText = "/*" }
        guard pathText.first == "/" else { throw .notAbsolute }
        let canonical: String
        do {
            canonical = try CanonicalPath.canonicalize(path: pathText.utf8)
        } catch {
            throw .badPath(error.description)
        }
        self.method = method
        self.caseSensitive = caseSensitive
        self.path = Self.stripTrailingSlash(canonical)
        self.pieces = try Self.compile(self.path, caseSensitive: caseSensitive)
    }

    static func stripTrailingSlash(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    private static func compile(_ path: String, caseSensitive: Bool) throws(ParseError) -> [Piece] {
        var pieces: [Piece] = []
        var literal: [UInt8] = []
        let bytes = Array(path.utf8)
        var i = 0
        func flush() {
            if !literal.isEmpty {
                pieces.append(.literal(literal))
                literal = []
            }
        }
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "*") {
                flush()
                if pieces.last != .any { pieces.append(.any) }
                i += 1
            } else if c == UInt8(ascii: ":") && i > 0 && bytes[i - 1] == UInt8(ascii: "/") {
                var j = i + 1
                while j < bytes.count && bytes[j] != UInt8(ascii: "/") { j += 1 }
                if j == i + 1 { throw .emptyParameterName }
                flush()
                pieces.append(.segment)
                i = j
            } else {
                literal.append(caseSensitive ? c : lower(c))
                i += 1
            }
        }
        flush()
        return pieces
    }

    @inline(__always)
    static func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c + 32 : c }

    /// Whether the pattern's method admits `method` (`HEAD` is admitted wherever `GET` is).
    public func admits(method requestMethod: String) -> Bool {
        guard let method else { return true }
        return method == requestMethod || (method == "GET" && requestMethod == "HEAD")
    }

    /// Matches a canonical path (see ``CanonicalPath``).
    public func matches(path: String) -> Bool {
        var p = Array(Self.stripTrailingSlash(path).utf8)
        if !caseSensitive { for i in p.indices { p[i] = Self.lower(p[i]) } }
        return Self.match(pieces, p)
    }

    /// Whether `pieces` match all of `path`: the positions the pieces so far can end at, piece by
    /// piece, from position 0 (sorted, each once), as a regular-expression engine runs its
    /// automaton. A literal keeps the positions it follows; `*` reaches every position from the
    /// first one reached; a segment every position up to the next `/`, swept once. So the time is at
    /// most the pattern's length times the path's, whatever the wildcards, and a path that fails
    /// an early literal costs almost nothing. (Recursion over every split of the path took time
    /// growing with the path's length to the power of the pattern's stars, found by fuzzing,
    /// docs/reliability.md; remembering failed splits still left each `*` trying every position
    /// from every position, seconds for a pattern of many stars against a 4 KB path.)
    private static func match(_ pieces: [Piece], _ path: [UInt8]) -> Bool {
        let n = path.count
        var positions = [0]
        var next: [Int] = []
        for piece in pieces {
            next.removeAll(keepingCapacity: true)
            switch piece {
            case .literal(let lit):
                for j in positions where j + lit.count <= n && path[j..<(j + lit.count)].elementsEqual(lit) {
                    next.append(j + lit.count)
                }
            case .any:  // zero or more bytes: every position from the first one reached
                next.append(contentsOf: positions[0]...n)
            case .segment:  // one or more bytes that are not "/"
                var covered = 0  // positions up to here are in `next` already
                for j in positions {
                    var k = max(j, covered)
                    while k < n && path[k] != UInt8(ascii: "/") {
                        k += 1
                        next.append(k)
                    }
                    covered = max(covered, k)
                }
            }
            if next.isEmpty { return false }
            swap(&positions, &next)
        }
        return positions.last == n
    }

    /// One path this pattern matches, as the matcher sees it (canonical, no trailing slash, case
    /// folded when the pattern is case-insensitive): every wildcard stands for `q`. The shadowing
    /// check asks the route index which earlier routes match it.
    func witnessPath() -> [UInt8] {
        var path: [UInt8] = []
        for piece in pieces {
            switch piece {
            case .literal(let bytes): path.append(contentsOf: bytes)
            case .segment, .any: path.append(UInt8(ascii: "q"))
            }
        }
        return path
    }
}

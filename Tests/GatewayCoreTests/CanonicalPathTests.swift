import GatewayCore
import Testing

@Suite("Canonical request paths")
struct CanonicalPathTests {
    @Test("equivalent spellings canonicalise to one path", arguments: [
        ("/weather", "/weather"),
        ("/%77eather", "/weather"),  // encoded unreserved letter
        ("/we%61ther", "/weather"),
        ("//weather", "/weather"),
        ("///paid///x", "/paid/x"),
        ("/free/../paid/x", "/paid/x"),
        ("/free/%2E%2E/paid/x", "/paid/x"),  // encoded dot segment
        ("/free/%2e%2e/paid/x", "/paid/x"),
        ("/./paid/./x", "/paid/x"),
        ("/../../paid/x", "/paid/x"),  // never above the root
        ("/paid/x/", "/paid/x/"),
        ("/paid/x/.", "/paid/x/"),
        ("/paid/x/y/..", "/paid/x/"),
        ("/caf%c3%a9", "/caf%C3%A9"),  // non-ASCII stays encoded, hex upper-cased
        ("/a%20b", "/a%20b"),
        ("/", "/"),
        ("/~user/a-b_c.d", "/~user/a-b_c.d"),
    ])
    func canonicalises(raw: String, expected: String) throws {
        #expect(try CanonicalPath.parse(target: raw).path == expected)
    }

    @Test("ambiguous or malformed paths are refused", arguments: [
        ("/paid%2Fx", CanonicalPath.Rejection.encodedSlash),
        ("/paid%2fx", .encodedSlash),
        ("/paid\\x", .backslash),
        ("/paid%5Cx", .encodedBackslash),
        ("/paid/x%00", .encodedControl),
        ("/paid/x%0A", .encodedControl),
        ("/paid/x%0d", .encodedControl),
        ("/paid/x;.css", .pathParameters),
        ("/paid;jsessionid=1/x", .pathParameters),
        ("/paid/x%C0%AF", .invalidUTF8),  // overlong "/"
        ("/paid/x%C0%AE%C0%AE", .invalidUTF8),  // overlong ".."
        ("/paid/x%E0%80%AF", .invalidUTF8),  // 3-byte overlong
        ("/paid/x%FF", .invalidUTF8),
        ("/paid/x%ED%A0%80", .invalidUTF8),  // UTF-16 surrogate
        // A sequence split by a slash is invalid in each segment (it was accepted as one sequence
        // while its re-spelling with `x/../` in between was refused: a property-test finding).
        ("/paid/%E2%82/%80", .invalidUTF8),
        ("/paid/x%G1", .malformedEscape),
        ("/paid/x%4", .malformedEscape),
        ("/paid/x#frag", .invalidCharacter),
        ("/paid x", .invalidCharacter),
        ("paid/x", .notOriginForm),
        ("http://evil/paid/x", .notOriginForm),
        ("", .notOriginForm),
        ("/paid/\u{7F}", .invalidCharacter),
        ("/paid/é", .invalidCharacter),  // raw non-ASCII
        // An encoded ';' and double-encoded delimiters: an upstream that decodes twice would see a
        // parameter, a dot segment or a slash the route table never saw.
        ("/free/..%3B/weather", .encodedSemicolon),
        ("/free/x%3bjsessionid=1", .encodedSemicolon),
        ("/free/%252e%252e/paid/x", .doubleEncoded),
        ("/free/%252E%252E/paid/x", .doubleEncoded),
        ("/free/a%252fpaid", .doubleEncoded),
        ("/free/a%252Fpaid", .doubleEncoded),
        ("/free/a%255cpaid", .doubleEncoded),
        ("/free/a%255Cpaid", .doubleEncoded),
        ("/free/..%253B/weather", .doubleEncoded),
        ("/free/%25%32%65%25%32%65/paid/x", .doubleEncoded),  // the digits escaped too: decoded to %252e first
        ("/free/%25%32%66paid", .doubleEncoded),
    ])
    func refuses(raw: String, reason: CanonicalPath.Rejection) {
        #expect(throws: reason) { try CanonicalPath.parse(target: raw) }
    }

    @Test("a literal percent sign followed by anything but a delimiter's hex digits is kept", arguments: [
        ("/free/100%25", "/free/100%25"),
        ("/free/100%25off", "/free/100%25off"),
        ("/free/%2541", "/free/%2541"),  // "%41" once decoded: not a delimiter
        ("/free/%252", "/free/%252"),
    ])
    func percentKept(raw: String, expected: String) throws {
        #expect(try CanonicalPath.parse(target: raw).path == expected)
    }

    @Test("the query string is kept apart and untouched")
    func query() throws {
        let p = try CanonicalPath.parse(target: "/a/../b?x=%2F&y=..")
        #expect(p.path == "/b")
        #expect(p.query == "x=%2F&y=..")
        #expect(p.pathAndQuery == "/b?x=%2F&y=..")
    }
}

import GatewayCore
import Testing

/// Found by fuzzing (FuzzCanonicalPath, a 26 s timeout): the route index followed every way a
/// `*` that is not the pattern's last piece could split the path, so one request against a route
/// such as `/a/*/b/*/c` took time growing with the path's length to the power of its stars.
@Suite("Route index: wildcards without backtracking blow-up")
struct RouteIndexBacktrackingTests {
    static func route(_ text: String) throws -> RouteConfig {
        RouteConfig(id: text, pattern: try RoutePattern(text), upstream: "api", access: .free)
    }

    @Test("long paths against routes with several inner wildcards are matched in well under a second", arguments: [
        ("/a/*/b/*/c", "/a/" + String(repeating: "b/", count: 3000) + "x"),
        ("/a/*/b/*/b/*/c", "/a/" + String(repeating: "b/", count: 150) + "x"),
        ("/*a*a*a*a*c", "/" + String(repeating: "a", count: 60)),
    ])
    func boundedTime(pattern: String, path: String) throws {
        let table = RouteTable(routes: [try Self.route(pattern), try Self.route("/*/x/*/y")])
        let clock = ContinuousClock()
        var hit: Int?
        let elapsed = clock.measure { hit = table.matchIndex(method: "GET", path: path, host: "") }
        #expect(hit == nil)
        #expect(elapsed < .seconds(1), "\(pattern) against \(path.count) bytes took \(elapsed)")
        // And they still match what they should.
        #expect(table.matchIndex(method: "GET", path: path.dropLast() + "c", host: "") == 0 || !pattern.hasSuffix("c"))
    }
}

/// Found by fuzzing too (FuzzCanonicalPath, a 25 s timeout in its first-match scan):
/// `RoutePattern.matches(path:)` backtracked the same way.
@Suite("Route patterns: wildcards without backtracking blow-up")
struct RoutePatternBacktrackingTests {
    @Test("a pattern with several stars against a long path that it does not match answers in well under a second", arguments: [
        ("/a/*/b/*/b/*/c", "/a/" + String(repeating: "b/", count: 150) + "x"),
        ("/*a*a*a*a*c", "/" + String(repeating: "a", count: 60)),
        ("/*/*/*/*/*.json", "/" + String(repeating: "x/", count: 200) + "y"),
    ])
    func boundedTime(pattern: String, path: String) throws {
        let compiled = try RoutePattern(pattern)
        let clock = ContinuousClock()
        var matched = true
        let elapsed = clock.measure { matched = compiled.matches(path: path) }
        #expect(!matched)
        #expect(elapsed < .seconds(1), "\(pattern) against \(path.count) bytes took \(elapsed)")
        #expect(compiled.matches(path: String(path.dropLast()) + (pattern.hasSuffix("json") ? "y.json" : "c")))
    }

    /// Remembering failed (piece, position) pairs was not enough: each star still tried every
    /// position from every position, so 16 stars against 4 KB took seconds (FuzzCanonicalPath's
    /// slowest inputs, 2–4 s each in the release build; 2.65 s for this pattern against 4 KB in a
    /// debug build, and the time grew with the square of the path). The matcher is now linear in
    /// the pattern times the path (0.07 s here in a debug build).
    @Test("sixteen stars against an 8 KB path answer within two seconds")
    func manyStarsLongPath() throws {
        let pattern = try RoutePattern("/" + "abcdefghijklmnop".map { "\($0)*" }.joined() + "z")
        let path = "/" + String(repeating: "abcdefghijklmnop", count: 500)
        let clock = ContinuousClock()
        var matched = true
        let elapsed = clock.measure { matched = pattern.matches(path: path + "y") }
        #expect(!matched)
        #expect(elapsed < .seconds(2), "took \(elapsed)")
        #expect(pattern.matches(path: path + "z"))
    }
}

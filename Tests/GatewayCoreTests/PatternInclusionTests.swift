import GatewayCore
import PropertyBased
import Testing
import TestScheduling

@Suite("Path pattern inclusion (the shadowing check's exact part)", .cpuHeavy)
struct PatternInclusionTests {
    @Test("known inclusions and non-inclusions", arguments: [
        ("/paid/*", "/paid/*", true),
        ("/items/:id", "/items/special", true),
        ("/items/special", "/items/:id", false),
        ("/items/:id", "/items/:other", true),
        ("/a/*", "/a/:x", true),
        ("/a/*", "/a/:x/*", true),
        ("/a*", "/a/*", true),
        ("/api/*", "/api*", false),
        ("/api/:id", "/api/*", false),
        ("/*.json", "/files/*.json", true),
        ("/files/*.json", "/*.json", false),
        ("*", "/anything/:at/*", true),
        ("/", "/", true),
        ("/*", "/", true),
        ("/a/*", "/a", false),
        // Inclusion by cases: the first segment of `/a*/*` is `a` plus anything without a `/`.
        ("/:x/*", "/a*/*", true),
        // Only because canonical paths have no empty segment (`//`).
        ("/:x/*", "/*/*", true),
        // Sampled paths used to say yes here: `/q9` and `/q9z` both contain a 9.
        ("/*9*", "/:x", false),
        ("/*/b", "/a*/b", true),
        ("/*/b", "/a*b", false),
    ])
    func knownAnswers(outer: String, inner: String, included: Bool) throws {
        #expect(PatternInclusion.includes(try RoutePattern(outer), try RoutePattern(inner)) == included)
    }

    @Test("case sensitivity: both modes and mixed")
    func caseModes() throws {
        let ci = { (text: String) in try RoutePattern(text, caseSensitive: false) }
        let cs = { (text: String) in try RoutePattern(text, caseSensitive: true) }
        #expect(PatternInclusion.includes(try ci("/Paid/*"), try ci("/paid/*")))
        #expect(!PatternInclusion.includes(try cs("/Paid/*"), try cs("/paid/*")))
        #expect(PatternInclusion.includes(try ci("/paid/*"), try cs("/PAID/*")))
        #expect(PatternInclusion.counterexample(inner: try ci("/paid/*"), outer: try cs("/paid/*")) != nil)
    }

    /// Two random patterns (usually of the same case mode) and paths made from the inner one.
    struct Pair: Sendable, CustomStringConvertible {
        var outer: RoutePattern
        var inner: RoutePattern
        var innerSamples: [String]

        var description: String { "outer \(outer), inner \(inner)" }
    }

    static let pairs = Generator<Pair, Shrink.None<Pair>>(run: { seed in
        var rng = Xoshiro(seed: (seed.next(), seed.next(), seed.next(), seed.next()))
        let caseSensitive = Bool.random(using: &rng)
        while true {
            let mixed = Int.random(in: 0..<8, using: &rng) == 0
            guard let outer = RandomRouteTable.randomRoute(id: "a", caseSensitive: caseSensitive, using: &rng)?.pattern,
                  let inner = RandomRouteTable.randomRoute(id: "b", caseSensitive: mixed ? !caseSensitive : caseSensitive, using: &rng)?.pattern
            else { continue }
            let samples = (0..<50).map { _ in RandomRouteTable.instance(of: inner, using: &rng) }
            return Pair(outer: outer, inner: inner, innerSamples: samples)
        }
    })

    @Test("a counterexample is a canonical path the inner pattern matches and the outer does not; without one, sampled paths of the inner pattern all match the outer")
    func counterexamplesAreReal() async {
        await propertyCheck(count: 3000, input: Self.pairs) { pair in
            // Let other tests run: these are CPU-bound and the cooperative pool is as small as the machine.
            await Task.yield()
            let (outer, inner) = (pair.outer, pair.inner)
            if let witness = PatternInclusion.counterexample(inner: inner, outer: outer) {
                let path = String(decoding: witness, as: UTF8.self)
                // Both case-insensitive: the path as the matcher sees it, lower-cased.
                let folded = !inner.caseSensitive && !outer.caseSensitive
                let canonical = (try? CanonicalPath.parse(target: path).path).map { folded ? $0.lowercased() : $0 }
                #expect(canonical == path, "\(path) is not canonical (\(pair))")
                #expect(path == "/" || !path.hasSuffix("/"))
                #expect(inner.matches(path: path), "inner does not match its counterexample \(path) (\(pair))")
                #expect(!outer.matches(path: path), "outer matches the counterexample \(path) (\(pair))")
            } else {
                for sample in pair.innerSamples {
                    guard let path = try? CanonicalPath.parse(target: sample).path, inner.matches(path: path) else { continue }
                    #expect(outer.matches(path: path), "said outer includes inner, but not \(path) (\(pair))")
                }
            }
        }
    }
}

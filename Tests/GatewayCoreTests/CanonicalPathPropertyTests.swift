import GatewayCore
import PropertyBased
import Testing
import TestScheduling

/// Canonicalisation against the reference model (``ReferenceCanonicalPath``) on random request
/// targets (``RandomTarget``), and what routing and forwarding make of it. A failure prints the
/// target and the seed (`.fixedSeed(...)` on the test replays it).
@Suite("Canonical paths against the reference model", .cpuHeavy)
struct CanonicalPathPropertyTests {
    static func generator<Value: Sendable>(_ make: @escaping @Sendable (inout Xoshiro) -> Value) -> Generator<Value, Shrink.None<Value>> {
        Generator(run: { rng in
            var seeded = Xoshiro(seed: (rng.next(), rng.next(), rng.next(), rng.next()))
            return make(&seeded)
        })
    }

    static let targets = generator { RandomTarget.make(using: &$0) }
    /// Mostly well-formed targets, so that accepted ones are common.
    static let acceptedMostly = generator { RandomTarget.make(trickyOneIn: 60, using: &$0) }

    static func outcome(_ target: String) -> ReferenceCanonicalPath.Outcome {
        do {
            let parsed = try CanonicalPath.parse(target: target)
            return .path(parsed.path, query: parsed.query)
        } catch {
            return .refused([error])
        }
    }

    @Test("the gateway accepts what the model accepts, with the same path and query, and refuses for a reason the model sees")
    func againstTheModel() async {
        await propertyCheck(count: 3000, input: Self.targets) { target in
            await Task.yield()
            let expected = ReferenceCanonicalPath.canonicalise(target.text)
            switch (Self.outcome(target.text), expected) {
            case (.path(let path, let query), .path(let modelPath, let modelQuery)):
                #expect(path == modelPath && query == modelQuery, "\(target): \(path) \(query ?? "-"), model \(modelPath) \(modelQuery ?? "-")")
            case (.refused(let reasons), .refused(let problems)):
                #expect(reasons.isSubset(of: problems), "\(target): refused as \(reasons), the model sees \(problems)")
            case (let actual, let model):
                Issue.record("\(target): \(actual), model \(model)")
            }
        }
    }

    @Test("enough random targets are accepted and refused for the comparison to mean something")
    func coverage() async {
        var accepted = 0, refused = 0, kinds = Set<CanonicalPath.Rejection>()
        await propertyCheck(count: 2000, input: Self.targets) { target in
            await Task.yield()
            switch Self.outcome(target.text) {
            case .path: accepted += 1
            case .refused(let reasons):
                refused += 1
                kinds.formUnion(reasons)
            }
        }
        #expect(accepted > 300 && refused > 300, "\(accepted) accepted, \(refused) refused")
        #expect(kinds.count >= 10, "refusals seen: \(kinds)")
    }

    @Test("the canonical form canonicalises to itself, and an upstream decoding it once or twice sees the routed segments")
    func forwardedPathIsCanonical() async {
        await propertyCheck(count: 2000, input: Self.acceptedMostly) { target in
            await Task.yield()
            guard let parsed = try? CanonicalPath.parse(target: target.text) else { return }
            // What the gateway forwards is `basePath + pathAndQuery` (see GatewayHandler).
            let forwarded = parsed.pathAndQuery
            #expect((try? CanonicalPath.parse(target: forwarded)) == parsed, "\(target) → \(forwarded) is not a fixpoint")
            let segments = parsed.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            for segment in segments {
                let once = Self.percentDecoded(Array(segment.utf8))
                #expect(!once.contains(UInt8(ascii: "/")) && !once.contains(UInt8(ascii: ";")) && !once.contains(UInt8(ascii: "\\")),
                        "\(target): segment \(segment) decodes to a delimiter")
                #expect(once != Array(".".utf8) && once != Array("..".utf8), "\(target): segment \(segment) decodes to a dot segment")
                let twice = Self.percentDecoded(once)
                #expect(!twice.contains(UInt8(ascii: "/")) && !twice.contains(UInt8(ascii: ";")) && !twice.contains(UInt8(ascii: "\\"))
                            && twice != Array(".".utf8) && twice != Array("..".utf8),
                        "\(target): segment \(segment) decoded twice gives \(String(decoding: twice, as: UTF8.self))")
            }
        }
    }

    @Test("re-spellings of a target canonicalise alike, or are refused alike, and route alike")
    func respellingsRouteAlike() async {
        let tables = Self.generator { rng -> (RandomRouteTable, [RandomTarget], (UInt64, UInt64, UInt64, UInt64)) in
            let table = RandomRouteTable.make(requestCount: 0, using: &rng)
            return (table, (0..<20).map { _ in RandomTarget.make(trickyOneIn: 40, using: &rng) }, (rng.next(), rng.next(), rng.next(), rng.next()))
        }
        await propertyCheck(count: 300, input: tables) { input in
            await Task.yield()
            let (table, targets, seed) = input
            let index = RouteTable(routes: table.routes)
            var rng = Xoshiro(seed: seed)
            for target in targets {
                let base = Self.outcome(target.text)
                for _ in 0..<4 {
                    let variant = target.respelled(using: &rng)
                    let outcome = Self.outcome(variant.text)
                    #expect(outcome == base, "\(target) → \(base), its re-spelling \(variant) → \(outcome)")
                    guard case .path(let path, _) = base, case .path(let variantPath, _) = outcome else { continue }
                    for method in ["GET", "HEAD", "POST"] {
                        #expect(index.matchIndex(method: method, path: path, host: "a.example.com")
                                    == index.matchIndex(method: method, path: variantPath, host: "a.example.com"),
                                "\(method) \(target) and \(variant) route apart in\n\(table)")
                    }
                }
            }
        }
    }

    @Test("a canonical path and the same path with a trailing slash route alike")
    func trailingSlashRoutesAlike() async {
        let inputs = Self.generator { rng -> (RandomRouteTable, [RandomTarget]) in
            (RandomRouteTable.make(requestCount: 0, using: &rng), (0..<40).map { _ in RandomTarget.make(trickyOneIn: 60, using: &rng) })
        }
        await propertyCheck(count: 300, input: inputs) { input in
            await Task.yield()
            let (table, targets) = input
            let index = RouteTable(routes: table.routes)
            for target in targets {
                guard let path = try? CanonicalPath.parse(target: target.text).path, path != "/" else { continue }
                let bare = path.hasSuffix("/") ? String(path.dropLast()) : path
                for method in ["GET", "POST"] {
                    #expect(index.matchIndex(method: method, path: bare, host: "") == index.matchIndex(method: method, path: bare + "/", host: ""),
                            "\(method) \(bare) and \(bare)/ (from \(target)) route apart in\n\(table)")
                }
            }
        }
    }

    /// One percent-decoding pass, as an upstream would do it (malformed escapes left as they are).
    static func percentDecoded(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
               let value = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16)
            {
                out.append(value)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return out
    }
}

import GatewayCore
import PropertyBased
import Testing
import TestScheduling

/// The route index and the index-based shadowing check against the plain reference models
/// (``FirstMatchScan``) on random route tables. A failure prints the table, the request and the
/// seed (`.fixedSeed(...)` on the test replays it).
@Suite("Route index against the first-match scan", .cpuHeavy)
struct RouteIndexPropertyTests {
    static let tables = Generator<RandomRouteTable, Shrink.None<RandomRouteTable>>(run: { rng in
        // A concrete generator seeded from the property check's (which replays with a fixed seed).
        var seeded = Xoshiro(seed: (rng.next(), rng.next(), rng.next(), rng.next()))
        return RandomRouteTable.make(using: &seeded)
    })

    @Test("the index picks the same route as the first-match scan for random tables and requests")
    func sameDecisions() async {
        await propertyCheck(count: 400, input: Self.tables) { table in
            // Let other tests run: these are CPU-bound and the cooperative pool is as small as the machine.
            await Task.yield()
            let index = RouteTable(routes: table.routes)
            let scan = FirstMatchScan(routes: table.routes)
            for request in table.requests {
                let expected = scan.matchIndex(method: request.method, path: request.path, host: request.host)
                let actual = index.matchIndex(method: request.method, path: request.path, host: request.host)
                #expect(actual == expected, "\(request) in\n\(table)")
                if actual != expected { return }
            }
        }
    }

    @Test("random requests do match routes often enough for the comparison to mean something")
    func coverage() async {
        var matched = 0, total = 0, laterThanFirst = 0
        await propertyCheck(count: 200, input: Self.tables) { table in
            // Let other tests run: these are CPU-bound and the cooperative pool is as small as the machine.
            await Task.yield()
            let scan = FirstMatchScan(routes: table.routes)
            for request in table.requests {
                total += 1
                if let hit = scan.matchIndex(method: request.method, path: request.path, host: request.host) {
                    matched += 1
                    if hit > 0 { laterThanFirst += 1 }
                }
            }
        }
        // Unseeded: the bounds sit well below what the generators give (about 28 % and 16 % of 12,000), so chance never trips them.
        #expect(matched * 6 > total, "\(matched) of \(total) requests matched a route")
        #expect(laterThanFirst * 12 > total, "\(laterThanFirst) of \(total) requests matched a route after the first")
    }

    @Test("the shadowing check reports the same pairs as comparing every pair")
    func shadowingAgainstPairwise() async {
        await propertyCheck(count: 400, input: Self.tables) { table in
            // Let other tests run: these are CPU-bound and the cooperative pool is as small as the machine.
            await Task.yield()
            let pairs = RouteTable.shadowedRoutes(table.routes).map { [$0.shadowed, $0.by] }
            #expect(pairs == FirstMatchScan(routes: table.routes).shadowedRoutes(), "in\n\(table)")
        }
    }

    @Test("a route reported as shadowed is never chosen for any request; its shadowing route takes them")
    func shadowedRoutesNeverWin() async {
        await propertyCheck(count: 300, input: Self.tables) { table in
            // Let other tests run: these are CPU-bound and the cooperative pool is as small as the machine.
            await Task.yield()
            let shadowed = RouteTable.shadowedRoutes(table.routes)
            guard !shadowed.isEmpty else { return }
            let scan = FirstMatchScan(routes: table.routes)
            let dead = Set(shadowed.map(\.shadowed))
            for request in table.requests {
                if let hit = scan.matchIndex(method: request.method, path: request.path, host: request.host) {
                    #expect(!dead.contains(hit), "\(request) chose shadowed route \(hit) in\n\(table)")
                }
            }
        }
    }
}

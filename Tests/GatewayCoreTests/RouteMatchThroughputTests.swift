import Foundation
import GatewayCore
import Testing

/// Prints the cost of matching and loading large route tables: the route index against the
/// first-match scan (the gateway's matcher before the index), and the table build and shadowing
/// check. Not part of the normal test run:
///
///   X402_ROUTE_BENCH=1 swift test -c release --scratch-path .build-release --filter RouteMatchThroughput
@Suite("Route match throughput probe", .enabled(if: ProcessInfo.processInfo.environment["X402_ROUTE_BENCH"] != nil))
struct RouteMatchThroughputTests {
    /// `count - 1` routes `GET /svcN/items/:id`, then `GET /paid`: the shape of bench scenario 7.
    static func routes(_ count: Int) throws -> [RouteConfig] {
        try (0..<count - 1).map { try route("GET /svc\($0)/items/:id") } + [try route("GET /paid")]
    }

    @Test("Prints ns per match (route matched last) and ms to build and check tables of 1, 1 000 and 10 000 routes")
    func matchAndLoad() throws {
        let clock = ContinuousClock()
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        for count in [1, 1_000, 10_000] {
            let routes = try Self.routes(count)
            var table: RouteTable?
            let build = clock.measure { table = RouteTable(routes: routes) }
            let check = clock.measure { #expect(RouteTable.shadowedRoutes(routes).isEmpty) }
            let index = try #require(table)
            let scan = FirstMatchScan(routes: routes)
            func perMatch(_ iterations: Int, _ body: () -> Int?) -> Double {
                var found = 0
                let took = clock.measure { for _ in 0..<iterations where body() == count - 1 { found += 1 } }
                #expect(found == iterations)
                return seconds(took) * 1e9 / Double(iterations)
            }
            let indexed = perMatch(200_000) { index.matchIndex(method: "GET", path: "/paid", host: "127.0.0.1") }
            let scanned = perMatch(max(20, 2_000_000 / count)) { scan.matchIndex(method: "GET", path: "/paid", host: "127.0.0.1") }
            print("""
                \(count) routes: index \(String(format: "%.0f", indexed)) ns/match, first-match scan \
                \(String(format: "%.0f", scanned)) ns/match; table built in \(String(format: "%.1f", seconds(build) * 1e3)) ms, \
                shadowing checked in \(String(format: "%.1f", seconds(check) * 1e3)) ms
                """)
        }
    }
}

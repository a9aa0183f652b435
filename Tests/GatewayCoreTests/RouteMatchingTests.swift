import BigInt
import GatewayCore
import Testing
import X402

func route(_ match: String, host: String? = nil, free: Bool = false, id: String? = nil) throws -> RouteConfig {
    let network = Networks.named("eip155:84532")!
    let offer = Offer(
        network: network, amount: 1000, asset: network.defaultAsset!.address,
        payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", maxTimeoutSeconds: 300,
        extra: ["name": .string("USDC"), "version": .string("2")], decimals: 6, symbol: "USDC")
    return RouteConfig(
        id: id ?? match, pattern: try RoutePattern(match), host: host.flatMap(HostPattern.init), upstream: "api",
        access: free ? .free : .priced([offer]))
}

@Suite("Route patterns and the route table")
struct RouteMatchingTests {
    @Test("path patterns match the paths they should", arguments: [
        ("GET /weather", "GET", "/weather", true),
        ("GET /weather", "GET", "/weather/", true),  // one trailing slash ignored
        ("GET /weather", "GET", "/Weather", true),  // case-insensitive by default
        ("GET /weather", "GET", "/weather/x", false),
        ("GET /weather", "HEAD", "/weather", true),  // HEAD priced like GET
        ("GET /weather", "POST", "/weather", false),
        ("/weather", "DELETE", "/weather", true),  // no method = any method
        ("/api/*", "GET", "/api/a/b", true),
        ("/api/*", "GET", "/api/a", true),
        ("/api/*", "GET", "/api", false),
        ("/api/*", "GET", "/api/", false),
        ("/api/*", "GET", "/apix", false),
        ("*", "GET", "/", true),
        ("*", "GET", "/anything/at/all", true),
        ("/items/:id", "GET", "/items/42", true),
        ("/items/:id", "GET", "/items/42/", true),
        ("/items/:id", "GET", "/items/42/more", false),
        ("/items/:id", "GET", "/items", false),
        ("/items/:id/reviews", "GET", "/items/7/reviews", true),
        ("/premium/*.mp4", "GET", "/premium/a/b.mp4", true),
        ("/premium/*.mp4", "GET", "/premium/a/b.mp3", false),
        ("/api/v1.0/:id", "GET", "/api/v1X0/5", false),
        ("/caf%C3%A9", "GET", "/caf%C3%A9", true),
    ])
    func patterns(match: String, method: String, path: String, expected: Bool) throws {
        let p = try RoutePattern(match)
        #expect((p.admits(method: method) && p.matches(path: path)) == expected)
    }

    @Test("case-sensitive routes only match the exact case")
    func caseSensitive() throws {
        let p = try RoutePattern("/Paid/x", caseSensitive: true)
        #expect(p.matches(path: "/Paid/x"))
        #expect(!p.matches(path: "/paid/x"))
        #expect(try RoutePattern("/Paid/x").matches(path: "/PAID/X"))
    }

    @Test("bad patterns are refused", arguments: ["", "weather", "get /x", "GET /x y", "/items/:", "/a%2Fb"])
    func badPatterns(text: String) {
        #expect(throws: RoutePattern.ParseError.self) { try RoutePattern(text) }
    }

    @Test("the first matching route wins, host and method considered")
    func precedence() throws {
        let table = try RouteTable(routes: [
            route("GET /items/special", id: "special"),
            route("GET /items/:id", id: "item"),
            route("/public/*", free: true, id: "public"),
            route("/admin/*", host: "admin.example.com", id: "admin-host"),
            route("/admin/*", id: "admin-any"),
            route("/*", host: "*.example.org", id: "wildcard-host"),
        ])
        func id(_ method: String, _ path: String, _ host: String = "api.example.com") -> String? {
            table.match(method: method, path: path, host: host)?.config.id
        }
        #expect(id("GET", "/items/special") == "special")
        #expect(id("GET", "/items/7") == "item")
        #expect(id("HEAD", "/items/7") == "item")
        #expect(id("POST", "/items/7") == nil)
        #expect(id("GET", "/public/a.css") == "public")
        #expect(id("GET", "/admin/x", "admin.example.com") == "admin-host")
        #expect(id("GET", "/admin/x") == "admin-any")
        #expect(id("GET", "/x", "a.example.org") == "wildcard-host")
        #expect(id("GET", "/x", "example.org") == nil)
        #expect(table.match(method: "GET", path: "/public/a", host: "x")?.isFree == true)
        #expect(table.match(method: "GET", path: "/items/1", host: "x")?.challenge != nil)
    }

    @Test("a later route that an earlier one always wins over is reported as shadowed")
    func shadowing() throws {
        let routes = try [
            route("GET /items/:id"),
            route("GET /items/special"),  // shadowed by :id
            route("/docs/*"),
            route("GET /docs/a/b"),  // shadowed by /docs/* (any method)
            route("GET /weather"),
            route("POST /weather"),  // different method: fine
            route("/x", host: "a.example.com"),
            route("/x"),  // wider host: fine
            route("GET /items/:id/reviews"),  // longer: fine
            route("/paid/*"),
            route("/paid/*", free: true),  // the same pattern again (priced, then free)
            route("GET /h"),
            route("HEAD /h"),  // GET takes HEAD
            route("/w", host: "*.example.org"),
            route("/w", host: "a.example.org"),  // a host the wildcard covers
            route("/w", host: "*.b.example.org"),  // a narrower wildcard
            route("/:x/*"),
            route("/a*/*"),  // covered case by case: the first segment is never empty
            route("/*9*"),
            route("/:y"),  // `/q` is not matched by `/*9*`: fine
        ]
        let pairs = RouteTable.shadowedRoutes(routes).map { [$0.shadowed, $0.by] }
        #expect(pairs == [[1, 0], [3, 2], [10, 9], [12, 11], [14, 13], [15, 13], [17, 16]])
    }

    @Test("host headers are normalised", arguments: [
        ("API.Example.com", "api.example.com"), ("api.example.com:8443", "api.example.com"),
        ("api.example.com.", "api.example.com"), ("[::1]:8080", "[::1]"), ("127.0.0.1:80", "127.0.0.1"),
    ])
    func hostNormalisation(raw: String, expected: String) {
        #expect(HostPattern.normalize(hostHeader: raw) == expected)
    }
}

extension RouteTable {
    init(routes: [RouteConfig]) {
        self.init(config: GatewayConfig(
            listen: ListenAddress(host: "127.0.0.1", port: 0), upstreams: [:], routes: routes, unmatched: .deny))
    }
}

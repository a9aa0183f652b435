import GatewayCore
import Testing

private func route(_ match: String, id: String? = nil) throws -> RouteConfig {
    let pattern = try RoutePattern(match)
    return RouteConfig(id: id ?? pattern.description, pattern: pattern, upstream: "api", access: .free)
}

private let payer = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

@Suite("Route passes: what a pass opens, and its cookie")
struct RoutePassPolicyTests {
    let now: UInt64 = 1_800_000_000

    @Test("scope path: the pass opens the path paid for, not another path of the route")
    func pathScope() throws {
        let policy = RoutePassPolicy(route: try route("GET /articles/:id"), pass: RoutePass(seconds: 60))
        let claims = policy.claims(path: "/articles/42", payer: payer, network: "eip155:84532", now: now)
        #expect(claims.path == "/articles/42" && claims.route == "GET /articles/:id" && claims.group == nil)
        #expect(claims.issuedAt == now && claims.expiresAt == now + 60)
        #expect(policy.refusal(of: claims, path: "/articles/42") == nil)
        #expect(policy.refusal(of: claims, path: "/articles/43") == .otherPath)
        #expect(policy.refusal(of: claims, path: "/articles/42/comments") == .otherPath)
        // One trailing slash is ignored, as in route matching; letter case is not.
        #expect(policy.refusal(of: claims, path: "/articles/42/") == nil)
        #expect(policy.refusal(of: claims, path: "/Articles/42") == .otherPath)
        let slashed = policy.claims(path: "/articles/42/", payer: payer, network: "eip155:84532", now: now)
        #expect(slashed.path == "/articles/42" && policy.refusal(of: slashed, path: "/articles/42") == nil)
        #expect(policy.setCookie(token: "t", path: "/articles/42/", maxAge: 60, secure: false).contains("; Path=/articles/42;"))
    }

    @Test("scope route: the pass opens every path of the route, and only of that route")
    func routeScope() throws {
        let policy = RoutePassPolicy(route: try route("/articles/*"), pass: RoutePass(seconds: 60, scope: .route))
        let claims = policy.claims(path: "/articles/42", payer: payer, network: "eip155:84532", now: now)
        #expect(claims.path == nil)
        #expect(policy.refusal(of: claims, path: "/articles/43") == nil)
        let other = RoutePassPolicy(route: try route("/videos/*"), pass: RoutePass(seconds: 60, scope: .route))
        #expect(other.refusal(of: claims, path: "/articles/43") == .otherRoute)
    }

    @Test("a pass never widens: a route-wide pass on a route now scoped by path, a path pass on a route-wide route")
    func neverWidens() throws {
        let r = try route("/articles/*")
        let wide = RoutePassPolicy(route: r, pass: RoutePass(seconds: 60, scope: .route))
        let narrow = RoutePassPolicy(route: r, pass: RoutePass(seconds: 60, scope: .path))
        let wideClaims = wide.claims(path: "/articles/1", payer: payer, network: "n", now: now)
        let narrowClaims = narrow.claims(path: "/articles/1", payer: payer, network: "n", now: now)
        #expect(narrow.refusal(of: wideClaims, path: "/articles/1") == .otherPath)
        #expect(wide.refusal(of: narrowClaims, path: "/articles/1") == nil)
        #expect(wide.refusal(of: narrowClaims, path: "/articles/2") == .otherPath)
    }

    @Test("groups: every route of the group accepts the group's passes; a route pass and a group pass never stand in for each other")
    func groups() throws {
        let a = RoutePassPolicy(route: try route("/news/a/*"), pass: RoutePass(seconds: 60, scope: .route, group: "news"))
        let b = RoutePassPolicy(route: try route("/news/b/*"), pass: RoutePass(seconds: 60, scope: .route, group: "news"))
        let loner = RoutePassPolicy(route: try route("/news/a/*", id: "news"), pass: RoutePass(seconds: 60, scope: .route))
        let claims = a.claims(path: "/news/a/1", payer: payer, network: "n", now: now)
        #expect(claims.group == "news" && claims.route == nil)
        #expect(b.refusal(of: claims, path: "/news/b/9") == nil)
        // A route whose id equals the group's name is still another binding.
        #expect(loner.refusal(of: claims, path: "/news/a/1") == .otherRoute)
        #expect(a.refusal(of: loner.claims(path: "/news/a/1", payer: payer, network: "n", now: now), path: "/news/a/1") == .otherRoute)
        #expect(a.cookieName == b.cookieName && a.cookieName != loner.cookieName)
    }

    @Test("the cookie of a route-wide pass is limited to the pattern's literal start", arguments: [
        ("GET /weather", "/weather"), ("/articles/*", "/articles/"), ("/items/:id", "/items/"), ("/a*/*", "/"), ("*", "/"),
        ("/docs/:v/intro", "/docs/"), ("GET /Reports/2026/*.pdf", "/Reports/2026/"),
    ])
    func cookiePaths(match: String, path: String) throws {
        let policy = RoutePassPolicy(route: try route(match), pass: RoutePass(seconds: 60, scope: .route))
        #expect(policy.routeCookiePath == path)
        #expect(policy.setCookie(token: "t", path: "/anything", maxAge: 60, secure: false).contains("; Path=\(path);"))
    }

    @Test("a group's cookie path covers all of its routes")
    func groupCookiePath() throws {
        let routes = [
            RouteConfig(id: "a", pattern: try RoutePattern("/news/a/*"), upstream: "api", access: .free,
                        pass: RoutePass(seconds: 60, scope: .route, group: "news")),
            RouteConfig(id: "b", pattern: try RoutePattern("/news/b/*"), upstream: "api", access: .free,
                        pass: RoutePass(seconds: 60, scope: .route, group: "news")),
            RouteConfig(id: "c", pattern: try RoutePattern("/newsletter"), upstream: "api", access: .free,
                        pass: RoutePass(seconds: 60, scope: .route, group: "letters")),
            RouteConfig(id: "d", pattern: try RoutePattern("/free"), upstream: "api", access: .free),
        ]
        let policies = RoutePassPolicy.compile(routes)
        #expect(policies.map { $0?.routeCookiePath } == ["/news/", "/news/", "/newsletter", nil])
        #expect(RoutePassPolicy.compile([routes[0], routes[3]]).map { $0?.routeCookiePath } == ["/news/a/", nil])
    }

    @Test("the cookie: HttpOnly, SameSite=Lax, Max-Age of the pass, Secure only over https, Path of the paid path under scope path")
    func cookieAttributes() throws {
        let policy = RoutePassPolicy(route: try route("GET /articles/:id"), pass: RoutePass(seconds: 90))
        let plain = policy.setCookie(token: "x402pass1.k.c.m", path: "/articles/42", maxAge: 90, secure: false)
        #expect(plain == "\(policy.cookieName)=x402pass1.k.c.m; Path=/articles/42; Max-Age=90; HttpOnly; SameSite=Lax")
        #expect(policy.setCookie(token: "t", path: "/articles/42", maxAge: 90, secure: true).hasSuffix("; HttpOnly; SameSite=Lax; Secure"))
        // A path a cookie attribute cannot carry falls back to the route's cookie path.
        #expect(policy.setCookie(token: "t", path: "/articles/a,b", maxAge: 90, secure: false).contains("; Path=/articles/;"))
        #expect(policy.cookieName.hasPrefix(RoutePassPolicy.cookiePrefix) && policy.cookieName.count == RoutePassPolicy.cookiePrefix.count + 12)
    }
}

import GatewayCore

/// A random route table and random requests against it, drawn from small vocabularies so that
/// routes overlap a lot: literal segments, `:param`, `*` alone and inside segments, methods (with
/// `HEAD` against `GET`), exact and wildcard hosts, and both case modes.
struct RandomRouteTable: Sendable, CustomStringConvertible {
    struct Request: Sendable, CustomStringConvertible {
        var method: String
        /// Canonical, as the gateway matches it.
        var path: String
        /// Normalised.
        var host: String

        var description: String { "\(method) \(path) host \"\(host)\"" }
    }

    var routes: [RouteConfig]
    var requests: [Request]

    var description: String {
        routes.enumerated().map { "\($0.offset): \($0.element.host.map { "\($0) " } ?? "")\($0.element.pattern)" }
            .joined(separator: "\n")
    }

    static let literalSegments = ["a", "b", "ab", "A", "Ab", "api", "v1.0", "x", "caf%C3%A9", ".a", "a.", "...", "q"]
    static let globSegments = ["*", "a*", "*b", "*.json", "a*b", "*a*", "*/*"]
    static let methods: [String?] = [nil, nil, "GET", "GET", "HEAD", "POST"]
    static let routeHosts: [String?] = [nil, nil, nil, nil, "a.example.com", "*.example.com", "*.a.example.com", "example.com", "b.a.example.com"]
    static let requestHosts = ["", "example.com", "a.example.com", "b.a.example.com", "x.b.a.example.com", "other.org", "a.example.org"]
    static let requestMethods = ["GET", "HEAD", "POST", "PUT", "DELETE"]
    /// What a `:param` or a `*` stands for in a generated request path.
    static let fillers = ["", "q", "a", "ab", "A", "b.json", "a/b", "q/", "/x", "x.y", "..", "."]
    static let noise = ["q", "Q", "b", "ab.json", "xb", "a9b", ".", "..", "", "a%2A", "%41", "api", "AB"]

    static func make<R: RandomNumberGenerator>(routeCount: ClosedRange<Int> = 1...14, requestCount: Int = 60,
                                               using rng: inout R) -> RandomRouteTable {
        let caseSensitive = Int.random(in: 0..<4, using: &rng) == 0
        var routes: [RouteConfig] = []
        for n in 0..<Int.random(in: routeCount, using: &rng) {
            // Now and then, repeat an earlier route as it is (duplicates must be reported).
            if let earlier = routes.randomElement(using: &rng), Int.random(in: 0..<8, using: &rng) == 0 {
                routes.append(earlier)
                continue
            }
            let mixed = Int.random(in: 0..<10, using: &rng) == 0
            guard let route = randomRoute(id: "r\(n)", caseSensitive: mixed ? !caseSensitive : caseSensitive, using: &rng) else { continue }
            routes.append(route)
        }
        var requests: [Request] = []
        while requests.count < requestCount {
            let method = requestMethods.randomElement(using: &rng)!
            let host = requestHosts.randomElement(using: &rng)!
            let raw: String
            if let route = routes.randomElement(using: &rng), Bool.random(using: &rng) {
                raw = instance(of: route.pattern, using: &rng)
            } else {
                let count = Int.random(in: 0...5, using: &rng)
                raw = "/" + (0..<count).map { _ in noise.randomElement(using: &rng)! }.joined(separator: "/")
            }
            guard let canonical = try? CanonicalPath.parse(target: raw) else { continue }
            requests.append(Request(method: method, path: canonical.path, host: host))
        }
        return RandomRouteTable(routes: routes, requests: requests)
    }

    static func randomRoute<R: RandomNumberGenerator>(id: String, caseSensitive: Bool, using rng: inout R) -> RouteConfig? {
        var segments: [String] = []
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<5: segments.append(literalSegments.randomElement(using: &rng)!)
            case 5..<7: segments.append(":p")
            default: segments.append(globSegments.randomElement(using: &rng)!)
            }
        }
        var path = "/" + segments.joined(separator: "/")
        if Int.random(in: 0..<6, using: &rng) == 0 { path += "/" }
        let method = methods.randomElement(using: &rng)!
        let text = method.map { "\($0) \(path)" } ?? path
        guard let pattern = try? RoutePattern(text, caseSensitive: caseSensitive) else { return nil }
        let host = routeHosts.randomElement(using: &rng)!.flatMap(HostPattern.init)
        return RouteConfig(id: id, pattern: pattern, host: host, upstream: "api", access: .free)
    }

    /// A request path `pattern` probably matches: its text with each `:param` and `*` replaced by
    /// a filler, letters' case flipped now and then.
    static func instance<R: RandomNumberGenerator>(of pattern: RoutePattern, using rng: inout R) -> String {
        var out = ""
        for segment in pattern.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            out += "/"
            if segment.hasPrefix(":") {
                out += ["q", "a", "ab", "A", "x.y", "..."].randomElement(using: &rng)!
                continue
            }
            for character in segment {
                if character == "*" {
                    out += fillers.randomElement(using: &rng)!
                } else if Int.random(in: 0..<5, using: &rng) == 0 {
                    out += character.isUppercase ? character.lowercased() : character.uppercased()
                } else {
                    out.append(character)
                }
            }
        }
        if out.isEmpty { out = "/" }
        if Int.random(in: 0..<5, using: &rng) == 0 { out += "/" }
        return out
    }
}

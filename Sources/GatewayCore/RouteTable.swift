/// The ordered route table. The first route whose host, method and path match wins.
public struct RouteTable: Sendable {
    public let routes: [CompiledRoute]
    public let unmatched: UnmatchedPolicy

    public init(config: GatewayConfig) {
        self.routes = config.routes.map { CompiledRoute(config: $0) }
        self.unmatched = config.unmatched
    }

    /// `host` is normalised (see ``HostPattern/normalize(hostHeader:)``); `path` is canonical.
    public func match(method: String, path: String, host: String) -> CompiledRoute? {
        matchIndex(method: method, path: path, host: host).map { routes[$0] }
    }

    /// Position in ``routes`` of the route ``match(method:path:host:)`` returns (for per-route data kept alongside).
    public func matchIndex(method: String, path: String, host: String) -> Int? {
        for (index, route) in routes.enumerated() {
            let config = route.config
            if let h = config.host, !h.matches(host) { continue }
            if config.pattern.admits(method: method) && config.pattern.matches(path: path) { return index }
        }
        return nil
    }

    /// Pairs (later, earlier) where every request the later route could match is taken by the earlier one.
    public static func shadowedRoutes(_ routes: [RouteConfig]) -> [(shadowed: Int, by: Int)] {
        var result: [(Int, Int)] = []
        for (j, later) in routes.enumerated() {
            for i in 0..<j {
                let earlier = routes[i]
                guard earlier.host == nil || earlier.host == later.host else { continue }
                let methodCovered = earlier.pattern.method == nil || earlier.pattern.method == later.pattern.method
                guard methodCovered else { continue }
                if later.pattern.samplePaths().allSatisfy({ earlier.pattern.matches(path: $0) }) {
                    result.append((j, i))
                    break
                }
            }
        }
        return result
    }
}

/// A route with everything that can be computed ahead of requests already computed.
public struct CompiledRoute: Sendable {
    public let config: RouteConfig
    /// Present for priced routes.
    public let challenge: Challenge?
    /// The route's offers with their EIP-712 domains and requirement JSON, for paid requests.
    public let offers: [PreparedOffer]

    public init(config: RouteConfig) {
        self.config = config
        if case .priced(let offers) = config.access {
            self.challenge = Challenge(route: config, offers: offers)
            self.offers = offers.map { PreparedOffer(offer: $0, route: config) }
        } else {
            self.challenge = nil
            self.offers = []
        }
    }

    public var isFree: Bool { challenge == nil }
}

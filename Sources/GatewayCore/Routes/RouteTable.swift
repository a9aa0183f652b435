/// The ordered route table. The first route (in file order) whose host, method and path match
/// wins; a ``RouteIndex`` finds it without scanning the table.
public struct RouteTable: Sendable {
    public let routes: [CompiledRoute]
    public let unmatched: UnmatchedPolicy
    private let index: RouteIndex

    public init(config: GatewayConfig) {
        var compiler = RouteCompiler()
        self.routes = config.routes.map { compiler.compile($0) }
        self.unmatched = config.unmatched
        self.index = RouteIndex(config.routes.map { ($0.pattern, $0.host) })
    }

    /// `host` is normalised (see ``HostPattern/normalize(hostHeader:)``); `path` is canonical.
    public func match(method: String, path: String, host: String) -> CompiledRoute? {
        matchIndex(method: method, path: path, host: host).map { routes[$0] }
    }

    /// Position in ``routes`` of the route ``match(method:path:host:)`` returns (for per-route data kept alongside).
    public func matchIndex(method: String, path: String, host: String) -> Int? {
        index.firstMatch(method: method, path: path, host: host)
    }

    /// Pairs (later, earlier) where every request the later route could match is taken by the
    /// earlier one (the earliest such route); see ``RouteShadowing``.
    public static func shadowedRoutes(_ routes: [RouteConfig]) -> [(shadowed: Int, by: Int)] {
        RouteShadowing.shadowedRoutes(routes)
    }
}

import GatewayCore

/// The reference model of route matching, as the gateway did it before the route index: scan the
/// routes in file order and take the first whose host, method and path match.
struct FirstMatchScan {
    let routes: [RouteConfig]

    func matchIndex(method: String, path: String, host: String) -> Int? {
        routes.firstIndex { route in
            (route.host?.matches(host) ?? true) && route.pattern.admits(method: method) && route.pattern.matches(path: path)
        }
    }

    /// The shadowing check the plain way: every later route against every earlier one.
    func shadowedRoutes() -> [[Int]] {
        var pairs: [[Int]] = []
        for later in routes.indices {
            if let earlier = routes[..<later].indices.first(where: { RouteShadowing.covers(routes[$0], routes[later]) }) {
                pairs.append([later, earlier])
            }
        }
        return pairs
    }
}

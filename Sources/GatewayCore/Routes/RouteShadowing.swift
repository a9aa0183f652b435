/// Finds routes that can never be used: a route is shadowed when one earlier route matches every
/// request it matches (its host, method and path), since the first match wins. An identical
/// route repeated is the plainest case.
///
/// Not pairwise: the earlier routes worth checking are those the ``RouteIndex`` finds for one path
/// the later route matches (any route covering it must match that path too); each is then
/// checked exactly with ``covers(_:_:)``.
package enum RouteShadowing {
    /// Pairs (later, earlier) where `earlier` is the first route that covers `later`.
    package static func shadowedRoutes(_ routes: [RouteConfig]) -> [(shadowed: Int, by: Int)] {
        let index = RouteIndex(routes.map { ($0.pattern, $0.host) })
        var result: [(Int, Int)] = []
        for (position, route) in routes.enumerated() {
            let candidates = index.candidates(covering: route.pattern, host: route.host, before: position)
            if let earlier = candidates.first(where: { covers(routes[$0], route) }) {
                result.append((position, earlier))
            }
        }
        return result
    }

    /// Whether every request `later` matches is matched by `earlier`.
    package static func covers(_ earlier: RouteConfig, _ later: RouteConfig) -> Bool {
        covers(method: earlier.pattern.method, later.pattern.method)
            && (earlier.host.map { $0.covers(later.host) } ?? true)
            && PatternInclusion.includes(earlier.pattern, later.pattern)
    }

    /// `nil` is any method; `GET` also takes `HEAD`.
    package static func covers(method earlier: String?, _ later: String?) -> Bool {
        guard let earlier else { return true }
        guard let later else { return false }
        return earlier == later || (earlier == "GET" && later == "HEAD")
    }
}

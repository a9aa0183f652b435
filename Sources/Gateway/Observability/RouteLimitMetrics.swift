import Synchronization

/// One route's rate-limit and free-allowance counters:
/// `x402_rate_limit_requests_total{route,result="allowed"|"limited"}` and
/// `x402_free_allowance_requests_total{route,result="free"|"exhausted"|"unavailable"}`.
/// Lock-free tallies kept beside the registry, like ``RouteMetrics``; only routes with a limit have
/// them, and a route's series appear from its first counted request.
package final class RouteLimitMetrics: Sendable {
    let route: String
    /// Whether the route has a rate limit, an allowance (as the configuration serving says).
    private let rate = Atomic<Bool>(false)
    private let allowance = Atomic<Bool>(false)
    private let allowed = RouteMetrics.Tally()
    private let limited = RouteMetrics.Tally()
    private let free = RouteMetrics.Tally()
    private let exhausted = RouteMetrics.Tally()
    private let unavailable = RouteMetrics.Tally()

    init(route: String) {
        self.route = route
    }

    /// Which families the route's series belong to (set again for each configuration).
    func configure(rateLimit: Bool, allowance: Bool) {
        rate.store(rateLimit, ordering: .relaxed)
        self.allowance.store(allowance, ordering: .relaxed)
    }

    var hasRateLimit: Bool { rate.load(ordering: .relaxed) }
    var hasAllowance: Bool { allowance.load(ordering: .relaxed) }

    /// A request the rate limit let through.
    package func rateAllowed() { allowed.increment() }
    /// A request answered 429.
    package func rateLimited() { limited.increment() }
    /// A request forwarded without payment under the free allowance.
    package func freeServed() { free.increment() }
    /// A request whose allowance was used up (it got the 402).
    package func freeExhausted() { exhausted.increment() }
    /// A request whose allowance could not be counted (store unreachable, memory full): the 402.
    package func freeUnavailable() { unavailable.increment() }

    var isUsed: Bool {
        [allowed, limited, free, exhausted, unavailable].contains { $0.value > 0 }
    }

    /// Both families in the Prometheus text format, for the routes given (in that order).
    static func exposition(of routes: [RouteLimitMetrics], into out: inout [UInt8]) {
        let rate = routes.filter(\.hasRateLimit), allowance = routes.filter(\.hasAllowance)
        if !rate.isEmpty {
            out.append(contentsOf: "# TYPE x402_rate_limit_requests_total counter\n".utf8)
            for route in rate {
                line("x402_rate_limit_requests_total", route.route, "allowed", route.allowed, into: &out)
                line("x402_rate_limit_requests_total", route.route, "limited", route.limited, into: &out)
            }
        }
        if !allowance.isEmpty {
            out.append(contentsOf: "# TYPE x402_free_allowance_requests_total counter\n".utf8)
            for route in allowance {
                line("x402_free_allowance_requests_total", route.route, "free", route.free, into: &out)
                line("x402_free_allowance_requests_total", route.route, "exhausted", route.exhausted, into: &out)
                line("x402_free_allowance_requests_total", route.route, "unavailable", route.unavailable, into: &out)
            }
        }
    }

    private static func line(_ name: String, _ route: String, _ result: String, _ tally: RouteMetrics.Tally, into out: inout [UInt8]) {
        out.append(contentsOf: name.utf8)
        out.append(contentsOf: "{route=\"".utf8)
        RouteMetrics.appendLabelValue(route, into: &out)
        out.append(contentsOf: "\",result=\"\(result)\"} \(tally.value)\n".utf8)
    }
}

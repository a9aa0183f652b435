import Synchronization

/// One route's request counters: `x402_requests_total{route,outcome}`,
/// `x402_payments_required_total{route}` and `x402_payments_verified_total{route}`.
///
/// Kept by ``GatewayMetrics`` beside its Prometheus registry rather than in it: the registry
/// copies a metric family's whole table to add one series, so registering the series of ten
/// thousand routes took minutes. A route's series are exposed from its first request on (all of
/// them then, zeros included), so a large route table does not flood a scrape with zeros.
package final class RouteMetrics: Sendable {
    /// The route id (`-` for requests no route matched).
    let route: String
    /// One per ``RequestOutcome``, in `allCases` order.
    private let outcomes: [Tally]
    private let paymentRequired = Tally()
    private let paymentVerified = Tally()

    package init(route: String) {
        self.route = route
        self.outcomes = RequestOutcome.allCases.map { _ in Tally() }
    }

    package func record(_ outcome: RequestOutcome) { outcomes[Self.position[outcome]!].increment() }
    package func challenged() { paymentRequired.increment() }
    package func verified() { paymentVerified.increment() }

    private static let position = Dictionary(uniqueKeysWithValues: RequestOutcome.allCases.enumerated().map { ($1, $0) })

    /// Whether anything was counted yet.
    var isUsed: Bool { paymentRequired.value > 0 || paymentVerified.value > 0 || outcomes.contains { $0.value > 0 } }

    /// The three families in the Prometheus text format, for the routes given (in that order).
    static func exposition(of routes: [RouteMetrics], into out: inout [UInt8]) {
        guard !routes.isEmpty else { return }
        out.append(contentsOf: "# TYPE x402_requests_total counter\n".utf8)
        for route in routes {
            for (outcome, tally) in zip(RequestOutcome.allCases, route.outcomes) {
                line("x402_requests_total", route.route, outcome: outcome.rawValue, tally.value, into: &out)
            }
        }
        out.append(contentsOf: "# TYPE x402_payments_required_total counter\n".utf8)
        for route in routes { line("x402_payments_required_total", route.route, outcome: nil, route.paymentRequired.value, into: &out) }
        out.append(contentsOf: "# TYPE x402_payments_verified_total counter\n".utf8)
        for route in routes { line("x402_payments_verified_total", route.route, outcome: nil, route.paymentVerified.value, into: &out) }
    }

    private static func line(_ name: String, _ route: String, outcome: String?, _ value: Int, into out: inout [UInt8]) {
        out.append(contentsOf: name.utf8)
        out.append(contentsOf: "{route=\"".utf8)
        appendLabelValue(route, into: &out)
        out.append(UInt8(ascii: "\""))
        if let outcome { out.append(contentsOf: ",outcome=\"\(outcome)\"".utf8) }
        out.append(contentsOf: "} \(value)\n".utf8)
    }

    /// A label value, escaped for the text format (`\\`, `\"`, `\n`).
    static func appendLabelValue(_ value: String, into out: inout [UInt8]) {
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
            case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: "\\n".utf8)
            default: out.append(byte)
            }
        }
    }

    /// A counter incremented without a lock.
    final class Tally: Sendable {
        private let count = Atomic<Int>(0)

        func increment() { count.wrappingAdd(1, ordering: .relaxed) }
        var value: Int { count.load(ordering: .relaxed) }
    }
}

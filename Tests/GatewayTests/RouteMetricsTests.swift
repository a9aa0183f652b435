import Gateway
import Testing

@Suite("Per-route request counters")
struct RouteMetricsTests {
    @Test("a route's series appear in /metrics from its first request on, every outcome then, its id escaped")
    func exposition() {
        let metrics = GatewayMetrics()
        let used = metrics.route("GET /a \"b\"\\c")
        _ = metrics.route("GET /never-requested")
        #expect(metrics.route("GET /a \"b\"\\c") === used, "one set of counters per route id")
        #expect(!String(decoding: metrics.exposition(), as: UTF8.self).contains("x402_requests_total"))

        used.record(.paymentRequired)
        used.record(.paymentRequired)
        used.challenged()
        let text = String(decoding: metrics.exposition(), as: UTF8.self)
        let route = #"route="GET /a \"b\"\\c""#
        #expect(text.contains("# TYPE x402_requests_total counter\n"))
        #expect(text.contains("x402_requests_total{\(route),outcome=\"payment_required\"} 2\n"))
        #expect(text.contains("x402_requests_total{\(route),outcome=\"paid\"} 0\n"))
        #expect(text.contains("x402_payments_required_total{\(route)} 1\n"))
        #expect(text.contains("x402_payments_verified_total{\(route)} 0\n"))
        #expect(!text.contains("never-requested"))
    }

    @Test("counters for ten thousand routes are made in well under a second (the registry took minutes)")
    func manyRoutes() {
        let metrics = GatewayMetrics()
        let clock = ContinuousClock()
        let took = clock.measure {
            for n in 0..<10_000 { _ = metrics.route("GET /svc\(n)/items/:id") }
        }
        #expect(took < .seconds(1), "\(took)")
    }
}

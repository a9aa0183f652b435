import BigInt
import CoreMetrics
import GatewayCore
import Prometheus
import Synchronization

/// The gateway's metrics, through swift-metrics into a Prometheus registry owned by this instance
/// (no process-global bootstrap, so several gateways can live in one test process).
///
/// Series (all prefixed `x402_`): `requests_total{route,outcome}`, `payments_required_total{route}`,
/// `payments_verified_total{route}`, `payments_refused_total{reason}`, `settlements_total{outcome}`,
/// `settled_amount_total{network,asset}` (atomic units), `facilitator_request_duration_seconds{operation}`,
/// `upstream_response_duration_seconds{upstream}`, `requests_in_flight`, `config_reloads_total{result}`,
/// `reconciliations_total{outcome}`, `payments_unknown{network}`, `passes_issued_total`,
/// `passes_refused_total{reason}`, `connections_open`, `connections_refused_total{limit}`,
/// `request_head_timeouts_total`, `rate_limit_requests_total{route,result}`,
/// `free_allowance_requests_total{route,result}` (see ``RouteLimitMetrics``), `limit_keys{table}`,
/// `limit_evictions_total{table}`, `limit_store_errors_total{operation}`; deferred settlement:
/// `deferred_settlements_total{outcome}`, `deferrals_declined_total{reason}`, and from the ledger
/// `deferred_pending`, `deferred_unknown`, `deferred_failures`, `deferred_oldest_pending_seconds`,
/// `deferred_exposure{route}` (atomic units); dynamic prices: `dynamic_prices_total{route,result}`.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let counters = Mutex<[CounterKey: CoreMetrics.Counter]>([:])
    private let timers = Mutex<[CounterKey: CoreMetrics.Timer]>([:])
    private let meters = Mutex<[CounterKey: CoreMetrics.Meter]>([:])
    /// By route id; exposed beside the registry (see ``RouteMetrics``).
    private let routeCounters = Mutex<[String: RouteMetrics]>([:])
    /// By route id, for routes with a rate limit or a free allowance.
    private let routeLimitCounters = Mutex<[String: RouteLimitMetrics]>([:])
    private let inFlight: CoreMetrics.Meter
    private let openConnections: CoreMetrics.Meter

    struct CounterKey: Hashable {
        var name: String
        var a: String
        var b: String = ""
    }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30),
        ]
        self.factory = factory
        self.inFlight = CoreMetrics.Meter(label: "x402_requests_in_flight", dimensions: [], factory: factory)
        self.openConnections = CoreMetrics.Meter(label: "x402_connections_open", dimensions: [], factory: factory)
        // Every outcome is exposed from the start (at 0), so an alert on one has a series to watch.
        for outcome in ["settled", "unsettled", "pending", "error"] { _ = reconciliationCounter(outcome) }
        _ = passesIssued
        for reason in PassRejection.allCases { _ = passRefusedCounter(reason) }
        for outcome in ["settled", "failed", "unknown", "released", "retry"] { deferredSettlement(outcome: outcome, count: 0) }
        for decision in DeferralExposure.Decision.allCases where decision != .deferred { deferralDeclined(decision.rawValue, count: 0) }
        deferredLedger(pending: 0, unknown: 0, failures: 0, oldestPendingSeconds: 0, exposure: [:])
    }

    /// A counter, created on first use and cached (the key's labels are bounded by the config).
    private func counter(_ key: CounterKey, _ dimensions: @autoclosure () -> [(String, String)]) -> CoreMetrics.Counter {
        counters.withLock { cache in
            if let c = cache[key] { return c }
            let c = CoreMetrics.Counter(label: key.name, dimensions: dimensions(), factory: factory)
            cache[key] = c
            return c
        }
    }

    private func timer(_ key: CounterKey, _ dimensions: @autoclosure () -> [(String, String)]) -> CoreMetrics.Timer {
        timers.withLock { cache in
            if let t = cache[key] { return t }
            let t = CoreMetrics.Timer(label: key.name, dimensions: dimensions(), factory: factory)
            cache[key] = t
            return t
        }
    }

    func requestStarted() { inFlight.increment() }

    /// A client connection was admitted (see ``ConnectionLimiter``).
    func connectionOpened() { openConnections.increment() }

    func connectionClosed() { openConnections.decrement() }

    /// A client connection over `limits.maxConnections` (or `maxConnectionsPerClient`) was answered 503.
    func connectionRefused(clientFull: Bool) {
        let limit = clientFull ? "client" : "instance"
        counter(CounterKey(name: "x402_connections_refused_total", a: limit), [("limit", limit)]).increment()
    }

    /// A request head was not complete within `limits.headerTimeout` (408).
    func requestHeadTimedOut() {
        counter(CounterKey(name: "x402_request_head_timeouts_total", a: ""), []).increment()
    }

    func requestEnded() { inFlight.decrement() }

    /// The per-route counters, resolved once per configuration snapshot so that a request only
    /// increments (no lock, no label hashing on the hot path). Kept by route id across reloads.
    package func route(_ route: String) -> RouteMetrics {
        routeCounters.withLock { routes in
            if let known = routes[route] { return known }
            let counters = RouteMetrics(route: route)
            routes[route] = counters
            return counters
        }
    }

    /// The limit counters of a route with a rate limit or a free allowance (kept by route id across
    /// reloads, like ``route(_:)``).
    package func routeLimits(_ route: String, rateLimit: Bool, allowance: Bool) -> RouteLimitMetrics {
        let counters = routeLimitCounters.withLock { routes in
            if let known = routes[route] { return known }
            let counters = RouteLimitMetrics(route: route)
            routes[route] = counters
            return counters
        }
        counters.configure(rateLimit: rateLimit, allowance: allowance)
        return counters
    }

    /// Clients tracked in memory by the limiter, per table (`rate`, `free`).
    func limitKeys(table: String, count: Int) {
        meters.withLock { cache in
            let key = CounterKey(name: "x402_limit_keys", a: table)
            let meter = cache[key] ?? CoreMetrics.Meter(label: key.name, dimensions: [("table", table)], factory: factory)
            cache[key] = meter
            meter.set(count)
        }
    }

    /// Live clients the limiter forgot to make room (a full table).
    func limitEvictions(table: String, count: Int) {
        guard count > 0 else { return }
        counter(CounterKey(name: "x402_limit_evictions_total", a: table), [("table", table)]).increment(by: Int64(count))
    }

    /// The limit counters' store failed: `free` (an allowance not counted: the 402) or `sync` (rate
    /// limits not shared this round).
    func limitStoreError(operation: String) {
        counter(CounterKey(name: "x402_limit_store_errors_total", a: operation), [("operation", operation)]).increment()
    }

    /// `reason` must come from a bounded set (``RefusalReason`` raw values or `facilitator_refused`).
    func paymentRefused(reason: String) {
        counter(CounterKey(name: "x402_payments_refused_total", a: reason), [("reason", reason)]).increment()
    }

    /// A dynamic price was worked out: `rules`, `cached` (an endpoint answer reused), `asked` (the
    /// endpoint answered), `failed` (the endpoint failed or answered outside min…max: 503).
    func pricing(route: String, result: String) {
        counter(CounterKey(name: "x402_dynamic_prices_total", a: route, b: result), [("route", route), ("result", result)]).increment()
    }

    /// A paid request settled before forwarding because its payer reached `limits.unsettledRunsPerPayer`.
    func settledFirst() {
        counter(CounterKey(name: "x402_payments_settled_first_total", a: ""), []).increment()
    }

    private var passesIssued: CoreMetrics.Counter { counter(CounterKey(name: "x402_passes_issued_total", a: ""), []) }

    private func passRefusedCounter(_ reason: PassRejection) -> CoreMetrics.Counter {
        counter(CounterKey(name: "x402_passes_refused_total", a: reason.rawValue), [("reason", reason.rawValue)])
    }

    /// A pass was issued with a paid answer.
    func passIssued() { passesIssued.increment() }

    /// A pass was sent and not accepted (the request got the route's 402).
    func passRefused(_ reason: PassRejection) { passRefusedCounter(reason).increment() }

    /// `outcome`: `settled`, `failed` (facilitator said no) or `unknown` (no answer).
    func settlement(outcome: String) {
        counter(CounterKey(name: "x402_settlements_total", a: outcome), [("outcome", outcome)]).increment()
    }

    func settled(network: String, asset: String, amount: BigUInt) {
        let c = counter(CounterKey(name: "x402_settled_amount_total", a: network, b: asset), [("network", network), ("asset", asset)])
        var rest = amount
        let step = BigUInt(Int64.max)
        while rest > step {
            c.increment(by: Int64.max)
            rest -= step
        }
        c.increment(by: Int64(rest))
    }

    func facilitatorCall(_ operation: String, duration: Duration) {
        timer(CounterKey(name: "x402_facilitator_request_duration_seconds", a: operation), [("operation", operation)])
            .recordNanoseconds(duration.nanoseconds)
    }

    func upstreamResponse(_ upstream: String, duration: Duration) {
        timer(CounterKey(name: "x402_upstream_response_duration_seconds", a: upstream), [("upstream", upstream)])
            .recordNanoseconds(duration.nanoseconds)
    }

    private func reconciliationCounter(_ outcome: String) -> CoreMetrics.Counter {
        counter(CounterKey(name: "x402_reconciliations_total", a: outcome), [("outcome", outcome)])
    }

    /// `outcome`: `settled`, `unsettled`, `pending` (unused, inside the grace period) or `error` (the chain could not be read).
    func reconciliation(outcome: String) {
        reconciliationCounter(outcome).increment()
    }

    /// Payments whose settlement outcome is unknown, per network. Networks missing from `counts`
    /// that were reported before are set to 0.
    func unknownPayments(_ counts: [String: Int]) {
        meters.withLock { cache in
            for network in Set(counts.keys).union(cache.keys.filter { $0.name == "x402_payments_unknown" }.map(\.a)) {
                let key = CounterKey(name: "x402_payments_unknown", a: network)
                let meter = cache[key] ?? CoreMetrics.Meter(label: key.name, dimensions: [("network", network)], factory: factory)
                cache[key] = meter
                meter.set(counts[network] ?? 0)
            }
        }
    }

    // MARK: Deferred settlement

    /// A settlement worker's outcome: `settled`, `failed` (after delivery), `unknown`, `released`
    /// (never delivered) or `retry`.
    func deferredSettlement(outcome: String, count: Int64 = 1) {
        counter(CounterKey(name: "x402_deferred_settlements_total", a: outcome), [("outcome", outcome)]).increment(by: count)
    }

    /// A payment on a deferred route served after-success instead (`over_payer_budget`, `over_total_budget`, `payer_failed`).
    func deferralDeclined(_ reason: String, count: Int64 = 1) {
        counter(CounterKey(name: "x402_deferrals_declined_total", a: reason), [("reason", reason)]).increment(by: count)
    }

    /// The ledger's deferred settlements as last read: queued, unknown, failed after delivery, the
    /// age of the oldest queued one, and the unsettled amount per route (routes no longer listed go to 0).
    func deferredLedger(pending: Int, unknown: Int, failures: Int, oldestPendingSeconds: Double, exposure: [String: Double]) {
        meters.withLock { cache in
            func meter(_ name: String, _ a: String = "", _ dimensions: [(String, String)] = []) -> CoreMetrics.Meter {
                let key = CounterKey(name: name, a: a)
                if let meter = cache[key] { return meter }
                let meter = CoreMetrics.Meter(label: name, dimensions: dimensions, factory: factory)
                cache[key] = meter
                return meter
            }
            meter("x402_deferred_pending").set(pending)
            meter("x402_deferred_unknown").set(unknown)
            meter("x402_deferred_failures").set(failures)
            meter("x402_deferred_oldest_pending_seconds").set(oldestPendingSeconds)
            let routes = Set(exposure.keys).union(cache.keys.filter { $0.name == "x402_deferred_exposure" }.map(\.a))
            for route in routes { meter("x402_deferred_exposure", route, [("route", route)]).set(exposure[route] ?? 0) }
        }
    }

    func configReload(result: String) {
        counter(CounterKey(name: "x402_config_reloads_total", a: result), [("result", result)]).increment()
    }

    /// The Prometheus text exposition format: the registry's series, then the routes' (those that
    /// counted something, by route id).
    public func exposition() -> [UInt8] {
        var out = registry.emitToBuffer()
        let used = routeCounters.withLock { Array($0.values) }.filter(\.isUsed).sorted { $0.route < $1.route }
        RouteMetrics.exposition(of: used, into: &out)
        let limited = routeLimitCounters.withLock { Array($0.values) }.filter(\.isUsed).sorted { $0.route < $1.route }
        RouteLimitMetrics.exposition(of: limited, into: &out)
        return out
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}

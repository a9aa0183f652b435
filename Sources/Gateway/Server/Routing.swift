import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Paywall
import Synchronization
import X402
import X402Facilitator

/// Everything derived from one configuration. Swapped as a whole on reload: a request uses the
/// snapshot it started with from start to end.
package final class GatewaySnapshot: Sendable {
    let config: GatewayConfig
    let table: RouteTable
    let responses: GatewayResponses
    /// The browser paywall page of each route (same positions as `table.routes`; nil for free
    /// routes and when the paywall is disabled), compiled here so a request only fills it in.
    let paywalls: [PaywallPage?]
    let upstreams: [String: Upstream]
    let facilitator: (any Facilitator)?
    /// Counters of each route (same positions as `table.routes`) and of requests no route matched.
    let routeMetrics: [RouteMetrics]
    let unmatchedMetrics: RouteMetrics
    let metrics: GatewayMetrics
    /// The keys passes are signed and verified with (nil: `passes` is not configured).
    let passKeyring: PassKeyring?
    /// Each route's pass rules (same positions as `table.routes`; nil for routes without `pass`).
    let passPolicies: [RoutePassPolicy?]
    /// The process's rate limits and free allowances (the same object in every snapshot).
    let limiter: RequestLimiter
    /// Each route's limit counters (same positions as `table.routes`; nil for routes without limits).
    let limitMetrics: [RouteLimitMetrics?]
    /// The rate limit of each route that has one, by route id (for the limiter's synchronisation).
    let rateLimits: [String: RateLimit]
    /// Each priced route's last 402 for API clients: clients keep asking for the same URL, so most
    /// 402s reuse it (headers already built and validated) instead of rendering it again.
    private let lastChallenges: [LastChallenge]
    /// Each route's dynamic price (same positions as `table.routes`; nil for fixed prices).
    let pricing: [RoutePricing?]
    /// `GET /.well-known/x402` (nil: `discovery.manifest: false`), and its last answer.
    let manifest: DiscoveryManifest?
    private let lastManifest = LastChallenge()

    private final class LastChallenge: Sendable {
        let slot = Mutex<(url: String, answer: EncodedAnswer)?>(nil)
    }

    package init(config: GatewayConfig, upstreams: [String: Upstream], facilitator: (any Facilitator)?, metrics: GatewayMetrics,
         limiter: RequestLimiter, quoter: (PricingEndpoint) -> PriceQuoter? = { _ in nil }) {
        self.config = config
        self.table = RouteTable(config: config)
        self.pricing = table.routes.map { RoutePricing(route: $0, paywall: config.paywall, quoter: quoter) }
        self.limiter = limiter
        self.limitMetrics = table.routes.map { route in
            let (rate, free) = (route.config.rateLimit != nil, route.config.freePerClient != nil)
            return rate || free ? metrics.routeLimits(route.config.id, rateLimit: rate, allowance: free) : nil
        }
        self.rateLimits = Dictionary(config.routes.compactMap { route in route.rateLimit.map { (route.id, $0) } }, uniquingKeysWith: { a, _ in a })
        self.routeMetrics = table.routes.map { metrics.route($0.config.id) }
        self.unmatchedMetrics = metrics.route("-")
        self.metrics = metrics
        self.passKeyring = config.passes.flatMap(PassKeyring.init)
        self.passPolicies = RoutePassPolicy.compile(config.routes)
        self.lastChallenges = table.routes.map { _ in LastChallenge() }
        self.manifest = config.discoveryManifest ? DiscoveryManifest(routes: table.routes) : nil
        self.responses = GatewayResponses(cors: config.cors)
        var compiler = PaywallCompiler(config: config.paywall)
        self.paywalls = table.routes.map { route in
            guard config.paywall.enabled, let challenge = route.challenge else { return nil }
            return compiler.page(route: route.config, challenge: challenge)
        }
        self.upstreams = upstreams
        self.facilitator = facilitator
    }

    /// The facilitators behind ``facilitator`` when `facilitators:` lists several.
    var facilitatorGroup: FacilitatorGroup? { (facilitator as? MeteredFacilitator)?.inner as? FacilitatorGroup }

    /// The 402 (GET, API client, default error) of a route for `resourceURL`.
    func challengeAnswer(routeIndex: Int, challenge: Challenge, resourceURL: String) -> EncodedAnswer {
        let last = lastChallenges[routeIndex]
        if let hit = last.slot.withLock({ $0 }), hit.url == resourceURL { return hit.answer }
        let answer = responses.paymentRequired(challenge, resourceURL: resourceURL, head: false).encoded()
        last.slot.withLock { $0 = (resourceURL, answer) }
        return answer
    }

    /// The discovery manifest for a request to `host` whose resource URLs start with `base`.
    func manifestAnswer(_ manifest: DiscoveryManifest, base: String, host: String, head: Bool) -> EncodedAnswer {
        let key = base + " " + host
        if !head, let hit = lastManifest.slot.withLock({ $0 }), hit.url == key { return hit.answer }
        let answer = responses.discoveryManifest(manifest.render(base: base, host: host), head: head).encoded()
        if !head { lastManifest.slot.withLock { $0 = (key, answer) } }
        return answer
    }

    /// The claims of the first of `tokens` that opens `path` on the route at `routeIndex` at `now`,
    /// or why none does (a refusal for this route ranks before another route's pass).
    func checkPass(_ tokens: [Substring], routeIndex: Int, path: String, now: UInt64) -> Result<PassClaims, PassRejection> {
        guard let policy = passPolicies[routeIndex], let keyring = passKeyring else { return .failure(.routeHasNoPass) }
        var refusal = PassRejection.malformed
        var refusalRanked = false
        for token in tokens {
            let why: PassRejection
            switch keyring.verify(token, now: now) {
            case .success(let claims):
                guard let refused = policy.refusal(of: claims, path: path) else { return .success(claims) }
                why = refused
            case .failure(let refused):
                why = refused
            }
            if !refusalRanked || (refusal == .otherRoute && why != .otherRoute) {
                refusal = why
                refusalRanked = true
            }
        }
        return .failure(refusal)
    }

    /// The page to answer `head` with instead of the JSON 402: only for browsers.
    func paywall(routeIndex: Int, head: HTTPRequestHead) -> PaywallPage? {
        guard let page = paywalls[routeIndex],
              BrowserDetection.wantsPaywall(accept: head.headers.first(name: "accept"), userAgent: head.headers.first(name: "user-agent"))
        else { return nil }
        return page
    }
}

/// Holds the current snapshot.
final class SnapshotBox: Sendable {
    private let current: Mutex<GatewaySnapshot>

    init(_ snapshot: GatewaySnapshot) { current = Mutex(snapshot) }

    var snapshot: GatewaySnapshot { current.withLock { $0 } }

    func replace(_ snapshot: GatewaySnapshot) { current.withLock { $0 = snapshot } }
}

/// What the gateway does with a request, decided synchronously from its head.
enum Decision {
    /// An answer the gateway writes itself (400, 402, 404, preflight).
    case answer(EncodedAnswer, RouteMetrics, RequestOutcome)
    /// Forward for free to the named upstream, or on a priced route under a pass (`pass` set) or
    /// the route's free allowance (`free` set).
    case forward(upstream: String, path: CanonicalPath, RouteMetrics, pass: PassAccess? = nil, free: FreeAccess? = nil)
    /// A payment was presented on a priced route.
    case pay(Paid)
    /// No payment on a priced route with a free allowance counted in the database: ask it, then
    /// forward or answer the 402.
    case admit(Admission)

    struct Paid {
        var routeIndex: Int
        var path: CanonicalPath
        var resourceURL: String
        var paywall: PaywallPage?
        /// nil: no payment on a route whose price needs the body or the pricing endpoint: the
        /// request is read and priced, then answered its 402.
        var header: String?
        var version: Int
    }

    /// A request the route's free allowance opened: its answer is marked like a paid one.
    struct FreeAccess {
        var caching: PaidResponseCaching
        var allowOrigin: String
    }

    /// A request waiting for its free allowance to be counted in the store.
    struct Admission {
        var routeIndex: Int
        var upstream: String
        var path: CanonicalPath
        var client: ClientKey
        var allowance: FreeAllowance
        /// Unix seconds: the window counted in.
        var now: UInt64
        var access: FreeAccess
        /// The answer when nothing free is left (the route's 402), and how it is counted; nil when
        /// the price needs the body or the pricing endpoint: then `quote` is priced and answered.
        var challenge: EncodedAnswer?
        var outcome: RequestOutcome
        var quote: Paid?
    }

    /// A request a valid pass opened: what the upstream is told, and how its answer is marked.
    struct PassAccess {
        var payer: String
        var expiresAt: UInt64
        var allowOrigin: String
    }
}

/// The decision for a request head, and the URL and forwarding facts derived from it.
enum Routing {
    /// Everything that needs no I/O: canonical path, preflight, host, route, and for priced routes
    /// without a payment the 402 (written by ``GatewayHandler`` without any I/O).
    ///
    /// A priced request without a payment that carries a pass the route accepts at `clock()` is
    /// forwarded under it; any other pass is ignored: the request gets the route's 402, counted as
    /// `pass_refused`.
    ///
    /// A route's `rateLimit` answers 429 before anything else is done for the request (keyed by the
    /// pass's payer, else the client's address; paid requests are limited by their payer in
    /// ``PaidRequestHandler``); its `freePerClient` forwards an unpaid request instead of the 402
    /// while the client has free requests left (`.admit` when the count is in the database).
    static func decide(
        _ head: HTTPRequestHead, peer: String?, snapshot: GatewaySnapshot, logger: Logger, requestID: String,
        clock: () -> UInt64
    ) -> Decision {
        let responses = snapshot.responses
        let isHead = head.method == .HEAD
        let (target, targetAuthority) = splitAbsoluteForm(head.uri)
        let path: CanonicalPath
        do {
            path = try CanonicalPath.parse(target: target)
        } catch {
            logger.info("request refused", metadata: ["request.id": "\(requestID)", "x402.reason": "\(error)"])
            return .answer(responses.error(.badRequest, code: "bad_path", message: error.description, head: isHead).encoded(),
                           snapshot.unmatchedMetrics, .badRequest)
        }

        if head.method == .OPTIONS, head.headers.contains(name: "access-control-request-method"), head.headers.contains(name: "origin") {
            return .answer(responses.preflight(requestedHeaders: head.headers.first(name: "access-control-request-headers")).encoded(),
                           snapshot.unmatchedMetrics, .free)
        }

        var hostField: String?
        for (name, value) in head.headers where HTTPWire.nameEquals(name, "host") {
            guard hostField == nil else {
                return .answer(responses.error(.badRequest, code: "bad_host", message: "more than one Host header", head: isHead).encoded(),
                               snapshot.unmatchedMetrics, .badRequest)
            }
            hostField = value
        }
        // HTTP/1.1 requires Host (RFC 9112 §3.2: 400 without it), whatever the target's form.
        if hostField == nil, head.version.major == 1, head.version.minor >= 1 {
            return .answer(responses.error(.badRequest, code: "bad_host", message: "HTTP/1.1 request without a Host header", head: isHead).encoded(),
                           snapshot.unmatchedMetrics, .badRequest)
        }
        // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2).
        let hostHeader = targetAuthority ?? hostField ?? ""
        guard hostHeader.isEmpty || isValidHost(hostHeader) else {
            return .answer(responses.error(.badRequest, code: "bad_host", message: "Host header is not a valid host", head: isHead).encoded(),
                           snapshot.unmatchedMetrics, .badRequest)
        }
        let host = HostPattern.normalize(hostHeader: hostHeader)
        if let manifest = snapshot.manifest, path.path == DiscoveryManifest.path, head.method == .GET || isHead {
            let base = Self.baseURL(head: head, host: hostHeader, snapshot: snapshot, trusted: isTrustedProxy(peer, snapshot))
            return .answer(snapshot.manifestAnswer(manifest, base: base, host: host, head: isHead), snapshot.unmatchedMetrics, .free)
        }

        guard let routeIndex = snapshot.table.matchIndex(method: head.method.rawValue, path: path.path, host: host) else {
            switch snapshot.table.unmatched {
            case .deny:
                return .answer(responses.error(.notFound, code: "not_found", message: "no route matches this request", head: isHead).encoded(),
                               snapshot.unmatchedMetrics, .notFound)
            case .pass(let upstream):
                return .forward(upstream: upstream, path: path, snapshot.unmatchedMetrics)
            }
        }
        let route = snapshot.table.routes[routeIndex]
        let counters = snapshot.routeMetrics[routeIndex]
        // Rate limits and free allowances count against the client's address, trusted proxies
        // honoured (worked out only for routes that have them), or the payer of a pass.
        lazy var address = Self.addressKey(peer: peer, head: head, snapshot: snapshot)
        func rateRefusal(_ client: ClientKey?) -> Decision? {
            Self.rateLimitAnswer(routeIndex: routeIndex, client: client, isHead: isHead, snapshot: snapshot, logger: logger,
                                 requestID: requestID).map { .answer($0.encoded(), counters, .rateLimited) }
        }
        guard let challenge = route.challenge else {
            if route.config.rateLimit != nil, let refusal = rateRefusal(address) { return refusal }
            return .forward(upstream: route.config.upstream, path: path, counters)
        }
        // Made only for a 402 or a payment: a request a pass opens needs neither.
        lazy var resourceURL = Self.resourceURL(path: path, head: head, host: hostHeader, snapshot: snapshot,
                                                trusted: isTrustedProxy(peer, snapshot))
        lazy var paywall = snapshot.paywall(routeIndex: routeIndex, head: head)
        let payment = head.headers.first(name: X402Header.paymentSignature).map { ($0, 2) }
            ?? head.headers.first(name: X402Header.xPayment).map { ($0, 1) }
        guard let (header, version) = payment else {
            var outcome = RequestOutcome.paymentRequired
            // A gateway without `passes` does not look for passes at all.
            let tokens = snapshot.passKeyring == nil ? []
                : PassCredentials.tokens(in: head.headers, cookieName: snapshot.passPolicies[routeIndex]?.cookieName)
            if !tokens.isEmpty {
                switch snapshot.checkPass(tokens, routeIndex: routeIndex, path: path.path, now: clock()) {
                case .success(let claims):
                    if route.config.rateLimit != nil, let refusal = rateRefusal(.payer(address: claims.payer)) { return refusal }
                    logger.info("pass accepted", metadata: [
                        "request.id": "\(requestID)", "x402.route": "\(route.config.id)", "x402.pass.expires": "\(claims.expiresAt)",
                    ])
                    return .forward(upstream: route.config.upstream, path: path, counters, pass: Decision.PassAccess(
                        payer: claims.payer, expiresAt: claims.expiresAt, allowOrigin: snapshot.config.cors.allowOrigin))
                case .failure(let reason):
                    logger.info("pass refused", metadata: [
                        "request.id": "\(requestID)", "x402.route": "\(route.config.id)", "x402.reason": "\(reason.rawValue)",
                    ])
                    snapshot.metrics.passRefused(reason)
                    outcome = .passRefused
                }
            }
            // Before the 402: a flood gets 429s, and never reaches the allowance.
            if route.config.rateLimit != nil, let refusal = rateRefusal(address) { return refusal }
            // A price that needs the body or the pricing endpoint: the request is read and priced first.
            let pricing = snapshot.pricing[routeIndex]
            let needsQuote = pricing.map { !$0.isImmediate } ?? false
            func quote() -> Decision.Paid {
                Decision.Paid(routeIndex: routeIndex, path: path, resourceURL: resourceURL, paywall: paywall, header: nil, version: 0)
            }
            func paymentRequired() -> EncodedAnswer {
                if let pricing, let amount = pricing.rulePrice(RoutePricing.request(head: head, path: path, body: nil)) {
                    // Rules on the query and headers: the 402 at this request's price (never the per-URL cache).
                    let variant = pricing.variant(at: amount)
                    snapshot.metrics.pricing(route: route.config.id, result: "rules")
                    return responses.paymentRequired(variant.route.challenge!, resourceURL: resourceURL, head: isHead,
                                                     paywall: paywall == nil ? nil : variant.paywall, method: head.method.rawValue).encoded()
                }
                return paywall == nil && !isHead
                    ? snapshot.challengeAnswer(routeIndex: routeIndex, challenge: challenge, resourceURL: resourceURL)
                    : responses.paymentRequired(challenge, resourceURL: resourceURL, head: isHead, paywall: paywall,
                                                method: head.method.rawValue).encoded()
            }
            if let allowance = route.config.freePerClient {
                let limits = snapshot.limitMetrics[routeIndex]
                let access = Decision.FreeAccess(caching: route.config.cache, allowOrigin: snapshot.config.cors.allowOrigin)
                let now = clock()
                // No address, no count: nothing free.
                let check = address.map { snapshot.limiter.takeFree(route: route.config.id, client: $0, allowance: allowance, now: now) }
                switch check ?? .unavailable {
                case .free:
                    limits?.freeServed()
                    return .forward(upstream: route.config.upstream, path: path, counters, free: access)
                case .askStore:
                    return .admit(Decision.Admission(
                        routeIndex: routeIndex, upstream: route.config.upstream, path: path, client: address!, allowance: allowance,
                        now: now, access: access, challenge: needsQuote ? nil : paymentRequired(), outcome: outcome, quote: needsQuote ? quote() : nil))
                case .exhausted: limits?.freeExhausted()
                case .unavailable: limits?.freeUnavailable()
                }
            }
            if needsQuote { return .pay(quote()) }
            counters.challenged()
            return .answer(paymentRequired(), counters, outcome)
        }
        return .pay(Decision.Paid(routeIndex: routeIndex, path: path, resourceURL: resourceURL, paywall: paywall,
                                  header: header, version: version))
    }

    /// `http://authority/path?query` → (`/path?query`, `authority`); any other target is returned as is.
    static func splitAbsoluteForm(_ uri: String) -> (target: String, authority: String?) {
        guard let first = uri.utf8.first, first != UInt8(ascii: "/") else { return (uri, nil) }
        let lower = uri.prefix(8).lowercased()
        let schemeLength = lower.hasPrefix("http://") ? 7 : lower.hasPrefix("https://") ? 8 : 0
        guard schemeLength > 0 else { return (uri, nil) }
        let rest = uri.dropFirst(schemeLength)
        let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let tail = rest[end...]
        return (tail.first == "/" ? String(tail) : "/" + tail, String(rest[..<end]))
    }

    static func forwardingInfo(
        _ head: HTTPRequestHead, peer: String?, snapshot: GatewaySnapshot, requestID: String
    ) -> ReverseProxy.Forwarding {
        ReverseProxy.Forwarding(
            clientAddress: peer, clientIsTrustedProxy: isTrustedProxy(peer, snapshot),
            requestHost: head.headers.first(name: "host"), payerHeader: snapshot.config.payerHeader,
            extraHeaders: [("X-Request-Id", requestID)], tls: snapshot.config.tls != nil)
    }

    /// Whether the peer is one of `trustedProxies` (not even parsed when there are none).
    static func isTrustedProxy(_ peer: String?, _ snapshot: GatewaySnapshot) -> Bool {
        let proxies = snapshot.config.trustedProxies
        guard !proxies.isEmpty, let ip = peer, let bytes = IPRange.parseAddress(ip) else { return false }
        return proxies.contains { $0.contains(bytes) }
    }

    /// The public URL of the resource: `publicBaseURL` when configured, else built from the request
    /// (scheme from `X-Forwarded-Proto` only when the peer is a trusted proxy).
    static func resourceURL(path: CanonicalPath, head: HTTPRequestHead, host: String, snapshot: GatewaySnapshot, trusted: Bool) -> String {
        baseURL(head: head, host: host, snapshot: snapshot, trusted: trusted) + path.pathAndQuery
    }

    /// What public URLs start with: `publicBaseURL`, else `scheme://authority` of the request.
    static func baseURL(head: HTTPRequestHead, host: String, snapshot: GatewaySnapshot, trusted: Bool) -> String {
        if let base = snapshot.config.publicBaseURL { return base }
        var scheme = snapshot.config.tls == nil ? "http" : "https"
        var authority = host
        if trusted {
            if let proto = head.headers.first(name: "x-forwarded-proto")?.split(separator: ",").first, proto == "https" || proto == "http" {
                scheme = String(proto)
            }
            if let forwardedHost = head.headers.first(name: "x-forwarded-host"), Self.isValidHost(forwardedHost) { authority = forwardedHost }
        }
        if authority.isEmpty { authority = "localhost" }
        return "\(scheme)://\(authority)"
    }

    /// Host header characters: letters, digits, `-._:[]` (no userinfo, paths or spaces).
    static func isValidHost(_ host: String) -> Bool {
        !host.isEmpty && host.utf8.count <= 255 && host.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: ":") || c == UInt8(ascii: "[")
                || c == UInt8(ascii: "]")
        }
    }
}

/// Request ids: a client's `X-Request-Id` is kept when it is short and printable; otherwise the
/// gateway makes one from a per-process random prefix and a counter (unique, cheap, not secret).
enum RequestID {
    private static let prefix: String = {
        var rng = SystemRandomNumberGenerator()
        let bits: UInt64 = rng.next()
        return String(bits & 0xFFFF_FFFF_FFFF, radix: 16)
    }()
    private static let counter = Atomic<UInt64>(0)

    static func next() -> String {
        let n = counter.wrappingAdd(1, ordering: .relaxed).newValue
        return prefix + "-" + String(n, radix: 16)
    }

    static func accept(_ value: String) -> String? {
        let bytes = value.utf8
        guard !bytes.isEmpty, bytes.count <= 128,
              bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
        else { return nil }
        return value
    }
}

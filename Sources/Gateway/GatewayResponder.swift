import AsyncHTTPClient
import GatewayCore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Paywall
import Synchronization
import X402
import X402Facilitator

/// Everything derived from one configuration. Swapped as a whole on reload: a request uses the
/// snapshot it started with from start to end.
final class GatewaySnapshot: Sendable {
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
    /// Each priced route's last 402 for API clients: clients keep asking for the same URL, so most
    /// 402s reuse it (headers already built and validated) instead of rendering it again.
    private let lastChallenges: [LastChallenge]

    private final class LastChallenge: Sendable {
        let slot = Mutex<(url: String, answer: Answer)?>(nil)
    }

    init(config: GatewayConfig, upstreams: [String: Upstream], facilitator: (any Facilitator)?, metrics: GatewayMetrics) {
        self.config = config
        self.table = RouteTable(config: config)
        self.routeMetrics = table.routes.map { metrics.route($0.config.id) }
        self.unmatchedMetrics = metrics.route("-")
        self.lastChallenges = table.routes.map { _ in LastChallenge() }
        self.responses = GatewayResponses(cors: config.cors)
        self.paywalls = table.routes.map { route in
            guard config.paywall.enabled, let challenge = route.challenge else { return nil }
            return PaywallPage(route: route.config, challenge: challenge, config: config.paywall)
        }
        self.upstreams = upstreams
        self.facilitator = facilitator
    }

    /// The 402 (GET, API client, default error) of a route for `resourceURL`.
    func challengeAnswer(routeIndex: Int, challenge: Challenge, resourceURL: String) -> Answer {
        let last = lastChallenges[routeIndex]
        if let hit = last.slot.withLock({ $0 }), hit.url == resourceURL { return hit.answer }
        var answer = responses.paymentRequired(challenge, resourceURL: resourceURL, head: false)
        answer.headers[.contentLength] = String(answer.body?.readableBytes ?? 0)
        last.slot.withLock { $0 = (resourceURL, answer) }
        return answer
    }

    /// The page to answer `head` with instead of the JSON 402: only for browsers.
    func paywall(routeIndex: Int, head: HTTPRequest) -> PaywallPage? {
        guard let page = paywalls[routeIndex],
              BrowserDetection.wantsPaywall(accept: head.headerFields[.accept], userAgent: head.headerFields[.userAgent])
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
    case answer(Answer, RouteMetrics, RequestOutcome)
    /// Forward for free to the named upstream.
    case forward(upstream: String, path: CanonicalPath, RouteMetrics)
    /// A payment was presented on a priced route.
    case pay(Paid)

    struct Paid {
        var routeIndex: Int
        var path: CanonicalPath
        var resourceURL: String
        var paywall: PaywallPage?
        var header: String
        var version: Int
    }
}

/// The gateway's one responder: canonicalise, answer preflights, match, then 402 or proxy.
struct GatewayResponder: HTTPResponder {
    typealias Context = GatewayRequestContext

    let box: SnapshotBox
    let paid: PaidRequestHandler
    let metrics: GatewayMetrics

    func respond(to request: Request, context: Context) async throws -> Response {
        let requestID = request.headers[.xRequestID].flatMap(RequestID.accept) ?? RequestID.next()
        metrics.requestStarted()
        defer { metrics.requestEnded() }
        let snapshot = box.snapshot
        let (response, route, outcome) = await handle(
            request, decision: Self.decide(request.head, remoteAddress: context.remoteAddress, snapshot: snapshot,
                                           logger: context.logger, requestID: requestID),
            snapshot: snapshot, context: context, requestID: requestID)
        route.record(outcome)
        var answer = response
        if answer.headers[.xRequestID] == nil { answer.headers[.xRequestID] = requestID }
        return answer
    }

    private func handle(
        _ request: Request, decision: Decision, snapshot: GatewaySnapshot, context: Context, requestID: String
    ) async -> (Response, RouteMetrics, RequestOutcome) {
        switch decision {
        case .answer(let answer, let counters, let outcome):
            return (answer.response, counters, outcome)
        case .forward(let upstream, let path, let counters):
            let forwarding = Self.forwardingInfo(request.head, remoteAddress: context.remoteAddress, snapshot: snapshot, requestID: requestID)
            let (response, outcome) = await proxyResponse(
                request, path: path, upstream: upstream, snapshot: snapshot, forwarding: forwarding, logger: context.logger,
                requestID: requestID)
            return (response, counters, outcome)
        case .pay(let p):
            let route = snapshot.table.routes[p.routeIndex]
            let counters = snapshot.routeMetrics[p.routeIndex]
            var logger = context.logger
            logger[metadataKey: "request.id"] = .string(requestID)
            logger[metadataKey: "x402.route"] = .string(route.config.id)
            let paidContext = PaidRequestHandler.Context(
                request: request, path: p.path, route: route, counters: counters,
                resourceURL: p.resourceURL, snapshot: snapshot,
                forwarding: Self.forwardingInfo(request.head, remoteAddress: context.remoteAddress, snapshot: snapshot, requestID: requestID),
                paywall: p.paywall, logger: logger)
            let (response, outcome) = await paid.respond(paidContext, header: p.header, headerVersion: p.version)
            return (response, counters, outcome)
        }
    }

    /// Everything that needs no I/O: canonical path, preflight, host, route, and for priced routes
    /// without a payment the 402. Used by the responder and by ``FastAnswerHandler``, which writes
    /// `.answer` decisions without entering the async request path.
    static func decide(
        _ head: HTTPRequest, remoteAddress: SocketAddress?, snapshot: GatewaySnapshot, logger: Logger, requestID: String
    ) -> Decision {
        let responses = snapshot.responses
        let isHead = head.method == .head
        let path: CanonicalPath
        do {
            path = try CanonicalPath.parse(target: head.path ?? "")
        } catch {
            logger.info("request refused", metadata: ["request.id": "\(requestID)", "x402.reason": "\(error)"])
            return .answer(responses.error(.badRequest, code: "bad_path", message: error.description, head: isHead),
                           snapshot.unmatchedMetrics, .badRequest)
        }

        if head.method == .options, head.headerFields[.accessControlRequestMethod] != nil, head.headerFields[.origin] != nil {
            return .answer(responses.preflight(requestedHeaders: head.headerFields[.accessControlRequestHeaders]),
                           snapshot.unmatchedMetrics, .free)
        }

        let hostHeader = head.authority ?? ""
        guard hostHeader.isEmpty || isValidHost(hostHeader) else {
            return .answer(responses.error(.badRequest, code: "bad_host", message: "Host header is not a valid host", head: isHead),
                           snapshot.unmatchedMetrics, .badRequest)
        }
        let host = HostPattern.normalize(hostHeader: hostHeader)

        guard let routeIndex = snapshot.table.matchIndex(method: head.method.rawValue, path: path.path, host: host) else {
            switch snapshot.table.unmatched {
            case .deny:
                return .answer(responses.error(.notFound, code: "not_found", message: "no route matches this request", head: isHead),
                               snapshot.unmatchedMetrics, .notFound)
            case .pass(let upstream):
                return .forward(upstream: upstream, path: path, snapshot.unmatchedMetrics)
            }
        }
        let route = snapshot.table.routes[routeIndex]
        let counters = snapshot.routeMetrics[routeIndex]
        guard let challenge = route.challenge else {
            return .forward(upstream: route.config.upstream, path: path, counters)
        }
        let resourceURL = resourceURL(path: path, head: head, host: hostHeader, snapshot: snapshot,
                                      trusted: isTrustedProxy(remoteAddress, snapshot))
        let paywall = snapshot.paywall(routeIndex: routeIndex, head: head)
        let payment = head.headerFields[.paymentSignature].map { ($0, 2) } ?? head.headerFields[.xPayment].map { ($0, 1) }
        guard let (header, version) = payment else {
            counters.challenged()
            let answer = paywall == nil && !isHead
                ? snapshot.challengeAnswer(routeIndex: routeIndex, challenge: challenge, resourceURL: resourceURL)
                : responses.paymentRequired(challenge, resourceURL: resourceURL, head: isHead, paywall: paywall,
                                            method: head.method.rawValue)
            return .answer(answer, counters, .paymentRequired)
        }
        return .pay(Decision.Paid(routeIndex: routeIndex, path: path, resourceURL: resourceURL, paywall: paywall,
                                  header: header, version: version))
    }

    private func proxyResponse(
        _ request: Request, path: CanonicalPath, upstream name: String, snapshot: GatewaySnapshot,
        forwarding: ReverseProxy.Forwarding, logger: Logger, requestID: String
    ) async -> (Response, RequestOutcome) {
        let responses = snapshot.responses
        let isHead = request.method == .head
        guard let upstream = snapshot.upstreams[name] else {
            return (responses.error(.badGateway, code: "upstream_unavailable", message: "upstream is not configured", head: isHead).response, .upstreamError)
        }
        do throws(ReverseProxy.Failure) {
            let upstreamResponse = try await ReverseProxy.forward(
                request, path: path, to: upstream, forwarding: forwarding, metrics: metrics, logger: logger)
            let status = HTTPResponse.Status(code: Int(upstreamResponse.status.code), reasonPhrase: upstreamResponse.status.reasonPhrase)
            let response = Response(
                status: status, headers: ReverseProxy.relayedHeaders(upstreamResponse.headers),
                body: ResponseBody(asyncSequence: upstreamResponse.body))
            return (response, .free)
        } catch {
            switch error {
            case .timeout:
                logger.warning("upstream timed out", metadata: ["request.id": "\(requestID)", "x402.upstream": "\(name)"])
                return (responses.error(.gatewayTimeout, code: "upstream_timeout", message: "the upstream did not answer in time", head: isHead).response, .upstreamError)
            case .unavailable(let why):
                logger.warning("upstream unavailable", metadata: ["request.id": "\(requestID)", "x402.upstream": "\(name)", "error": "\(why)"])
                return (responses.error(.badGateway, code: "upstream_unavailable", message: "the upstream could not be reached", head: isHead).response, .upstreamError)
            }
        }
    }

    static func forwardingInfo(
        _ head: HTTPRequest, remoteAddress: SocketAddress?, snapshot: GatewaySnapshot, requestID: String
    ) -> ReverseProxy.Forwarding {
        ReverseProxy.Forwarding(
            clientAddress: remoteAddress?.ipAddress, clientIsTrustedProxy: isTrustedProxy(remoteAddress, snapshot),
            requestHost: head.authority, payerHeader: snapshot.config.payerHeader,
            extraHeaders: [("X-Request-Id", requestID)])
    }

    /// Whether the peer is one of `trustedProxies` (not even parsed when there are none).
    static func isTrustedProxy(_ remoteAddress: SocketAddress?, _ snapshot: GatewaySnapshot) -> Bool {
        let proxies = snapshot.config.trustedProxies
        guard !proxies.isEmpty, let ip = remoteAddress?.ipAddress, let bytes = IPRange.parseAddress(ip) else { return false }
        return proxies.contains { $0.contains(bytes) }
    }

    /// The public URL of the resource: `publicBaseURL` when configured, else built from the request
    /// (scheme from `X-Forwarded-Proto` only when the peer is a trusted proxy).
    static func resourceURL(path: CanonicalPath, head: HTTPRequest, host: String, snapshot: GatewaySnapshot, trusted: Bool) -> String {
        if let base = snapshot.config.publicBaseURL { return base + path.pathAndQuery }
        var scheme = "http"
        var authority = host
        if trusted {
            if let proto = head.headerFields[.xForwardedProto]?.split(separator: ",").first, proto == "https" || proto == "http" {
                scheme = String(proto)
            }
            if let forwardedHost = head.headerFields[.xForwardedHost], Self.isValidHost(forwardedHost) { authority = forwardedHost }
        }
        if authority.isEmpty { authority = "localhost" }
        return "\(scheme)://\(authority)\(path.pathAndQuery)"
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

extension HTTPField.Name {
    static let xRequestID = HTTPField.Name("X-Request-Id")!
}

import GatewayCore
import Logging
import NIOHTTP1

extension Routing {
    /// The client's address as rate limits and free allowances group it (`clientLimits`): the TCP
    /// peer, or behind a trusted proxy the address it forwards (``ClientAddress``). Nil without one.
    static func addressKey(peer: String?, head: HTTPRequestHead, snapshot: GatewaySnapshot) -> ClientKey? {
        let config = snapshot.config
        let forwarded = config.trustedProxies.isEmpty ? [] : head.headers["x-forwarded-for"]
        guard let bytes = ClientAddress.resolve(peer: peer, forwardedFor: forwarded, trusted: config.trustedProxies),
              let address = MaskedAddress(bytes: bytes, ipv4Prefix: config.clientLimits.ipv4Prefix,
                                          ipv6Prefix: config.clientLimits.ipv6Prefix)
        else { return nil }
        return .address(address)
    }

    /// The 429 when `client` has no token left under the route's rate limit, else nil; counted
    /// either way. Nothing is limited without a route limit or a client key.
    static func rateLimitAnswer(
        routeIndex: Int, client: ClientKey?, isHead: Bool, snapshot: GatewaySnapshot, logger: Logger, requestID: String
    ) -> Answer? {
        let route = snapshot.table.routes[routeIndex].config
        guard let limit = route.rateLimit, let client else { return nil }
        let counters = snapshot.limitMetrics[routeIndex]
        switch snapshot.limiter.takeRate(route: route.id, client: client, limit: limit) {
        case .allowed:
            counters?.rateAllowed()
            return nil
        case .limited(let seconds):
            counters?.rateLimited()
            // Debug: a flood would otherwise log a line per request.
            logger.debug("rate limited", metadata: [
                "request.id": "\(requestID)", "x402.route": "\(route.id)", "x402.retry_after": "\(seconds)",
            ])
            return snapshot.responses.rateLimited(retryAfter: seconds, head: isHead)
        }
    }
}

import GatewayCore
import Logging
import NIOCore
import Synchronization
import X402
import X402Facilitator

/// An upstream and its pool of keep-alive connections (free requests and paid hops share it).
package struct Upstream: Sendable {
    let config: UpstreamConfig
    let connections: UpstreamConnections

    package init(config: UpstreamConfig, connections: UpstreamConnections) {
        self.config = config
        self.connections = connections
    }
}

/// Creates the HTTP clients for upstreams and the facilitator. A configuration that did not change
/// across a reload keeps its client (and its warm connections); a changed one gets a new client.
/// An upstream a reload left behind is retired at once: its idle connections close, and each one
/// still serving a request in flight closes when that request ends. Facilitator clients a reload
/// left behind may still be called by requests in flight (a settlement after the upstream
/// answered), so they are kept (their idle connections expire) and shut down when the gateway stops.
final class ClientPool: Sendable {
    private struct State {
        var upstreams: [UpstreamConfig: Upstream] = [:]
        var facilitators: [FacilitatorConfig: HTTPFacilitatorClient] = [:]
        /// Kept across reloads that leave the list alone, so members' rest and kinds survive.
        var groups: [[FacilitatorConfig]: FacilitatorGroup] = [:]
        /// Pricing endpoints' clients and answer caches, kept across reloads that leave them alone.
        var pricing: [PricingEndpoint: PriceQuoter] = [:]
    }

    private let state = Mutex(State())
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger

    init(eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// The clients for a configuration's upstreams; those of upstreams it no longer has are retired.
    func upstreams(_ configs: [String: UpstreamConfig]) -> [String: Upstream] {
        let wanted = Set(configs.values)
        let known = state.withLock { $0.upstreams }
        // New clients are made outside the lock (an https one loads its trust roots).
        var made: [UpstreamConfig: Upstream] = [:]
        for config in wanted where known[config] == nil {
            made[config] = Upstream(config: config, connections: UpstreamConnections(config: config))
        }
        let (clients, retired) = state.withLock { state in
            state.upstreams.merge(made) { old, _ in old }
            let gone = state.upstreams.filter { !wanted.contains($0.key) }
            for config in gone.keys { state.upstreams[config] = nil }
            let clients = configs.mapValues { state.upstreams[$0] ?? Upstream(config: $0, connections: UpstreamConnections(config: $0)) }
            return (clients, Array(gone.values))
        }
        for upstream in retired { upstream.connections.shutdown() }
        return clients
    }

    func facilitator(_ config: FacilitatorConfig) -> HTTPFacilitatorClient {
        state.withLock { state in
            if let client = state.facilitators[config] { return client }
            let client = HTTPFacilitatorClient(
                baseURL: config.url, headers: config.headers, timeout: config.timeout, connectTimeout: config.connectTimeout,
                caFile: config.caFile,
                // Checked by the loader: a key that does not parse never gets here.
                authenticator: config.cdp.flatMap { try? CDPAuthenticator(keyId: $0.keyId, keySecret: $0.keySecret) },
                eventLoopGroup: eventLoopGroup, logger: logger)
            state.facilitators[config] = client
            return client
        }
    }

    /// The facilitator for `configs`: its client when there is one, a ``FacilitatorGroup`` of
    /// their clients when there are several; nil when there is none.
    func facilitator(_ configs: [FacilitatorConfig]) -> (any Facilitator)? {
        guard configs.count > 1 else { return configs.first.map { facilitator($0) } }
        if let group = state.withLock({ $0.groups[configs] }) { return group }
        let members = configs.map { config in
            let client = facilitator(config)
            return FacilitatorGroup.Member(name: client.origin, facilitator: client)
        }
        return state.withLock { state in
            if let group = state.groups[configs] { return group }
            let group = FacilitatorGroup(members: members)
            state.groups[configs] = group
            return group
        }
    }

    /// The client (and cache) of a route's pricing endpoint.
    func pricing(_ endpoint: PricingEndpoint) -> PriceQuoter {
        state.withLock { state in
            if let quoter = state.pricing[endpoint] { return quoter }
            let quoter = PriceQuoter(endpoint: endpoint, eventLoopGroup: eventLoopGroup)
            state.pricing[endpoint] = quoter
            return quoter
        }
    }

    func shutdown() async {
        let quoters = state.withLock { Array($0.pricing.values) }
        for quoter in quoters { await quoter.shutdown() }
        let (upstreams, facilitators) = state.withLock { ($0.upstreams.values, $0.facilitators.values) }
        for upstream in upstreams {
            upstream.connections.shutdown()
        }
        for client in facilitators { await client.shutdown() }
    }
}

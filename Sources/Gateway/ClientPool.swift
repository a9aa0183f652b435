import GatewayCore
import Logging
import NIOCore
import Synchronization
import X402
import X402Facilitator

/// An upstream and its pool of keep-alive connections (free requests and paid hops share it).
struct Upstream: Sendable {
    let config: UpstreamConfig
    let connections: UpstreamConnections
}

/// Creates the HTTP clients for upstreams and the facilitator. A configuration that did not change
/// across a reload keeps its client (and its warm connections); a changed one gets a new client.
/// Clients a reload left behind may still serve requests in flight, so all are shut down together
/// when the gateway stops.
final class ClientPool: Sendable {
    private struct State {
        var upstreams: [UpstreamConfig: Upstream] = [:]
        var facilitators: [FacilitatorConfig: HTTPFacilitatorClient] = [:]
    }

    private let state = Mutex(State())
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger

    init(eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    func upstreams(_ configs: [String: UpstreamConfig]) -> [String: Upstream] {
        state.withLock { state in
            configs.mapValues { config in
                if let upstream = state.upstreams[config] { return upstream }
                let upstream = Upstream(config: config, connections: UpstreamConnections(config: config))
                state.upstreams[config] = upstream
                return upstream
            }
        }
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

    func shutdown() async {
        let (upstreams, facilitators) = state.withLock { ($0.upstreams.values, $0.facilitators.values) }
        for upstream in upstreams {
            upstream.connections.shutdown()
        }
        for client in facilitators { await client.shutdown() }
    }
}

import Foundation
import GatewayCore
import GatewayStorage
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import X402
import X402Facilitator

/// The gateway as a `Service`: the HTTP listener plus its upstream clients.
public final class GatewayServer: Service {
    let box: SnapshotBox
    let proxy: ReverseProxy
    let facilitator: (any Facilitator)?
    let ownedFacilitator: HTTPFacilitatorClient?
    let paid: PaidRequestHandler
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// - Parameters:
    ///   - facilitator: defaults to an HTTP client for `config.facilitator`.
    ///   - replay: where payment claims live (in memory by default).
    ///   - clock: unix seconds, injected so tests control time windows.
    ///   - onListening: called with the bound port once the listener is up (port 0 in tests).
    public init(
        config: GatewayConfig, logger: Logger, facilitator: (any Facilitator)? = nil,
        replay: any ReplayGuard = InMemoryReplayGuard(),
        clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) },
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        let group = MultiThreadedEventLoopGroup.singleton
        self.box = SnapshotBox(GatewaySnapshot(config: config))
        self.proxy = ReverseProxy(upstreams: config.upstreams, eventLoopGroup: group)
        if let facilitator {
            self.facilitator = facilitator
            self.ownedFacilitator = nil
        } else if let f = config.facilitator {
            let client = HTTPFacilitatorClient(baseURL: f.url, headers: f.headers, timeout: f.timeout, eventLoopGroup: group, logger: logger)
            self.facilitator = client
            self.ownedFacilitator = client
        } else {
            self.facilitator = nil
            self.ownedFacilitator = nil
        }
        self.paid = PaidRequestHandler(facilitator: self.facilitator, replay: replay, proxy: proxy, clock: clock)
        self.logger = logger
        self.onListening = onListening
    }

    /// Logs which configured (scheme, network) pairs the facilitator does not support.
    func checkFacilitator() async {
        guard let facilitator else { return }
        let needed = Set(box.snapshot.config.routes.flatMap { route -> [String] in
            guard case .priced(let offers) = route.access else { return [] }
            return offers.map { "\($0.scheme) \($0.network.caip2)" }
        })
        guard !needed.isEmpty else { return }
        do {
            let supported = try await facilitator.supported()
            let offered = Set(supported.kinds.map { "\($0.scheme) \($0.network)" })
            let wildcard = Set(supported.kinds.filter { $0.network == "eip155:*" }.map(\.scheme))
            let missing = needed.filter { pair in
                !offered.contains(pair) && !wildcard.contains(String(pair.split(separator: " ")[0]))
            }.sorted()
            if missing.isEmpty {
                logger.info("facilitator supports every configured payment kind", metadata: ["x402.kinds": "\(needed.sorted())"])
            } else {
                logger.error("facilitator lacks configured payment kinds: payments for them will be refused",
                             metadata: ["x402.missing": "\(missing)"])
            }
        } catch {
            logger.error("facilitator /supported check failed", metadata: ["error": "\(error)"])
        }
    }

    public func run() async throws {
        let config = box.snapshot.config
        let onListening = self.onListening
        let logger = self.logger
        let app = Application(
            responder: GatewayResponder(box: box, proxy: proxy, paid: paid),
            server: .http1(configuration: .init(
                idleTimeout: .milliseconds(config.limits.idleTimeout.wholeMilliseconds),
                httpDecoderConfiguration: .init(
                    maxHeaderFieldSize: config.limits.maxHeaderBytes, maxHeaderListSize: config.limits.maxHeaderBytes))),
            configuration: .init(address: .hostname(config.listen.host, port: config.listen.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("gateway listening", metadata: ["address": "\(config.listen.host):\(port)"])
                await onListening(port)
            },
            logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await self.checkFacilitator() }
                group.addTask { try await app.run() }
                try await group.waitForAll()
            }
        } catch {
            await shutdownClients()
            throw error
        }
        await shutdownClients()
    }

    private func shutdownClients() async {
        await proxy.shutdown()
        await ownedFacilitator?.shutdown()
    }
}

import GatewayCore
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The gateway as a `Service`: the HTTP listener plus its upstream clients.
public final class GatewayServer: Service {
    let box: SnapshotBox
    let proxy: ReverseProxy
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// - Parameter onListening: called with the bound port once the listener is up (port 0 in tests).
    public init(config: GatewayConfig, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) {
        self.box = SnapshotBox(GatewaySnapshot(config: config))
        self.proxy = ReverseProxy(upstreams: config.upstreams, eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let config = box.snapshot.config
        let onListening = self.onListening
        let logger = self.logger
        let app = Application(
            responder: GatewayResponder(box: box, proxy: proxy),
            server: .http1(configuration: .init(
                idleTimeout: .milliseconds(config.limits.idleTimeout.milliseconds),
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
            try await app.run()
        } catch {
            await proxy.shutdown()
            throw error
        }
        await proxy.shutdown()
    }
}

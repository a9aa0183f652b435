import Foundation
import Gateway
import GatewayStorage
import X402Facilitator
import GatewayCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Handles to a running gateway and its fake upstream.
public struct LiveGateway: Sendable {
    public let port: Int
    public let upstreamPort: Int
    public let upstream: RecordingUpstream
    public let config: GatewayConfig
    /// The admin listener's port, when the YAML has `admin:`.
    public let adminPort: Int?
    public let server: GatewayServer

    /// The ledger rows `query` selects, once the steps paid answers did not wait for have landed.
    public func payments(_ query: PaymentQuery = PaymentQuery()) async throws -> [PaymentRecord] {
        await server.ledgerWritesLanded()
        return try await server.store.payments(query)
    }

    /// Sends raw bytes as one HTTP/1.1 request and reads the whole answer.
    public func send(_ raw: String, discardBody: Bool = false) async throws -> RawHTTPResponse {
        try await RawHTTP.send(port: port, raw: raw, discardBody: discardBody)
    }

    /// `GET <target>` with `Connection: close`, the target sent byte for byte.
    public func get(_ target: String, method: String = "GET", headers: [(String, String)] = [], discardBody: Bool = false) async throws -> RawHTTPResponse {
        var raw = "\(method) \(target) HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n"
        for (n, v) in headers { raw += "\(n): \(v)\r\n" }
        raw += "\r\n"
        return try await send(raw, discardBody: discardBody)
    }
}

public enum TestHarness {
    /// Starts a fake upstream and a gateway whose YAML may use `{{UPSTREAM}}` for the upstream's URL,
    /// runs `body`, then stops both. Readiness is signalled by the servers, never by sleeping.
    /// With `configFile`, the YAML is written there and the gateway reloads from it. `gatewayLogger`:
    /// the gateway's logger (default: critical messages only).
    public static func withGateway<T: Sendable>(
        yaml: String, environment: [String: String] = [:], upstream: RecordingUpstream = RecordingUpstream(),
        facilitator: (any Facilitator)? = nil, clock: (@Sendable () -> UInt64)? = nil, configFile: String? = nil,
        gatewayLogger: Logger? = nil, store: (any PaymentStore)? = nil, counters: (any LimitCounterStore)? = nil,
        _ body: @Sendable (LiveGateway) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let (upstreamPorts, upstreamPort) = AsyncStream<Int>.makeStream()
        return try await withRunning(upstream.application { upstreamPort.yield($0) }, logger: logger) {
            var iterator = upstreamPorts.makeAsyncIterator()
            guard let up = await iterator.next() else { throw TestHarnessError.noPort }
            let text = yaml.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:\(up)")
            if let configFile { try text.write(toFile: configFile, atomically: true, encoding: .utf8) }
            let config = try ConfigLoader.parse(yaml: text, file: configFile ?? "test.yaml", environment: environment)
            let (gatewayPorts, gatewayPort) = AsyncStream<Int>.makeStream()
            let (adminPorts, adminPort) = AsyncStream<Int>.makeStream()
            let server = GatewayServer(
                config: config, logger: gatewayLogger ?? logger, facilitator: facilitator,
                store: store ?? InMemoryPaymentStore(), counters: counters, clock: clock ?? { UInt64(Date().timeIntervalSince1970) },
                source: configFile.map { ConfigSource(path: $0, environment: environment) },
                onListening: { gatewayPort.yield($0) }, onAdminListening: { adminPort.yield($0) })
            return try await withRunning(server, logger: logger) {
                var gwIterator = gatewayPorts.makeAsyncIterator()
                guard let port = await gwIterator.next() else { throw TestHarnessError.noPort }
                var admin: Int?
                if config.admin != nil {
                    var adminIterator = adminPorts.makeAsyncIterator()
                    admin = await adminIterator.next()
                }
                return try await body(LiveGateway(
                    port: port, upstreamPort: up, upstream: upstream, config: config, adminPort: admin, server: server))
            }
        }
    }

    /// Starts a fake facilitator, then a gateway whose YAML may use `{{FACILITATOR}}` for its URL.
    public static func withPaidGateway<T: Sendable>(
        yaml: String, environment: [String: String] = [:], facilitator: FakeFacilitator = FakeFacilitator(),
        upstream: RecordingUpstream = RecordingUpstream(), facilitatorPort: Int = 0, clock: (@Sendable () -> UInt64)? = nil,
        gatewayLogger: Logger? = nil, store: (any PaymentStore)? = nil, counters: (any LimitCounterStore)? = nil,
        _ body: @Sendable (LiveGateway, FakeFacilitator) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let (ports, port) = AsyncStream<Int>.makeStream()
        return try await withRunning(facilitator.application(port: facilitatorPort) { port.yield($0) }, logger: logger) {
            var iterator = ports.makeAsyncIterator()
            guard let p = await iterator.next() else { throw TestHarnessError.noPort }
            let text = yaml.replacingOccurrences(of: "{{FACILITATOR}}", with: "http://127.0.0.1:\(p)")
            return try await withGateway(yaml: text, environment: environment, upstream: upstream, clock: clock,
                                         gatewayLogger: gatewayLogger, store: store, counters: counters) { try await body($0, facilitator) }
        }
    }

    /// Runs `service` in a ServiceGroup for the duration of `body`, then shuts it down gracefully.
    public static func withRunning<T: Sendable>(
        _ service: some Service, logger: Logger, _ body: () async throws -> T
    ) async throws -> T {
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let result = try await body()
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }
}

public enum TestHarnessError: Error { case noPort }

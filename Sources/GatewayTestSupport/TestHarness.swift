import Foundation
import Gateway
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
    public static func withGateway<T: Sendable>(
        yaml: String, environment: [String: String] = [:], upstream: RecordingUpstream = RecordingUpstream(),
        _ body: @Sendable (LiveGateway) async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (upstreamPorts, upstreamPort) = AsyncStream<Int>.makeStream()
            let app = upstream.application { upstreamPort.yield($0) }
            group.addTask { try await app.run() }
            var iterator = upstreamPorts.makeAsyncIterator()
            guard let up = await iterator.next() else { throw TestHarnessError.noPort }

            let text = yaml.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:\(up)")
            let config = try ConfigLoader.parse(yaml: text, file: "test.yaml", environment: environment)
            var logger = Logger(label: "test-gateway")
            logger.logLevel = .warning
            let (gatewayPorts, gatewayPort) = AsyncStream<Int>.makeStream()
            let server = GatewayServer(config: config, logger: logger) { gatewayPort.yield($0) }
            group.addTask { try await server.run() }
            var gwIterator = gatewayPorts.makeAsyncIterator()
            guard let port = await gwIterator.next() else { throw TestHarnessError.noPort }

            let live = LiveGateway(port: port, upstreamPort: up, upstream: upstream, config: config)
            do {
                let result = try await body(live)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}

public enum TestHarnessError: Error { case noPort }

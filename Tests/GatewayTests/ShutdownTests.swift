import Foundation
import GatewayTestSupport
import Logging
import Synchronization
import Testing

/// The built `x402-gateway` executable, next to the test bundle.
func gatewayExecutable() throws -> String {
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let candidates = [bin, bin.deletingLastPathComponent()].map { $0.appendingPathComponent("x402-gateway").path }
    return try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
                        "build the x402-gateway product first (scripts/check.sh does)")
}

/// Runs `body` with a recording upstream listening on a port of its own, shut down afterwards.
func withRecordingUpstream(_ body: (RecordingUpstream, Int) async throws -> Void) async throws {
    let upstream = RecordingUpstream()
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let (ports, portSink) = AsyncStream<Int>.makeStream()
    try await TestHarness.withRunning(upstream.application { portSink.yield($0) }, logger: logger) {
        var iterator = ports.makeAsyncIterator()
        try await body(upstream, try #require(await iterator.next()))
    }
}

@Suite("Graceful shutdown of the real process")
struct ShutdownTests {
    @Test("SIGTERM drains a slow request in flight to completion, refuses new connections, and exits 0")
    func sigtermDrains() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await withRecordingUpstream { upstream, upstreamPort in
            let file = dir + "/gateway.yaml"
            let state = try GatewayProcess.stateDirectory(in: dir)
            try """
                listen: 127.0.0.1:0
                storage: { sqlite: "\(state)/ledger.db" }
                upstreams:
                  api: { url: "http://127.0.0.1:\(upstreamPort)", timeout: 10s }
                routes:
                  - match: "/*"
                    free: true
                limits: { shutdownGrace: 10s }
                """.write(toFile: file, atomically: true, encoding: .utf8)

            let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])

            defer { gateway.stop() }
            // The port comes from the "gateway listening" log line.
            let port = try #require(try await gateway.listeningPort())

            let slow = Task { try await RawHTTP.send(port: port, raw: "GET /slow/1500 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n") }
            #expect(try await eventually(within: .seconds(15)) { upstream.count == 1 })  // 5 s failed in a loaded run
            gateway.signal(SIGTERM)

            let response = try await slow.value
            #expect(response.status == 200)
            #expect(response.bodyText == "{\"path\":\"/slow/1500\"}")
            #expect(await gateway.exitStatus() == 0)
            await #expect(throws: (any Error).self) {
                try await RawHTTP.send(port: port, raw: "GET /after HTTP/1.1\r\nHost: gw\r\n\r\n")
            }
        }
    }

    @Test("SIGHUP reloads the file in the real process (file watching off)")
    func sighupReloads() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        let state = try GatewayProcess.stateDirectory(in: dir)
        func yaml(_ price: String) -> String { LargeRouteTableTests.yaml(routes: 1, price: price, state: state) }
        try yaml("$0.001").write(toFile: file, atomically: true, encoding: .utf8)
        let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])
        defer { gateway.stop() }
        let port = try #require(try await gateway.listeningPort())
        func amount() async throws -> String {
            try offeredAmount(try await RawHTTP.send(port: port, raw: "GET /weather HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"))
        }
        #expect(try await amount() == "1000")
        try yaml("$0.004").write(toFile: file, atomically: true, encoding: .utf8)
        gateway.signal(SIGHUP)
        #expect(try await eventually(within: .seconds(3)) { try await amount() == "4000" })
    }

    @Test("a listen address that cannot be bound ends `run` at once with a non-zero status, though the admin listener could bind")
    func unbindableListenerExits() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await withRecordingUpstream { upstream, taken in
            let file = dir + "/gateway.yaml"
            // The upstream's own port: in use. (Formerly the process went on with only the admin
            // listener, /healthz answering 200, and reported the bind error at SIGTERM.)
            try """
                listen: 127.0.0.1:\(taken)
                admin: { listen: 127.0.0.1:0 }
                storage: memory
                upstreams:
                  api: { url: "http://127.0.0.1:\(taken)" }
                routes:
                  - match: "/*"
                    free: true
                """.write(toFile: file, atomically: true, encoding: .utf8)
            let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])
            defer { gateway.stop() }
            // Returns when the admin listener is up, or nil if the process ends first; keeps reading.
            _ = try await gateway.listeningPort(message: "admin listening")
            try #require(try await eventually(within: .seconds(10)) { !gateway.isRunning })
            #expect(await gateway.exitStatus() != 0)
            #expect(try await eventually(within: .seconds(5)) { gateway.log.contains { $0.contains("Address already in use") } })
        }
    }
}

import Foundation
import GatewayTestSupport
import Testing

/// The real process with ten thousand routes: loading, and reloading without stalling requests.
@Suite("A large route table in the real process")
struct LargeRouteTableTests {
    /// `count - 1` priced routes `GET /svcN/items/:id`, then `GET /weather` (matched last); with
    /// `count` 1, the one-route configuration the reload tests use too.
    static func yaml(routes count: Int, price: String, state: String) -> String {
        var text = """
            listen: 127.0.0.1:0
            storage: { sqlite: "\(state)/ledger.db" }
            payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
            network: eip155:84532
            reload: { watch: false }
            upstreams:
              api: { url: "http://127.0.0.1:1" }
            routes:

            """
        for n in 0..<count - 1 { text += "  - match: \"GET /svc\(n)/items/:id\"\n    price: \"$0.001\"\n" }
        text += "  - match: \"GET /weather\"\n    price: \"\(price)\"\n"
        return text
    }

    @Test("a SIGHUP reload of 10 000 routes is parsed and indexed off the event loops: requests keep being answered promptly")
    func reloadDoesNotStall() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        let state = try GatewayProcess.stateDirectory(in: dir)
        try Self.yaml(routes: 10_000, price: "$0.001", state: state).write(toFile: file, atomically: true, encoding: .utf8)
        let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])
        defer { gateway.stop() }
        let port = try #require(try await gateway.listeningPort())
        func weather() async throws -> RawHTTPResponse {
            try await RawHTTP.send(port: port, raw: "GET /weather HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        }
        #expect(try offeredAmount(try await weather()) == "1000")

        try Self.yaml(routes: 10_000, price: "$0.004", state: state).write(toFile: file, atomically: true, encoding: .utf8)
        let reloaded: @Sendable () -> Bool = { gateway.log.contains { $0.contains("configuration reloaded") } }
        let clock = ContinuousClock()
        let start = clock.now
        gateway.signal(SIGHUP)
        // One connection per request: connections go to the event loops in turn, so with a
        // reload on one of them every other request would wait for it. The requests go from a
        // thread of their own over blocking sockets: timed through the test process's shared
        // event loops, a loaded test run's scheduling delays read as the gateway's.
        let (slowest, answered, statuses) = await withCheckedContinuation { continuation in
            Thread {
                var slowest = Duration.zero
                var answered = 0
                var statuses: Set<Int> = []
                while !reloaded() && clock.now - start < .seconds(60) {
                    let sent = clock.now
                    let status = (try? RawHTTP.sendBlocking(port: port, raw: "GET /weather HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"))?.status ?? 0
                    slowest = max(slowest, clock.now - sent)
                    statuses.insert(status)
                    answered += 1
                }
                continuation.resume(returning: (slowest, answered, statuses))
            }.start()
        }
        try #require(reloaded(), "no reload within 60 s")
        #expect(statuses == [402])
        let took = clock.now - start
        print("reload of 10 000 routes: \(took); \(answered) requests answered meanwhile, the slowest in \(slowest)")
        #expect(answered >= 2)
        #expect(slowest < max(took / 2, .milliseconds(250)), "a request waited \(slowest) during a reload of \(took)")
        #expect(try offeredAmount(try await weather()) == "4000")
    }
}

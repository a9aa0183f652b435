import Foundation
import Gateway
import GatewayTestSupport
import Testing

/// A reload that replaces an upstream retires its client (issue 13): the old upstream's idle
/// connections close at once instead of lingering until the gateway stops.
@Suite("Upstream clients retired by a reload", .timeLimit(.minutes(2)))
struct ReloadRetirementTests {
    static func yaml(_ port: Int) -> String {
        """
        listen: 127.0.0.1:0
        upstreams:
          api: { url: "http://127.0.0.1:\(port)" }
        routes:
          - match: "/free/*"
            free: true
        unmatched: deny
        """
    }

    @Test("after a reload moves an upstream, the old one's kept-alive connection is closed; the new one serves")
    func retired() async throws {
        let old = try ScriptedHTTPServer { _ in .json("{\"from\":\"old\"}") }
        let new = try ScriptedHTTPServer { _ in .json("{\"from\":\"new\"}") }
        let (oldPort, newPort) = (try await old.start(), try await new.start())
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        try await TestHarness.withGateway(yaml: Self.yaml(oldPort), configFile: file) { gw in
            #expect(try await gw.get("/free/a").bodyText == "{\"from\":\"old\"}")
            #expect(old.openConnectionCount == 1, "kept alive for the next request")
            try Self.yaml(newPort).write(toFile: file, atomically: true, encoding: .utf8)
            #expect(await gw.server.reload(trigger: "test") == .applied(restartRequired: []))
            let deadline = ContinuousClock.now + .seconds(5)
            while old.openConnectionCount > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(old.openConnectionCount == 0, "retired: its idle connection closed, not kept for 60 s")
            #expect(try await gw.get("/free/b").bodyText == "{\"from\":\"new\"}")
        }
        await old.stop()
        await new.stop()
    }
}

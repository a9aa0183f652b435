import Foundation
import GatewayTestSupport
import Logging
import Testing

@Suite("The real process as an ordinary user")
struct UnprivilegedProcessTests {
    @Test("started without root or capabilities, the gateway answers a free route and a priced route's 402 on one connection each")
    func answersWithoutPrivileges() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await withRecordingUpstream { upstream, upstreamPort in
            let file = dir + "/gateway.yaml"
            let state = try GatewayProcess.stateDirectory(in: dir)
            try """
                listen: 127.0.0.1:0
                storage: { sqlite: "\(state)/ledger.db" }
                payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                network: eip155:84532
                upstreams:
                  api: { url: "http://127.0.0.1:\(upstreamPort)", timeout: 10s }
                routes:
                  - match: "GET /weather"
                    price: "$0.001"
                  - match: "/free/*"
                    free: true
                """.write(toFile: file, atomically: true, encoding: .utf8)
            let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])
            defer { gateway.stop() }
            let port = try #require(try await gateway.listeningPort())
            #expect(try gateway.uid() != 0, "the gateway must not run as root here")

            let free = try await RawHTTP.send(port: port, raw: "GET /free/a HTTP/1.1\r\nHost: gw\r\n\r\n")
            #expect(free.status == 200)
            #expect(free.bodyText == "{\"path\":\"/free/a\"}")
            let priced = try await RawHTTP.send(port: port, raw: "GET /weather HTTP/1.1\r\nHost: gw\r\n\r\n")
            #expect(priced.status == 402)
            #expect(try offeredAmount(priced) == "1000")
            #expect(!gateway.log.contains { $0.contains("could not be set up") })
        }
    }

    @Test("a SQLite ledger where the gateway's user cannot write stops the start with a clear error and a non-zero exit")
    func unwritableLedger() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        // The default ledger (x402-gateway.db beside the file) in a folder only root may write.
        try """
            listen: 127.0.0.1:0
            upstreams:
              api: { url: "http://127.0.0.1:1" }
            routes:
              - match: "/*"
                free: true
            """.write(toFile: file, atomically: true, encoding: .utf8)
        if getuid() != 0 { chmod(dir, 0o555) }  // as root, the gateway runs as another user: the folder is root's
        defer { chmod(dir, 0o755) }
        let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])
        defer { gateway.stop() }
        #expect(try await gateway.listeningPort() == nil)
        #expect(await gateway.exitStatus() == 1)
        #expect(gateway.log.contains { $0.contains("cannot open the payment store") && $0.contains("x402-gateway.db") })
    }

    @Test("an unreachable PostgreSQL ledger stops the start at once: exit 1, the reason, and never the password")
    func unreachablePostgres() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        try """
            listen: 127.0.0.1:0
            upstreams:
              api: { url: "http://127.0.0.1:1" }
            routes:
              - match: "/*"
                free: true
            storage: { postgres: "postgres://x402:pw-never-logged@127.0.0.1:1/ledger" }
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])
        defer { gateway.stop() }
        #expect(try await gateway.listeningPort() == nil)
        #expect(await gateway.exitStatus() == 1)
        #expect(gateway.log.contains { $0.contains("cannot open the payment store") && $0.contains("127.0.0.1:1/ledger") })
        #expect(!gateway.log.contains { $0.contains("pw-never-logged") })
    }
}

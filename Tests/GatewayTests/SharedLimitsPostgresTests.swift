import Foundation
import GatewayStorage
import GatewayStoragePostgres
import GatewayTestSupport
import Testing

/// Two real gateway processes on one real PostgreSQL: a free allowance is counted once for both
/// (3 in all, not 3 each), and a rate limit's tokens taken on one are taken on the other at its
/// next sync. Needs `X402_TEST_POSTGRES_URL` (`scripts/postgres-test-server.sh`);
/// `X402_REQUIRE_POSTGRES=1` makes its absence a failure rather than a skip.
@Suite("Limits shared by two gateway processes on PostgreSQL")
struct SharedLimitsPostgresTests {
    static let server = ProcessInfo.processInfo.environment["X402_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let required = ProcessInfo.processInfo.environment["X402_REQUIRE_POSTGRES"] == "1"

    static func yaml(upstreamPort: Int, database: String, instance: String) -> String {
        """
        listen: 127.0.0.1:0
        storage: { postgres: "\(database)", instance: \(instance), poolSize: 2 }
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        upstreams:
          api: { url: "http://127.0.0.1:\(upstreamPort)", timeout: 10s }
        clientLimits: { sync: 100ms }
        routes:
          - match: "GET /trial/*"
            price: "$0.01"
            freePerClient: { requests: 3, per: 1d }
          - match: "GET /free/*"
            free: true
            rateLimit: { requests: 1, per: 1h, burst: 3 }
        """
    }

    @Test("three free requests in all across two instances, then the 402 on both; a rate limit's tokens spent on one are spent on the other")
    func sharedAcrossInstances() async throws {
        guard let server = Self.server else {
            if Self.required { Issue.record("X402_REQUIRE_POSTGRES=1 but X402_TEST_POSTGRES_URL is not set") }
            return
        }
        try await Self.withFreshDatabase(server) { database in
            try await Self.run(database: database)
        }
    }

    /// Runs `body` with the URL of a new database on `server`, dropped afterwards. Connections may
    /// take 30 s to come: the whole test run starts at once on a loaded machine.
    static func withFreshDatabase(_ server: String, _ body: (String) async throws -> Void) async throws {
        let name = "x402_limits_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        var components = try #require(URLComponents(string: server))
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "connect_timeout", value: "30")]
        var patient = try PostgresConfiguration(url: try #require(components.string), poolSize: 1)
        patient.acquireTimeout = .seconds(30)
        func admin(_ sql: String) async throws {
            try await PostgresDatabase.withDatabase(patient) { _ = try await $0.query(SQLStatement(sql)) }
        }
        try await admin("CREATE DATABASE \(name)")
        components.path = "/" + name
        do {
            try await body(try #require(components.string))
        } catch {
            try? await admin("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            throw error
        }
        try await admin("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    static func run(database: String) async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await withRecordingUpstream { upstream, upstreamPort in
            var ports: [Int] = []
            var gateways: [GatewayProcess] = []
            defer { for gateway in gateways { gateway.stop() } }
            for instance in ["gw-a", "gw-b"] {
                let file = dir + "/\(instance).yaml"
                try Self.yaml(upstreamPort: upstreamPort, database: database, instance: instance)
                    .write(toFile: file, atomically: true, encoding: .utf8)
                let gateway = try GatewayProcess(executable: try gatewayExecutable(), arguments: ["run", "--config", file, "--log-format", "json"])
                gateways.append(gateway)
                ports.append(try #require(try await gateway.listeningPort(), "\(gateway.log.suffix(5))"))
            }
            func get(_ instance: Int, _ path: String) async throws -> RawHTTPResponse {
                try await RawHTTP.send(port: ports[instance], raw: "GET \(path) HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            }

            // The allowance: one count in the database for both instances.
            let statuses = try await [get(0, "/trial/x"), get(1, "/trial/x"), get(0, "/trial/x"), get(1, "/trial/x"), get(0, "/trial/x")]
                .map(\.status)
            #expect(statuses == [200, 200, 200, 402, 402])
            #expect(upstream.targets().filter { $0.hasPrefix("/trial/") }.count == 3)
            let rows = try await PostgresDatabase.withDatabase(url: database, poolSize: 1) { db in
                try await db.query(SQLStatement("SELECT client, value FROM x402_limit_counters WHERE scope = 'free/86400/GET /trial/*'"))
            }
            #expect(rows == [[.text("127.0.0.1/32"), .integer(3)]])

            // The rate limit: instance A spends the burst; B serves the client once from its own
            // bucket, and after its next sync (every 100 ms) refuses it too.
            for i in 0..<3 { #expect(try await get(0, "/free/a").status == 200, "request \(i)") }
            #expect(try await get(0, "/free/a").status == 429)
            try await Task.sleep(for: .milliseconds(500))  // A's sync rounds
            #expect(try await get(1, "/free/a").status == 200)
            try await Task.sleep(for: .seconds(1))  // B's sync rounds
            let refused = try await get(1, "/free/a")
            #expect(refused.status == 429, "unshared, B would still have two tokens")
            let retryAfter = try #require(refused.header("Retry-After").flatMap(Int.init))
            #expect((7000...7200).contains(retryAfter), "\(retryAfter)")
            #expect(upstream.targets().filter { $0.hasPrefix("/free/") }.count == 4)
            for gateway in gateways {
                #expect(!gateway.log.contains { $0.contains("not shared this round") || $0.contains("not counted") }, "\(gateway.log)")
            }
        }
    }
}

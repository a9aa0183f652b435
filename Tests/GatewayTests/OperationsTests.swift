import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import HTTPTypes
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import X402

/// `GET` on the admin listener.
func admin(_ gw: LiveGateway, _ path: String, method: String = "GET") async throws -> RawHTTPResponse {
    let port = try #require(gw.adminPort)
    return try await RawHTTP.send(port: port, raw: "\(method) \(path) HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

/// The amount of the first offer in a 402.
func offeredAmount(_ r: RawHTTPResponse) throws -> String {
    let header = try #require(r.header("PAYMENT-REQUIRED"))
    return try #require(try HeaderCodec.decode(PaymentRequired.self, from: header).accepts.first).amount
}

/// Polls `condition` every 20 ms until it holds or `limit` passes (returns whether it held).
func eventually(within limit: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

func temporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-ops-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

final class LoadState: Sendable {
    let stop = Atomic<Bool>(false)
    let completed = Atomic<Int>(0)
    let failures = Mutex<[String]>([])
}

@Suite("Operations: reload, health, metrics, logs, shutdown")
struct OperationsTests {
    let payer = TestPayer()

    static func pricedYAML(_ price: String) -> String {
        """
        listen: 127.0.0.1:0
        admin: { listen: 127.0.0.1:0 }
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        upstreams:
          api: { url: "{{UPSTREAM}}", timeout: 5s }
        routes:
          - match: "GET /weather"
            price: "\(price)"
          - match: "/public/*"
            free: true
        """
    }

    @Test("a price edited under load: no request fails, new 402s carry the new price within 2 s; an invalid edit keeps the old one")
    func reloadUnderLoad() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        try await TestHarness.withGateway(yaml: Self.pricedYAML("$0.001"), configFile: file) { gw in
            #expect(try await offeredAmount(gw.get("/weather")) == "1000")
            let upstreamURL = "http://127.0.0.1:\(gw.upstreamPort)"
            let load = LoadState()
            try await withThrowingTaskGroup(of: Void.self) { workers in
                for worker in 0..<4 {
                    workers.addTask {
                        while !load.stop.load(ordering: .relaxed) {
                            let (path, expected) = worker % 2 == 0 ? ("/weather", 402) : ("/public/x", 200)
                            do {
                                let r = try await gw.get(path)
                                if r.status != expected { load.failures.withLock { $0.append("\(path): \(r.status)") } }
                            } catch {
                                load.failures.withLock { $0.append("\(path): \(error)") }
                            }
                            load.completed.add(1, ordering: .relaxed)
                        }
                    }
                }
                #expect(try await eventually(within: .seconds(15)) { load.completed.load(ordering: .relaxed) >= 20 })

                // A valid edit, written the way editors do (new file renamed over the old one).
                let edited = Self.pricedYAML("$0.002").replacingOccurrences(of: "{{UPSTREAM}}", with: upstreamURL)
                try edited.write(toFile: file, atomically: true, encoding: .utf8)
                let written = ContinuousClock.now
                let switched = try await eventually(within: .seconds(2)) {
                    try await offeredAmount(gw.get("/weather")) == "2000"
                }
                let took = ContinuousClock.now - written
                #expect(switched, "new price not served within 2 s")
                print("reload: new price served \(took) after the edit")

                // An invalid edit, written in place: reported, and the old table keeps serving.
                let broken = edited.replacingOccurrences(of: "price: \"$0.002\"", with: "price: \"two dollars\"")
                try Data(broken.utf8).write(to: URL(fileURLWithPath: file))
                let reported = try await eventually(within: .seconds(3)) {
                    try await admin(gw, "/readyz").bodyText.contains("the last reload failed")
                }
                #expect(reported)
                let readyz = try await admin(gw, "/readyz").bodyText
                #expect(readyz.contains("gateway.yaml:"), "the error carries file:line:column: \(readyz)")
                #expect(try await offeredAmount(gw.get("/weather")) == "2000")
                let metrics = try await admin(gw, "/metrics").bodyText
                #expect(metrics.contains("x402_config_reloads_total{result=\"applied\"} 1"))
                #expect(metrics.contains("x402_config_reloads_total{result=\"rejected\"} 1"))

                // A reload through the admin endpoint reports the errors too.
                let post = try await admin(gw, "/reload", method: "POST")
                #expect(post.status == 422)
                #expect(post.bodyText.contains("two dollars"))

                load.stop.store(true, ordering: .relaxed)
                try await workers.waitForAll()
            }
            #expect(load.failures.withLock { $0 } == [])
            #expect(load.completed.load(ordering: .relaxed) > 20)
            print("reload: \(load.completed.load(ordering: .relaxed)) requests during the edits")
        }
    }

    @Test("listener changes are reported as needing a restart; the rest of the edit applies")
    func listenChangeNeedsRestart() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        let yaml = Self.pricedYAML("$0.001") + "\nreload: { watch: false }\n"
        try await TestHarness.withGateway(yaml: yaml, configFile: file) { gw in
            let edited = yaml.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:\(gw.upstreamPort)")
                .replacingOccurrences(of: "listen: 127.0.0.1:0\nadmin", with: "listen: 127.0.0.1:1\nadmin")
                .replacingOccurrences(of: "$0.001", with: "$0.003")
            try edited.write(toFile: file, atomically: true, encoding: .utf8)
            #expect(await gw.server.reload(trigger: "test") == .applied(restartRequired: ["listen"]))
            #expect(try await offeredAmount(gw.get("/weather")) == "3000")
        }
    }

    @Test("a reload whose timeouts would outlast the running claim lease is rejected with the reason; the old timeouts keep serving")
    func reloadBeyondLease() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        let yaml = Self.pricedYAML("$0.001") + "\nreload: { watch: false }\n"
        try await TestHarness.withGateway(yaml: yaml, configFile: file) { gw in
            #expect(gw.server.config.storage.lease == .seconds(300))
            let slower = yaml.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:\(gw.upstreamPort)")
                .replacingOccurrences(of: "timeout: 5s", with: "timeout: 10m")
            try slower.write(toFile: file, atomically: true, encoding: .utf8)
            guard case .rejected(let reason) = await gw.server.reload(trigger: "test") else {
                Issue.record("a reload past the lease was applied")
                return
            }
            #expect(reason.contains("storage lease") && reason.contains("restart"), "\(reason)")
            #expect(gw.server.config.upstreams["api"]?.timeout == .seconds(5))
            // Within the lease, the same kind of edit applies.
            try slower.replacingOccurrences(of: "timeout: 10m", with: "timeout: 4m").write(toFile: file, atomically: true, encoding: .utf8)
            #expect(await gw.server.reload(trigger: "test") == .applied(restartRequired: []))
            #expect(gw.server.config.upstreams["api"]?.timeout == .seconds(240))
        }
    }

    @Test("/healthz answers; /readyz goes not-ready when the facilitator stops and ready again when it returns")
    func readiness() async throws {
        let yaml = paidYAML + "\nadmin: { listen: 127.0.0.1:0 }\n"
        let port = try await TestHarness.withPaidGateway(yaml: yaml) { gw, _ in
            #expect(try await admin(gw, "/healthz").status == 200)
            let ready = try await admin(gw, "/readyz")
            #expect(ready.status == 200, "\(ready.bodyText)")
            #expect(ready.bodyText.contains("\"status\":\"ready\""))
            return Int(gw.config.facilitator!.url.split(separator: ":").last!)!
        }
        // The same gateway configuration, the facilitator not started: not ready, with the reason.
        let fixed = yaml.replacingOccurrences(of: "{{FACILITATOR}}", with: "http://127.0.0.1:\(port)")
        try await TestHarness.withGateway(yaml: fixed) { gw in
            let down = try await admin(gw, "/readyz")
            #expect(down.status == 503)
            #expect(down.bodyText.contains("\"status\":\"not_ready\""))
            #expect(down.bodyText.contains("facilitator\":\"unreachable"))
            #expect(try await admin(gw, "/healthz").status == 200)

            // The facilitator comes back on its port: ready again.
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let recovered = try await TestHarness.withRunning(FakeFacilitator().application(port: port) { _ in }, logger: logger) {
                try await eventually(within: .seconds(3)) { try await admin(gw, "/readyz").status == 200 }
            }
            #expect(recovered)
            #expect(try await admin(gw, "/readyz").status == 503)
        }
    }

    @Test("/readyz names facilitator gaps and unresolvable upstreams")
    func readinessReasons() async throws {
        let yaml = paidYAML.replacingOccurrences(of: "network: eip155:84532", with: "network: eip155:8453")
            .replacingOccurrences(of: "url: \"{{UPSTREAM}}\"", with: "url: \"http://no-such-host.invalid:80\"")
            + "\nadmin: { listen: 127.0.0.1:0 }\n"
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, _ in
            let r = try await admin(gw, "/readyz")
            #expect(r.status == 503)
            #expect(r.bodyText.contains("does not support: exact eip155:8453"), "\(r.bodyText)")
            #expect(r.bodyText.contains("host no-such-host.invalid does not resolve"))
            #expect(r.bodyText.contains("\"config\":\"ok\""))
        }
    }

    @Test("/metrics exposes requests, 402s, verifications, refusals, settlements, amounts, latencies and in-flight")
    func metricsAfterPaidRequest() async throws {
        let yaml = paidYAML + "\nadmin: { listen: 127.0.0.1:0 }\n"
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, _ in
            let accepted = try await offer(gw, "/paid/x")
            let r = try await pay(gw, "/paid/x", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(r.status == 200)
            let wrong = payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now, value: "1"))
            #expect(try await pay(gw, "/paid/x", wrong).status == 402)
            #expect(try await gw.get("/free").status == 200)

            let m = try await admin(gw, "/metrics")
            #expect(m.status == 200)
            #expect(m.header("Content-Type")?.hasPrefix("text/plain") == true)
            let lines = m.bodyText.split(separator: "\n").map(String.init)
            func value(_ name: String, _ labels: [String] = []) -> String? {
                lines.first { $0.hasPrefix(name) && labels.allSatisfy($0.contains) }?.split(separator: " ").last.map(String.init)
            }
            #expect(value("x402_requests_total", ["route=\"GET /paid/*\"", "outcome=\"paid\""]) == "1")
            #expect(value("x402_requests_total", ["route=\"GET /paid/*\"", "outcome=\"payment_required\""]) == "1")
            #expect(value("x402_requests_total", ["route=\"GET /paid/*\"", "outcome=\"refused\""]) == "1")
            #expect(value("x402_requests_total", ["route=\"-\"", "outcome=\"free\""]) == "1")
            #expect(value("x402_payments_required_total", ["route=\"GET /paid/*\""]) == "1")
            #expect(value("x402_payments_verified_total", ["route=\"GET /paid/*\""]) == "1")
            #expect(value("x402_payments_refused_total", ["reason=\"invalid_exact_evm_payload_authorization_value_mismatch\""]) == "1", "\(lines.filter { $0.contains("refused") })")
            #expect(value("x402_settlements_total", ["outcome=\"settled\""]) == "1")
            #expect(value("x402_settled_amount_total", ["network=\"eip155:84532\"", "asset=\"\(accepted.asset)\""]) == "10000")
            #expect(value("x402_facilitator_request_duration_seconds_count", ["operation=\"verify\""]) == "1")
            #expect(value("x402_facilitator_request_duration_seconds_count", ["operation=\"settle\""]) == "1")
            #expect(value("x402_upstream_response_duration_seconds_count", ["upstream=\"api\""]) == "2")
            #expect(value("x402_requests_in_flight") == "0.0")
        }
    }

    @Test("every request gets an X-Request-Id, passed to the upstream and returned; a sane client id is kept")
    func requestIDs() async throws {
        try await TestHarness.withGateway(yaml: Self.pricedYAML("$0.001")) { gw in
            let generated = try await gw.get("/public/a")
            let id = try #require(generated.header("X-Request-Id"))
            #expect(gw.upstream.requests.last?.headers[.init("X-Request-Id")!] == id)
            let kept = try await gw.get("/public/b", headers: [("X-Request-Id", "client-abc-123")])
            #expect(kept.header("X-Request-Id") == "client-abc-123")
            #expect(gw.upstream.requests.last?.headers[.init("X-Request-Id")!] == "client-abc-123")
            let bad = try await gw.get("/public/c", headers: [("X-Request-Id", String(repeating: "x", count: 300))])
            let replaced = try #require(bad.header("X-Request-Id"))
            #expect(replaced.count < 100)
            #expect(try await gw.get("/weather").header("X-Request-Id") != nil)
        }
    }

    @Test("JSON log lines are one object each, with metadata, and escape what they carry")
    func jsonLogs() throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "gw") { label in JSONLogHandler(label: label, write: { line in lines.withLock { $0.append(line) } }) }
        logger[metadataKey: "request.id"] = "r-1"
        logger.info("payment refused", metadata: ["x402.reason": "amount \"quoted\"\n"])
        let line = try #require(lines.withLock { $0.first })
        #expect(line.hasSuffix("}\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["msg"] == "payment refused")
        #expect(object["level"] == "info")
        #expect(object["request.id"] == "r-1")
        #expect(object["x402.reason"] == "amount \"quoted\"\n")
        #expect(object["ts"]?.hasSuffix("Z") == true)
    }
}

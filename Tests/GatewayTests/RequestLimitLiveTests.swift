import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayStorageSQLite
import GatewayTestSupport
import HTTPTypes
import Synchronization
import Testing
import X402

/// Rate limits and free allowances through a live gateway over real sockets: 429 with
/// `Retry-After` after the burst, the allowance used up then the 402, the payer as the key of paid
/// requests (checked before the facilitator is called), trusted proxies and IPv6 /64 clients,
/// allowances counted in SQLite (the store path), and a store that fails (no free request).
@Suite("Rate limits and free allowances, live")
struct RequestLimitLiveTests {
    static let yaml = """
        listen: 127.0.0.1:0
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        facilitator: { url: "{{FACILITATOR}}", timeout: 2s }
        upstreams:
          api: { url: "{{UPSTREAM}}", timeout: 5s }
        trustedProxies: ["127.0.0.1"]
        routes:
          - match: "GET /free/*"
            free: true
            rateLimit: { requests: 1, per: 1h, burst: 3 }
          - match: "/trial/*"
            price: "$0.01"
            freePerClient: { requests: 3, per: 1d }
          - match: "GET /metered/*"
            price: "$0.01"
            rateLimit: { requests: 1, per: 1h, burst: 2 }
          - match: "GET /both/*"
            price: "$0.01"
            freePerClient: { requests: 2, per: 1d }
            rateLimit: { requests: 1, per: 1h, burst: 3 }
        unmatched: deny
        """

    /// A second payer (Hardhat test key #1).
    static let otherPayer = TestPayer(privateKey: Hex.decode("0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", prefixed: true)!)

    static func from(_ address: String) -> [(String, String)] { [("X-Forwarded-For", address)] }

    /// A `Retry-After` of the next token of a one-per-hour bucket (a loaded machine takes a few seconds).
    static func aboutAnHour(_ value: String?) -> Bool { value.flatMap(Int.init).map { (3540...3600).contains($0) } ?? false }

    static func metrics(_ gw: LiveGateway) -> String { String(decoding: gw.server.metrics.exposition(), as: UTF8.self) }

    @Test("a rate limit answers 429 with Retry-After after the burst (JSON, no-store, readable cross-origin); clients are apart")
    func rateLimitAfterBurst() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.yaml) { gw, _ in
            for i in 0..<3 { #expect(try await gw.get("/free/a").status == 200, "request \(i)") }
            let refused = try await gw.get("/free/a")
            #expect(refused.status == 429)
            #expect(Self.aboutAnHour(refused.header("Retry-After")))
            #expect(refused.header("Content-Type") == "application/json")
            #expect(refused.header("Cache-Control") == "no-store")
            #expect(refused.header("Access-Control-Expose-Headers")?.contains("Retry-After") == true)
            #expect(refused.bodyText.hasPrefix("{\"error\":\"rate_limited\",\"message\":"))
            #expect(gw.upstream.count == 3)
            // HEAD gets the same refusal without a body.
            let head = try await gw.get("/free/a", method: "HEAD")
            #expect(head.status == 429 && head.body.isEmpty && Self.aboutAnHour(head.header("Retry-After")))
            // Another client (the trusted proxy's X-Forwarded-For) has its own bucket; a client
            // cannot move itself by adding entries on the left.
            #expect(try await gw.get("/free/a", headers: Self.from("203.0.113.5")).status == 200)
            for _ in 0..<2 { #expect(try await gw.get("/free/a", headers: Self.from("198.51.100.1, 203.0.113.5")).status == 200) }
            #expect(try await gw.get("/free/a", headers: Self.from("192.0.2.99, 203.0.113.5")).status == 429)
            // One IPv6 /64 is one client.
            for address in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"] {
                #expect(try await gw.get("/free/a", headers: Self.from(address)).status == 200, "\(address)")
            }
            #expect(try await gw.get("/free/a", headers: Self.from("2001:db8:1:2::77")).status == 429)
            #expect(try await gw.get("/free/a", headers: Self.from("2001:db8:1:3::77")).status == 200)
            let text = Self.metrics(gw)
            #expect(text.contains("x402_rate_limit_requests_total{route=\"GET /free/*\",result=\"allowed\"} 10"), "\(text)")
            #expect(text.contains("x402_rate_limit_requests_total{route=\"GET /free/*\",result=\"limited\"} 4"))
            #expect(text.contains("x402_requests_total{route=\"GET /free/*\",outcome=\"rate_limited\"} 4"))
        }
    }

    @Test("a free allowance serves the first requests without payment, marked private, then the route's 402; another client has its own")
    func allowanceThen402() async throws {
        let clock = Mutex<UInt64>(20_000 * 86_400 + 3600)
        try await TestHarness.withPaidGateway(yaml: Self.yaml, clock: { clock.withLock { $0 } }) { gw, fac in
            for i in 0..<3 {
                let r = try await gw.get("/trial/x")
                #expect(r.status == 200, "request \(i)")
                #expect(r.header("PAYMENT-REQUIRED") == nil)
                #expect(r.header("Cache-Control") == "private, no-store")
            }
            #expect(gw.upstream.count == 3)
            #expect(gw.upstream.requests.allSatisfy { $0.headers[.init("X-Payment-Payer")!] == nil })
            let challenged = try await gw.get("/trial/x")
            #expect(challenged.status == 402)
            #expect(challenged.header("PAYMENT-REQUIRED") != nil)
            #expect(gw.upstream.count == 3)
            #expect(try await gw.get("/trial/x", headers: Self.from("203.0.113.5")).status == 200)
            // The next day's window starts again.
            clock.withLock { $0 += 86_400 }
            #expect(try await gw.get("/trial/x").status == 200)
            #expect(fac.verifyCalls == 0)
            let text = Self.metrics(gw)
            #expect(text.contains("x402_free_allowance_requests_total{route=\"/trial/*\",result=\"free\"} 5"), "\(text)")
            #expect(text.contains("x402_free_allowance_requests_total{route=\"/trial/*\",result=\"exhausted\"} 1"))
            #expect(text.contains("x402_requests_total{route=\"/trial/*\",outcome=\"free_allowance\"} 5"))
            #expect(text.contains("x402_requests_total{route=\"/trial/*\",outcome=\"payment_required\"} 1"))
        }
    }

    @Test("a paid request is limited by its verified payer, before the facilitator is called; the client's address is another key")
    func payerKeyed() async throws {
        let payer = TestPayer()
        try await TestHarness.withPaidGateway(yaml: Self.yaml) { gw, fac in
            // Unpaid: two 402s, then the address's bucket is empty: 429 before the 402.
            #expect(try await gw.get("/metered/a").status == 402)
            #expect(try await gw.get("/metered/a").status == 402)
            let flood = try await gw.get("/metered/a")
            #expect(flood.status == 429 && flood.header("PAYMENT-REQUIRED") == nil)
            // Paid from the same address: keyed by the payer, whose bucket is full.
            let offer = try await Self.offer(gw)
            for i in 0..<2 {
                let r = try await pay(gw, "/metered/a", payer.header(accepted: offer, payload: payer.authorization(for: offer, now: now)))
                #expect(r.status == 200, "payment \(i): \(r.bodyText)")
            }
            #expect(fac.verifyCalls == 2 && fac.settleCalls == 2)
            let third = try await pay(gw, "/metered/a", payer.header(accepted: offer, payload: payer.authorization(for: offer, now: now)))
            #expect(third.status == 429)
            #expect(Self.aboutAnHour(third.header("Retry-After")))
            #expect(third.header("PAYMENT-RESPONSE") == nil)
            // Nothing verified, settled or claimed for it.
            #expect(fac.verifyCalls == 2 && fac.settleCalls == 2)
            #expect(try await gw.payments(PaymentQuery()).count == 2)
            // Another payer, from the same address, is served; the same payer from another address is not.
            let other = Self.otherPayer
            #expect(try await pay(gw, "/metered/a", other.header(accepted: offer, payload: other.authorization(for: offer, now: now))).status == 200)
            let moved = try await gw.get("/metered/a", headers: Self.from("203.0.113.9") + [
                ("PAYMENT-SIGNATURE", payer.header(accepted: offer, payload: payer.authorization(for: offer, now: now)))])
            #expect(moved.status == 429)
            #expect(fac.verifyCalls == 3)
        }
    }

    @Test("rate limit first, then the allowance, then the 402; a payment does not use the allowance")
    func orderOnPricedRoute() async throws {
        let payer = TestPayer()
        try await TestHarness.withPaidGateway(yaml: Self.yaml) { gw, fac in
            #expect(try await gw.get("/both/a").status == 200)
            #expect(try await gw.get("/both/a").status == 200)
            #expect(try await gw.get("/both/a").status == 402)
            #expect(try await gw.get("/both/a").status == 429)
            #expect(gw.upstream.count == 2)
            let client = Self.from("203.0.113.7")
            let offer = try await Self.offer(gw)
            let paid = try await gw.get("/both/a", headers: client + [
                ("PAYMENT-SIGNATURE", payer.header(accepted: offer, payload: payer.authorization(for: offer, now: now)))])
            #expect(paid.status == 200 && paid.header("PAYMENT-RESPONSE") != nil)
            #expect(fac.settleCalls == 1)
            // The paid request took nothing from that client's allowance.
            #expect(try await gw.get("/both/a", headers: client).status == 200)
            #expect(try await gw.get("/both/a", headers: client).status == 200)
            #expect(try await gw.get("/both/a", headers: client).status == 402)
        }
    }

    /// The `$0.01` offer (every priced route here has the same), read from a 402 like a client
    /// would, from an address no test uses otherwise.
    static func offer(_ gw: LiveGateway) async throws -> PaymentRequirements {
        let r = try await gw.get("/metered/offer", headers: from("192.0.2.250"))
        let header = try #require(r.header("PAYMENT-REQUIRED"), "status \(r.status)")
        return try #require(try HeaderCodec.decode(PaymentRequired.self, from: header).accepts.first)
    }

    // MARK: Counted in a store

    /// The real SQLite counters, counting the statements that take from an allowance.
    final class CountingCounters: LimitCounterStore {
        let inner: any LimitCounterStore
        let takes = Atomic<Int>(0)
        var isShared: Bool { inner.isShared }

        init(_ inner: any LimitCounterStore) { self.inner = inner }

        func takeOne(_ counter: LimitCounter, limit: Int) async throws -> Int? {
            takes.wrappingAdd(1, ordering: .relaxed)
            return try await inner.takeOne(counter, limit: limit)
        }

        func spend(_ spends: [BucketSpend]) async throws -> [BucketKey: Int64] { try await inner.spend(spends) }

        func purge(now: Int64) async throws { try await inner.purge(now: now) }
    }

    /// A store that cannot be reached (every call fails), or one that answers after `delay`.
    final class BrokenCounters: LimitCounterStore {
        let isShared = true
        let delay: Duration?

        init(delay: Duration? = nil) { self.delay = delay }

        func takeOne(_ counter: LimitCounter, limit: Int) async throws -> Int? {
            if let delay {
                try await Task.sleep(for: delay)
                return 1
            }
            throw StorageError(.unavailable, "connection refused")
        }

        func spend(_ spends: [BucketSpend]) async throws -> [BucketKey: Int64] { throw StorageError(.unavailable, "connection refused") }

        func purge(now: Int64) async throws { throw StorageError(.unavailable, "connection refused") }
    }

    static func sqliteCounters() async throws -> CountingCounters {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("x402-limits-\(UUID().uuidString).db").path
        let database = try SQLiteDatabase(path: path)
        _ = try await SQLPaymentStore(database: database, settings: StoreSettings(instanceID: "test"))  // migrates
        return CountingCounters(SQLLimitCounters(database: database, shared: false))
    }

    @Test("counted in SQLite: free requests (a POST body forwarded once counted), then 402s that cost no statement; keep-alive kept")
    func allowanceInSQLite() async throws {
        let counters = try await Self.sqliteCounters()
        try await TestHarness.withPaidGateway(yaml: Self.yaml, counters: counters) { gw, _ in
            let post = try await gw.send("POST /trial/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world")
            #expect(post.status == 200)
            #expect(gw.upstream.requests.first?.bodyBytes == 11)
            #expect(post.header("Cache-Control") == "private, no-store")
            #expect(try await gw.get("/trial/x").status == 200)
            #expect(try await gw.get("/trial/x").status == 200)
            #expect(counters.takes.load(ordering: .relaxed) == 3)
            // Used up: the third count reached the allowance, so the fourth is answered from the
            // cache, without a statement.
            #expect(try await gw.get("/trial/x").status == 402)
            #expect(counters.takes.load(ordering: .relaxed) == 3)
            // Pipelined on one connection: a POST with a body refused, a GET after it, in order.
            let answers = try await RawHTTP.exchange(port: gw.port, raw:
                "POST /trial/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello"
                + "GET /free/b HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            #expect(answers.map(\.status) == [402, 200])
            #expect(counters.takes.load(ordering: .relaxed) == 3)
            #expect(gw.upstream.count == 4)
            // Another client still has its allowance, counted in the database.
            #expect(try await gw.get("/trial/x", headers: Self.from("203.0.113.5")).status == 200)
            #expect(counters.takes.load(ordering: .relaxed) == 4)
        }
    }

    @Test("a store that cannot be reached serves nothing free (the 402); rate limits go on in memory")
    func storeDown() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.yaml, counters: BrokenCounters()) { gw, fac in
            for _ in 0..<3 {
                let r = try await gw.get("/trial/x")
                #expect(r.status == 402 && r.header("PAYMENT-REQUIRED") != nil)
            }
            #expect(gw.upstream.count == 0)
            // A body still on its way when the count fails: read and dropped, the 402 at its end,
            // and the connection goes on with the next request.
            let socket = try RawSocket(port: gw.port, receiveTimeout: 1)
            try await socket.send("POST /trial/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\n")
            let early = try await socket.read(until: RawSocket.headEnd)
            #expect(early.end == .timeout && early.bytes.isEmpty)
            socket.setReceiveTimeout(seconds: 10)  // the answers may be slow in a loaded run; the close ends the read
            try await socket.send("hello" + "GET /free/b HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            let answers = try await socket.read().bytes.text
            #expect(answers.hasPrefix("HTTP/1.1 402 "), "\(answers.prefix(200))")
            #expect(answers.components(separatedBy: "\r\n\r\n").count >= 3 && answers.contains("HTTP/1.1 200 OK"))
            #expect(gw.upstream.targets() == ["/free/b"])
            for _ in 0..<2 { #expect(try await gw.get("/free/a").status == 200) }
            #expect(try await gw.get("/free/a").status == 429)
            #expect(fac.verifyCalls == 0)
            let text = Self.metrics(gw)
            #expect(text.contains("x402_free_allowance_requests_total{route=\"/trial/*\",result=\"unavailable\"} 4"), "\(text)")
            #expect(text.contains("x402_limit_store_errors_total{operation=\"free\"} 4"))
        }
    }

    @Test("a count slower than the admission timeout is taken as not recorded: the 402, in about two seconds")
    func storeSlow() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.yaml, counters: BrokenCounters(delay: .seconds(5))) { gw, _ in
            let started = ContinuousClock.now
            let r = try await gw.get("/trial/x")
            let took = ContinuousClock.now - started
            #expect(r.status == 402)
            #expect(took >= .milliseconds(1900) && took < .seconds(10), "\(took)")
            #expect(gw.upstream.count == 0)
        }
    }
}

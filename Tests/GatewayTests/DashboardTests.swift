import BigInt
import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayTestSupport
import Logging
import Synchronization
import Testing
import X402

/// Ledger rows for the dashboard's pure tests.
enum DashboardRows {
    static let now: Int64 = 1_800_000_000_000
    static let usdc = "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
    static let hostileRoute = "<script>alert('route')</script>"
    static let hostilePayer = "\"><img src=x onerror=alert(1)>"
    static let hostileReason = "</code><script>alert(\"reason\")</script>"
    static let uint256Max = "115792089237316195423570985008687907853269984665640564039457584007913129639935"

    static func row(_ nonce: Int, route: String = "GET /weather", payer: String = "0x00000000000000000000000000000000000000a1",
                    network: String = "eip155:84532", asset: String = usdc, amount: String = "1000", state: PaymentState = .settled,
                    reason: String? = nil, ago: Int64 = 60_000, settling: Bool = true, latency: Int64 = 800,
                    transaction: String? = "0x" + String(repeating: "ab", count: 32), requestID: String? = nil) -> PaymentRecord {
        let claimed = now - ago
        return PaymentRecord(
            key: PaymentKey(network: network, asset: asset, payer: payer, nonce: String(format: "0x%064x", nonce)),
            offer: PaymentOffer(scheme: "exact", network: network, asset: asset, amount: amount, payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c"),
            routeID: route, method: "GET", path: "/x", requestID: requestID ?? "req-\(nonce)", state: state, attempt: 1, instanceID: "a",
            leaseUntil: claimed + 300_000, validBefore: 1_900_000_000, verifiedPayer: payer, reason: reason,
            transaction: state.isSpent ? transaction : nil, claimedAt: claimed, settlingAt: settling ? claimed + 3 : nil,
            finishedAt: claimed + 3 + latency, updatedAt: claimed)
    }

    static func view(_ rows: [PaymentRecord], window: DashboardWindow = .day) -> RevenueView {
        let query = window.query(now: now)
        return RevenueView(summary: RevenueSummary(records: rows, query: query, now: now), window: window, query: query)
    }

    static func page(_ rows: [PaymentRecord], window: DashboardWindow = .day, assets: AssetDirectory = AssetDirectory()) -> String {
        DashboardPage(view: view(rows, window: window), recent: rows, assets: assets, storeKind: "memory", now: now, signedIn: true)
            .render(nonce: "NONCE123")
    }
}

@Suite("Revenue dashboard: the page, its charts and its JSON")
struct DashboardPageTests {
    @Test("a hostile route id, payer, reason and request id are escaped everywhere; the only script is the page's own")
    func hostileStrings() {
        let rows = [
            DashboardRows.row(1, route: DashboardRows.hostileRoute, payer: DashboardRows.hostilePayer, requestID: "<b>id</b>"),
            DashboardRows.row(2, route: DashboardRows.hostileRoute, state: .refused, reason: DashboardRows.hostileReason, settling: false),
            DashboardRows.row(3, route: DashboardRows.hostileRoute, state: .unknown, reason: DashboardRows.hostileReason),
            DashboardRows.row(4, route: "GET /x", transaction: "0x\"><script>alert(4)</script>"),
        ]
        let html = DashboardRows.page(rows)
        #expect(html.components(separatedBy: "<script").count == 2)  // one: the page's
        #expect(html.contains("<script nonce=\"NONCE123\">"))
        for raw in ["<img", "<b>id", "alert('route')</script>", "alert(\"reason\")", "alert(4)</script>", "onerror=alert(1)>"] {
            #expect(!html.contains(raw), "\(raw) reached the page unescaped")
        }
        #expect(html.contains("&lt;script&gt;alert(&#39;route&#39;)&lt;/script&gt;"))
        #expect(html.contains("&lt;/code&gt;&lt;script&gt;alert(&quot;reason&quot;)&lt;/script&gt;"))
        #expect(html.contains("&lt;b&gt;id&lt;/b&gt;"))
        // A transaction that is not a hash is shown, never linked.
        #expect(!html.contains("/tx/0x&quot;"))
        // No inline style attribute and no external resource: the CSP allows neither.
        #expect(!html.contains(" style="))
        #expect(!html.contains(" src=\""))
        #expect(!html.contains("<link"))
        #expect(html.contains("<style nonce=\"NONCE123\">"))
        #expect(DashboardPage.contentSecurityPolicy(nonce: "NONCE123").contains("script-src 'nonce-NONCE123'"))
        #expect(DashboardPage.contentSecurityPolicy(nonce: "NONCE123").hasPrefix("default-src 'none'"))
    }

    @Test("totals are exact in each asset's own units: 6 decimals, 18 decimals, a uint256 amount, an unknown asset in atomic units")
    func exactTotals() {
        let weth = "0x4200000000000000000000000000000000000006"
        let config = try! ConfigLoader.parse(yaml: """
            listen: 127.0.0.1:0
            payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c"
            network: eip155:84532
            upstreams: { api: "http://127.0.0.1:1" }
            routes:
              - match: "GET /eth"
                price: { amount: "1", asset: "\(weth)", decimals: 18, symbol: WETH, extra: { name: "Wrapped Ether", version: "1" } }
            """, file: "t.yaml", environment: [:])
        let rows = [
            DashboardRows.row(1, amount: "1500000"), DashboardRows.row(2, amount: "1"),
            DashboardRows.row(3, route: "GET /eth", asset: weth, amount: "1000000000000000001"),
            DashboardRows.row(4, route: "GET /eth", asset: weth, amount: "2"),
            DashboardRows.row(5, network: "eip155:31337", asset: "0x00000000000000000000000000000000000000ee", amount: DashboardRows.uint256Max),
            DashboardRows.row(6, network: "eip155:31337", asset: "0x00000000000000000000000000000000000000ee", amount: "1"),
            DashboardRows.row(7, amount: "999", state: .refused, settling: false),  // not revenue
        ]
        let html = DashboardRows.page(rows, assets: AssetDirectory(config: config))
        #expect(html.contains("data-atomic=\"1500001\" data-payments=\"2\""))
        #expect(html.contains(">1.500001 USDC<"))
        #expect(html.contains(">1.000000000000000003 WETH<"))
        let big = String(BigUInt(DashboardRows.uint256Max)! + 1)
        #expect(html.contains("data-atomic=\"\(big)\""))
        #expect(html.contains(">\(big) units<"))
        #expect(html.contains("data-outcome=\"refused\" data-payments=\"1\""))
    }

    @Test("outcomes: refusals at verify and at settle, upstream failures, other releases, unknown and in-flight rows each in their group")
    func outcomes() {
        let rows = [
            DashboardRows.row(1),
            DashboardRows.row(2, state: .reconciledSettled, reason: "settlement_timeout"),
            DashboardRows.row(3, state: .refused, reason: "insufficient_funds", settling: false),
            DashboardRows.row(4, state: .refused, reason: "insufficient_funds", settling: false),
            DashboardRows.row(5, state: .refused, reason: "transaction_failed", settling: true),
            DashboardRows.row(6, state: .released, reason: "unsettled", settling: false),
            DashboardRows.row(7, state: .released, reason: "client_gone", settling: false),
            DashboardRows.row(8, state: .unknown, reason: "settlement_timeout"),
            DashboardRows.row(9, state: .reconciledUnsettled, reason: "settlement_timeout"),
            DashboardRows.row(10, state: .claimed, settling: false),
            DashboardRows.row(11, ago: 2 * 86_400_000),  // outside the window
        ]
        let view = DashboardRows.view(rows)
        let counts = Dictionary(uniqueKeysWithValues: view.outcomes.map { ($0.category, $0.payments) })
        #expect(counts == [.paid: 2, .refused: 2, .settlementFailed: 1, .upstreamFailed: 1, .notCharged: 1, .unknown: 1,
                           .reconciledUnsettled: 1, .inFlight: 1])
        #expect(view.outcomes.first { $0.category == .refused }?.reasons.first?.reason == "insufficient_funds")
        #expect(view.totals.map(\.payments) == [2])
        // The unknown outcome stands out, whatever the window.
        let html = DashboardRows.page(rows, window: .hour)
        #expect(html.contains("class=\"attention\" role=\"alert\" data-payments=\"1\""))
        #expect(html.contains("data-outcome=\"settlement_failed\""))
    }

    @Test("charts: one per asset, the largest routes stacked and the rest as other routes, bar heights exact fractions of a round top")
    func chart() throws {
        var rows: [PaymentRecord] = []
        for (i, route) in ["a", "b", "c", "d", "e", "f", "g"].enumerated() {
            rows.append(DashboardRows.row(i, route: route, amount: String((i + 1) * 1000), ago: 60_000))
        }
        rows.append(DashboardRows.row(50, route: "a", amount: "1", ago: 30 * 60_000))
        let view = DashboardRows.view(rows, window: .hour)
        #expect(view.buckets.count == 61)
        let chart = try #require(view.charts.first)
        #expect(chart.series.map(\.routeID) == ["g", "f", "e", "d", "c", nil])
        #expect(chart.series.last?.total == 3001)  // b (2000), a (1000 + 1)
        let svg = RevenueChart(chart: chart, buckets: view.buckets, window: .hour, assets: AssetDirectory()).svg
        // The last full bucket holds 28 000 units: the top is 50 000 (0.05 USDC), so the stack is 28/50 of the plot.
        let heights = svg.components(separatedBy: "height=\"").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
        #expect(heights.count == 1 + 6)  // the 1-unit bar 30 min ago, then six segments
        #expect(heights.first == 1)  // 1 unit: drawn, one pixel
        #expect(heights.dropFirst().reduce(0, +) == RevenueChart.plotHeight * 28_000 / 50_000)
        #expect(svg.contains(">0.05</text>") && svg.contains(">0.025</text>"))
        #expect(svg.contains("<title>") && svg.contains("0.007 USDC"))
        #expect(RevenueChart.roundTop(0) == 1 && RevenueChart.roundTop(7) == 10 && RevenueChart.roundTop(10) == 10)
        #expect(RevenueChart.roundTop(11) == 20 && RevenueChart.roundTop(201) == 500 && RevenueChart.roundTop(501) == 1000)
        #expect(RevenueChart.roundTop(BigUInt(DashboardRows.uint256Max)!) == BigUInt(2) * BigUInt(10).power(77))
    }

    @Test("windows: the bounds, the bars and the parsing of the window parameter")
    func windows() {
        #expect(DashboardWindow.allCases.map { $0.milliseconds / $0.bucketMilliseconds } == [60, 48, 42, 30])
        #expect(DashboardWindow.parse(nil) == .day && DashboardWindow.parse("1d") == .day && DashboardWindow.parse("7d") == .week)
        #expect(DashboardWindow.parse("2h") == nil && DashboardWindow.parse("") == nil)
        let query = DashboardWindow.hour.query(now: DashboardRows.now)
        #expect(query.from == DashboardRows.now - 3_600_000 && query.to == DashboardRows.now + 1)
        let view = DashboardRows.view([DashboardRows.row(1, ago: 3_600_000), DashboardRows.row(2, ago: 3_600_001), DashboardRows.row(3, ago: 0)],
                                      window: .hour)
        #expect(view.totals.first?.payments == 2)
    }

    @Test("the JSON: every grouping, exact amounts as strings with decimals and units")
    func json() throws {
        let rows = [DashboardRows.row(1, amount: DashboardRows.uint256Max), DashboardRows.row(2, route: "GET /dear", amount: "10000"),
                    DashboardRows.row(3, state: .refused, reason: "insufficient_funds", settling: false),
                    DashboardRows.row(4, state: .unknown, reason: "settlement_timeout")]
        let view = DashboardRows.view(rows)
        func parse(_ by: RevenueJSON.Grouping?) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(RevenueJSON.render(view, by: by, assets: AssetDirectory()).utf8)) as? [String: Any])
        }
        let total = String(BigUInt(DashboardRows.uint256Max)! + 10000)
        let byAsset = try #require(try parse(.asset)["revenue"] as? [[String: Any]])
        #expect(byAsset.count == 1)
        #expect(byAsset[0]["total"] as? String == total && byAsset[0]["decimals"] as? Int == 6 && byAsset[0]["symbol"] as? String == "USDC")
        #expect(byAsset[0]["totalInUnits"] as? String == Money.format(BigUInt(total)!, decimals: 6))
        let byRoute = try #require(try parse(.route)["revenue"] as? [[String: Any]])
        #expect(byRoute.map { $0["route"] as? String } == ["GET /weather", "GET /dear"])
        let byOutcome = try #require(try parse(.outcome)["revenue"] as? [[String: Any]])
        #expect(byOutcome.contains { $0["outcome"] as? String == "refused" && $0["reason"] as? String == "insufficient_funds" && $0["payments"] as? Int == 1 })
        let byTime = try #require(try parse(.time)["revenue"] as? [[String: Any]])
        #expect(byTime.count == 1 && byTime[0]["payments"] as? Int == 2)
        let byPayer = try #require(try parse(.payer)["revenue"] as? [[String: Any]])
        #expect(byPayer.first?["total"] as? String == total)
        let byNetwork = try #require(try parse(.network)["revenue"] as? [[String: Any]])
        #expect(byNetwork.first?["network"] as? String == "eip155:84532")
        let whole = try parse(nil)
        #expect(whole["window"] as? String == "24h" && whole["bucketSeconds"] as? Int == 1800)
        #expect((whole["unknownOutcomes"] as? [[String: Any]])?.first?["payments"] as? Int == 1)
        #expect((whole["settlementLatency"] as? [String: Any])?["p50Ms"] as? Int == 800)
        for key in ["totals", "series", "routes", "payers", "outcomes"] { #expect(whole[key] is [Any], "\(key)") }
    }
}

@Suite("Admin token: header, cookie, sign-in form")
struct AdminAccessTests {
    static let token = "s3cret-admin-token-0123456789"

    @Test("without a token everything is open; with one, only the probes and the form")
    func paths() {
        #expect(AdminAccess(token: nil).admits(path: "/payments", method: "GET", authorization: [], cookies: [], now: 0))
        let access = AdminAccess(token: Self.token)
        for open in ["/healthz", "/readyz", "/login", "/logout"] {
            #expect(access.admits(path: open, method: "GET", authorization: [], cookies: [], now: 0))
        }
        for closed in ["/dashboard", "/revenue", "/payments", "/metrics", "/reload", "/anything"] {
            #expect(!access.admits(path: closed, method: "GET", authorization: [], cookies: [], now: 0))
            #expect(access.admits(path: closed, method: "POST", authorization: ["Bearer \(Self.token)"], cookies: [], now: 0))
            #expect(access.admits(path: closed, method: "GET", authorization: ["bearer  \(Self.token) "], cookies: [], now: 0))
            #expect(!access.admits(path: closed, method: "GET", authorization: ["Bearer \(Self.token)x"], cookies: [], now: 0))
            #expect(!access.admits(path: closed, method: "GET", authorization: ["Basic \(Self.token)"], cookies: [], now: 0))
            #expect(!access.admits(path: closed, method: "GET", authorization: [Self.token], cookies: [], now: 0))
        }
    }

    @Test("the session cookie: valid for reads until it expires, never for a POST, not after the token changes, not when altered")
    func sessions() throws {
        let access = AdminAccess(token: Self.token)
        let now: Int64 = 1_800_000_000
        let session = try #require(access.session(now: now))
        #expect(!session.contains(Self.token))
        let cookie = "theme=dark; \(AdminAccess.cookieName)=\(session); other=1"
        #expect(access.admits(path: "/dashboard", method: "GET", authorization: [], cookies: [cookie], now: now + 60))
        #expect(access.admits(path: "/revenue", method: "HEAD", authorization: [], cookies: [cookie], now: now))
        #expect(!access.admits(path: "/reload", method: "POST", authorization: [], cookies: [cookie], now: now))
        #expect(!access.admits(path: "/dashboard", method: "GET", authorization: [], cookies: [cookie], now: now + AdminAccess.sessionSeconds))
        #expect(!AdminAccess(token: Self.token + "2").verify(session: session, now: now))
        var altered = Array(session)
        altered[altered.count - 1] = altered.last == "0" ? "1" : "0"
        #expect(!access.verify(session: String(altered), now: now))
        // A later expiry with the old MAC, or one beyond the session length, is refused.
        let parts = session.split(separator: ".")
        #expect(!access.verify(session: "v1.\(now + 100_000).\(parts[2])", now: now))
        #expect(!access.verify(session: "v2.\(parts[1]).\(parts[2])", now: now))
        #expect(AdminAccess.cookieValues(["a=1; \(AdminAccess.cookieName)=\"x\""], named: AdminAccess.cookieName) == ["x"])
    }

    @Test("the form's token field is decoded; comparison is by digest, equal or not")
    func form() {
        #expect(AdminAccess.formField("a=1&token=s3cret%2Badmin+x%26y", named: "token") == "s3cret+admin x&y")
        #expect(AdminAccess.formField("token=%zz", named: "token") == nil)
        #expect(AdminAccess.formField("tokens=1", named: "token") == nil)
        #expect(AdminAccess(token: Self.token).accepts(formToken: Self.token))
        #expect(!AdminAccess(token: Self.token).accepts(formToken: String(Self.token.dropLast())))
        #expect(!AdminAccess(token: nil).accepts(formToken: ""))
        #expect(AdminAccess.constantTimeEquals([1, 2, 3], [1, 2, 3]) && !AdminAccess.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!AdminAccess.constantTimeEquals([1, 2], [1, 2, 3]))
    }

    @Test("admin.token: from ${ENV}, at least 16 printable characters, never echoed in a diagnostic")
    func configuration() throws {
        func load(_ token: String, _ environment: [String: String] = [:]) throws -> GatewayConfig {
            try ConfigLoader.parse(yaml: """
                upstreams: { api: "http://127.0.0.1:1" }
                admin: { listen: 127.0.0.1:0, token: "\(token)" }
                """, file: "t.yaml", environment: environment)
        }
        #expect(try load("${ADMIN_TOKEN}", ["ADMIN_TOKEN": Self.token]).admin?.token == Self.token)
        for bad in ["short-token", "has a space inside it", String(repeating: "x", count: 513)] {
            do {
                _ = try load(bad)
                Issue.record("\(bad) accepted")
            } catch {
                #expect("\(error)".contains("admin.token must"))
                #expect(!"\(error)".contains(bad))
            }
        }
    }
}

@Suite("Admin token and dashboard on the live admin listener")
struct DashboardLiveTests {
    static let token = "live-admin-token-4f9d2c7a1b"

    static func yaml(token: String?) -> String {
        """
        listen: 127.0.0.1:0
        admin: { listen: 127.0.0.1:0\(token.map { ", token: \"\($0)\"" } ?? "") }
        payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c"
        network: eip155:84532
        upstreams:
          api: { url: "{{UPSTREAM}}", timeout: 5s }
        routes:
          - match: "GET /weather"
            price: "$0.001"
        """
    }

    static func send(_ gw: LiveGateway, _ method: String, _ path: String, headers: [(String, String)] = [], body: String = "") async throws -> RawHTTPResponse {
        let port = try #require(gw.adminPort)
        let fields = headers.map { "\($0.0): \($0.1)\r\n" }.joined()
        return try await RawHTTP.send(port: port, raw: "\(method) \(path) HTTP/1.1\r\nHost: admin\r\n\(fields)Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
    }

    @Test("401 without the token (the form for the dashboard, JSON elsewhere), 200 with the header or the form's cookie; the token is never logged")
    func tokenRequired() async throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "gw") { label in JSONLogHandler(label: label, level: .trace, write: { line in lines.withLock { $0.append(line) } }) }
        logger.logLevel = .trace
        try await TestHarness.withGateway(yaml: Self.yaml(token: Self.token), gatewayLogger: logger) { gw in
            let page = try await Self.send(gw, "GET", "/dashboard")
            #expect(page.status == 401)
            #expect(page.header("Content-Type") == "text/html; charset=utf-8")
            #expect(page.bodyText.contains("<form method=\"post\" action=\"/login\">"))
            #expect(page.header("Content-Security-Policy")?.hasPrefix("default-src 'none'") == true)
            for path in ["/revenue", "/payments", "/metrics"] {
                let refused = try await Self.send(gw, "GET", path)
                #expect(refused.status == 401, "\(path)")
                #expect(refused.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
                #expect(try await Self.send(gw, "GET", path, headers: [("Authorization", "Bearer \(Self.token)")]).status == 200, "\(path)")
            }
            #expect(try await Self.send(gw, "GET", "/healthz").status == 200)
            #expect(try await Self.send(gw, "GET", "/dashboard", headers: [("Authorization", "Bearer wrong-token-0000000000")]).status == 401)

            // The form: a wrong token is refused, the right one sets a session cookie that is not the token.
            let form = [("Content-Type", "application/x-www-form-urlencoded")]
            let wrong = try await Self.send(gw, "POST", "/login", headers: form, body: "token=not-the-token-123456")
            #expect(wrong.status == 401 && wrong.bodyText.contains("login-error") && wrong.header("Set-Cookie") == nil)
            let signedIn = try await Self.send(gw, "POST", "/login", headers: form, body: "token=\(Self.token)")
            #expect(signedIn.status == 303 && signedIn.header("Location") == "/dashboard")
            let setCookie = try #require(signedIn.header("Set-Cookie"))
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && !setCookie.contains(Self.token))
            let cookie = String(setCookie.prefix { $0 != ";" })
            let dashboard = try await Self.send(gw, "GET", "/dashboard", headers: [("Cookie", cookie)])
            #expect(dashboard.status == 200)
            #expect(dashboard.bodyText.contains("<main id=\"dashboard\""))
            #expect(dashboard.bodyText.contains("Sign out"))
            let csp = try #require(dashboard.header("Content-Security-Policy"))
            let nonce = try #require(csp.split(separator: "'").first { $0.hasPrefix("nonce-") }).dropFirst("nonce-".count)
            #expect(dashboard.bodyText.contains("<script nonce=\"\(nonce)\">"))
            #expect(try await Self.send(gw, "GET", "/revenue?by=route", headers: [("Cookie", cookie)]).status == 200)
            // The refresh's fragment: the content alone, no style sheet, no script.
            let part = try await Self.send(gw, "GET", "/dashboard?window=7d&part=main", headers: [("Cookie", cookie)])
            #expect(part.status == 200 && part.bodyText.hasPrefix("<main id=\"dashboard\" data-window=\"7d\""))
            #expect(!part.bodyText.contains("<style") && !part.bodyText.contains("<script"))
            // The cookie reads; it never reloads.
            #expect(try await Self.send(gw, "POST", "/reload", headers: [("Cookie", cookie)]).status == 401)
            #expect(try await Self.send(gw, "POST", "/reload", headers: [("Authorization", "Bearer \(Self.token)")]).status == 409)  // no file
            let out = try await Self.send(gw, "POST", "/logout")
            #expect(out.status == 303 && out.header("Set-Cookie")?.contains("Max-Age=0") == true)
        }
        let logged = lines.withLock { $0 }
        #expect(logged.contains { $0.contains("admin sign-in refused") })
        #expect(!logged.isEmpty)
        #expect(!logged.contains { $0.contains(Self.token) || $0.contains("not-the-token") || $0.contains(AdminAccess.cookieName + "=") })
    }

    @Test("a reload applies a new token at once; a file without admin keeps the listener and its token")
    func tokenReload() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        let second = "second-admin-token-9e8d7c6b5a"
        let still = "\nreload: { watch: false }\n"  // only the POSTs below reload
        try await TestHarness.withGateway(yaml: Self.yaml(token: Self.token) + still, configFile: file) { gw in
            let old = [("Authorization", "Bearer \(Self.token)")], new = [("Authorization", "Bearer \(second)")]
            let upstream = "http://127.0.0.1:\(gw.upstreamPort)"
            try (Self.yaml(token: second) + still).replacingOccurrences(of: "{{UPSTREAM}}", with: upstream)
                .write(toFile: file, atomically: true, encoding: .utf8)
            let applied = try await Self.send(gw, "POST", "/reload", headers: old)
            #expect(applied.status == 200 && applied.bodyText.contains("\"restartRequired\":[]"), "\(applied.bodyText)")
            #expect(try await Self.send(gw, "GET", "/revenue", headers: old).status == 401)
            #expect(try await Self.send(gw, "GET", "/revenue", headers: new).status == 200)
            // Dropping `admin` needs a restart, and never opens the running listener.
            try (Self.yaml(token: nil) + still).replacingOccurrences(of: "{{UPSTREAM}}", with: upstream)
                .replacingOccurrences(of: "admin: { listen: 127.0.0.1:0 }\n", with: "")
                .write(toFile: file, atomically: true, encoding: .utf8)
            // Through the `reload` command's client: the answer and its body, whether applied or refused.
            let admin = ListenAddress(host: "127.0.0.1", port: try #require(gw.adminPort))
            let refused = try await AdminClient.reload(admin, token: Self.token)
            #expect(!refused.applied && refused.body.contains("\"error\""), "\(refused.body)")
            let dropped = try await AdminClient.reload(admin, token: second)
            #expect(dropped.applied && dropped.body.contains("\"restartRequired\":[\"admin\"]"), "\(dropped.body)")
            #expect(try await Self.send(gw, "GET", "/revenue").status == 401)
            #expect(try await Self.send(gw, "GET", "/revenue", headers: new).status == 200)
        }
    }

    @Test("without a token the dashboard and /revenue answer as before; bad parameters are 400")
    func open() async throws {
        try await TestHarness.withGateway(yaml: Self.yaml(token: nil)) { gw in
            let page = try await Self.send(gw, "GET", "/dashboard?window=1h")
            #expect(page.status == 200 && page.header("Cache-Control") == "no-store" && page.header("X-Frame-Options") == "DENY")
            #expect(!page.bodyText.contains("Sign out"))
            #expect(page.bodyText.contains("aria-current=\"page\">1h<"))
            #expect(try await Self.send(gw, "GET", "/dashboard?window=2h").status == 400)
            #expect(try await Self.send(gw, "GET", "/revenue?by=colour").status == 400)
            #expect(try await Self.send(gw, "GET", "/login").status == 303)
        }
    }

    @Test("the page shows the store's rows: totals, outcomes and recent payments, with the ledger's numbers")
    func rows() async throws {
        try await TestHarness.withGateway(yaml: Self.yaml(token: nil)) { gw in
            let store = gw.server.store
            for (i, (amount, fail)) in [("1000", false), ("2500", false), ("1000", true)].enumerated() {
                let key = PaymentKey(network: "eip155:84532", asset: DashboardRows.usdc, payer: "0x00000000000000000000000000000000000000b\(i)",
                                     nonce: String(format: "0x%064x", i))
                let claim = ClaimRequest(key: key, offer: PaymentOffer(scheme: "exact", network: key.network, asset: key.asset, amount: amount,
                                                                       payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c"),
                                         routeID: "GET /weather", method: "GET", path: "/weather", requestID: "req-\(i)", validBefore: 4_000_000_000)
                guard case .claimed(let ticket) = try await store.claim(claim) else { Issue.record("not claimed"); return }
                try await store.record(ticket, .verified(payer: key.payer))
                if fail {
                    try await store.record(ticket, .refused(reason: "insufficient_funds"))
                } else {
                    try await store.record(ticket, .settling)
                    try await store.record(ticket, .settled(transaction: "0x" + String(repeating: "c\(i)", count: 32)))
                }
            }
            let html = try await Self.send(gw, "GET", "/dashboard").bodyText
            #expect(html.contains("data-atomic=\"3500\" data-payments=\"2\""))
            #expect(html.contains(">0.0035 USDC<"))
            #expect(html.contains("data-outcome=\"refused\" data-payments=\"1\""))
            #expect(html.contains("https://sepolia.basescan.org/tx/0x" + String(repeating: "c1", count: 32)))
            #expect(html.components(separatedBy: "<tr data-state=").count == 4)
            let answer = try await Self.send(gw, "GET", "/revenue?by=asset&window=1h")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])
            #expect((json["revenue"] as? [[String: Any]])?.first?["total"] as? String == "3500")
        }
    }
}

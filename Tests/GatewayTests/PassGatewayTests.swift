import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import HTTPTypes
import Logging
import Synchronization
import Testing
import X402

private let newSecret = "pass key two: 0123456789abcdef0123456789"
private let oldSecret = "pass key one: fedcba9876543210fedcba9876"
private let passEnvironment = ["PASS_KEY_NEW": newSecret, "PASS_KEY_OLD": oldSecret]

/// Priced routes with and without passes, keys `k2` (signing) and `k1` (the previous key).
private func passYAML(keys: String = """
        - { id: k2, secret: "${PASS_KEY_NEW}" }
        - { id: k1, secret: "${PASS_KEY_OLD}" }
    """) -> String {
    """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 2s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 5s }
    passes:
      keys:
    \(keys)
    routes:
      - match: "GET /articles/:id"
        price: "$0.01"
        pass: { for: 1h }
      - match: "GET /section/*"
        price: "$0.01"
        pass: { for: 1h, scope: route }
      - match: "GET /other/*"
        price: "$0.01"
        pass: { for: 1h, scope: route }
      - match: "GET /nopass/*"
        price: "$0.01"
      - match: "GET /bytes/:n"
        price: "$0.01"
        settlement: before
        pass: { for: 1h }
      - match: "GET /ided/*"
        price: "$0.01"
        paymentIdentifier: optional
        pass: { for: 1h }
      - match: "/public/*"
        free: true
    unmatched: pass
    """
}

/// A clock the test moves (unix seconds).
private final class TestClock: Sendable {
    private let value: Atomic<UInt64>
    init(_ start: UInt64) { value = Atomic(start) }
    var now: UInt64 { value.load(ordering: .relaxed) }
    func advance(by seconds: UInt64) { value.wrappingAdd(seconds, ordering: .relaxed) }
}

/// The gateway's JSON log lines.
private final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

/// Passes made by the test itself with the gateway's keys (or others), as an attacker or another instance would.
private func mint(route: String? = nil, group: String? = nil, path: String? = nil, keyID: String = "k2", secret: String = newSecret,
                  issuedAt: UInt64 = now - 10, expiresAt: UInt64 = now + 3600, payer: String = TestPayer().address) -> String {
    PassKeyring(PassesConfig(keys: [PassKey(id: keyID, secret: Array(secret.utf8))]))!.issue(PassClaims(
        route: route, group: group, path: path, payer: payer, network: "eip155:84532", issuedAt: issuedAt, expiresAt: expiresAt))
}

/// The name of a route's pass cookie, as the gateway derives it from the route id.
private func cookieName(_ routeID: String) -> String {
    RoutePassPolicy(route: RouteConfig(id: routeID, pattern: try! RoutePattern("/x"), upstream: "api", access: .free),
                    pass: RoutePass(seconds: 1)).cookieName
}

/// The `name=value` part of a `Set-Cookie` field.
private func cookiePair(_ setCookie: String) -> String { String(setCookie.split(separator: ";")[0]) }

private func metric(_ text: String, _ line: String) -> Int? {
    text.split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Int($0.split(separator: " ").last!) }
}

@Suite("Route passes on the live gateway")
struct PassGatewayTests {
    let payer = TestPayer()

    @Test("a settled payment issues a pass; the pass then opens the path with no new payment, as cookie, bearer or PAYMENT-PASS")
    func payOnceReadAgain() async throws {
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, fac in
            let paid = try await pay(gw, "/articles/42", try await signedHeader(gw, "/articles/42", payer))
            #expect(paid.status == 200 && paid.header("PAYMENT-RESPONSE") != nil)
            let token = try #require(paid.header("PAYMENT-PASS"))
            let setCookie = try #require(paid.headers.first { $0.0.lowercased() == "set-cookie" }?.1)
            #expect(setCookie.hasPrefix("x402-pass-") && setCookie.contains("=\(token); "))
            #expect(setCookie.hasSuffix("; Path=/articles/42; Max-Age=3600; HttpOnly; SameSite=Lax"))  // not Secure over http
            #expect(paid.header("Access-Control-Expose-Headers")?.contains("PAYMENT-PASS") == true)
            #expect(paid.header("Vary")?.contains("Cookie") == true && paid.header("Vary")?.contains("Authorization") == true)
            let claims = try PassKeyring(PassesConfig(keys: [PassKey(id: "k2", secret: Array(newSecret.utf8))]))!.verify(token, now: now).get()
            #expect(claims.route == "GET /articles/:id" && claims.path == "/articles/42" && claims.payer == payer.address)
            #expect(claims.network == "eip155:84532" && claims.expiresAt == claims.issuedAt + 3600)

            let cookie = "theme=dark; \(cookiePair(setCookie)); lang=en"
            let forms: [[(String, String)]] = [
                [("Cookie", cookie)], [("Authorization", "Bearer \(token)")], [("PAYMENT-PASS", token)],
            ]
            for headers in forms {
                let again = try await gw.get("/articles/42?utm=x", headers: headers)
                #expect(again.status == 200)
                #expect(again.header("PAYMENT-RESPONSE") == nil && again.header("PAYMENT-PASS") == nil)
                #expect(again.header("Cache-Control") == "private, no-store")
                #expect(again.header("Vary")?.contains("Cookie") == true)
            }
            let head = try await gw.get("/articles/42", method: "HEAD", headers: [("Cookie", cookie)], discardBody: true)
            #expect(head.status == 200)
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 1)

            // The upstream saw the payer and the pass mark, and never the pass itself.
            let seen = gw.upstream.requests
            #expect(seen.count == 5)
            for request in seen.dropFirst() {
                #expect(request.headers[HTTPField.Name("X-Payment-Payer")!] == payer.address)
                #expect(request.headers[HTTPField.Name("X-Payment-Pass")!] == String(claims.expiresAt))
                #expect(request.headers[HTTPField.Name("PAYMENT-PASS")!] == nil)
                #expect(request.headers[.authorization] == nil)
                #expect(!(request.headers[.cookie] ?? "").contains("x402-pass"))
            }
            #expect(seen[1].headers[.cookie] == "theme=dark; lang=en")
            #expect(seen[0].headers[HTTPField.Name("X-Payment-Pass")!] == nil)  // the paid request itself

            // Another path of the same route is still priced (scope: path), the cookie notwithstanding.
            let other = try await gw.get("/articles/43", headers: [("Cookie", cookie)])
            let unpaid = try await gw.get("/articles/43")
            #expect(other.status == 402 && other.header("PAYMENT-REQUIRED") == unpaid.header("PAYMENT-REQUIRED"))
            #expect(gw.upstream.count == 5)

            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metric(metrics, "x402_requests_total{route=\"GET /articles/:id\",outcome=\"paid\"}") == 1)
            #expect(metric(metrics, "x402_requests_total{route=\"GET /articles/:id\",outcome=\"pass\"}") == 4)
            #expect(metric(metrics, "x402_requests_total{route=\"GET /articles/:id\",outcome=\"pass_refused\"}") == 1)
            #expect(metric(metrics, "x402_passes_issued_total") == 1)
            #expect(metric(metrics, "x402_passes_refused_total{reason=\"other_path\"}") == 1)
        }
    }

    @Test("scope route: one payment opens every path of the route, and no other route")
    func routeScope() async throws {
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, fac in
            let paid = try await pay(gw, "/section/a", try await signedHeader(gw, "/section/a", payer))
            let token = try #require(paid.header("PAYMENT-PASS"))
            let setCookie = try #require(paid.header("Set-Cookie"))
            #expect(setCookie.contains("; Path=/section/;"))
            #expect(try await gw.get("/section/b/c", headers: [("Authorization", "Bearer \(token)")]).status == 200)
            #expect(try await gw.get("/other/b", headers: [("Authorization", "Bearer \(token)")]).status == 402)
            #expect(try await gw.get("/nopass/b", headers: [("Authorization", "Bearer \(token)")]).status == 402)
            // A browser sends every cookie whose Path covers the URL: another route's pass cookie is not
            // presented to this route (not verified, not counted), and opens nothing.
            let pair = cookiePair(setCookie)
            #expect(pair.hasPrefix(cookieName("GET /section/*") + "="))
            #expect(try await gw.get("/other/b", headers: [("Cookie", pair)]).status == 402)
            #expect(fac.settleCalls == 1 && gw.upstream.count == 2)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metric(metrics, "x402_passes_refused_total{reason=\"other_route\"}") == 1)
            #expect(metric(metrics, "x402_passes_refused_total{reason=\"route_has_no_pass\"}") == 1)
            #expect(metric(metrics, "x402_requests_total{route=\"GET /other/*\",outcome=\"pass_refused\"}") == 1)
            #expect(metric(metrics, "x402_requests_total{route=\"GET /other/*\",outcome=\"payment_required\"}") == 1)
        }
    }

    enum Refused: String, CaseIterable, Sendable {
        case forged, expired, notYetValid, otherRoute, otherKey, wrongSecretForKeyID, malformed, otherPath, routeWithoutPass, groupPass
    }

    @Test("a refused pass is a 402 exactly as if none was sent, reaching neither facilitator nor upstream", arguments: Refused.allCases)
    func refusedPasses(_ refused: Refused) async throws {
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, fac in
            var path = "/section/x"
            let token: String
            let reason: PassRejection
            switch refused {
            case .forged:
                let genuine = mint(route: "GET /section/*").split(separator: ".")
                let claims = mint(route: "GET /section/*", payer: "0x0000000000000000000000000000000000000001").split(separator: ".")[2]
                token = [genuine[0], genuine[1], claims, genuine[3]].joined(separator: ".")
                reason = .badSignature
            case .expired:
                token = mint(route: "GET /section/*", issuedAt: now - 7200, expiresAt: now - 1)
                reason = .expired
            case .notYetValid:
                token = mint(route: "GET /section/*", issuedAt: now + 3600, expiresAt: now + 7200)
                reason = .notYetValid
            case .otherRoute:
                token = mint(route: "GET /other/*")
                reason = .otherRoute
            case .otherKey:
                token = mint(route: "GET /section/*", keyID: "k9")
                reason = .unknownKey
            case .wrongSecretForKeyID:
                token = mint(route: "GET /section/*", keyID: "k1", secret: newSecret)
                reason = .badSignature
            case .malformed:
                token = "x402pass1.k2.not-a-pass"
                reason = .malformed
            case .otherPath:
                token = mint(route: "GET /articles/:id", path: "/articles/1")
                path = "/articles/2"
                reason = .otherPath
            case .routeWithoutPass:
                token = mint(route: "GET /nopass/*")
                path = "/nopass/x"
                reason = .routeHasNoPass
            case .groupPass:
                token = mint(group: "GET /section/*")
                reason = .otherRoute
            }
            let unpaid = try await gw.get(path)
            let route = path.hasPrefix("/articles") ? "GET /articles/:id" : path.hasPrefix("/nopass") ? "GET /nopass/*" : "GET /section/*"
            // In the route's own cookie (a route without passes has none: a cookie is not presented to it).
            let cookie = "theme=dark; \(cookieName(route))=\(token)"
            for headers in [[("Cookie", cookie)], [("Authorization", "Bearer \(token)")], [("PAYMENT-PASS", token)]] {
                let r = try await gw.get(path, headers: headers)
                #expect(r.status == 402)
                #expect(r.header("PAYMENT-REQUIRED") == unpaid.header("PAYMENT-REQUIRED"))
                #expect(r.bodyText == unpaid.bodyText)
            }
            #expect(gw.upstream.count == 0)
            #expect(fac.verifyCalls == 0 && fac.settleCalls == 0)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            let presented = refused == .routeWithoutPass ? 2 : 3
            #expect(metric(metrics, "x402_passes_refused_total{reason=\"\(reason.rawValue)\"}") == presented)
            #expect(metric(metrics, "x402_requests_total{route=\"\(route)\",outcome=\"pass_refused\"}") == presented)
            #expect(metric(metrics, "x402_requests_total{route=\"\(route)\",outcome=\"payment_required\"}") == 4 - presented)
        }
    }

    @Test("rotation: another instance with the same keys accepts a pass; the previous key's passes open until that key is removed")
    func rotation() async throws {
        let oldPass = mint(route: "GET /section/*", keyID: "k1", secret: oldSecret)
        let issued = try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, _ in
            #expect(try await gw.get("/section/x", headers: [("PAYMENT-PASS", oldPass)]).status == 200)
            let paid = try await pay(gw, "/section/a", try await signedHeader(gw, "/section/a", payer))
            return try #require(paid.header("PAYMENT-PASS"))
        }
        #expect(issued.split(separator: ".")[1] == "k2")
        let retired = passYAML(keys: "    - { id: k2, secret: \"${PASS_KEY_NEW}\" }")
        try await TestHarness.withPaidGateway(yaml: retired, environment: passEnvironment) { gw, fac in
            let fresh = try await gw.get("/section/y", headers: [("PAYMENT-PASS", issued)])
            let retiredKey = try await gw.get("/section/y", headers: [("PAYMENT-PASS", oldPass)])
            #expect(fresh.status == 200 && retiredKey.status == 402)
            #expect(fac.settleCalls == 0 && gw.upstream.count == 1)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metric(metrics, "x402_passes_refused_total{reason=\"unknown_key\"}") == 1)
        }
    }

    @Test("a reload applies pass changes at once: a key removed revokes its passes, a route without pass stops opening")
    func reload() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/gateway.yaml"
        // No facilitator: pass requests never need one.
        @Sendable func unpaid(_ yaml: String) -> String {
            yaml.replacingOccurrences(of: "facilitator: { url: \"{{FACILITATOR}}\", timeout: 2s }\n", with: "")
                .replacingOccurrences(of: "unmatched: pass", with: "unmatched: pass\nreload: { watch: false }")
        }
        let yaml = unpaid(passYAML())
        try await TestHarness.withGateway(yaml: yaml, environment: passEnvironment, configFile: file) { gw in
            let upstreamURL = "http://127.0.0.1:\(gw.upstreamPort)"
            let byOld = mint(route: "GET /section/*", keyID: "k1", secret: oldSecret)
            let byNew = mint(route: "GET /section/*")
            #expect(try await gw.get("/section/x", headers: [("PAYMENT-PASS", byOld)]).status == 200)

            let retired = unpaid(passYAML(keys: "    - { id: k2, secret: \"${PASS_KEY_NEW}\" }")).replacingOccurrences(of: "{{UPSTREAM}}", with: upstreamURL)
            try retired.write(toFile: file, atomically: true, encoding: .utf8)
            #expect(await gw.server.reload(trigger: "test") == .applied(restartRequired: []))
            let revoked = try await gw.get("/section/x", headers: [("PAYMENT-PASS", byOld)])
            let kept = try await gw.get("/section/x", headers: [("PAYMENT-PASS", byNew)])
            #expect(revoked.status == 402 && kept.status == 200)

            let noPass = retired.replacingOccurrences(of: "    pass: { for: 1h, scope: route }\n  - match: \"GET /other/*\"", with: "  - match: \"GET /other/*\"")
            #expect(noPass != retired)
            try noPass.write(toFile: file, atomically: true, encoding: .utf8)
            #expect(await gw.server.reload(trigger: "test") == .applied(restartRequired: []))
            let closed = try await gw.get("/section/x", headers: [("PAYMENT-PASS", byNew)])
            #expect(closed.status == 402)
            #expect(gw.upstream.count == 2)
        }
    }

    @Test("a payment-identifier retry replays the paid answer without a pass: passes are never stored, nor issued twice")
    func identifierReplay() async throws {
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, fac in
            let (header, _) = try await identified(gw, "/ided/a", payer, id: freshID())
            let first = try await pay(gw, "/ided/a", header)
            let retry = try await pay(gw, "/ided/a", header)
            #expect(first.status == 200 && retry.status == 200)
            #expect(first.header("PAYMENT-PASS") != nil && first.header("Set-Cookie")?.hasPrefix("x402-pass-") == true)
            #expect(retry.header("PAYMENT-RESPONSE") == first.header("PAYMENT-RESPONSE"))
            #expect(retry.header("PAYMENT-PASS") == nil && retry.header("Set-Cookie") == nil)
            #expect(fac.settleCalls == 1 && gw.upstream.count == 1)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metric(metrics, "x402_passes_issued_total") == 1)
        }
    }

    @Test("a pass expires: the route asks for payment again from its expiry on")
    func expiry() async throws {
        let clock = TestClock(now)
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment, clock: { clock.now }) { gw, fac in
            let paid = try await pay(gw, "/articles/7", try await signedHeader(gw, "/articles/7", payer))
            let token = try #require(paid.header("PAYMENT-PASS"))
            clock.advance(by: 3599)
            #expect(try await gw.get("/articles/7", headers: [("PAYMENT-PASS", token)]).status == 200)
            clock.advance(by: 1)
            let expired = try await gw.get("/articles/7", headers: [("PAYMENT-PASS", token)])
            #expect(expired.status == 402 && expired.header("PAYMENT-REQUIRED") != nil)
            #expect(fac.settleCalls == 1 && gw.upstream.count == 2)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metric(metrics, "x402_passes_refused_total{reason=\"expired\"}") == 1)
        }
    }

    @Test("a pass sent to a free route is ignored and not forwarded; client copies of the pass mark and payer are dropped")
    func freeRouteIgnoresPasses() async throws {
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, _ in
            let token = mint(route: "GET /section/*")
            let r = try await gw.get("/public/x", headers: [
                ("Cookie", "a=1; x402-pass-0123456789ab=\(token); b=2"), ("Authorization", "Bearer \(token)"),
                ("PAYMENT-PASS", token), ("X-Payment-Pass", "9999999999"), ("X-Payment-Payer", "0xspoofed"),
            ])
            #expect(r.status == 200)
            // Any other Authorization is the upstream's business and goes through; a cookie of passes only disappears.
            #expect(try await gw.get("/public/y", headers: [("Authorization", "Bearer upstream-token"),
                                                            ("Cookie", "x402-pass-0123456789ab=\(token)")]).status == 200)
            #expect(try await gw.get("/unmatched", headers: [("PAYMENT-PASS", token)]).status == 200)
            let seen = gw.upstream.requests
            #expect(seen.count == 3)
            #expect(seen[0].headers[.cookie] == "a=1; b=2")
            #expect(seen[0].headers[.authorization] == nil)
            #expect(seen[0].headers[HTTPField.Name("PAYMENT-PASS")!] == nil)
            #expect(seen[0].headers[HTTPField.Name("X-Payment-Pass")!] == nil)
            #expect(seen[0].headers[HTTPField.Name("X-Payment-Payer")!] == nil)
            #expect(seen[1].headers[.authorization] == "Bearer upstream-token")
            #expect(seen[1].headers[.cookie] == nil)
            #expect(seen[2].headers[HTTPField.Name("PAYMENT-PASS")!] == nil)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metric(metrics, "x402_requests_total{route=\"/public/*\",outcome=\"free\"}") == 2)
            #expect(metric(metrics, "x402_requests_total{route=\"/public/*\",outcome=\"pass\"}") == 0)
        }
    }

    @Test("settlement: before: the streamed paid answer carries the pass, and the pass streams the content again")
    func settledBefore() async throws {
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, fac in
            let paid = try await pay(gw, "/bytes/300000", try await signedHeader(gw, "/bytes/300000", payer))
            #expect(paid.status == 200 && paid.bodyByteCount == 300_000)
            let token = try #require(paid.header("PAYMENT-PASS"))
            #expect(paid.header("Set-Cookie")?.contains("; Path=/bytes/300000;") == true)
            let again = try await gw.get("/bytes/300000", headers: [("Authorization", "Bearer \(token)")])
            #expect(again.status == 200 && again.bodyByteCount == 300_000)
            #expect(again.header("Cache-Control") == "private, no-store")
            #expect(fac.settleCalls == 1 && gw.upstream.count == 2)
        }
    }

    @Test("a gateway without passes opens nothing with one, and still never forwards one")
    func gatewayWithoutPasses() async throws {
        try await TestHarness.withPaidGateway(yaml: paidYAML) { gw, fac in
            let token = mint(route: "GET /paid/*")
            let r = try await gw.get("/paid/x", headers: [("Authorization", "Bearer \(token)"), ("PAYMENT-PASS", token)])
            #expect(r.status == 402)
            #expect(try await gw.get("/elsewhere", headers: [("Authorization", "Bearer \(token)"), ("Cookie", "x402-pass-0123456789ab=\(token)")]).status == 200)
            #expect(fac.verifyCalls == 0 && gw.upstream.count == 1)
            #expect(gw.upstream.requests[0].headers[.authorization] == nil && gw.upstream.requests[0].headers[.cookie] == nil)
            let metrics = String(decoding: gw.server.metrics.exposition(), as: UTF8.self)
            #expect(metric(metrics, "x402_requests_total{route=\"GET /paid/*\",outcome=\"payment_required\"}") == 1)
        }
    }

    @Test("the upstream's own cookies stay beside the pass cookie, and an answer opened by a pass is private whatever the upstream says")
    func upstreamFields() async throws {
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment) { gw, _ in
            let target = "/section/a?h=Set-Cookie:%20session%3Dabc&h=Cache-Control:%20public,%20max-age%3D600&h=PAYMENT-PASS:%20upstream-forged"
            let paid = try await pay(gw, target, try await signedHeader(gw, target, payer))
            let cookies = paid.headers.filter { $0.0.lowercased() == "set-cookie" }.map(\.1)
            #expect(cookies.count == 2 && cookies[0] == "session=abc" && cookies[1].hasPrefix("x402-pass-"))
            let token = try #require(paid.header("PAYMENT-PASS"))
            #expect(token.hasPrefix("x402pass1.k2.") && paid.headers.filter { $0.0.lowercased() == "payment-pass" }.count == 1)
            let again = try await gw.get(target, headers: [("Cookie", cookiePair(cookies[1]))])
            #expect(again.status == 200)
            #expect(again.header("Cache-Control") == "private, no-store")
            #expect(again.header("PAYMENT-PASS") == nil)
            #expect(again.header("Set-Cookie") == "session=abc")
        }
    }

    @Test("the cookie is Secure when the public URL is https: publicBaseURL, or X-Forwarded-Proto from a trusted proxy")
    func secureCookie() async throws {
        let https = passYAML().replacingOccurrences(of: "listen: 127.0.0.1:0\n", with: "listen: 127.0.0.1:0\npublicBaseURL: https://shop.example\n")
        try await TestHarness.withPaidGateway(yaml: https, environment: passEnvironment) { gw, _ in
            let paid = try await pay(gw, "/section/a", try await signedHeader(gw, "/section/a", payer))
            #expect(paid.header("Set-Cookie")?.hasSuffix("; HttpOnly; SameSite=Lax; Secure") == true)
        }
        let proxied = passYAML().replacingOccurrences(of: "listen: 127.0.0.1:0\n", with: "listen: 127.0.0.1:0\ntrustedProxies: [127.0.0.1]\n")
        try await TestHarness.withPaidGateway(yaml: proxied, environment: passEnvironment) { gw, _ in
            let header = try await signedHeader(gw, "/section/a", payer)
            let viaTLS = try await gw.get("/section/a", headers: [("PAYMENT-SIGNATURE", header), ("X-Forwarded-Proto", "https")])
            #expect(viaTLS.header("Set-Cookie")?.hasSuffix("; Secure") == true)
            let plain = try await pay(gw, "/section/b", try await signedHeader(gw, "/section/b", payer))
            #expect(plain.status == 200 && plain.header("Set-Cookie")?.contains("Secure") == false)
        }
    }

    @Test("logs say when a pass is issued, accepted or refused (with the reason), and never carry a pass or a key")
    func logs() async throws {
        let lines = LogLines()
        var logger = Logger(label: "gateway") { label in JSONLogHandler(label: label, write: { line in lines.append(line) }) }
        logger.logLevel = .debug
        try await TestHarness.withPaidGateway(yaml: passYAML(), environment: passEnvironment, gatewayLogger: logger) { gw, _ in
            let paid = try await pay(gw, "/section/a", try await signedHeader(gw, "/section/a", payer))
            let token = try #require(paid.header("PAYMENT-PASS"))
            let pair = cookiePair(try #require(paid.header("Set-Cookie")))
            #expect(try await gw.get("/section/b", headers: [("Cookie", pair)]).status == 200)
            var altered = Array(token)
            altered[altered.count - 10] = altered[altered.count - 10] == "A" ? "B" : "A"  // inside the MAC
            #expect(try await gw.get("/section/b", headers: [("Authorization", "Bearer \(String(altered))")]).status == 402)
            let all = lines.all.joined(separator: "\n")
            #expect(all.contains("\"pass issued\"") && all.contains("\"pass accepted\"") && all.contains("\"pass refused\""))
            #expect(all.contains("bad_signature"))
            let mac = String(token.split(separator: ".")[3])
            let claims = String(token.split(separator: ".")[2])
            for secret in [mac, claims, "x402pass1.", newSecret, oldSecret, "pass key"] { #expect(!all.contains(secret)) }
        }
    }
}

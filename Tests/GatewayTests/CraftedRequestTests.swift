import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import HTTPTypes
import NIOHTTP1
import NIOPosix
import Testing
import X402

#if canImport(Glibc)
import Glibc
#endif

/// Requests crafted against the gateway as an outsider would (issue 14): spoofed fields spelled
/// with underscores, URL-override fields, double encodings, a missing Host, malformed chunks,
/// `Expect: 100-continue`, protocol upgrades, and an upstream that switches protocols unasked.
let craftedYAML = """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 2s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 5s }
    routes:
      - match: "/paid/*"
        price: "$0.01"
      - match: "/free/*"
        free: true
    unmatched: deny
    """

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }
    var statusCode: Int? { text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } }
}

@Suite("Crafted requests (issue 14)", .timeLimit(.minutes(2)))
struct CraftedRequestTests {
    let payer = TestPayer()

    // MARK: Item 2 and 7: fields that must never reach the upstream

    @Test("names with underscores, X-Original-URL and X-Rewrite-URL never reach the upstream of a free route")
    func spoofedFieldsDroppedOnFreeRoutes() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let r = try await gw.get("/free/x", headers: [
                ("X_Payment_Payer", "0xdead"), ("X_Forwarded_For", "6.6.6.6"), ("x_real_ip", "6.6.6.6"),
                ("X-Original-URL", "/paid/x"), ("X-Rewrite-URL", "/paid/x"), ("X-Custom-Field", "kept"),
            ])
            #expect(r.status == 200)
            let seen = try #require(gw.upstream.requests.first)
            let names = seen.headers.map { $0.name.rawName.lowercased() }
            #expect(!names.contains { $0.contains("_") }, "\(names)")
            #expect(!names.contains("x-original-url") && !names.contains("x-rewrite-url"))
            #expect(!names.contains("x-payment-payer"))
            #expect(seen.headers[.init("X-Custom-Field")!] == "kept")
            #expect(seen.headers[.init("X-Forwarded-For")!] == "127.0.0.1")
        }
    }

    @Test("on a paid route the spoofed X_Payment_Payer is dropped and only the verified payer is sent")
    func spoofedPayerDroppedOnPaidRoutes() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, fac in
            let header = try await signedHeader(gw, "/paid/x", payer)
            let r = try await gw.get("/paid/x", headers: [
                ("X_Payment_Payer", "0xdead"), ("PAYMENT-SIGNATURE", header), ("X_Forwarded_For", "6.6.6.6"),
                ("X-Original-URL", "/free/x"),
            ])
            #expect(r.status == 200)
            #expect(fac.settleCalls == 1)
            let seen = try #require(gw.upstream.requests.first)
            let names = seen.headers.map { $0.name.rawName.lowercased() }
            #expect(!names.contains { $0.contains("_") }, "\(names)")
            #expect(!names.contains("x-original-url"))
            #expect(seen.headers[values: .init("X-Payment-Payer")!] == [payer.address])
        }
    }

    // MARK: Item 6: the gateway's receipt is the only one

    static let forgedReceipts = "h=PAYMENT-RESPONSE:%20forged&h=X-PAYMENT-RESPONSE:%20forged&h=PAYMENT-REQUIRED:%20forged"

    @Test("an upstream's PAYMENT-RESPONSE, X-PAYMENT-RESPONSE and PAYMENT-REQUIRED never reach the client of a free route")
    func upstreamReceiptsStrippedOnFreeRoutes() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let r = try await gw.get("/free/x?" + Self.forgedReceipts)
            #expect(r.status == 200)
            for name in ["PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE", "PAYMENT-REQUIRED"] { #expect(r.values(name).isEmpty, "\(name)") }
        }
    }

    @Test("on a priced route the gateway's own receipt is the only one")
    func upstreamReceiptsStrippedOnPricedRoutes() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, fac in
            let path = "/paid/x?" + Self.forgedReceipts
            let r = try await pay(gw, path, try await signedHeader(gw, path, payer))
            #expect(r.status == 200)
            #expect(fac.settleCalls == 1)
            let receipts = r.values("PAYMENT-RESPONSE")
            #expect(receipts.count == 1)
            let settlement = try HeaderCodec.decode(SettleResponse.self, from: try #require(receipts.first))
            #expect(settlement.success)
            #expect(r.values("X-PAYMENT-RESPONSE").isEmpty && r.values("PAYMENT-REQUIRED").isEmpty)
        }
    }

    // MARK: Item 7: targets and heads refused with 400

    @Test("double-encoded dot segments, slashes and encoded semicolons are refused before any upstream sees them", arguments: [
        "/free/%252e%252e/paid/x", "/free/..%3B/paid/x", "/free/..%3b/paid/x", "/free/a%252Fb", "/free/a%255cb",
        "/free/%25%32%65%25%32%65/paid/x",
    ])
    func doubleEncodingRefused(target: String) async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let r = try await gw.get(target)
            #expect(r.status == 400)
            #expect(r.bodyText.contains("bad_path"))
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("an HTTP/1.1 request without Host is refused with 400; HTTP/1.0 needs none")
    func missingHost() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let r = try await gw.send("GET /free/x HTTP/1.1\r\nConnection: close\r\n\r\n")
            #expect(r.status == 400)
            #expect(r.bodyText.contains("bad_host"))
            #expect(gw.upstream.count == 0)
            let old = try await gw.send("GET /free/x HTTP/1.0\r\n\r\n")
            #expect(old.status == 200)
        }
    }

    @Test("a malformed chunked body gets a 400 before the connection closes", arguments: ["/free/echo", "/paid/x"])
    func malformedChunkedBody(path: String) async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, fac in
            let socket = try RawSocket(port: gw.port)
            let payment = path.hasPrefix("/paid") ? "PAYMENT-SIGNATURE: \(try await signedHeader(gw, path, payer))\r\n" : ""
            try await socket.send("POST \(path) HTTP/1.1\r\nHost: gateway.test\r\n\(payment)Transfer-Encoding: chunked\r\n\r\n"
                        + "5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n")
            let (bytes, end) = try await socket.read()
            #expect(bytes.statusCode == 400, "\(bytes.text)")
            #expect(bytes.text.contains("bad_request"))
            #expect(end == .closed)
            #expect(fac.verifyCalls == 0)
        }
    }

    // MARK: Item 5: Expect: 100-continue

    @Test("Expect: 100-continue on a priced route without a payment: the 402 at once, the body never read, the connection closed")
    func expectContinueUnpaid() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("POST /paid/x HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
            let (bytes, end) = try await socket.read()
            #expect(bytes.statusCode == 402, "\(bytes.text)")
            #expect(bytes.text.lowercased().contains("connection: close"))
            #expect(end == .closed)
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("Expect: 100-continue on a free route: 100 Continue, then the body is streamed upstream and answered")
    func expectContinueFree() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("POST /free/echo HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                        + "Connection: close\r\n\r\n")
            let (interim, end) = try await socket.read(until: RawSocket.headEnd)
            #expect(end == .condition)
            #expect(interim.text == "HTTP/1.1 100 Continue\r\n\r\n")
            try await socket.send("hello")
            let (rest, restEnd) = try await socket.read()
            #expect(rest.statusCode == 200, "\(rest.text)")
            #expect(restEnd == .closed)
            #expect(gw.upstream.requests.first?.bodyBytes == 5)
            #expect(gw.upstream.requests.first?.headers[.init("Expect")!] == nil)
        }
    }

    @Test("Expect: 100-continue with a payment: 100 Continue, then the body is read and the payment served")
    func expectContinuePaid() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, fac in
            let header = try await signedHeader(gw, "/paid/x", payer)
            let socket = try RawSocket(port: gw.port)
            try await socket.send("POST /paid/x HTTP/1.1\r\nHost: gateway.test\r\nPAYMENT-SIGNATURE: \(header)\r\nContent-Length: 5\r\n"
                        + "Expect: 100-continue\r\nConnection: close\r\n\r\n")
            let (interim, end) = try await socket.read(until: RawSocket.headEnd)
            #expect(end == .condition)
            #expect(interim.text == "HTTP/1.1 100 Continue\r\n\r\n")
            try await socket.send("hello")
            let (rest, _) = try await socket.read()
            #expect(rest.statusCode == 200, "\(rest.text)")
            #expect(fac.settleCalls == 1)
            #expect(gw.upstream.requests.first?.bodyBytes == 5)
        }
    }

    @Test("an upload slower than the upstream timeout is not a 504: the head is due a timeout after the request's end")
    func slowUpload() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("POST /free/upload HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
            try await Task.sleep(for: .milliseconds(2500))  // the upstream's timeout is 2 s
            try await socket.send("world")
            let (bytes, _) = try await socket.read()
            #expect(bytes.statusCode == 200, "\(bytes.text)")
            #expect(gw.upstream.requests.first?.bodyBytes == 10)
        }
    }

    // MARK: Item 1: upgrades

    static func upgradeHead(_ path: String, upgrade: String = "websocket", extra: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\nUpgrade: \(upgrade)\r\n"
            + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\(extra)\r\n"
    }

    @Test("a WebSocket upgrade on a free route then 96 MiB, to an upstream that does not switch: its answer relayed, the close, memory flat")
    func upgradeOnFreeRoute() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let before = residentBytes()
            let socket = try RawSocket(port: gw.port)
            try await socket.send(Self.upgradeHead("/free/ws"))
            let junk = [UInt8](repeating: 0x42, count: 1 << 20)
            var sent = 0
            for _ in 0..<96 {
                guard try await socket.send(junk) else { break }
                sent += junk.count
            }
            let (bytes, end) = try await socket.read()
            let growth = residentBytes() - before
            // The handshake went upstream (WebSocketTunnel); this upstream answers 200, not 101.
            #expect(bytes.statusCode == 200, "\(bytes.text.prefix(200))")
            #expect(bytes.text.contains("/free/ws") && bytes.text.contains("Connection: close"))
            #expect(end == .closed)
            // The whole test process's RSS (other suites run alongside: 32 MiB was once exceeded by
            // 1 MiB of their noise): the bound catches the gateway keeping what was sent (96 MiB).
            #expect(growth < 48 << 20, "RSS grew by \(growth >> 20) MiB after \(sent >> 20) MiB were sent")
            #expect(gw.upstream.count == 1)
            let later = try await gw.get("/free/after")
            #expect(later.status == 200)
        }
    }

    @Test("an unpaid upgrade on a priced route gets the 402 and the connection closes; a paid one 501 with nothing verified")
    func upgradeOnPricedRoute() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, fac in
            let socket = try RawSocket(port: gw.port)
            try await socket.send(Self.upgradeHead("/paid/ws") + String(repeating: "x", count: 1 << 16))
            let (bytes, end) = try await socket.read()
            #expect(bytes.statusCode == 402)
            #expect(end == .closed)

            let header = try await signedHeader(gw, "/paid/ws", payer)
            let paid = try RawSocket(port: gw.port)
            try await paid.send(Self.upgradeHead("/paid/ws", extra: "PAYMENT-SIGNATURE: \(header)\r\n"))
            let (answer, paidEnd) = try await paid.read()
            #expect(answer.statusCode == 501)
            #expect(paidEnd == .closed)
            #expect(fac.verifyCalls == 0 && fac.settleCalls == 0)
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("CONNECT is refused and the connection closes")
    func connectRefused() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("CONNECT /free/x HTTP/1.1\r\nHost: gateway.test\r\n\r\n" + String(repeating: "x", count: 1 << 16))
            let (bytes, end) = try await socket.read()
            #expect(bytes.statusCode == 501)
            #expect(end == .closed)
        }
    }

    @Test("an h2c upgrade offer is ignored: served over HTTP/1.1 without the upgrade fields, then the connection closes")
    func h2cIgnored() async throws {
        try await TestHarness.withPaidGateway(yaml: craftedYAML) { gw, _ in
            let socket = try RawSocket(port: gw.port)
            try await socket.send("GET /free/h2c HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                        + "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
            let (bytes, end) = try await socket.read()
            #expect(bytes.statusCode == 200, "\(bytes.text)")
            #expect(bytes.text.lowercased().contains("connection: close"))
            #expect(end == .closed)
            let seen = try #require(gw.upstream.requests.first)
            #expect(seen.headers[.init("Upgrade")!] == nil && seen.headers[.init("HTTP2-Settings")!] == nil)
        }
    }

    // MARK: Item 4: an upstream switching protocols unasked

    @Test("an upstream 101 to a request that asked for no upgrade: 502, and that connection never goes back to the pool")
    func upstream101() async throws {
        let scripted = try ScriptedHTTPServer { request in
            request.uri.hasSuffix("/switch")
                ? .respond(status: 101, headers: [("Connection", "Upgrade"), ("Upgrade", "websocket")])
                : .json(#"{"ok":true}"#)
        }
        let port = try await scripted.start()
        let yaml = craftedYAML.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:\(port)")
        do {
            try await Self.expect101Refused(yaml: yaml, scripted: scripted)
        } catch {
            await scripted.stop()
            throw error
        }
        await scripted.stop()
    }

    /// Found by fuzzing (FuzzUpstreamResponse): an upstream `HTTP/1.1 000 …` (any three digits
    /// parse) was relayed as `HTTP/1.1 0`, which clients cannot read; 600–999 went out as they came.
    @Test("an upstream status outside 100–599: 502, and that connection never goes back to the pool", arguments: [999, 600])
    func upstreamInvalidStatus(status: Int) async throws {
        let scripted = try ScriptedHTTPServer { request in
            request.uri.hasSuffix("/odd") ? .respond(status: status, body: Array("odd".utf8)) : .json(#"{"ok":true}"#)
        }
        let port = try await scripted.start()
        let yaml = craftedYAML.replacingOccurrences(of: "{{UPSTREAM}}", with: "http://127.0.0.1:\(port)")
        do {
            try await TestHarness.withPaidGateway(yaml: yaml) { gw, _ in
                let responses = try await RawHTTP.exchange(
                    port: gw.port,
                    raw: "GET /free/odd HTTP/1.1\r\nHost: gateway.test\r\n\r\nGET /free/ok HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n")
                #expect(responses.map(\.status) == [502, 200])
                #expect(scripted.connectionCount == 2)
            }
        } catch {
            await scripted.stop()
            throw error
        }
        await scripted.stop()
    }

    static func expect101Refused(yaml: String, scripted: ScriptedHTTPServer) async throws {
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, _ in
            // Both on one client connection: the pool is per event loop, so the second request
            // would take the first one's upstream connection if it were returned.
            let responses = try await RawHTTP.exchange(
                port: gw.port,
                raw: "GET /free/switch HTTP/1.1\r\nHost: gateway.test\r\n\r\nGET /free/ok HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n")
            try #require(responses.map(\.status) == [502, 200])
            #expect(scripted.connectionCount == 2)
        }
    }
}

@Suite("Request and response field rules")
struct FieldRuleTests {
    @Test("request fields forwarded or dropped", arguments: [
        ("Accept", true), ("X-Custom", true), ("User-Agent", true),
        ("X_Payment_Payer", false), ("x_forwarded_for", false), ("_", false), ("Accept_Encoding", false),
        ("X-Payment-Payer", false), ("x-payment-payer", false), ("X-Original-URL", false), ("x-rewrite-url", false),
        ("PAYMENT-SIGNATURE", false), ("X-PAYMENT", false), ("Connection", false), ("Upgrade", false), ("Expect", false),
        ("X-Listed", false),
    ])
    func requestFields(name: String, forwarded: Bool) {
        #expect(ReverseProxy.forwardsRequestField(name, listed: ["x-listed"], payerHeader: "x-payment-payer") == forwarded)
    }

    @Test("an upstream status is relayed only inside 100–599", arguments: [
        (0, false), (99, false), (100, true), (101, true), (200, true), (404, true), (599, true), (600, false), (999, false),
    ])
    func relayableStatus(code: UInt, relayed: Bool) {
        #expect(ReverseProxy.isRelayableStatus(code) == relayed)
    }

    @Test("the gateway's receipt and challenge fields are dropped from an upstream head; other fields keep their order")
    func responseFields() {
        let upstream = HTTPHeaders([("Content-Type", "text/plain"), ("payment-response", "a"), ("X-PAYMENT-RESPONSE", "b"),
                                    ("Payment-Required", "c"), ("X-Kept", "d")])
        let kept = ReverseProxy.withoutGatewayOwnedResponseFields(upstream)
        #expect(kept.map(\.name) == ["Content-Type", "X-Kept"])
        let clean = HTTPHeaders([("Content-Type", "text/plain")])
        #expect(ReverseProxy.withoutGatewayOwnedResponseFields(clean) == clean)
    }

    static func head(_ fields: [(String, String)], method: HTTPMethod = .GET, version: HTTPVersion = .http1_1) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: "/", headers: HTTPHeaders(fields))
    }

    @Test("upgrade requests: h2c alone is ignored, anything else (and CONNECT) refused")
    func upgrades() {
        #expect(RequestRules.upgrade(Self.head([("Host", "a")])) == .notAsked)
        #expect(RequestRules.upgrade(Self.head([("Connection", "Upgrade"), ("Upgrade", "websocket")])) == .refused)
        #expect(RequestRules.upgrade(Self.head([("Upgrade", "WebSocket")])) == .refused)
        #expect(RequestRules.upgrade(Self.head([("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c")])) == .h2cOnly)
        #expect(RequestRules.upgrade(Self.head([("Upgrade", "h2c, websocket")])) == .refused)
        #expect(RequestRules.upgrade(Self.head([("Host", "a:443")], method: .CONNECT)) == .refused)
    }

    @Test("Expect: 100-continue counts for HTTP/1.1 requests announcing a body")
    func expectContinue() {
        #expect(RequestRules.expectsContinue(Self.head([("Expect", "100-continue"), ("Content-Length", "5")])))
        #expect(RequestRules.expectsContinue(Self.head([("expect", "100-Continue"), ("Transfer-Encoding", "chunked")])))
        #expect(!RequestRules.expectsContinue(Self.head([("Expect", "100-continue"), ("Content-Length", "0")])))
        #expect(!RequestRules.expectsContinue(Self.head([("Expect", "100-continue")])))
        #expect(!RequestRules.expectsContinue(Self.head([("Expect", "100-continue"), ("Content-Length", "5")], version: .http1_0)))
        #expect(!RequestRules.expectsContinue(Self.head([("Content-Length", "5")])))
    }
}

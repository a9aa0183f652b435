import Foundation
import Synchronization
import Gateway
import GatewayCore
import GatewayStorage
import GatewayTestSupport
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import X402

private let uptoYAML = """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 2s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 2s }
    routes:
      - match: "GET /upto/*"
        upto: "$0.01"
      - match: "GET /bytes/:n"
        upto: { max: "$0.01", perKiB: "$0.001" }
      - match: "GET /status/:code"
        upto: "$0.01"
      - match: "GET /exact/*"
        price: "$0.001"
      - match: "GET /p2/*"
        price: "$0.002"
        assetTransferMethod: permit2
    unmatched: pass
    """

/// `?h=…` that makes the recording upstream answer with `Settlement-Overrides: <json>`.
private func report(_ json: String) -> String {
    "h=" + "Settlement-Overrides: \(json)".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
}

/// The gateway with the fake facilitator: `upto` and `exact` through Permit2, signed by the test payer.
@Suite("upto and Permit2 through the gateway (fake facilitator)")
struct UptoGatewayTests {
    let payer = TestPayer()

    func payPermit2(_ gw: LiveGateway, _ target: String) async throws -> RawHTTPResponse {
        let path = String(target.split(separator: "?").first!)
        let accepted = try await offer(gw, path)
        let header = payer.header(accepted: accepted, payload: .permit2(payer.permit2(for: accepted, now: now)))
        return try await pay(gw, target, header)
    }

    @Test("the upto offer names the facilitator /supported announced, Permit2, and the maximum")
    func offerCarriesFacilitator() async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, _ in
            let accepted = try await offer(gw, "/upto/a")
            #expect(accepted.scheme == "upto" && accepted.amount == "10000")
            #expect(accepted.extra?["facilitatorAddress"] == .string(FakeFacilitator.address))
            #expect(accepted.extra?["assetTransferMethod"] == .string("permit2"))
        }
    }

    @Test("what the upstream reports is charged; a report the gateway cannot use falls back to the maximum; above it, capped",
          arguments: [
              (#"{"amount":"2500"}"#, "2500", "report"),
              (#"{"amount":2500}"#, "2500", "report"),
              (#"{"amount":"12.5%"}"#, "1250", "report"),
              (#"{"amount":"$0.0042"}"#, "4200", "report"),
              (#"{"amount":"$0.00420099"}"#, "4200", "report"),  // cut to the asset's decimals, as the SDK does
              (#"{"amount":"100","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e"}"#, "100", "report"),
              (#"{"amount":"50000"}"#, "10000", "report_capped"),
              (#"{"amount":"150%"}"#, "10000", "report_capped"),
              (#"{"amount":"lots"}"#, "10000", "maximum"),
              (#"{"amount":"-5"}"#, "10000", "maximum"),
              (#"{"amount":"1e3"}"#, "10000", "maximum"),
              (#"{"amount":"100","asset":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8"}"#, "10000", "maximum"),
              (#"{"amount":"100","network":"eip155:8453"}"#, "10000", "maximum"),
              (#"{"total":"100"}"#, "10000", "maximum"),
              (#"100"#, "10000", "maximum"),
              ("", "10000", "maximum"),
          ])
    func charges(header: String, charged: String, basis: String) async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, fac in
            let target = header.isEmpty ? "/upto/a" : "/upto/a?\(report(header))"
            let r = try await payPermit2(gw, target)
            #expect(r.status == 200)
            #expect(r.header("Settlement-Overrides") == nil)
            #expect(fac.settledAmounts == [charged])
            let settlement = try HeaderCodec.decode(SettleResponse.self, from: try #require(r.header("PAYMENT-RESPONSE")))
            #expect(settlement.success && settlement.amount == charged)
            let row = try #require(try await gw.payments(PaymentQuery()).first)
            #expect(row.offer.amount == "10000" && row.chargedAmount == charged && row.chargeBasis == basis)
            #expect(row.offer.transferMethod == "permit2" && row.state == .settled)
        }
    }

    @Test("a charge of zero calls no settlement: no transaction, the claim spent all the same")
    func zero() async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, fac in
            let accepted = try await offer(gw, "/upto/z")
            let header = payer.header(accepted: accepted, payload: .permit2(payer.permit2(for: accepted, now: now)))
            let r = try await pay(gw, "/upto/z?\(report(#"{"amount":"0"}"#))", header)
            #expect(r.status == 200)
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 0)
            let settlement = try HeaderCodec.decode(SettleResponse.self, from: try #require(r.header("PAYMENT-RESPONSE")))
            #expect(settlement.success && settlement.transaction == "" && settlement.amount == "0")
            let row = try #require(try await gw.payments(PaymentQuery()).first)
            #expect(row.state == .settled && row.chargedAmount == "0" && row.transaction == "")
            // The same payment again is a replay, even though nothing moved on chain.
            let again = try await pay(gw, "/upto/z", header)
            #expect(again.status == 402 && fac.verifyCalls == 1)
        }
    }

    @Test("the per-KiB rule charges the body relayed, pro rata, rounded down, capped at the maximum",
          arguments: [(2048, "2000"), (100, "97"), (1, "0"), (65536, "10000")])
    func perKiB(size: Int, charged: String) async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, fac in
            let r = try await payPermit2(gw, "/bytes/\(size)")
            #expect(r.status == 200 && r.body.count == size)
            #expect(fac.settledAmounts == (charged == "0" ? [] : [charged]))
        }
    }

    @Test("an upstream error under upto is relayed unsettled: nothing charged, nothing recorded as charged")
    func upstreamError() async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, fac in
            let r = try await payPermit2(gw, "/status/500")
            #expect(r.status == 500)
            #expect(fac.verifyCalls == 1 && fac.settleCalls == 0)
            let row = try #require(try await gw.payments(PaymentQuery()).first)
            #expect(row.state == .released && row.chargedAmount == nil)
        }
    }

    @Test("an upstream's Settlement-Overrides on an exact route is stripped and ignored: the price is charged")
    func overrideOnExactRoute() async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, fac in
            let r = try await pay(gw, "/exact/a?\(report(#"{"amount":"1"}"#))", try await signedHeader(gw, "/exact/a", payer))
            #expect(r.status == 200 && r.header("Settlement-Overrides") == nil)
            #expect(fac.settledAmounts == ["1000"])
            // …and on a free path (unmatched: pass) too.
            let free = try await gw.get("/free?\(report(#"{"amount":"1"}"#))")
            #expect(free.status == 200 && free.header("Settlement-Overrides") == nil)
        }
    }

    @Test("exact through Permit2 settles the price; an EIP-3009 payment for it is refused before the facilitator")
    func exactPermit2() async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, fac in
            let r = try await payPermit2(gw, "/p2/a")
            #expect(r.status == 200 && fac.settledAmounts == ["2000"])
            let accepted = try await offer(gw, "/p2/b")
            let eip3009 = try await pay(gw, "/p2/b", payer.header(accepted: accepted, payload: payer.authorization(for: accepted, now: now)))
            #expect(eip3009.status == 402 && fac.verifyCalls == 1)
            let error = try HeaderCodec.decode(PaymentRequired.self, from: try #require(eip3009.header("PAYMENT-REQUIRED"))).error
            #expect(error == "invalid_asset_transfer_method")
        }
    }

    @Test("a facilitator that wants a Permit2 approval first is answered 412 PERMIT2_ALLOWANCE_REQUIRED, with the offer")
    func allowanceRequired() async throws {
        try await TestHarness.withPaidGateway(yaml: uptoYAML) { gw, fac in
            fac.setFault(.verifyRefuses("permit2_allowance_required"))
            let accepted = try await offer(gw, "/p2/a")
            let header = payer.header(accepted: accepted, payload: .permit2(payer.permit2(for: accepted, now: now)))
            let r = try await pay(gw, "/p2/a", header)
            #expect(r.status == 412)
            #expect(r.bodyText.contains(#""error":"PERMIT2_ALLOWANCE_REQUIRED""#))
            #expect(r.bodyText.contains(Permit2Contracts.permit2))
            let challenge = try HeaderCodec.decode(PaymentRequired.self, from: try #require(r.header("PAYMENT-REQUIRED")))
            #expect(challenge.accepts.first?.extra?["assetTransferMethod"] == .string("permit2"))
            #expect(fac.settleCalls == 0 && gw.upstream.count == 0)
            #expect(try await gw.payments(PaymentQuery()).first?.state == .refused)
            // Refused, not spent: once approved, the same payment goes through.
            fac.setFault(.none)
            let again = try await pay(gw, "/p2/a", header)
            #expect(again.status == 200 && fac.settledAmounts == ["2000"])
        }
    }
}

private let streamedYAML = """
    listen: 127.0.0.1:0
    payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    network: eip155:84532
    facilitator: { url: "{{FACILITATOR}}", timeout: 8s }
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 2s }
    routes:
      - match: "GET /chunked/:n"
        upto: { max: "$0.01", perKiB: "$0.001", holdBack: 1KiB }
      - match: "GET /bytes/:n"
        upto: { max: "$0.01", perKiB: "$0.001", holdBack: 0 }
    unmatched: pass
    """

/// Streamed `upto` (`holdBack`): the answer goes out as it comes but for its last bytes, which wait
/// for the settlement at the end; the receipt follows as a trailer. The facilitator's timeout is far
/// above the slow settlements these tests make (1.5 s): on a loaded machine a settlement that missed
/// it would be an unknown outcome and the stream cut short, which is right but not what is tested.
@Suite("upto streamed with a hold-back (fake facilitator)")
struct UptoStreamTests {
    let payer = TestPayer()

    func header(_ gw: LiveGateway, _ path: String) async throws -> String {
        let accepted = try await offer(gw, path)
        return payer.header(accepted: accepted, payload: .permit2(payer.permit2(for: accepted, now: now)))
    }

    @Test("settled: the whole body, chunked, then PAYMENT-RESPONSE as a trailer; charged for what was counted",
          arguments: [("/chunked/4096", 4096, "4000"), ("/bytes/200000", 200_000, "10000"), ("/chunked/100", 100, "97")])
    func settled(path: String, size: Int, charged: String) async throws {
        try await TestHarness.withPaidGateway(yaml: streamedYAML) { gw, fac in
            let r = try await pay(gw, path, try await header(gw, path))
            #expect(r.status == 200)
            #expect(r.header("Transfer-Encoding") == "chunked" && r.header("Content-Length") == nil)
            #expect(r.header("Trailer") == "PAYMENT-RESPONSE" && r.header("Cache-Control") == "private, no-store")
            #expect(r.chunkedComplete && r.body.count == size)
            let settlement = try HeaderCodec.decode(SettleResponse.self, from: try #require(r.trailer("PAYMENT-RESPONSE")))
            #expect(settlement.success && settlement.amount == charged)
            #expect(fac.settledAmounts == [charged])
            let row = try #require(try await gw.payments(PaymentQuery()).first)
            #expect(row.state == .settled && row.chargedAmount == charged && row.chargeBasis?.hasPrefix("per_kib") == true)
        }
    }

    @Test("the body is relayed before the settlement: all but the hold-back arrives while /settle is still running")
    func relayedBeforeSettlement() async throws {
        try await TestHarness.withPaidGateway(yaml: streamedYAML) { gw, fac in
            fac.setFault(.settleSlow(milliseconds: 1500))
            let header = try await header(gw, "/chunked/8192")
            let started = ContinuousClock.now
            let released = Mutex<Duration?>(nil)
            let raw = "GET /chunked/8192 HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\nPAYMENT-SIGNATURE: \(header)\r\n\r\n"
            let r = try await RawHTTP.send(port: gw.port, raw: raw) { count in
                // Chunk framing included: past 7 KiB of raw body, the released part (8 KiB − 1 KiB) is in.
                if count >= 7 * 1024 { released.withLock { $0 = $0 ?? (ContinuousClock.now - started) } }
            }
            let total = ContinuousClock.now - started
            #expect(r.chunkedComplete && r.body.count == 8192)
            let early = try #require(released.withLock { $0 })
            #expect(total - early >= .milliseconds(1000), "released at \(early), answer ended at \(total)")
            #expect(fac.settledAmounts == ["8000"])
        }
    }

    /// An upstream that sends its head and 1 KiB at once, then, `pause` later, 3 KiB and the end of
    /// the chunked body in one write: what arrives after the relay started ends in the same read.
    final class LateTailUpstream: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = ByteBuffer

        static func chunk(_ byte: Character, _ count: Int) -> String {
            String(count, radix: 16) + "\r\n" + String(repeating: byte, count: count) + "\r\n"
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let first = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + Self.chunk("a", 1024)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: first)), promise: nil)
            let loop = context.eventLoop.assumeIsolated()
            loop.scheduleTask(in: .milliseconds(300)) {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: Self.chunk("b", 3072) + "0\r\n\r\n")), promise: nil)
            }
        }
    }

    @Test("relayed body parts that arrive with the upstream's end are flushed at once, not when the settlement ends")
    func lastReadFlushed() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
                    try channel.pipeline.syncOperations.addHandler(LateTailUpstream())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let yaml = streamedYAML.replacingOccurrences(of: "api: { url: \"{{UPSTREAM}}\"", with: "api: { url: \"http://127.0.0.1:\(server.localAddress!.port!)\"")
        try await TestHarness.withPaidGateway(yaml: yaml) { gw, fac in
            fac.setFault(.settleSlow(milliseconds: 1500))
            let header = try await header(gw, "/chunked/late")
            let started = ContinuousClock.now
            let released = Mutex<Duration?>(nil)
            let raw = "GET /chunked/late HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\nPAYMENT-SIGNATURE: \(header)\r\n\r\n"
            let r = try await RawHTTP.send(port: gw.port, raw: raw) { count in
                // Chunk framing included: past 3 KiB, the released part (4 KiB − the 1 KiB hold-back) is in.
                if count >= 3 * 1024 { released.withLock { $0 = $0 ?? (ContinuousClock.now - started) } }
            }
            let total = ContinuousClock.now - started
            #expect(r.chunkedComplete && r.body.count == 4096)
            let early = try #require(released.withLock { $0 })
            #expect(total - early >= .milliseconds(1000), "released at \(early), answer ended at \(total)")
            #expect(fac.settledAmounts == ["4000"])
        }
    }

    @Test("a refused settlement: the held-back tail is never sent and the connection closes mid-body")
    func refused() async throws {
        try await TestHarness.withPaidGateway(yaml: streamedYAML) { gw, fac in
            fac.setFault(.settleRefuses("invalid_upto_evm_transaction_failed"))
            let r = try await pay(gw, "/chunked/4096", try await header(gw, "/chunked/4096"))
            #expect(r.status == 200)
            #expect(!r.chunkedComplete)
            #expect(r.body.count == 4096 - 1024)  // everything but the hold-back
            #expect(r.trailer("PAYMENT-RESPONSE") == nil)
            #expect(try await gw.payments(PaymentQuery()).first?.state == .refused)
        }
    }

    @Test("an upstream that dies mid-stream is not charged")
    func upstreamDies() async throws {
        try await TestHarness.withPaidGateway(yaml: streamedYAML.replacingOccurrences(of: "/chunked/:n", with: "/abort/:n")) { gw, fac in
            let r = try await pay(gw, "/abort/4096", try await header(gw, "/abort/4096"))
            #expect(!r.chunkedComplete)
            #expect(fac.settleCalls == 0)
            #expect(try await gw.payments(PaymentQuery()).first?.state == .released)
        }
    }
}

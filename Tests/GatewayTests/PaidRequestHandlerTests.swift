import Foundation
import Gateway
import GatewayCore
import GatewayStorage
import GatewayTestSupport
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import X402
import X402Facilitator

/// The paid flow's async shell without sockets: a facilitator, an upstream hop and a replay guard
/// (the in-memory store) all in process, so each outcome is decided by the handler alone and every
/// call it makes is counted.
@Suite("Paid request handler without sockets", .timeLimit(.minutes(1)))
struct PaidRequestHandlerTests {
    static let yaml = """
        listen: 127.0.0.1:0
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        facilitator: { url: "http://127.0.0.1:9", timeout: 3s }
        upstreams:
          api: { url: "http://127.0.0.1:9", timeout: 2s }
        routes:
          - match: "GET /paid/*"
            price: "$0.01"
          - match: "GET /first/*"
            price: "$0.01"
            settlement: before
          - match: "GET /once/*"
            price: "$0.01"
            paymentIdentifier: required
        unmatched: deny
        """

    /// A facilitator in process: answers as told, counts calls.
    final class ScriptedFacilitator: Facilitator {
        struct Script {
            var verify: Result<Bool, FacilitatorFailure> = .success(true)
            var settle: Result<Bool, FacilitatorFailure> = .success(true)
            var verifyCalls = 0
            var settleCalls = 0
        }

        let payer: String
        let script = Mutex(Script())
        init(payer: String) { self.payer = payer }

        var verifyCalls: Int { script.withLock { $0.verifyCalls } }
        var settleCalls: Int { script.withLock { $0.settleCalls } }

        func verify(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> VerifyResponse {
            let answer = script.withLock { script in
                script.verifyCalls += 1
                return script.verify
            }
            switch answer {
            case .success(true): return VerifyResponse(isValid: true, payer: payer)
            case .success(false): return VerifyResponse(isValid: false, invalidReason: "insufficient_funds", payer: payer)
            case .failure(let failure): throw failure
            }
        }

        func settle(version: Int, paymentPayload: [UInt8], requirements: [UInt8]) async throws(FacilitatorFailure) -> SettleResponse {
            let answer = script.withLock { script in
                script.settleCalls += 1
                return script.settle
            }
            switch answer {
            case .success(true): return SettleResponse(success: true, payer: payer, transaction: "0xfeed", network: "eip155:84532")
            case .success(false):
                return SettleResponse(success: false, errorReason: "insufficient_funds", transaction: "", network: "eip155:84532")
            case .failure(let failure): throw failure
            }
        }

        func supported() async throws(FacilitatorFailure) -> SupportedResponse { throw .unreachable("not asked in these tests") }
    }

    /// An upstream hop in process: answers `status` with `body`, or fails; counts requests.
    final class ScriptedHop: UpstreamHop {
        struct Script {
            var status: HTTPResponseStatus = .ok
            var failure: ReverseProxy.Failure?
            var sent: [HTTPRequestHead] = []
            var forwardedPayer: [String] = []
        }

        let script = Mutex(Script())
        var sent: Int { script.withLock { $0.sent.count } }

        func send(_ head: HTTPRequestHead, path: CanonicalPath, to upstream: Upstream, forwarding: ReverseProxy.Forwarding,
                  body: ByteBuffer?) async throws(ReverseProxy.Failure) -> HTTPResponseHead {
            let (status, failure) = script.withLock { script in
                script.sent.append(head)
                script.forwardedPayer += forwarding.extraHeaders.filter { $0.0 == "X-Payment-Payer" }.map(\.1)
                return (script.status, script.failure)
            }
            if let failure { throw failure }
            return HTTPResponseHead(version: .http1_1, status: status, headers: ["Content-Type": "text/plain", "Content-Length": "5"])
        }

        func collect(upTo limit: Int) async throws(ReverseProxy.Failure) -> ByteBuffer { ByteBuffer(string: "hello") }

        func relay(status: HTTPResponseStatus, headers: HTTPHeaders, holdingBack limit: Int) async throws(ReverseProxy.Failure)
            -> StreamedBody
        {
            throw .unavailable("not a streamed route")
        }
    }

    final class ClientGone: Sendable {
        private let gone = Atomic<Bool>(false)
        func leave() { gone.store(true, ordering: .sequentiallyConsistent) }
        var isGone: Bool { gone.load(ordering: .sequentiallyConsistent) }
    }

    static let logger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()

    /// One handler, its store, facilitator and hop, and the means to send it a paid request.
    struct Rig {
        let config: GatewayConfig
        let snapshot: GatewaySnapshot
        let handler: PaidRequestHandler
        let store = InMemoryPaymentStore()
        let facilitator: ScriptedFacilitator
        let hop = ScriptedHop()
        let payer = TestPayer()
        let gone = ClientGone()

        init() throws {
            config = try ConfigLoader.parse(yaml: PaidRequestHandlerTests.yaml, file: "t.yaml", environment: [:])
            facilitator = ScriptedFacilitator(payer: payer.address)
            let metrics = GatewayMetrics()
            let api = try #require(config.upstreams["api"])
            snapshot = GatewaySnapshot(
                config: config, upstreams: ["api": Upstream(config: api, connections: UpstreamConnections(config: api))],
                facilitator: facilitator, metrics: metrics,
                limiter: RequestLimiter(store: nil, maxKeys: 100, metrics: metrics, logger: PaidRequestHandlerTests.logger))
            handler = PaidRequestHandler(store: store, metrics: metrics, clock: { UInt64(Date().timeIntervalSince1970) })
        }

        /// A fresh payment header for the route at `routeIndex` (with a payment-identifier id when given).
        func payment(routeIndex: Int = 0, id: String? = nil) -> String {
            let offer = CompiledRoute(config: config.routes[routeIndex]).offers[0].offer.requirements
            return payer.header(accepted: offer, payload: payer.authorization(for: offer, now: UInt64(Date().timeIntervalSince1970)),
                                extensions: id.map { TestPayer.identifier($0) })
        }

        func send(_ header: String, target: String = "/paid/x", routeIndex: Int = 0) async throws -> (PaidResult, RequestOutcome) {
            let route = CompiledRoute(config: config.routes[routeIndex])
            let gone = self.gone
            let context = PaidRequestHandler.Context(
                head: HTTPRequestHead(version: .http1_1, method: .GET, uri: target), body: nil,
                path: try CanonicalPath.parse(target: target), route: route, counters: RouteMetrics(route: route.config.id),
                resourceURL: "http://gateway.test" + target, snapshot: snapshot,
                forwarding: ReverseProxy.Forwarding(clientAddress: "127.0.0.1", clientIsTrustedProxy: false, requestHost: "gateway.test",
                                                    payerHeader: "X-Payment-Payer"),
                paywall: nil, logger: PaidRequestHandlerTests.logger, requestID: "r-1", clientGone: { gone.isGone }, hop: hop,
                routeIndex: routeIndex)
            return await handler.respond(context, header: header, headerVersion: 2)
        }

        /// The payment's ledger row, once the steps written behind the answer have landed.
        func row() async throws -> PaymentRecord? {
            await handler.ledgerWrites.drain()
            return try await store.payments(PaymentQuery()).first
        }
    }

    static func status(_ result: PaidResult) -> Int {
        switch result {
        case .answer(let answer): Int(answer.status.code)
        case .upstream(let status, _, _, _): Int(status.code)
        case .streamed: -1
        }
    }

    static func field(_ result: PaidResult, _ name: String) -> String? {
        switch result {
        case .answer(let answer): answer.headers.first(name: name)
        case .upstream(_, let headers, let extra, _): headers.first(name: name) ?? extra.first { $0.0.lowercased() == name.lowercased() }?.1
        case .streamed: nil
        }
    }

    static func body(_ result: PaidResult) -> String {
        switch result {
        case .answer(let answer): answer.body.map { String(buffer: $0) } ?? ""
        case .upstream(_, _, _, .buffered(let buffer)): String(buffer: buffer)
        default: ""
        }
    }

    @Test("after-success: verified, forwarded with the verified payer, settled, delivered with its receipt; the same payment again is refused before any call")
    func paidThenReplayed() async throws {
        let rig = try Rig()
        let header = rig.payment()
        let (result, outcome) = try await rig.send(header)
        #expect(outcome == .paid && Self.status(result) == 200)
        #expect(Self.body(result) == "hello")
        #expect(Self.field(result, "PAYMENT-RESPONSE") != nil)
        #expect(rig.hop.script.withLock { $0.forwardedPayer } == [rig.payer.address])
        #expect(rig.facilitator.verifyCalls == 1 && rig.facilitator.settleCalls == 1)
        #expect(try await rig.row()?.state == .settled)

        let (again, againOutcome) = try await rig.send(header)
        #expect(againOutcome == .refused && Self.status(again) == 402)
        #expect(Self.field(again, "PAYMENT-REQUIRED") != nil)
        #expect(rig.hop.sent == 1 && rig.facilitator.verifyCalls == 1 && rig.facilitator.settleCalls == 1)
    }

    @Test("an upstream status ≥ 400 is relayed unsettled, the claim released: the same payment then buys a working answer")
    func upstreamErrorReleases() async throws {
        let rig = try Rig()
        rig.hop.script.withLock { $0.status = .internalServerError }
        let header = rig.payment()
        let (result, outcome) = try await rig.send(header)
        #expect(outcome == .unsettled && Self.status(result) == 500)
        #expect(Self.field(result, "PAYMENT-RESPONSE") == nil)
        #expect(rig.facilitator.settleCalls == 0)
        #expect(try await rig.row()?.state == .released)
        rig.hop.script.withLock { $0.status = .ok }
        let (paid, _) = try await rig.send(header)
        #expect(Self.status(paid) == 200 && rig.facilitator.settleCalls == 1)
    }

    @Test("the facilitator's verify failing or refusing: nothing forwarded, nothing settled, 502/504 or a 402 with its reason",
          arguments: [(Result<Bool, FacilitatorFailure>.failure(.unreachable("down")), 502),
                      (.failure(.timeout), 504),
                      (.success(false), 402)])
    func verifyFaults(_ verify: Result<Bool, FacilitatorFailure>, expected: Int) async throws {
        let rig = try Rig()
        rig.facilitator.script.withLock { $0.verify = verify }
        let (result, _) = try await rig.send(rig.payment())
        #expect(Self.status(result) == expected)
        #expect(rig.hop.sent == 0 && rig.facilitator.settleCalls == 0)
        let row = try #require(try await rig.row())
        #expect(row.state == (expected == 402 ? .refused : .released))
    }

    @Test("a settlement without an answer: 502/504 saying the outcome is unknown, never a fresh 402, also for the same payment again",
          arguments: [FacilitatorFailure.timeout, .httpStatus(500)])
    func settleUnknown(_ failure: FacilitatorFailure) async throws {
        let rig = try Rig()
        rig.facilitator.script.withLock { $0.settle = .failure(failure) }
        let header = rig.payment()
        let (result, _) = try await rig.send(header)
        #expect(Self.status(result) == (failure == .timeout ? 504 : 502))
        #expect(Self.body(result).contains("outcome is unknown"))
        #expect(Self.field(result, "PAYMENT-REQUIRED") == nil)
        #expect(try await rig.row()?.state == .unknown)
        let (retry, _) = try await rig.send(header)
        #expect(Self.status(retry) >= 500, "a retry of an unknown outcome is never invited to pay afresh")
    }

    @Test("a refused settlement withholds the content: 402 with the refusal in PAYMENT-RESPONSE, the upstream body not sent")
    func settleRefused() async throws {
        let rig = try Rig()
        rig.facilitator.script.withLock { $0.settle = .success(false) }
        let (result, outcome) = try await rig.send(rig.payment())
        #expect(outcome == .settlementFailed && Self.status(result) == 402)
        #expect(Self.field(result, "PAYMENT-RESPONSE") != nil)
        #expect(!Self.body(result).contains("hello"))
        #expect(try await rig.row()?.state == .refused)
    }

    @Test("an upstream that fails or times out: 502/504, nothing settled", arguments: [ReverseProxy.Failure.timeout, .unavailable("reset")])
    func upstreamFails(_ failure: ReverseProxy.Failure) async throws {
        let rig = try Rig()
        rig.hop.script.withLock { $0.failure = failure }
        let (result, _) = try await rig.send(rig.payment())
        #expect(Self.status(result) == (failure == .timeout ? 504 : 502))
        #expect(rig.facilitator.settleCalls == 0)
        #expect(try await rig.row()?.state == .released)
    }

    @Test("a client gone before the settlement is not charged: no /settle, the claim released")
    func clientGone() async throws {
        let rig = try Rig()
        rig.gone.leave()
        let (_, outcome) = try await rig.send(rig.payment())
        #expect(outcome == .clientGone)
        #expect(rig.hop.sent == 1 && rig.facilitator.settleCalls == 0)
        #expect(try await rig.row()?.state == .released)
    }

    @Test("settlement: before settles first, then forwards; an upstream failure after it says the payment was settled, with the receipt")
    func beforePolicy() async throws {
        let rig = try Rig()
        rig.hop.script.withLock { $0.failure = .unavailable("down") }
        let (result, _) = try await rig.send(rig.payment(routeIndex: 1), target: "/first/x", routeIndex: 1)
        #expect(rig.facilitator.settleCalls == 1 && rig.hop.sent == 1)
        #expect(Self.status(result) == 502)
        #expect(Self.body(result).contains("was settled"))
        #expect(Self.field(result, "PAYMENT-RESPONSE") != nil)
        #expect(try await rig.row()?.state == .settled)
    }

    @Test("payment-identifier: the same id and payment again get the stored answer with no second call; another payment with the id gets 409; none on a route that requires one gets 400")
    func identifierReplay() async throws {
        let rig = try Rig()
        let id = "pay_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let header = rig.payment(routeIndex: 2, id: id)
        let (first, outcome) = try await rig.send(header, target: "/once/x", routeIndex: 2)
        #expect(outcome == .paid && Self.status(first) == 200)
        let (again, againOutcome) = try await rig.send(header, target: "/once/x", routeIndex: 2)
        #expect(againOutcome == .replayed && Self.status(again) == 200 && Self.body(again) == "hello")
        #expect(Self.field(again, "PAYMENT-RESPONSE") == Self.field(first, "PAYMENT-RESPONSE"))
        #expect(rig.hop.sent == 1 && rig.facilitator.verifyCalls == 1 && rig.facilitator.settleCalls == 1)
        let (other, _) = try await rig.send(rig.payment(routeIndex: 2, id: id), target: "/once/x", routeIndex: 2)
        #expect(Self.status(other) == 409)
        let (missing, _) = try await rig.send(rig.payment(routeIndex: 2), target: "/once/x", routeIndex: 2)
        #expect(Self.status(missing) == 400)
        #expect(rig.hop.sent == 1 && rig.facilitator.verifyCalls == 1)
        #expect(try await rig.row()?.paymentIdentifier == id)
    }

    @Test("a payment for another route's offer, or malformed, is refused with the route's 402 before any call")
    func mismatched() async throws {
        let rig = try Rig()
        let (garbled, _) = try await rig.send("not-base64!")
        #expect(Self.status(garbled) == 402)
        let cheap = CompiledRoute(config: rig.config.routes[0]).offers[0].offer.requirements
        let underpaid = rig.payer.header(
            accepted: cheap, payload: rig.payer.authorization(for: cheap, now: UInt64(Date().timeIntervalSince1970), value: "1"))
        let (result, _) = try await rig.send(underpaid)
        #expect(Self.status(result) == 402)
        #expect(rig.facilitator.verifyCalls == 0 && rig.hop.sent == 0)
        #expect(try await rig.row() == nil)
    }
}

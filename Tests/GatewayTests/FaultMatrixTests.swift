import FixtureEditing
import Foundation
import Gateway
import GatewayStorage
import GatewayTestSupport
import Testing

/// Faults of docs/reliability.md's fault matrix that no other test set up, over real sockets, with
/// the ledger row read after each: settlement faults on a `settlement: before` route, an upstream
/// reset mid-body under `after-success`, and a client gone while `/settle` runs.
@Suite("Fault matrix gaps", .timeLimit(.minutes(2)))
struct FaultMatrixTests {
    static let yaml = paidYAML.replacingOccurrences(of: "unmatched: pass", with: """
          - match: "GET /abort/:n"
            price: "$0.01"
        unmatched: pass
        """)

    /// The ledger's rows, newest first.
    static func rows(_ gw: LiveGateway) async throws -> [PaymentRecord] {
        try await gw.payments(PaymentQuery(limit: 10))
    }

    @Test("settlement: before with /settle failing (500, timeout) or refusing: the upstream is never called, nothing delivered",
          arguments: [FakeFacilitator.Fault.settleStatus(500), .settleSlow(milliseconds: 4000), .settleRefuses("insufficient_funds")])
    func beforeRouteSettleFaults(_ fault: FakeFacilitator.Fault) async throws {
        #expect(Self.yaml.contains("GET /abort/:n"))
        try await TestHarness.withPaidGateway(yaml: Self.yaml) { gw, fac in
            fac.setFault(fault)
            let r = try await pay(gw, "/bytes/10", try await signedHeader(gw, "/bytes/10", TestPayer()))
            #expect(gw.upstream.count == 0, "under before the upstream waits for the settlement")
            #expect(fac.settleCalls == 1)
            let row = try #require(try await Self.rows(gw).first)
            if case .settleRefuses = fault {
                #expect(r.status == 402)
                #expect(r.header("PAYMENT-RESPONSE") != nil)
                #expect(row.state == .refused)
            } else {
                #expect(r.status == (fault == .settleStatus(500) ? 502 : 504))
                #expect(r.bodyText.contains("outcome is unknown"), "\(r.bodyText)")
                #expect(r.header("PAYMENT-REQUIRED") == nil, "never a fresh 402 for an unknown outcome")
                #expect(row.state == .unknown)
            }
        }
    }

    @Test("after-success with an upstream that drops mid-body: 502, nothing settled, the payment still buys the next request")
    func afterSuccessUpstreamReset() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.yaml) { gw, fac in
            let header = try await signedHeader(gw, "/abort/1000", TestPayer())
            let r = try await pay(gw, "/abort/1000", header)
            #expect(r.status == 502)
            #expect(r.bodyText.contains("upstream_unavailable"))
            #expect(r.header("PAYMENT-RESPONSE") == nil)
            #expect(fac.settleCalls == 0)
            #expect(try await Self.rows(gw).first?.state == .released)
            // The claim was let go: the same authorization, priced alike, buys a working route.
            let next = try await pay(gw, "/paid/x", header)
            #expect(next.status == 200)
            #expect(fac.settledCount == 1)
        }
    }

    @Test("a client gone while /settle runs is charged and the row says settled: the settlement is not cancelled")
    func clientGoneDuringSettle() async throws {
        try await TestHarness.withPaidGateway(yaml: Self.yaml) { gw, fac in
            fac.setFault(.settleSlow(milliseconds: 800))
            let header = try await signedHeader(gw, "/paid/x", TestPayer())
            let socket = try RawSocket(port: gw.port)
            try await socket.send("GET /paid/x HTTP/1.1\r\nHost: gw\r\nPAYMENT-SIGNATURE: \(header)\r\n\r\n")
            let deadline = ContinuousClock.now + .seconds(10)
            while fac.settleCalls == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(fac.settleCalls == 1)
            _ = consume socket  // the client leaves while /settle is in flight
            while try await Self.rows(gw).first?.state != .settled, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(fac.settledCount == 1)
            #expect(try await Self.rows(gw).first?.state == .settled)
            // Spent: the same payment is not served again.
            #expect(try await pay(gw, "/paid/x", header).status == 402)
        }
    }
}

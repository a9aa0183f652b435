import Foundation
import Gateway
import GatewayStorage
import GatewayTestSupport
import Synchronization
import Testing

/// A paid answer does not wait for its `settled` step to be written (the row is `settling` on disk
/// before `/settle`): over real sockets, with a store whose `settled` writes wait for a gate or fail.
@Suite("The settled step written behind the answer", .timeLimit(.minutes(2)))
struct SettledWriteBehindTests {
    /// The in-memory store, except that a change ending in `settled` waits until `open()` (or
    /// fails, with `failing`).
    final class GatedStore: PaymentStore {
        let inner = InMemoryPaymentStore()
        let failing: Bool
        private let gate: AsyncStream<Void>
        private let opener: AsyncStream<Void>.Continuation
        private let waiting = Atomic<Int>(0)

        init(failing: Bool = false) {
            self.failing = failing
            (gate, opener) = AsyncStream<Void>.makeStream()
        }

        func open() { opener.finish() }
        var settledWritesWaiting: Int { waiting.load(ordering: .sequentiallyConsistent) }

        func record(_ ticket: ClaimTicket, _ steps: [PaymentStep]) async throws {
            if steps.last?.transition.target == .settled {
                waiting.add(1, ordering: .sequentiallyConsistent)
                for await _ in gate {}
                waiting.subtract(1, ordering: .sequentiallyConsistent)
                if failing { throw StorageError(.unavailable, "the disk is gone") }
            }
            try await inner.record(ticket, steps)
        }

        var instanceID: String { inner.instanceID }
        var kind: String { inner.kind }
        func claim(_ request: ClaimRequest) async throws -> ClaimResult { try await inner.claim(request) }
        func now() -> Int64 { inner.now() }
        func reconcile(_ key: PaymentKey, attempt: Int, _ outcome: ReconciledOutcome) async throws -> Bool {
            try await inner.reconcile(key, attempt: attempt, outcome)
        }
        func payments(_ query: PaymentQuery) async throws -> [PaymentRecord] { try await inner.payments(query) }
        func revenue(_ query: RevenueQuery) async throws -> RevenueSummary { try await inner.revenue(query) }
        func claimIdentifier(_ request: IdentifierClaimRequest) async throws -> IdentifierClaim { try await inner.claimIdentifier(request) }
        func completeIdentifier(_ ticket: IdentifierTicket, _ response: StoredResponse) async throws {
            try await inner.completeIdentifier(ticket, response)
        }
        func releaseIdentifier(_ ticket: IdentifierTicket) async throws { try await inner.releaseIdentifier(ticket) }
        func identifier(routeID: String, id: String) async throws -> IdentifierRecord? { try await inner.identifier(routeID: routeID, id: id) }
        func claimPending(_ request: ClaimRequest, _ pending: PendingSettlement) async throws -> ClaimTicket? {
            try await inner.claimPending(request, pending)
        }
        func takePending(limit: Int, leaseMilliseconds: Int64) async throws -> [DeferredSettlement] {
            try await inner.takePending(limit: limit, leaseMilliseconds: leaseMilliseconds)
        }
        func takeHandedOver(_ ticket: ClaimTicket, upstreamStatus: Int, forwardedAt: Int64, leaseMilliseconds: Int64) async throws
            -> DeferredSettlement?
        {
            try await inner.takeHandedOver(ticket, upstreamStatus: upstreamStatus, forwardedAt: forwardedAt, leaseMilliseconds: leaseMilliseconds)
        }
        func finishPending(_ ticket: DeferredTicket, _ outcome: DeferredOutcome) async throws -> Bool {
            try await inner.finishPending(ticket, outcome)
        }
        func deferredSummary(failuresSince: Int64) async throws -> DeferredSummary { try await inner.deferredSummary(failuresSince: failuresSince) }
        func ping() async throws { try await inner.ping() }
    }

    @Test("the paid answer and its receipt go out while the settled step waits; the row says settled once it lands, and a replay is refused meanwhile")
    func answerBeforeSettledLands() async throws {
        let store = GatedStore()
        try await TestHarness.withPaidGateway(yaml: paidYAML, store: store) { gw, fac in
            let header = try await signedHeader(gw, "/paid/a", TestPayer())
            let paid = try await pay(gw, "/paid/a", header)
            #expect(paid.status == 200)
            #expect(paid.header("PAYMENT-RESPONSE") != nil)
            #expect(fac.settledCount == 1)
            #expect(store.settledWritesWaiting == 1, "the answer went out before the settled step was written")
            #expect(try await store.inner.payments(PaymentQuery()).first?.state == .settling)
            // Spent while its last step is still being written.
            let replay = try await pay(gw, "/paid/a", header)
            #expect(replay.status == 402)
            #expect(fac.settleCalls == 1)
            store.open()
            let row = try #require(try await gw.payments().first)
            #expect(row.state == .settled)
            #expect(row.transaction != nil)
        }
    }

    @Test("a settled step that fails to be written leaves the row settling (for reconciliation); the answer was delivered")
    func failedSettledWrite() async throws {
        let store = GatedStore(failing: true)
        try await TestHarness.withPaidGateway(yaml: paidYAML, store: store) { gw, fac in
            let paid = try await pay(gw, "/paid/b", try await signedHeader(gw, "/paid/b", TestPayer()))
            #expect(paid.status == 200 && paid.header("PAYMENT-RESPONSE") != nil)
            store.open()
            #expect(try await gw.payments().first?.state == .settling)
            #expect(fac.settledCount == 1)
        }
    }

    @Test("graceful shutdown waits for a settled step still being written")
    func shutdownWaits() async throws {
        let store = GatedStore()
        try await TestHarness.withPaidGateway(yaml: paidYAML, store: store) { gw, _ in
            let paid = try await pay(gw, "/paid/c", try await signedHeader(gw, "/paid/c", TestPayer()))
            #expect(paid.status == 200)
            #expect(store.settledWritesWaiting == 1)
            // Opened a moment after the shutdown begins (the harness shuts down when this returns).
            Task {
                try? await Task.sleep(for: .milliseconds(300))
                store.open()
            }
        }
        // The gateway stopped only after the write landed.
        #expect(try await store.inner.payments(PaymentQuery()).first?.state == .settled)
    }
}

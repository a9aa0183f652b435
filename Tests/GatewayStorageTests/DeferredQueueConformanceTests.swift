import Foundation
import GatewayStorage
import GatewayStorageSQLite
import Synchronization
import Testing

/// The deferred-settlement part of the storage contract (the queue of payments served before their
/// settlement), against every backend.
@Suite("Deferred settlement queue contract", .serialized)  // one test at a time: each holds two pools on the PostgreSQL server
struct DeferredQueueConformanceTests {
    typealias Contract = PaymentStoreConformanceTests
    static let workerLease: Int64 = 20_000

    static func pending(_ request: ClaimRequest) -> PendingSettlement {
        PendingSettlement(x402Version: 2, payload: #"{"x402Version":2,"nonce":"\#(request.key.nonce)"}"#,
                          requirements: #"{"scheme":"exact","amount":"\#(request.offer.amount)"}"#)
    }

    /// A deferred claim, handed over (the upstream answered 200).
    static func queued(_ store: any PaymentStore, _ request: ClaimRequest = Contract.request()) async throws -> ClaimRequest {
        let ticket = try #require(try await store.claimPending(request, pending(request)))
        try await store.record(ticket, .forwarded(upstreamStatus: 200))
        return request
    }

    @Test("a deferred claim is one write into settlement_pending with the payment; the request holds it until it hands it over",
          arguments: Backend.all)
    func claimHoldHandOver(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            let request = Contract.request()
            let ticket = try #require(try await a.claimPending(request, Self.pending(request)))
            #expect(ticket.attempt == 1)
            var row = try await Contract.row(b, request.key)
            #expect(row.state == .settlementPending && row.deferred && row.settleAttempts == 0 && row.forwardedAt == nil)
            // Held by the request: no worker takes it, nor may anyone claim the payment again.
            #expect(try await b.takePending(limit: 10, leaseMilliseconds: Self.workerLease).isEmpty)
            #expect(try await b.claim(request) == .taken)
            #expect(try await b.claimPending(request, Self.pending(request)) == nil)
            clock.advance(milliseconds: 3)
            try await a.record(ticket, .forwarded(upstreamStatus: 206))
            try await a.record(ticket, .forwarded(upstreamStatus: 206))  // a repeat is a no-op
            row = try await Contract.row(b, request.key)
            #expect(row.state == .settlementPending && row.upstreamStatus == 206 && row.forwardedAt != nil)
            let taken = try await b.takePending(limit: 10, leaseMilliseconds: Self.workerLease)
            #expect(taken.count == 1)
            let settlement = try #require(taken.first)
            #expect(settlement.ticket == DeferredTicket(key: request.key, settleAttempt: 1))
            #expect(!settlement.earlierAttemptUnsure)
            #expect(settlement.pending == Self.pending(request))
            #expect(settlement.upstreamStatus == 206 && settlement.routeID == "weather" && settlement.offer.amount == "1000")
            #expect(settlement.validBefore == request.validBefore)
            // Held by the worker now.
            #expect(try await a.takePending(limit: 10, leaseMilliseconds: Self.workerLease).isEmpty)
            #expect(try await Contract.row(a, request.key).settleAttempts == 1)
        }
    }

    @Test("a hand-over taken by a worker in the same change: held by that worker at once, settled once", arguments: Backend.all)
    func handOverTaken(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            let request = Contract.request()
            let ticket = try #require(try await a.claimPending(request, Self.pending(request)))
            let at = a.now() + 1
            clock.advance(milliseconds: 2)
            let taken = try #require(try await a.takeHandedOver(ticket, upstreamStatus: 201, forwardedAt: at,
                                                                 leaseMilliseconds: Self.workerLease))
            #expect(taken.ticket == DeferredTicket(key: request.key, settleAttempt: 1) && !taken.earlierAttemptUnsure)
            #expect(taken.upstreamStatus == 201 && taken.pending == Self.pending(request))
            let row = try await Contract.row(b, request.key)
            #expect(row.state == .settlementPending && row.forwardedAt == at && row.upstreamStatus == 201 && row.settleAttempts == 1)
            // Never unheld: no other take finds it, and a second hand-over changes nothing.
            #expect(try await b.takePending(limit: 10, leaseMilliseconds: Self.workerLease).isEmpty)
            #expect(try await a.takeHandedOver(ticket, upstreamStatus: 200, forwardedAt: at, leaseMilliseconds: Self.workerLease) == nil)
            #expect(try await a.finishPending(taken.ticket, .settled(transaction: "0x5e")))
            #expect(try await Contract.row(b, request.key).state == .settled)
            // Only the request's own ticket hands over, and only a queued row.
            let other = Contract.request()
            let held = try #require(try await a.claimPending(other, Self.pending(other)))
            let stale = ClaimTicket(key: other.key, attempt: held.attempt + 1)
            #expect(try await b.takeHandedOver(stale, upstreamStatus: 200, forwardedAt: at, leaseMilliseconds: Self.workerLease) == nil)
            try await a.record(held, .released(reason: "unsettled"))
            #expect(try await b.takeHandedOver(held, upstreamStatus: 200, forwardedAt: at, leaseMilliseconds: Self.workerLease) == nil)
        }
    }

    @Test("a deferred claim takes only what a fresh claim may and never a payment whose settlement was attempted",
          arguments: Backend.all)
    func claimPendingTakesOnlyFresh(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            // In flight (lease running), settled, queued, unknown: not taken.
            let inFlight = Contract.request()
            _ = try Contract.ticket(try await a.claim(inFlight))
            let settled = Contract.request()
            let s = try Contract.ticket(try await a.claim(settled))
            try await a.record(s, [PaymentStep(.verified(payer: settled.key.payer), at: a.now()), PaymentStep(.settling, at: a.now())])
            try await a.record(s, .settled(transaction: "0x01"))
            let unknown = Contract.request()
            let u = try Contract.ticket(try await a.claim(unknown))
            try await a.record(u, [PaymentStep(.verified(payer: unknown.key.payer), at: a.now()), PaymentStep(.settling, at: a.now())])
            try await a.record(u, .unknown(reason: "facilitator_timeout"))
            let queued = try await Self.queued(a)
            for request in [inFlight, settled, unknown, queued] {
                #expect(try await b.claimPending(request, Self.pending(request)) == nil, "\(request.key)")
            }
            // The ordinary claim tells why: a retry of the unknown outcome is still possible there.
            guard case .claimedAfterUnknownOutcome = try await b.claim(unknown) else {
                Issue.record("the unknown outcome must stay claimable as a retry")
                return
            }
            // Released: taken, as a new attempt.
            let released = Contract.request()
            let r = try Contract.ticket(try await a.claim(released))
            try await a.record(r, .released(reason: "upstream_error"))
            #expect(try await b.claimPending(released, Self.pending(released))?.attempt == 2)
            // A claim whose holder died before settling: taken once its lease has ended.
            clock.advance(milliseconds: Contract.lease)
            #expect(try await b.claimPending(inFlight, Self.pending(inFlight))?.attempt == 2)
            // A settling row whose lease ended is an unknown outcome: never taken by a deferred claim.
            let settling = Contract.request()
            let t = try Contract.ticket(try await a.claim(settling))
            try await a.record(t, [PaymentStep(.verified(payer: settling.key.payer), at: a.now()), PaymentStep(.settling, at: a.now())])
            clock.advance(milliseconds: Contract.lease)
            #expect(try await b.claimPending(settling, Self.pending(settling)) == nil)
        }
    }

    @Test("verified by the facilitator, then queued: claim, verified and pending in one change, handed over by forwarded",
          arguments: Backend.all)
    func verifiedThenQueued(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, _ in
            let request = Contract.request()
            let ticket = try Contract.ticket(try await a.claim(request))
            try await a.record(ticket, [PaymentStep(.verified(payer: request.key.payer), at: a.now()),
                                        PaymentStep(.pending(Self.pending(request)), at: a.now())])
            var row = try await Contract.row(b, request.key)
            #expect(row.state == .settlementPending && row.deferred && row.verifiedAt != nil)
            #expect(try await b.takePending(limit: 5, leaseMilliseconds: Self.workerLease).isEmpty)
            try await a.record(ticket, .forwarded(upstreamStatus: 200))
            let taken = try await b.takePending(limit: 5, leaseMilliseconds: Self.workerLease)
            #expect(taken.map(\.pending) == [Self.pending(request)])
            #expect(try await b.finishPending(taken[0].ticket, .settled(transaction: "0xbeef")))
            row = try await Contract.row(a, request.key)
            #expect(row.state == .settled && row.transaction == "0xbeef" && row.finishedAt != nil && row.deferred)
            #expect(try await a.claim(request) == .taken)
        }
    }

    @Test("the request releases a queued payment whose upstream failed: nothing is charged and it may come again",
          arguments: Backend.all)
    func releasedByTheRequest(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, _ in
            let request = Contract.request()
            let ticket = try #require(try await a.claimPending(request, Self.pending(request)))
            try await a.record(ticket, [PaymentStep(.forwarded(upstreamStatus: 503), at: a.now()),
                                        PaymentStep(.released(reason: "unsettled"), at: a.now())])
            let row = try await Contract.row(b, request.key)
            #expect(row.state == .released && row.upstreamStatus == 503)
            #expect(try await b.takePending(limit: 5, leaseMilliseconds: Self.workerLease).isEmpty)
            #expect(try await b.claimPending(request, Self.pending(request))?.attempt == 2)
        }
    }

    @Test("every outcome a worker records, and the ticket of an older take refused", arguments: Backend.all)
    func outcomes(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            var requests: [ClaimRequest] = []
            for _ in 0..<4 { requests.append(try await Self.queued(a)) }
            let taken = try await b.takePending(limit: 10, leaseMilliseconds: Self.workerLease)
            #expect(Set(taken.map(\.ticket.key)) == Set(requests.map(\.key)))
            let byKey = Dictionary(uniqueKeysWithValues: taken.map { ($0.ticket.key, $0.ticket) })
            #expect(try await b.finishPending(byKey[requests[0].key]!, .settled(transaction: "0x11")))
            #expect(try await b.finishPending(byKey[requests[1].key]!, .failed(reason: "invalid_exact_evm_insufficient_balance")))
            #expect(try await b.finishPending(byKey[requests[2].key]!, .unknown(reason: "facilitator_timeout")))
            #expect(try await b.finishPending(byKey[requests[3].key]!, .retry(reason: "facilitator_unavailable", notBefore: a.now() + 500)))
            // Finished rows cannot be finished again.
            #expect(!(try await b.finishPending(byKey[requests[0].key]!, .failed(reason: "late"))))
            let settled = try await Contract.row(a, requests[0].key)
            #expect(settled.state == .settled && settled.transaction == "0x11")
            let failed = try await Contract.row(a, requests[1].key)
            #expect(failed.state == .settleFailedAfterDelivery && failed.reason == "invalid_exact_evm_insufficient_balance")
            #expect(try await a.claim(requests[1]) == .taken)  // delivered once already
            let unknown = try await Contract.row(a, requests[2].key)
            #expect(unknown.state == .unknown && unknown.reason == "facilitator_timeout" && unknown.finishedAt != nil)
            // Unknown: reconciliation settles it as any other unknown outcome.
            #expect(try await a.reconcile(requests[2].key, attempt: 1, .settled(transaction: "0x22")))
            // Retry: back in the queue, not before its time, then taken as a later attempt.
            let retried = try await Contract.row(a, requests[3].key)
            #expect(retried.state == .settlementPending && retried.reason == "facilitator_unavailable")
            #expect(try await a.takePending(limit: 10, leaseMilliseconds: Self.workerLease).isEmpty)
            clock.advance(milliseconds: 500)
            let again = try await a.takePending(limit: 10, leaseMilliseconds: Self.workerLease)
            #expect(again.map(\.ticket) == [DeferredTicket(key: requests[3].key, settleAttempt: 2)])
            #expect(again.first?.earlierAttemptUnsure == true)
            // The first take's ticket is stale.
            #expect(!(try await b.finishPending(byKey[requests[3].key]!, .settled(transaction: "0x33"))))
            #expect(try await a.finishPending(again[0].ticket, .released(reason: "not_delivered")))
            #expect(try await Contract.row(a, requests[3].key).state == .released)
        }
    }

    @Test("a worker that died is replaced once its lease has ended; its late outcome is refused", arguments: Backend.all)
    func workerLeaseTakeOver(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            let request = try await Self.queued(a)
            let first = try #require(try await a.takePending(limit: 1, leaseMilliseconds: Self.workerLease).first)
            clock.advance(milliseconds: Self.workerLease - 1)
            #expect(try await b.takePending(limit: 1, leaseMilliseconds: Self.workerLease).isEmpty)
            clock.advance(milliseconds: 1)
            let second = try #require(try await b.takePending(limit: 1, leaseMilliseconds: Self.workerLease).first)
            #expect(second.ticket.settleAttempt == first.ticket.settleAttempt + 1)
            #expect(second.earlierAttemptUnsure)
            #expect(second.pending == Self.pending(request))
            #expect(!(try await a.finishPending(first.ticket, .settled(transaction: "0x01"))))
            #expect(try await b.finishPending(second.ticket, .settled(transaction: "0x02")))
            #expect(try await Contract.row(a, request.key).transaction == "0x02")
        }
    }

    @Test("two instances taking at once: each queued payment goes to exactly one take", arguments: Backend.all)
    func concurrentTakes(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, _ in
            var keys = Set<PaymentKey>()
            for i in 0..<120 { keys.insert(try await Self.queued(i % 2 == 0 ? a : b).key) }
            let taken = try await withThrowingTaskGroup(of: [DeferredTicket].self) { group in
                for worker in 0..<6 {
                    let store = worker % 2 == 0 ? a : b
                    group.addTask {
                        var mine: [DeferredTicket] = []
                        while true {
                            let batch = try await store.takePending(limit: 7, leaseMilliseconds: Self.workerLease)
                            if batch.isEmpty { return mine }
                            for settlement in batch {
                                #expect(try await store.finishPending(settlement.ticket, .settled(transaction: "0x" + settlement.ticket.key.nonce.dropFirst(2))))
                                mine.append(settlement.ticket)
                            }
                        }
                    }
                }
                return try await group.reduce(into: [DeferredTicket]()) { $0 += $1 }
            }
            #expect(taken.count == keys.count)
            #expect(Set(taken.map(\.key)) == keys)
            #expect(taken.allSatisfy { $0.settleAttempt == 1 })
            let rows = try await a.payments(PaymentQuery(limit: 1000))
            #expect(rows.filter { $0.state == .settled }.count == keys.count)
        }
    }

    @Test("the summary groups the queue and deferred unknowns, counts failures and names recent failed payers", arguments: Backend.all)
    func summary(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            let alice = "0xA11CE00000000000000000000000000000000001", bob = "0xB0B0000000000000000000000000000000000002"
            let start = a.now()
            for _ in 0..<3 { _ = try await Self.queued(a, Contract.request(payer: alice)) }
            clock.advance(milliseconds: 10)
            _ = try await Self.queued(b, Contract.request(route: "news", payer: alice))
            for _ in 0..<2 { _ = try await Self.queued(b, Contract.request(payer: bob)) }
            // One of Bob's fails, one ends unknown; a synchronous unknown outcome is not deferred.
            let taken = try await a.takePending(limit: 100, leaseMilliseconds: Self.workerLease).filter { $0.ticket.key.payer == bob.lowercased() }
            #expect(taken.count == 2)
            clock.advance(milliseconds: 10)
            #expect(try await a.finishPending(taken[0].ticket, .failed(reason: "insufficient_funds")))
            #expect(try await a.finishPending(taken[1].ticket, .unknown(reason: "facilitator_timeout")))
            let sync = Contract.request(payer: bob)
            let t = try Contract.ticket(try await a.claim(sync))
            try await a.record(t, [PaymentStep(.verified(payer: bob), at: a.now()), PaymentStep(.settling, at: a.now())])
            try await a.record(t, .unknown(reason: "facilitator_timeout"))

            let summary = try await b.deferredSummary(failuresSince: start)
            #expect(summary.failures == 1)
            #expect(summary.failedPayers == [bob.lowercased(): start + 20])
            #expect(try await b.deferredSummary(failuresSince: start + 21).failedPayers.isEmpty)
            let groups = Set(summary.unsettled.map { "\($0.routeID) \($0.payer) \($0.amount) \($0.state.rawValue) \($0.count)" })
            #expect(groups == [
                "weather \(alice.lowercased()) 1000 settlement_pending 3",
                "news \(alice.lowercased()) 1000 settlement_pending 1",
                "weather \(bob.lowercased()) 1000 unknown 1",
            ])
            let weather = try #require(summary.unsettled.first { $0.routeID == "weather" && $0.payer == alice.lowercased() })
            #expect(weather.oldestClaimedAt == start)
        }
    }

    @Test("at restart, an instance puts the deferred settlements it held back in the queue and releases those never handed over")
    func restartRecovery() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-deferred-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ledger.db"
        let clock = TestClock()
        func open() async throws -> SQLPaymentStore<SQLiteDatabase> {
            try await SQLPaymentStore(database: try SQLiteDatabase(path: path),
                                      settings: StoreSettings(instanceID: "gw-1", leaseMilliseconds: Contract.lease, clock: clock.read))
        }
        let handedOver = Contract.request(), inWorker = Contract.request(), neverAnswered = Contract.request()
        do {
            let store = try await open()
            _ = try await Self.queued(store, handedOver)
            _ = try await Self.queued(store, inWorker)
            _ = try #require(try await store.claimPending(neverAnswered, Self.pending(neverAnswered)))
            let taken = try await store.takePending(limit: 1, leaseMilliseconds: Self.workerLease)
            #expect(taken.map(\.ticket.key) == [handedOver.key] || taken.map(\.ticket.key) == [inWorker.key])
        }
        let restarted = try await open()
        let recovered = try await restarted.recoverInstance()
        #expect(recovered.requeued == 2 && recovered.released == 1 && recovered.unknown == 0)
        let released = try await Contract.row(restarted, neverAnswered.key)
        #expect(released.state == .released && released.reason == "instance_restarted")
        // Both queued rows are taken at once (no lease to wait for); the one a worker held counts as unsure.
        let again = try await restarted.takePending(limit: 10, leaseMilliseconds: Self.workerLease)
        #expect(Set(again.map(\.ticket.key)) == [handedOver.key, inWorker.key])
        #expect(again.filter(\.earlierAttemptUnsure).count == 1)
        #expect(again.allSatisfy { $0.pending != nil })
    }

    @Test("a ledger at schema 2 is migrated to the deferred schema with its rows, which are not deferred")
    func migrationFromSchema2() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-deferred-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let database = try SQLiteDatabase(path: dir + "/ledger.db")
        for sql in LedgerSQL.migrations[0] + LedgerSQL.migrations[1] { _ = try await database.query(SQLStatement(sql)) }
        _ = try await database.query(LedgerSQL.writeVersion(2))
        let request = Contract.request()
        _ = try await database.query(SQLStatement("""
            INSERT INTO x402_payments (network, asset, payer, nonce, scheme, pay_to, amount, route_id, method, path, request_id, state,
              attempt, instance_id, lease_until, valid_before, claimed_at, updated_at, transaction_hash)
            VALUES ($1, $2, $3, $4, 'exact', '0x01', '1000', 'weather', 'GET', '/weather', 'r1', 'settled', 1, 'old', 0, 1900000000, 5, 5, '0xaa')
            """, [.text(request.key.network), .text(request.key.asset), .text(request.key.payer), .text(request.key.nonce)]))
        let store = try await SQLPaymentStore(database: database, settings: StoreSettings(instanceID: "new"))
        let row = try await Contract.row(store, request.key)
        #expect(row.state == .settled && row.transaction == "0xaa" && !row.deferred && row.settleAttempts == 0)
        #expect(try await store.deferredSummary(failuresSince: 0) == DeferredSummary())
        #expect(try await database.query(LedgerSQL.readVersion).first?.first == .text(String(LedgerSQL.schemaVersion)))
    }
}

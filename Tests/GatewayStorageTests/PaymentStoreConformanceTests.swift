import FixtureEditing
import Foundation
import GatewayStorage
import Testing

/// One suite for the storage contract, run against every backend.
@Suite("Payment store contract")
struct PaymentStoreConformanceTests {
    static let lease: Int64 = 60_000

    static func request(_ nonce: String = "0x" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased(),
                        route: String = "weather", payer: String = "0xAbC0000000000000000000000000000000000001") -> ClaimRequest {
        let key = PaymentKey(network: "eip155:84532", asset: "0x036cbd53842c5426634e7929541ec2318f3dcf7e", payer: payer, nonce: nonce)
        return ClaimRequest(
            key: key, offer: PaymentOffer(scheme: "exact", network: key.network, asset: key.asset, amount: "1000",
                                          payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c"),
            routeID: route, method: "GET", path: "/weather", requestID: UUID().uuidString, validBefore: 1_900_000_000)
    }

    /// Runs `body` with two instances ("a", "b") on one fresh database and a shared hand-moved clock.
    static func withInstances(
        _ backend: Backend, _ body: (any PaymentStore, any PaymentStore, TestClock) async throws -> Void
    ) async throws {
        let shared = try await backend.makeShared()
        let clock = TestClock()
        do {
            let a = try await shared.open(StoreSettings(instanceID: "a", leaseMilliseconds: lease, clock: clock.read))
            let b = try await shared.open(StoreSettings(instanceID: "b", leaseMilliseconds: lease, clock: clock.read))
            try await body(a, b, clock)
        } catch {
            await shared.cleanup()
            throw error
        }
        await shared.cleanup()
    }

    static func ticket(_ result: ClaimResult) throws -> ClaimTicket {
        switch result {
        case .claimed(let ticket): return ticket
        default:
            Issue.record("expected a fresh claim, got \(result)")
            throw StorageError(.outOfOrder, "not claimed")
        }
    }

    static func row(_ store: any PaymentStore, _ key: PaymentKey) async throws -> PaymentRecord {
        try #require(try await store.payments(PaymentQuery(limit: 10_000)).first { $0.key == key })
    }

    @Test("of 500 concurrent claims on one payment, split across two instances, exactly one wins", arguments: Backend.all)
    func atomicClaim(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, _ in
            let request = Self.request()
            let results = try await withThrowingTaskGroup(of: ClaimResult.self) { group in
                for i in 0..<500 {
                    let store = i % 2 == 0 ? a : b
                    group.addTask { try await store.claim(request) }
                }
                return try await group.reduce(into: [ClaimResult]()) { $0.append($1) }
            }
            #expect(results.filter { if case .claimed = $0 { true } else { false } }.count == 1)
            #expect(results.filter { $0 == .taken }.count == 499)
            let row = try await Self.row(a, request.key)
            #expect(row.state == .claimed)
            #expect(row.attempt == 1)
        }
    }

    @Test("a claim whose holder died is taken over only after its lease ends, as fresh before settling", arguments: Backend.all)
    func leaseTakeOver(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, clock in
            let request = Self.request()
            let first = try Self.ticket(try await a.claim(request))
            try await a.record(first, .verified(payer: request.key.payer))
            clock.advance(milliseconds: Self.lease - 1)
            #expect(try await b.claim(request) == .taken)
            clock.advance(milliseconds: 1)
            let second = try Self.ticket(try await b.claim(request))
            #expect(second.attempt == first.attempt + 1)
            let row = try await Self.row(b, request.key)
            #expect(row.state == .claimed)
            #expect(row.instanceID == b.instanceID)
            // The first holder's late steps are refused: its claim is gone.
            await #expect(throws: StorageError.self) { try await a.record(first, .forwarded(upstreamStatus: 200)) }
            #expect(try await Self.row(b, request.key).state == .claimed)
        }
    }

    @Test("an upto charge is recorded with settling (durable before /settle); revenue counts it, not the maximum", arguments: Backend.all)
    func uptoCharge(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, _ in
            var upto = Self.request(route: "llm")
            upto.offer.scheme = "upto"
            upto.offer.amount = "50000"  // the maximum signed for
            upto.offer.transferMethod = "permit2"
            upto.key.nonce = "123456789"  // Permit2 nonces are decimal
            let exact = Self.request()
            for request in [upto, exact] {
                let ticket = try Self.ticket(try await a.claim(request))
                let charge = request.offer.scheme == "upto" ? PaymentCharge(amount: "1234", basis: "report_capped") : nil
                try await a.record(ticket, [
                    PaymentStep(.verified(payer: request.key.payer), at: a.now()), PaymentStep(.forwarded(upstreamStatus: 200), at: a.now()),
                    PaymentStep(.settling, at: a.now(), charge: charge),
                ])
                let settling = try await Self.row(b, request.key)
                #expect(settling.chargedAmount == (charge?.amount ?? "1000") && settling.chargeBasis == charge?.basis)
                try await a.record(ticket, .settled(transaction: "0xabc"))
            }
            let row = try await Self.row(b, upto.key)
            #expect(row.state == .settled && row.offer.amount == "50000" && row.offer.transferMethod == "permit2")
            #expect(row.chargedAmount == "1234" && row.chargeBasis == "report_capped" && row.revenueAmount == "1234")
            let plain = try await Self.row(b, exact.key)
            #expect(plain.offer.transferMethod == "eip3009" && plain.chargedAmount == "1000" && plain.chargeBasis == nil)
            let summary = try await b.revenue(RevenueQuery(from: 0, to: Int64.max, bucketMilliseconds: 86_400_000))
            #expect(summary.revenue.first { $0.routeID == "llm" }?.total == DecimalSum("1234"))
            #expect(summary.payers.first?.total == DecimalSum("2234"))
            // A new claim of a key (after the facilitator refused its settlement) starts without the old charge.
            let again = Self.request(route: "llm")
            let first = try Self.ticket(try await a.claim(again))
            try await a.record(first, [PaymentStep(.verified(payer: again.key.payer), at: a.now()),
                                       PaymentStep(.settling, at: a.now(), charge: PaymentCharge(amount: "7", basis: "per_kib"))])
            try await a.record(first, .refused(reason: "invalid_upto_evm_transaction_failed"))
            _ = try Self.ticket(try await b.claim(again))
            let reclaimed = try await Self.row(b, again.key)
            #expect(reclaimed.chargedAmount == nil && reclaimed.chargeBasis == nil)
        }
    }

    @Test("a claim that reached settling is never taken over as fresh: after its lease, only as a retry", arguments: Backend.all)
    func settlingIsUnknown(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, clock in
            let request = Self.request()
            let ticket = try Self.ticket(try await a.claim(request))
            try await a.record(ticket, .verified(payer: request.key.payer))
            try await a.record(ticket, .forwarded(upstreamStatus: 200))
            try await a.record(ticket, .settling)
            clock.advance(milliseconds: Self.lease)
            guard case .claimedAfterUnknownOutcome(let retry) = try await b.claim(request) else {
                Issue.record("a stale settling row must be claimed as a retry after an unknown outcome")
                return
            }
            #expect(retry.attempt == 2)
        }
    }

    @Test("unknown outcomes: a retry of the same payment may claim it; reconciliation settles it both ways", arguments: Backend.all)
    func unknownAndReconciled(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, _ in
            let settled = Self.request(), unsettled = Self.request()
            for request in [settled, unsettled] {
                let ticket = try Self.ticket(try await a.claim(request))
                try await a.record(ticket, .verified(payer: request.key.payer))
                try await a.record(ticket, .settling)
                try await a.record(ticket, .unknown(reason: "facilitator_timeout"))
                #expect(try await Self.row(b, request.key).reason == "facilitator_timeout")
            }
            // A decision made for another attempt is not applied.
            #expect(!(try await b.reconcile(settled.key, attempt: 2, .settled(transaction: "0xfeed"))))
            #expect(try await b.reconcile(settled.key, attempt: 1, .settled(transaction: "0xfeed")))
            #expect(try await b.reconcile(unsettled.key, attempt: 1, .unsettled))
            // Reconciling twice changes nothing.
            #expect(!(try await b.reconcile(settled.key, attempt: 1, .unsettled)))
            let done = try await Self.row(a, settled.key)
            #expect(done.state == .reconciledSettled)
            #expect(done.transaction == "0xfeed")
            #expect(done.reconciledAt != nil)
            #expect(try await a.claim(settled) == .taken)
            #expect(try await Self.row(a, unsettled.key).state == .reconciledUnsettled)
            // Unsettled: the same authorization may be presented again, as a fresh payment.
            let again = try Self.ticket(try await a.claim(unsettled))
            #expect(again.attempt == 2)
        }
    }

    @Test("steps are ordered and idempotent; the happy path leaves every timestamp", arguments: Backend.all)
    func orderedAndIdempotent(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, _, clock in
            let request = Self.request()
            let ticket = try Self.ticket(try await a.claim(request))
            await #expect(throws: StorageError(.outOfOrder, "settled cannot follow claimed")) {
                try await a.record(ticket, .settled(transaction: "0x01"))
            }
            try await a.record(ticket, .verified(payer: "0xABC0000000000000000000000000000000000001"))
            try await a.record(ticket, .verified(payer: "0xABC0000000000000000000000000000000000001"))
            clock.advance(milliseconds: 5)
            try await a.record(ticket, .forwarded(upstreamStatus: 200))
            try await a.record(ticket, .settling)
            try await a.record(ticket, .settled(transaction: "0xabc"))
            try await a.record(ticket, .settled(transaction: "0xabc"))
            await #expect(throws: StorageError.self) { try await a.record(ticket, .released(reason: "late")) }
            let row = try await Self.row(a, request.key)
            #expect(row.state == .settled)
            #expect(row.transaction == "0xabc")
            #expect(row.upstreamStatus == 200)
            #expect(row.verifiedPayer == "0xabc0000000000000000000000000000000000001")
            #expect(row.verifiedAt != nil && row.forwardedAt != nil && row.settlingAt != nil && row.finishedAt != nil)
            #expect(row.forwardedAt! > row.claimedAt)
            #expect(row.offer.amount == "1000" && row.routeID == "weather" && row.method == "GET" && row.path == "/weather")
            #expect(try await a.claim(request) == .taken)
        }
    }

    @Test("a chain of steps is one change, each step with its own time; a repeat is a no-op, a broken chain is refused",
          arguments: Backend.all)
    func chainedSteps(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, _, clock in
            let request = Self.request()
            let ticket = try Self.ticket(try await a.claim(request))
            let start = a.now()
            let chain = [PaymentStep(.verified(payer: "0xABC0000000000000000000000000000000000001"), at: start + 1),
                         PaymentStep(.forwarded(upstreamStatus: 201), at: start + 2),
                         PaymentStep(.settling, at: start + 3)]
            await #expect(throws: StorageError.self) { try await a.record(ticket, [chain[0], chain[2], chain[1]]) }
            await #expect(throws: StorageError.self) { try await a.record(ticket, [PaymentStep]()) }
            await #expect(throws: StorageError(.outOfOrder, "forwarded cannot follow claimed")) { try await a.record(ticket, Array(chain[1...])) }
            #expect(try await Self.row(a, request.key).state == .claimed)  // nothing of a refused chain was applied
            clock.advance(milliseconds: 10)
            try await a.record(ticket, chain)
            try await a.record(ticket, chain)  // a repeat
            let row = try await Self.row(a, request.key)
            #expect(row.state == .settling)
            #expect(row.verifiedPayer == "0xabc0000000000000000000000000000000000001" && row.upstreamStatus == 201)
            #expect(row.verifiedAt == start + 1 && row.forwardedAt == start + 2 && row.settlingAt == start + 3)
            #expect(row.updatedAt == start + 10)
            #expect(row.leaseUntil == start + 10 + Self.lease)
            try await a.record(ticket, .settled(transaction: "0x03"))
            #expect(try await Self.row(a, request.key).state == .settled)

            // A chain that ends the claim without settling: released, with the upstream's status kept.
            let other = Self.request()
            let second = try Self.ticket(try await a.claim(other))
            try await a.record(second, [PaymentStep(.verified(payer: other.key.payer), at: a.now()),
                                        PaymentStep(.forwarded(upstreamStatus: 503), at: a.now()),
                                        PaymentStep(.released(reason: "upstream_error"), at: a.now())])
            let released = try await Self.row(a, other.key)
            #expect(released.state == .released && released.upstreamStatus == 503 && released.reason == "upstream_error")
            #expect(try await a.claim(other) != .taken)
        }
    }

    @Test("a retry of an unknown outcome whose holder died is taken over as a retry again, never as fresh", arguments: Backend.all)
    func retryStaysRetry(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, clock in
            let request = Self.request()
            let first = try Self.ticket(try await a.claim(request))
            try await a.record(first, .verified(payer: request.key.payer))
            try await a.record(first, .settling)
            try await a.record(first, .unknown(reason: "facilitator_timeout"))
            guard case .claimedAfterUnknownOutcome(let retry) = try await a.claim(request) else {
                Issue.record("expected a retry")
                return
            }
            try await a.record(retry, .verified(payer: request.key.payer))
            clock.advance(milliseconds: Self.lease)  // the retry's holder died before settling
            guard case .claimedAfterUnknownOutcome = try await b.claim(request) else {
                Issue.record("a dead retry's claim must be taken over as a retry")
                return
            }
        }
    }

    @Test("settlement first: the upstream's status is recorded on the settled row, which stays settled", arguments: Backend.all)
    func beforePolicy(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, _, _ in
            let request = Self.request()
            let ticket = try Self.ticket(try await a.claim(request))
            try await a.record(ticket, .verified(payer: request.key.payer))
            try await a.record(ticket, .settling)
            try await a.record(ticket, .settled(transaction: "0x02"))
            try await a.record(ticket, .forwarded(upstreamStatus: 502))
            let row = try await Self.row(a, request.key)
            #expect(row.state == .settled)
            #expect(row.upstreamStatus == 502)
        }
    }

    @Test("released and refused payments may be presented again; each claim counts an attempt", arguments: Backend.all)
    func releasedAndRefused(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, _ in
            let request = Self.request()
            let first = try Self.ticket(try await a.claim(request))
            try await a.record(first, .released(reason: "upstream_unavailable"))
            let second = try Self.ticket(try await b.claim(request))
            try await b.record(second, .refused(reason: "insufficient_funds"))
            let third = try Self.ticket(try await a.claim(request))
            #expect([first.attempt, second.attempt, third.attempt] == [Int](1...3))
            let row = try await Self.row(a, request.key)
            #expect(row.state == .claimed)
            #expect(row.reason == nil)
        }
    }

    @Test("a claim keeps the payment identifier it was made with; a later claim of the key replaces it, none leaves none",
          arguments: Backend.all)
    func paymentIdentifier(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, _ in
            var request = Self.request()
            request.paymentIdentifier = "pay_0123456789abcdef"
            let first = try Self.ticket(try await a.claim(request))
            #expect(try await Self.row(b, request.key).paymentIdentifier == "pay_0123456789abcdef")
            try await a.record(first, .released(reason: "upstream_unavailable"))
            request.paymentIdentifier = nil
            _ = try Self.ticket(try await b.claim(request))
            #expect(try await Self.row(a, request.key).paymentIdentifier == nil)
            var queued = Self.request()
            queued.paymentIdentifier = "pay_deferred_0001"
            let pending = PendingSettlement(x402Version: 2, payload: "{}", requirements: "{}")
            #expect(try await a.claimPending(queued, pending) != nil)
            #expect(try await Self.row(b, queued.key).paymentIdentifier == "pay_deferred_0001")
        }
    }

    @Test("the ledger lists rows newest first, filtered by state, route, payer and time", arguments: Backend.all)
    func listing(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, _, clock in
            var keys: [PaymentKey] = []
            for i in 0..<5 {
                let request = Self.request(route: i % 2 == 0 ? "even" : "odd", payer: "0x00000000000000000000000000000000000000a\(i)")
                let ticket = try Self.ticket(try await a.claim(request))
                if i == 4 { try await a.record(ticket, .released(reason: "client_gone")) }
                keys.append(request.key)
                clock.advance(milliseconds: 1000)
            }
            let all = try await a.payments(PaymentQuery())
            #expect(all.map(\.key) == keys.reversed())
            #expect(try await a.payments(PaymentQuery(routeID: "even")).count == 3)
            #expect(try await a.payments(PaymentQuery(states: [.released])).map(\.key) == [keys[4]])
            #expect(try await a.payments(PaymentQuery(payer: "0x00000000000000000000000000000000000000A1")).map(\.key) == [keys[1]])
            let since = all[1].claimedAt
            #expect(try await a.payments(PaymentQuery(since: since)).count == 2)
            #expect(try await a.payments(PaymentQuery(limit: 2, before: since)).map(\.key) == [keys[2], keys[1]])
        }
    }

    @Test("paging by cursor lists every row once, in order, when many were claimed in the same millisecond", arguments: Backend.all)
    func cursorPaging(_ backend: Backend) async throws {
        try await Self.withInstances(backend) { a, b, clock in
            for i in 0..<23 {
                let payer = "0x" + String(repeating: "0", count: 38) + String(format: "%02x", i % 3)
                _ = try Self.ticket(try await (i % 2 == 0 ? a : b).claim(Self.request(payer: payer)))
                if i == 20 { clock.advance(milliseconds: 1) }  // two distinct times, most rows sharing one
            }
            let whole = try await a.payments(PaymentQuery(limit: 100)).map(\.key)
            #expect(whole.count == 23)
            var paged: [PaymentKey] = []
            var after: PaymentCursor?
            while true {
                let page = try await b.payments(PaymentQuery(limit: 5, after: after))
                paged += page.map(\.key)
                guard page.count == 5, let last = page.last else { break }
                after = PaymentCursor(last)
                #expect(PaymentCursor(text: after!.text) == after)
            }
            #expect(paged == whole)
            // With another filter, the cursor narrows the same listing.
            let claimed = try await a.payments(PaymentQuery(states: [.claimed], limit: 100, after: PaymentCursor(claimedAt: Int64.max, key: whole[0])))
            #expect(claimed.count == 23)
        }
    }
}

@Suite("Hot ledger statements")
struct HotStatementTests {
    @Test("the paid path's statements are marked hot, and each hot statement's text is the one the ledger runs")
    func hotStatementsMatch() {
        let request = PaymentStoreConformanceTests.request()
        let claim = LedgerSQL.claim(request, instance: "a", now: 1, leaseUntil: 2)
        #expect(claim.hot == .claim && claim.sql == HotStatement.claim.sql)
        let pending = LedgerSQL.claimPending(request, PendingSettlement(x402Version: 2, payload: "{}", requirements: "{}"),
                                             instance: "a", now: 1, leaseUntil: 2)
        #expect(pending.hot == .claimPending && pending.sql == HotStatement.claimPending.sql)
        #expect(pending.binds.count == HotStatement.claimPending.bindTypes.count)
        let handOver = LedgerSQL.takeHandedOver(ClaimTicket(key: request.key, attempt: 1), upstreamStatus: 200, forwardedAt: 1,
                                                instance: "a", now: 1, leaseUntil: 2)
        #expect(handOver.hot == .takeHandedOver && handOver.sql == HotStatement.takeHandedOver.sql)
        let settled = LedgerSQL.finishPending(DeferredTicket(key: request.key, settleAttempt: 1), .settled(transaction: "0x1"), now: 1)
        #expect(settled.hot == .settledDeferred && settled.sql == HotStatement.settledDeferred.sql)
        for statement in [pending, handOver, settled] {
            #expect(zip(statement.binds, statement.hot!.bindTypes).allSatisfy { value, type in
                switch (value, type) {
                case (.text, .text), (.integer, .integer): true
                default: false
                }
            } && statement.binds.count == statement.hot!.bindTypes.count)
        }
        #expect(LedgerSQL.finishPending(DeferredTicket(key: request.key, settleAttempt: 1), .failed(reason: "x"), now: 1).hot == nil)
        let ticket = ClaimTicket(key: request.key, attempt: 1)
        let chains: [([PaymentTransition], HotStatement?)] = [
            ([.verified(payer: "0x1"), .forwarded(upstreamStatus: 200), .settling], .settlingAfterForward),
            ([.verified(payer: "0x1"), .settling], .settlingBeforeForward),
            ([.settled(transaction: "0x2")], .settled),
            ([.forwarded(upstreamStatus: 200)], .forwardedAfterSettlement),
            ([.verified(payer: "0x1"), .released(reason: "upstream_error")], nil),
        ]
        for (chain, hot) in chains {
            let statement = LedgerSQL.record(ticket, chain.map { PaymentStep($0, at: 1) }, now: 1, leaseUntil: 2)
            #expect(statement.hot == hot)
            if let hot { #expect(statement.sql == hot.sql) }
        }
        #expect(Set(chains.compactMap(\.1)).union([.claim, .claimPending, .takeHandedOver, .settledDeferred]) == Set(HotStatement.allCases))
    }
}

import Foundation
import GatewayStorage
import Testing

/// A benchmark, not a timed test: with `X402_LEDGER_BENCH=1`, prints what the ledger costs per
/// payment on each backend, the way the paid path writes it (claim; `verified`, `forwarded` and
/// `settling` as one chain before `/settle`; `settled`), 64 payments at a time: wall time, and the
/// process's CPU time (user + system, from `getrusage`) per payment. Without the HTTP and facilitator
/// work of `scripts/bench.sh` scenario 4 around it, this shows what each backend itself adds. Numbers
/// depend on the build (`-c release` for real ones) and the machine's load; nothing is asserted but
/// that every payment reached `settled`.
@Suite("Ledger cost per payment (X402_LEDGER_BENCH=1)", .serialized,
       .enabled(if: ProcessInfo.processInfo.environment["X402_LEDGER_BENCH"] != nil))
struct LedgerCostBenchmarkTests {
    static let payments = Int(ProcessInfo.processInfo.environment["X402_LEDGER_BENCH_PAYMENTS"] ?? "") ?? 20_000
    static let concurrency = 64

    /// User + system CPU time of this process, in microseconds.
    static func cpuMicroseconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func µs(_ t: timeval) -> Double { Double(t.tv_sec) * 1e6 + Double(t.tv_usec) }
        return µs(usage.ru_utime) + µs(usage.ru_stime)
    }

    static func pay(_ store: any PaymentStore, _ n: Int) async throws {
        let request = PaymentStoreConformanceTests.request(String(format: "0x%064x", n))
        guard case .claimed(let ticket) = try await store.claim(request) else { throw StorageError(.outOfOrder, "not claimed") }
        let now = store.now()
        try await store.record(ticket, [
            PaymentStep(.verified(payer: request.key.payer), at: now), PaymentStep(.forwarded(upstreamStatus: 200), at: now),
            PaymentStep(.settling, at: now),
        ])
        try await store.record(ticket, [PaymentStep(.settled(transaction: "0x" + String(repeating: "ab", count: 32)), at: store.now())])
    }

    @Test("claim, one chain before /settle, settled: 64 payments at a time", arguments: Backend.all)
    func perPayment(_ backend: Backend) async throws {
        let shared = try await backend.makeShared()
        do {
            try await Self.measure(backend.name, try await shared.open(StoreSettings(instanceID: "bench")))
        } catch {
            await shared.cleanup()
            throw error
        }
        await shared.cleanup()
    }

    static func measure(_ name: String, _ store: any PaymentStore) async throws {
        for n in 0..<200 { try await Self.pay(store, -1 - n) }  // warm up: statements compiled, pool open
        let (cpu, started) = (Self.cpuMicroseconds(), ContinuousClock.now)
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            for _ in 0..<Self.concurrency {
                group.addTask { [n = next] in try await Self.pay(store, n) }
                next += 1
            }
            while try await group.next() != nil, next < Self.payments {
                group.addTask { [n = next] in try await Self.pay(store, n) }
                next += 1
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        let spent = Self.cpuMicroseconds() - cpu
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let rate = String(format: "%.0f", Double(Self.payments) / seconds)
        let perPayment = String(format: "%.1f", spent / Double(Self.payments))
        print("ledger bench: \(name): \(Self.payments) payments in \(String(format: "%.2f", seconds)) s, \(rate) payments/s, \(perPayment) µs CPU per payment")
        let settled = try await store.payments(PaymentQuery(states: [.settled], limit: Self.payments + 1000)).count
        #expect(settled == Self.payments + 200)
    }
}

import BigInt
import GatewayCore
import GatewayStorage
import Synchronization
import X402

/// This process's ``DeferralExposure``: the paid path asks it whether a payment may be served
/// before its settlement (and counts it when it may); the settlement worker reports what became of
/// each payment and reads the ledger back into it.
package final class DeferralGate: Sendable {
    private let exposure = Mutex(DeferralExposure())

    package init() {}

    /// Whether the payment may be deferred; when it may, its amount counts from now on.
    package func admit(route: String, payer: String, amount: BigUInt, deferral: Deferral, config: DeferredSettlementConfig,
                       now: Int64) -> DeferralExposure.Decision {
        let hold = config.failedPayerHold.map { $0.wholeMilliseconds }
        return exposure.withLock { $0.admit(route: route, payer: payer, amount: amount, budget: deferral, now: now, failedPayerHold: hold) }
    }

    /// The payment no longer counts (settled, released, failed, or never queued).
    package func release(route: String, payer: String, amount: BigUInt) {
        exposure.withLock { $0.release(route: route, payer: payer, amount: amount) }
    }

    package func failed(payer: String, at time: Int64) {
        exposure.withLock { $0.failed(payer: payer, at: time) }
    }

    package func exposure(route: String, payer: String? = nil) -> BigUInt {
        exposure.withLock { $0.exposure(DeferralExposure.Key(route: route, payer: payer)) }
    }

    /// Reads the ledger's deferred part into the exposure (every instance's unsettled deferred
    /// payments, the payers that failed within `failedPayerHold`) and returns it.
    @discardableResult
    package func read(_ store: any PaymentStore, config: DeferredSettlementConfig, now: Int64) async throws -> DeferredSummary {
        let mark = exposure.withLock { $0.beginRead() }
        let since = config.failedPayerHold.map { now - $0.wholeMilliseconds } ?? now
        let summary = try await store.deferredSummary(failuresSince: since)
        var unsettled: [(route: String, payer: String, amount: BigUInt)] = []
        for group in summary.unsettled {
            guard let amount = BigUInt(group.amount) else { continue }
            unsettled.append((group.routeID, group.payer, amount * BigUInt(group.count)))
        }
        exposure.withLock {
            $0.read(mark, unsettled: unsettled, failedPayers: summary.failedPayers)
            $0.forgetFailures(before: since)
        }
        return summary
    }
}

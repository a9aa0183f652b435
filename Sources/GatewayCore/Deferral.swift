import BigInt
import X402

/// `settlement: deferred` on a route: how a payment is checked before its request is served, and
/// how much the route lets stay unsettled (`verify`, `riskBudget`).
public struct Deferral: Sendable, Hashable {
    public enum Verification: String, Sendable, Hashable, CaseIterable {
        /// The local checks only (offer, amount, payee, time window, EIP-712 signature, replay claim).
        case local
        /// The local checks, then the facilitator's `/verify` (balance, nonce unused on chain).
        case facilitator
    }

    public var verify: Verification
    /// The most one payer's unsettled deferred payments on this route may add up to, in atomic
    /// units of the route's asset.
    public var perPayer: BigUInt
    /// The most all unsettled deferred payments on this route may add up to (atomic units).
    public var total: BigUInt

    public init(verify: Verification, perPayer: BigUInt, total: BigUInt) {
        self.verify = verify
        self.perPayer = perPayer
        self.total = total
    }
}

/// The settlement workers and the rules every deferred route shares (`deferredSettlement:`).
public struct DeferredSettlementConfig: Sendable, Hashable {
    /// `/settle` calls in flight at once, per instance.
    public var concurrency: Int = 16
    /// How long a worker holds a taken payment (longer than `facilitator.timeout`): a worker that
    /// dies is replaced after it.
    public var lease: Duration = .seconds(60)
    /// Settlements stop being tried this long before the authorization's `validBefore` (the
    /// facilitator refuses an authorization about to expire).
    public var margin: Duration = .seconds(10)
    /// The first retry's delay after a settlement without a clear answer; doubled each time, up to ``retryMax``.
    public var retryInitial: Duration = .seconds(1)
    public var retryMax: Duration = .seconds(30)
    /// How often an idle worker looks at the queue (a payment handed over wakes it at once).
    public var poll: Duration = .seconds(1)
    /// How often the exposure, the failed payers and the metrics are read back from the ledger
    /// (what other instances sharing it did).
    public var refresh: Duration = .seconds(5)
    /// A payer with a deferred settlement that failed within this long is served only after its
    /// payment settles (`after-success`); nil: failures do not change how a payer is served.
    public var failedPayerHold: Duration? = .seconds(86_400)

    public init() {}
}

extension SettleResponse {
    /// The x402 reason for a settlement that is pending, not failed: x402 Python SDK 2.25,
    /// `x402/pending_settlement_store.py` (`ERR_SETTLEMENT_PENDING`), which its EVM mechanism
    /// answers with `success: false` and the transaction when known (`mechanisms/evm/settle_receipt.py`).
    public static let pendingReason = "settlement_pending"

    /// The `PAYMENT-RESPONSE` of a payment served before its settlement: pending, no transaction yet.
    public static func pending(payer: String?, network: String) -> SettleResponse {
        SettleResponse(success: false, errorReason: pendingReason,
                       errorMessage: "the payment was accepted and will be settled after delivery", payer: payer, transaction: "",
                       network: network)
    }
}

/// The unsettled exposure of deferred routes, per route and per (route, payer), and the payers
/// whose deferred settlement failed: whether the next payment may be served before its settlement.
///
/// A pure value: the gateway keeps one per process (``DeferralGate``), restores it from the ledger
/// at start and reads the ledger again every `deferredSettlement.refresh` (the shared view of every
/// instance); between two reads its own admissions and outcomes count on top (`delta`). A read
/// replaces what it read and keeps only the changes made since it began.
public struct DeferralExposure: Sendable, Equatable {
    public struct Key: Sendable, Hashable {
        public var route: String
        /// nil: the route's total.
        public var payer: String?

        public init(route: String, payer: String?) {
            self.route = route
            self.payer = payer?.lowercased()
        }
    }

    public enum Decision: String, Sendable, Equatable, CaseIterable {
        case deferred
        /// The payer's unsettled deferred payments on the route would pass `riskBudget.perPayer`.
        case overPayerBudget = "over_payer_budget"
        /// The route's unsettled deferred payments would pass `riskBudget.total`.
        case overTotalBudget = "over_total_budget"
        /// A deferred settlement of this payer failed within `failedPayerHold`.
        case payerFailed = "payer_failed"
    }

    /// From the ledger, at the last read.
    private var base: [Key: BigUInt] = [:]
    /// This process's admissions (+) and outcomes (−) since the last read began.
    private var delta: [Key: BigInt] = [:]
    /// Payer → time of its latest deferred failure (unix ms).
    private var failures: [String: Int64] = [:]

    public init() {}

    /// Exposure of `key` now: the ledger's, plus what this process did since it was read.
    public func exposure(_ key: Key) -> BigUInt {
        let sum = BigInt(base[key] ?? 0) + (delta[key] ?? 0)
        return sum > 0 ? BigUInt(sum) : 0
    }

    /// Whether a payment of `amount` by `payer` on `route` may be served before its settlement; when
    /// it may, the amount is counted at once (``release(route:payer:amount:)`` takes it back).
    public mutating func admit(route: String, payer: String, amount: BigUInt, budget: Deferral, now: Int64,
                               failedPayerHold: Int64?) -> Decision {
        let payerKey = Key(route: route, payer: payer), totalKey = Key(route: route, payer: nil)
        if let hold = failedPayerHold, let failed = failures[payerKey.payer!], now - failed < hold { return .payerFailed }
        if exposure(payerKey) + amount > budget.perPayer { return .overPayerBudget }
        if exposure(totalKey) + amount > budget.total { return .overTotalBudget }
        add(BigInt(amount), route: route, payer: payer)
        return .deferred
    }

    /// The payment admitted for `amount` is no longer unsettled here: settled, released, or ended
    /// (a failure is counted by ``failed(payer:at:)`` as well).
    public mutating func release(route: String, payer: String, amount: BigUInt) {
        add(-BigInt(amount), route: route, payer: payer)
    }

    public mutating func failed(payer: String, at time: Int64) {
        let payer = payer.lowercased()
        failures[payer] = max(time, failures[payer] ?? time)
    }

    /// Where a read of the ledger starts: the changes made so far, which the read will include.
    public struct ReadMark: Sendable {
        fileprivate var delta: [Key: BigInt]
    }

    public func beginRead() -> ReadMark { ReadMark(delta: delta) }

    /// The ledger as read (unsettled deferred amounts per route and payer; payers with a recent
    /// failure): replaces the state before `mark`, keeps the changes made since.
    public mutating func read(_ mark: ReadMark, unsettled: [(route: String, payer: String, amount: BigUInt)],
                              failedPayers: [String: Int64]) {
        var fresh: [Key: BigUInt] = [:]
        for entry in unsettled {
            fresh[Key(route: entry.route, payer: entry.payer), default: 0] += entry.amount
            fresh[Key(route: entry.route, payer: nil), default: 0] += entry.amount
        }
        base = fresh
        for (key, before) in mark.delta {
            let left = (delta[key] ?? 0) - before
            delta[key] = left == 0 ? nil : left
        }
        for (payer, at) in failedPayers { failed(payer: payer, at: at) }
    }

    /// Forgets failures older than `since` (unix ms).
    public mutating func forgetFailures(before since: Int64) {
        failures = failures.filter { $0.value >= since }
    }

    private mutating func add(_ amount: BigInt, route: String, payer: String) {
        for key in [Key(route: route, payer: payer), Key(route: route, payer: nil)] {
            let next = (delta[key] ?? 0) + amount
            delta[key] = next == 0 ? nil : next
        }
    }
}

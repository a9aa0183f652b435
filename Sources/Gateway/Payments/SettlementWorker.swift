import BigInt
import GatewayCore
import GatewayStorage
import Logging
import ServiceLifecycle
import Synchronization
import X402
import X402Facilitator

/// Settles the payments served before their settlement (`settlement: deferred`): one per instance,
/// beside the others sharing the store (each payment goes to one of them, under a lease).
///
/// A payment this instance's request hands over is taken with its hand-over, in one write, and
/// settled at once while fewer than `concurrency` settlements run; otherwise it waits in the
/// ledger's queue, from which any instance takes the payments whose lease has ended (each for
/// `lease`). For each: `/settle`, then the outcome is recorded (``DeferredOutcome``):
///
/// - settled: the transaction;
/// - refused: `settle_failed_after_delivery` with the facilitator's reason, and the payer is served
///   after-success for `failedPayerHold`; a refusal after an earlier attempt that got no clear answer
///   is `unknown` instead (that attempt may have moved the money: reconciliation decides);
/// - no clear answer (timeout, connection lost, 5xx, or `settlement_pending`): tried again after
///   `retry.initial`, doubled up to `retry.max`, while the authorization's `validBefore` minus
///   `margin` has not passed; after that, `unknown`;
/// - a payment its request never handed over (the gateway died before the upstream's answer):
///   released, nothing charged.
///
/// It wakes when a payment is handed over, when a settlement ends, and every `poll`. Every
/// `refresh` (and at start, before anything is deferred) it reads the ledger's deferred part back
/// into the exposure (``DeferralGate``) and the metrics. On graceful shutdown it takes nothing more
/// and lets the settlements in flight finish.
package final class SettlementWorker: Sendable {
    package let gate = DeferralGate()
    private let store: any PaymentStore
    private let snapshot: @Sendable () -> GatewaySnapshot
    private let metrics: GatewayMetrics
    private let logger: Logger
    /// Unix milliseconds.
    private let clock: @Sendable () -> Int64
    private let wake = Mutex<AsyncStream<Void>.Continuation?>(nil)
    /// Whether the ledger was read since start: until then nothing is deferred.
    private let ready = Atomic<Bool>(false)
    /// Set every `poll`: the queue is read then (other instances' payments, retries that are due).
    private let pollDue = Flag()
    /// Requests' hand-overs waiting to be written, and whether the worker still takes them.
    private let handOvers = Mutex(HandOvers())

    private struct HandOvers {
        var waiting: [(ticket: ClaimTicket, steps: [PaymentStep])] = []
        var closed = false
    }

    init(store: any PaymentStore, snapshot: @escaping @Sendable () -> GatewaySnapshot, metrics: GatewayMetrics, logger: Logger,
         clock: @escaping @Sendable () -> Int64 = StoreSettings.systemClock) {
        self.store = store
        self.snapshot = snapshot
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
    }

    /// Whether deferral may be offered: the ledger's exposure has been read.
    package var isReady: Bool { ready.load(ordering: .acquiring) }

    /// Look at the queue now.
    package func nudge() {
        wake.withLock { $0 }?.yield()
    }

    /// A request's queued payment whose upstream answered < 400: its `forwarded` step, which hands
    /// it to the workers, is written here rather than on the answer's path (one durable write
    /// less before the client gets its answer). Should the process die before it is written, the
    /// payment is released at restart as never handed over: delivered, and not charged. False once
    /// the worker has stopped taking them: the caller writes it.
    package func handOver(_ ticket: ClaimTicket, _ steps: [PaymentStep]) -> Bool {
        let accepted = handOvers.withLock { waiting in
            guard !waiting.closed else { return false }
            waiting.waiting.append((ticket, steps))
            return true
        }
        if accepted { nudge() }
        return accepted
    }

    private func takeHandOvers(closing: Bool = false) -> [(ticket: ClaimTicket, steps: [PaymentStep])] {
        handOvers.withLock { waiting in
            if closing { waiting.closed = true }
            defer { waiting.waiting = [] }
            return waiting.waiting
        }
    }

    private func write(handOver: (ticket: ClaimTicket, steps: [PaymentStep])) async {
        do {
            try await store.record(handOver.ticket, handOver.steps)
            nudge()
        } catch {
            logger.error("deferred settlement: the hand-over could not be written; the payment stays held until its lease ends, then is released unpaid",
                         metadata: ["x402.payer": "\(handOver.ticket.key.payer)", "x402.nonce": "\(handOver.ticket.key.nonce.prefix(10))",
                                    "error": "\(error)"])
        }
    }

    /// Runs the queue and the periodic reads of the ledger until graceful shutdown (then it waits
    /// for the settlements in flight) or cancellation. Deferral is offered once the ledger was read
    /// (``refresh(_:)``; the server reads it once before it listens).
    package func run() async {
        let (events, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        wake.withLock { $0 = continuation }
        defer { wake.withLock { $0 = nil } }
        let stopping = Flag()
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !stopping.isSet, !Task.isCancelled {
                        let config = self.snapshot().config.deferredSettlement
                        do {
                            try await self.refresh(config)
                        } catch {
                            self.logger.warning("deferred settlements: the payment store failed; reading again later",
                                                metadata: ["error": "\(error)"])
                        }
                        try? await Task.sleep(for: config.refresh)
                    }
                }
                group.addTask {
                    while !stopping.isSet, !Task.isCancelled {
                        try? await Task.sleep(for: self.snapshot().config.deferredSettlement.poll)
                        self.pollDue.set()
                        continuation.yield()
                    }
                }
                await self.runQueue(events, stopping: stopping)
                group.cancelAll()
            }
        } onGracefulShutdown: {
            stopping.set()
            continuation.yield()
        }
    }

    /// A flag set from any task (and, for ``pollDue``, taken back by the queue).
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        var isSet: Bool { value.load(ordering: .acquiring) }
        func set() { value.store(true, ordering: .releasing) }
        /// Whether it was set, clearing it.
        func take() -> Bool { value.exchange(false, ordering: .acquiringAndReleasing) }
    }

    /// The settlements in flight.
    final class Running: Sendable {
        private let value = Mutex(0)
        var count: Int { value.withLock { $0 } }
        func add(_ n: Int) { value.withLock { $0 += n } }
    }

    // MARK: The ledger's view

    /// One read of the ledger's deferred part (exposure, failed payers, metrics); deferral is
    /// offered from the first that succeeds.
    package func refresh(_ config: DeferredSettlementConfig? = nil) async throws {
        let now = clock()
        let summary = try await gate.read(store, config: config ?? snapshot().config.deferredSettlement, now: now)
        var pending = 0, unknown = 0, oldest = now
        var exposure: [String: Double] = [:]
        for group in summary.unsettled {
            if group.state == .settlementPending {
                pending += group.count
                oldest = min(oldest, group.oldestClaimedAt)
            } else {
                unknown += group.count
            }
            exposure[group.routeID, default: 0] += (Double(group.amount) ?? 0) * Double(group.count)
        }
        metrics.deferredLedger(pending: pending, unknown: unknown, failures: summary.failures,
                               oldestPendingSeconds: pending == 0 ? 0 : Double(now - oldest) / 1000, exposure: exposure)
        ready.store(true, ordering: .releasing)
    }

    // MARK: The queue

    /// The queue: payments handed over by this instance's requests are taken with their hand-over
    /// (one write) and settled at once while there is room; others wait in the ledger's queue,
    /// which is read every `poll` and whenever it may hold more than was taken (`backlog`), never
    /// on every wake-up (a take is a write).
    private func runQueue(_ events: AsyncStream<Void>, stopping: Flag) async {
        let running = Running()
        await withTaskGroup(of: Void.self) { group in
            /// One settlement in flight (counted against `concurrency`); its end wakes the loop.
            func start(_ work: @escaping @Sendable () async -> Void) {
                running.add(1)
                group.addTask {
                    await work()
                    running.add(-1)
                    self.nudge()
                }
            }
            var iterator = events.makeAsyncIterator()
            var backlog = true  // at start: whatever an earlier run left
            while !stopping.isSet {
                let config = snapshot().config.deferredSettlement
                let lease = config.lease.wholeMilliseconds
                for handOver in takeHandOvers() {
                    if running.count < config.concurrency, handOver.steps.count == 1,
                       case .forwarded(let status) = handOver.steps[0].transition {
                        start { await self.takeAndSettle(handOver.ticket, status: status, at: handOver.steps[0].at, lease: lease) }
                    } else {
                        backlog = true
                        group.addTask { await self.write(handOver: handOver) }
                    }
                }
                if pollDue.take() { backlog = true }
                let free = config.concurrency - running.count
                if backlog, free > 0 {
                    let limit = min(free, 100)
                    do {
                        let taken = try await store.takePending(limit: limit, leaseMilliseconds: lease)
                        for settlement in taken { start { await self.settle(settlement) } }
                        backlog = taken.count == limit
                    } catch {
                        logger.warning("deferred settlements: the payment store failed; taking again later", metadata: ["error": "\(error)"])
                        backlog = false  // the next poll tries again
                    }
                    if backlog { continue }  // more may be waiting
                }
                if await iterator.next() == nil { break }
            }
            // Graceful shutdown: nothing more is taken; the hand-overs waiting are written (later ones
            // are written by their requests) and the settlements in flight finish.
            for handOver in takeHandOvers(closing: true) { group.addTask { await self.write(handOver: handOver) } }
            await group.waitForAll()
        }
    }

    /// Takes this instance's hand-over with the row and settles it; a hand-over the store no
    /// longer accepts (the request's hold ended and the row was released meanwhile) is logged.
    private func takeAndSettle(_ ticket: ClaimTicket, status: Int, at: Int64, lease: Int64) async {
        do {
            if let settlement = try await store.takeHandedOver(ticket, upstreamStatus: status, forwardedAt: at, leaseMilliseconds: lease) {
                await settle(settlement)
            } else {
                logger.warning("deferred settlement: the hand-over came after the payment left the request's hold",
                               metadata: ["x402.payer": "\(ticket.key.payer)", "x402.nonce": "\(ticket.key.nonce.prefix(10))"])
            }
        } catch {
            logger.error("deferred settlement: the hand-over could not be written; the payment stays held until its lease ends, then is released unpaid",
                         metadata: ["x402.payer": "\(ticket.key.payer)", "x402.nonce": "\(ticket.key.nonce.prefix(10))", "error": "\(error)"])
        }
    }

    /// Settles one taken payment and records what became of it.
    func settle(_ settlement: DeferredSettlement) async {
        let snapshot = snapshot()
        let config = snapshot.config.deferredSettlement
        let key = settlement.ticket.key
        var logger = self.logger
        logger[metadataKey: "x402.route"] = "\(settlement.routeID)"
        logger[metadataKey: "x402.payer"] = "\(key.payer)"
        logger[metadataKey: "x402.nonce"] = "\(key.nonce.prefix(10))"
        logger[metadataKey: "x402.settle_attempt"] = "\(settlement.ticket.settleAttempt)"
        let deadline = Int64(clamping: settlement.validBefore) * 1000 - config.margin.wholeMilliseconds
        let unsure = settlement.earlierAttemptUnsure

        guard settlement.upstreamStatus != nil else {
            await finish(settlement, .released(reason: "not_delivered"), logger: logger)
            return
        }
        guard let pending = settlement.pending else {
            await finish(settlement, unsure ? .unknown(reason: "payment_not_kept") : .failed(reason: "payment_not_kept"), logger: logger)
            return
        }
        if clock() >= deadline {
            await finish(settlement, unsure ? .unknown(reason: "deadline_passed") : .failed(reason: "deadline_passed"), logger: logger)
            return
        }
        guard let facilitator = snapshot.facilitator else {
            await finish(settlement, retry("facilitator_not_configured", settlement, deadline: deadline, config: config), logger: logger)
            return
        }
        let outcome: DeferredOutcome
        do throws(FacilitatorFailure) {
            let answer = try await facilitator.settle(version: pending.x402Version, paymentPayload: Array(pending.payload.utf8),
                                                      requirements: Array(pending.requirements.utf8))
            if answer.success {
                outcome = .settled(transaction: answer.transaction)
            } else if answer.errorReason == SettleResponse.pendingReason {
                outcome = retry(SettleResponse.pendingReason, settlement, deadline: deadline, config: config)
            } else {
                // A refusal after an attempt without an answer may mean that attempt went through.
                let reason = answer.errorReason ?? "settlement_failed"
                outcome = unsure ? .unknown(reason: reason) : .failed(reason: reason)
            }
        } catch {
            logger.warning("deferred settlement got no clear answer", metadata: ["error": "\(error)"])
            outcome = retry(error == .timeout ? "facilitator_timeout" : "facilitator_unavailable", settlement, deadline: deadline, config: config)
        }
        await finish(settlement, outcome, logger: logger)
    }

    /// Back in the queue after the backoff, or `unknown` when the next try would be past the deadline.
    private func retry(_ reason: String, _ settlement: DeferredSettlement, deadline: Int64, config: DeferredSettlementConfig) -> DeferredOutcome {
        let doublings = min(max(0, settlement.ticket.settleAttempt - 1), 30)
        let delay = min(config.retryInitial.wholeMilliseconds << doublings, config.retryMax.wholeMilliseconds)
        let next = clock() + delay
        return next >= deadline ? .unknown(reason: reason) : .retry(reason: reason, notBefore: next)
    }

    private func finish(_ settlement: DeferredSettlement, _ outcome: DeferredOutcome, logger: Logger) async {
        let name: String
        switch outcome {
        case .settled: name = "settled"
        case .failed: name = "failed"
        case .unknown: name = "unknown"
        case .released: name = "released"
        case .retry: name = "retry"
        }
        do {
            guard try await store.finishPending(settlement.ticket, outcome) else {
                logger.warning("deferred settlement: another worker holds the payment now; outcome not recorded", metadata: ["x402.outcome": "\(name)"])
                return
            }
        } catch {
            // The row stays taken until its lease ends; the next take is then an unsure retry.
            logger.error("deferred settlement: the payment store failed; outcome not recorded",
                         metadata: ["x402.outcome": "\(name)", "error": "\(error)"])
            return
        }
        metrics.deferredSettlement(outcome: name)
        let amount = BigUInt(settlement.offer.amount) ?? 0
        switch outcome {
        case .settled(let transaction):
            logger.info("deferred payment settled", metadata: ["x402.transaction": "\(transaction)"])
            metrics.settlement(outcome: "settled")
            metrics.settled(network: settlement.offer.network, asset: settlement.offer.asset, amount: amount)
            gate.release(route: settlement.routeID, payer: settlement.ticket.key.payer, amount: amount)
        case .failed(let reason):
            logger.warning("deferred settlement failed after delivery", metadata: ["x402.reason": "\(reason)"])
            metrics.settlement(outcome: "failed")
            gate.release(route: settlement.routeID, payer: settlement.ticket.key.payer, amount: amount)
            gate.failed(payer: settlement.ticket.key.payer, at: clock())
        case .released(let reason):
            logger.notice("deferred payment released: its answer was never delivered", metadata: ["x402.reason": "\(reason)"])
            gate.release(route: settlement.routeID, payer: settlement.ticket.key.payer, amount: amount)
        case .unknown(let reason):
            // Still unsettled (counted until reconciled).
            logger.error("deferred settlement outcome unknown; left for reconciliation", metadata: ["x402.reason": "\(reason)"])
            metrics.settlement(outcome: "unknown")
        case .retry(let reason, let notBefore):
            logger.info("deferred settlement to be tried again", metadata: ["x402.reason": "\(reason)", "x402.not_before": "\(notBefore)"])
        }
    }
}

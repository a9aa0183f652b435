import BigInt
import GatewayCore
import GatewayStorage
import Logging
import NIOCore
import NIOPosix
import Synchronization
import X402
import X402Crypto
import X402Facilitator

/// Settles the ledger rows whose settlement outcome is unknown (`unknown`, or `settling` whose lease
/// ended) with what the chain says, for the networks that have an RPC URL in `networks:`.
///
/// A round: list every such row; per configured network, check the node's chain id, read the head
/// block, then for the oldest `reconcile.batch` rows read `authorizationState(payer, nonce)` at that
/// block (and, when used, the token's events for the transaction) and apply
/// ``Reconciliation/decide(_:validBefore:unknownSince:now:grace:)``: `reconciled_settled`,
/// `reconciled_unsettled` (the claim is free again), or left for the next round. Every call has the
/// network's `timeout`; a node that does not answer ends that network's round. Each decision is
/// logged and counted (`x402_reconciliations_total{outcome}`); the rows still unknown are the gauge
/// `x402_payments_unknown{network}`, rows on networks without an RPC URL included.
///
/// Runs once at start and then every `reconcile.interval`, read from the serving configuration (a
/// reload applies). Several instances sharing a store may reconcile the same row: the store applies
/// the first and answers false to the others.
package final class Reconciler: Sendable {
    /// What one row came to in a round.
    package struct Outcome: Sendable, Equatable {
        package var key: PaymentKey
        package var decision: Reconciliation.Decision
        /// Whether the store took the decision (false: the row had left the unknown state meanwhile,
        /// or the decision leaves it as it is).
        package var applied: Bool

        package init(key: PaymentKey, decision: Reconciliation.Decision, applied: Bool) {
            self.key = key
            self.decision = decision
            self.applied = applied
        }
    }

    private let store: any PaymentStore
    private let config: @Sendable () -> GatewayConfig
    private let metrics: GatewayMetrics
    private let logger: Logger
    /// Unix milliseconds.
    private let clock: @Sendable () -> Int64
    private let eventLoopGroup: any EventLoopGroup
    private let readers = Mutex<[String: (config: ChainRPCConfig, reader: EVMChainReader)]>([:])
    private let retired = Mutex<[EVMChainReader]>([])
    /// Rows on networks without an RPC URL at the last round (logged when it changes).
    private let unreconcilable = Mutex<Int>(0)

    /// The most rows one round lists (pages of 1000).
    static let maxListed = 100_000

    package init(store: any PaymentStore, config: @escaping @Sendable () -> GatewayConfig, metrics: GatewayMetrics, logger: Logger,
         clock: @escaping @Sendable () -> Int64 = StoreSettings.systemClock,
         eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.store = store
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.clock = clock
        self.eventLoopGroup = eventLoopGroup
    }

    /// A round now, then one every `reconcile.interval`, until cancelled.
    package func run() async throws {
        while true {
            await round()
            try await Task.sleep(for: config().reconcile.interval)
        }
    }

    /// Closes the chain readers' connections.
    package func shutdown() async {
        let all = readers.withLock { cache in
            defer { cache = [:] }
            return cache.values.map { $0.reader }
        } + retired.withLock { list in
            defer { list = [] }
            return list
        }
        for reader in all { await reader.shutdown() }
    }

    /// `250ms`, `30s`, `5m`, `2h`: a duration as the configuration writes it.
    static func text(_ duration: Duration) -> String {
        let ms = duration.wholeMilliseconds
        for (unit, size) in [("h", Int64(3_600_000)), ("m", 60_000), ("s", 1000)] where ms >= size && ms % size == 0 {
            return "\(ms / size)\(unit)"
        }
        return "\(ms)ms"
    }

    // MARK: Listing

    /// When the row's outcome became unknown: when it was marked `unknown`, or when the lease of a
    /// `settling` row ended.
    static func unknownSince(_ row: PaymentRecord) -> Int64 {
        row.state == .unknown ? (row.finishedAt ?? row.updatedAt) : row.leaseUntil
    }

    /// Every row whose settlement outcome is unknown at `now`, newest first.
    package func unknownOutcomes(now: Int64) async throws -> [PaymentRecord] {
        var rows: [PaymentRecord] = []
        var seen = Set<PaymentKey>()
        var after: PaymentCursor?
        let page = 1000
        while seen.count < Self.maxListed {
            let listed = try await store.payments(PaymentQuery(states: [.unknown, .settling], limit: page, after: after))
            for row in listed where seen.insert(row.key).inserted {
                if row.state == .unknown || row.leaseUntil <= now { rows.append(row) }
            }
            guard listed.count == page, let last = listed.last else { break }
            after = PaymentCursor(last)
        }
        return rows
    }

    /// Unknown outcomes per network, and whether reconciliation reads that network (for `/readyz`).
    package func attention() async throws -> [(network: String, count: Int, rpcHost: String?)] {
        let networks = config().networks
        let counts = Dictionary(grouping: try await unknownOutcomes(now: clock()), by: \.key.network).mapValues(\.count)
        return counts.keys.sorted().map { ($0, counts[$0]!, networks[$0]?.host) }
    }

    // MARK: A round

    @discardableResult
    package func round() async -> [Outcome] {
        let config = config()
        let rows: [PaymentRecord]
        do {
            rows = try await unknownOutcomes(now: clock())
        } catch {
            logger.warning("reconciliation round skipped: the payment store failed", metadata: ["error": "\(error)"])
            return []
        }
        var outcomes: [Outcome] = []
        for (network, chain) in config.networks.sorted(by: { $0.key < $1.key }) where !Task.isCancelled {
            let candidates = rows.filter { $0.key.network == network && ($0.offer.scheme == "exact" || $0.offer.scheme == "upto") }
                .sorted { Self.unknownSince($0) < Self.unknownSince($1) }
                .prefix(config.reconcile.batch)
            guard !candidates.isEmpty, let reader = reader(for: chain) else { continue }
            outcomes += await reconcile(Array(candidates), on: chain, with: reader, grace: config.reconcile.grace)
        }
        await retireReaders(keeping: Set(config.networks.keys))

        // The gauge: what is still unknown, per network (0 for networks configured or priced).
        let resolved = Set(outcomes.filter(\.applied).map(\.key))
        var counts: [String: Int] = [:]
        for network in config.networks.keys { counts[network] = 0 }
        for route in config.routes {
            if case .priced(let offers) = route.access { for offer in offers { counts[offer.network.caip2] = 0 } }
        }
        for row in rows where !resolved.contains(row.key) { counts[row.key.network, default: 0] += 1 }
        metrics.unknownPayments(counts)

        let orphaned = rows.filter { config.networks[$0.key.network] == nil }
        let previous = unreconcilable.withLock { count in
            defer { count = orphaned.count }
            return count
        }
        if orphaned.count != previous, !orphaned.isEmpty {
            let networks = Set(orphaned.map(\.key.network)).sorted().joined(separator: ", ")
            logger.warning("payments with an unknown settlement outcome on networks without an rpc URL: reconcile them by hand",
                           metadata: ["x402.unknown": "\(orphaned.count)", "x402.network": "\(networks)"])
        }
        return outcomes
    }

    /// One network's batch, read at one head block.
    private func reconcile(_ rows: [PaymentRecord], on chain: ChainRPCConfig, with reader: EVMChainReader, grace: Duration) async -> [Outcome] {
        let head: ChainHead
        do {
            try await reader.checkChain(chain.chainId)
            head = try await reader.head()
        } catch {
            for _ in rows { metrics.reconciliation(outcome: "error") }
            logger.warning("reconciliation cannot read the chain; its payments stay unknown until the next round", metadata: [
                "x402.network": "\(chain.network)", "x402.rpc": "\(reader.host)", "x402.unknown": "\(rows.count)", "error": "\(error)",
            ])
            return rows.map { Outcome(key: $0.key, decision: .error, applied: false) }
        }
        var outcomes: [Outcome] = []
        // Cancelled: the gateway is stopping; the rest waits for the next start.
        for row in rows where !Task.isCancelled {
            let (reading, failure) = await read(row, on: chain, with: reader, at: head)
            let decision = Reconciliation.decide(reading, validBefore: row.validBefore, unknownSince: Self.unknownSince(row), now: clock(),
                                                 grace: grace)
            outcomes.append(await apply(decision, to: row, rpc: reader.host, failure: failure))
            if let failure, failure.isTransport {
                logger.warning("reconciliation stopped for this round: the rpc does not answer", metadata: [
                    "x402.network": "\(chain.network)", "x402.rpc": "\(reader.host)", "error": "\(failure)",
                ])
                break
            }
        }
        return outcomes
    }

    /// What the chain says about the row's authorization at `head`.
    private func read(_ row: PaymentRecord, on chain: ChainRPCConfig, with reader: EVMChainReader, at head: ChainHead) async
        -> (Reconciliation.Reading, ChainReadFailure?)
    {
        if row.offer.transferMethod == "permit2" { return await readPermit2(row, with: reader, at: head) }
        guard let token = EVMAddress(hex: row.key.asset), let payer = EVMAddress(hex: row.key.payer),
              let nonce = Hex.decode(row.key.nonce, prefixed: true), nonce.count == 32
        else { return (.failed, .malformedResponse("the ledger row's asset, payer or nonce is not an EVM value")) }
        do {
            guard try await reader.authorizationState(token: token, authorizer: payer, nonce: nonce, at: head.number) else {
                return (.unused(blockTimestamp: head.timestamp), nil)
            }
        } catch {
            return (.failed, error)
        }
        let from = head.number >= chain.logBlocks ? head.number - chain.logBlocks + 1 : 0
        do {
            let events = try await reader.authorizationEvents(token: token, authorizer: payer, nonce: nonce, from: from, to: head.number)
            for event in events { if case .used(let transaction) = event { return (.used(transaction: transaction), nil) } }
            if events.contains(where: { if case .canceled = $0 { true } else { false } }) { return (.canceled, nil) }
        } catch {
            // The state is what counts; the transaction is a courtesy.
            logger.info("reconciliation could not look up the transaction", metadata: [
                "x402.network": "\(chain.network)", "x402.rpc": "\(reader.host)", "error": "\(error)",
            ])
        }
        return (.used(transaction: nil), nil)
    }

    /// A Permit2 payment: its nonce's bit in Permit2's bitmap. Used means settled (no transaction
    /// looked up; an owner who invalidated the nonce is indistinguishable, and was not charged either
    /// way by this gateway's own hand); unused is judged against `validBefore` (the Permit2 deadline)
    /// and the grace as for EIP-3009.
    private func readPermit2(_ row: PaymentRecord, with reader: EVMChainReader, at head: ChainHead) async
        -> (Reconciliation.Reading, ChainReadFailure?)
    {
        guard let owner = EVMAddress(hex: row.key.payer), let nonce = ABIWord.uint256(decimal: row.key.nonce) else {
            return (.failed, .malformedResponse("the ledger row's payer or Permit2 nonce is not an EVM value"))
        }
        do {
            let used = try await reader.permit2NonceUsed(owner: owner, nonce: nonce, at: head.number)
            return (used ? .used(transaction: nil) : .unused(blockTimestamp: head.timestamp), nil)
        } catch {
            return (.failed, error)
        }
    }

    /// Writes the decision to the store, logs and counts it.
    private func apply(_ decision: Reconciliation.Decision, to row: PaymentRecord, rpc: String, failure: ChainReadFailure?) async -> Outcome {
        var metadata: Logger.Metadata = [
            "x402.route": "\(row.routeID)", "x402.network": "\(row.key.network)", "x402.payer": "\(row.key.payer)",
            "x402.nonce": "\(row.key.nonce.prefix(10))…", "x402.decision": "\(decision.outcome)", "x402.rpc": "\(rpc)",
        ]
        let outcome: ReconciledOutcome
        switch decision {
        case .settled(let transaction):
            metadata["x402.transaction"] = "\(transaction ?? "not found")"
            outcome = .settled(transaction: transaction)
        case .unsettled(let because):
            metadata["x402.reason"] = "\(because.rawValue)"
            outcome = .unsettled
        case .pending:
            metadata["x402.reason"] = "unused_within_grace"
            metrics.reconciliation(outcome: decision.outcome)
            logger.notice("reconciliation decision", metadata: metadata)
            return Outcome(key: row.key, decision: decision, applied: false)
        case .error:
            metadata["error"] = "\(failure.map { "\($0)" } ?? "unknown")"
            metrics.reconciliation(outcome: decision.outcome)
            logger.warning("reconciliation decision", metadata: metadata)
            return Outcome(key: row.key, decision: decision, applied: false)
        }
        let applied: Bool
        do {
            applied = try await store.reconcile(row.key, attempt: row.attempt, outcome)
        } catch {
            metadata["x402.decision"] = "error"
            metadata["error"] = "\(error)"
            metrics.reconciliation(outcome: "error")
            logger.warning("reconciliation decision not recorded: the payment store failed", metadata: metadata)
            return Outcome(key: row.key, decision: .error, applied: false)
        }
        guard applied else {
            logger.info("reconciliation decision dropped: the payment left the unknown state meanwhile", metadata: metadata)
            return Outcome(key: row.key, decision: decision, applied: false)
        }
        metrics.reconciliation(outcome: decision.outcome)
        if case .settled = decision, let amount = BigUInt(row.revenueAmount) {
            metrics.settled(network: row.key.network, asset: row.key.asset, amount: amount)
        }
        logger.notice("reconciliation decision", metadata: metadata)
        return Outcome(key: row.key, decision: decision, applied: true)
    }

    // MARK: Readers

    /// The reader for `chain`, made on first use and kept while its configuration is unchanged.
    private func reader(for chain: ChainRPCConfig) -> EVMChainReader? {
        readers.withLock { cache in
            if let cached = cache[chain.network], cached.config == chain { return cached.reader }
            if let old = cache.removeValue(forKey: chain.network) { retired.withLock { $0.append(old.reader) } }
            guard let made = EVMChainReader(url: chain.rpc, timeout: chain.timeout, eventLoopGroup: eventLoopGroup) else { return nil }
            cache[chain.network] = (chain, made)
            return made
        }
    }

    /// Shuts down readers replaced by a reload or for networks no longer configured.
    private func retireReaders(keeping networks: Set<String>) async {
        let gone = readers.withLock { cache in
            let dropped = cache.filter { !networks.contains($0.key) }
            for key in dropped.keys { cache.removeValue(forKey: key) }
            return dropped.values.map { $0.reader }
        } + retired.withLock { list in
            defer { list = [] }
            return list
        }
        for reader in gone { await reader.shutdown() }
    }
}

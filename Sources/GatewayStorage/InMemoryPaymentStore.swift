import Synchronization

/// Payment state in this process's memory: neither durable nor shared. For tests, and for a
/// single instance that accepts losing its claims and ledger on restart (the log says so at start).
/// Rows that are past their authorization's `validBefore` and no longer in flight or unknown are
/// dropped once more than `retention` rows are held.
public final class InMemoryPaymentStore: PaymentStore {
    public let instanceID: String
    public var kind: String { "memory" }
    private let settings: StoreSettings
    private let retention: Int
    private let state = Mutex(State())

    private struct State {
        var rows: [PaymentKey: PaymentRecord] = [:]
        /// Keys whose current claim is a retry after an unknown outcome (kept so when taken over).
        var retries: Set<PaymentKey> = []
        /// The payments kept for their deferred settlement, while they are queued.
        var pending: [PaymentKey: PendingSettlement] = [:]
    }

    private let identifiers = Mutex<[IdentifierScope: IdentifierRecord]>([:])

    struct IdentifierScope: Hashable {
        var routeID: String
        var id: String
    }

    public init(settings: StoreSettings = StoreSettings(instanceID: "memory"), retention: Int = 1_000_000) {
        self.settings = settings
        self.instanceID = settings.instanceID
        self.retention = retention
    }

    public func claim(_ request: ClaimRequest) async throws -> ClaimResult {
        let now = settings.clock()
        let lease = now + settings.leaseMilliseconds
        return state.withLock { state in
            let prior = state.rows[request.key]
            if let prior {
                let stale = prior.state.isInFlight && prior.leaseUntil <= now
                guard PaymentState.claimable.contains(prior.state) || stale else { return .taken }
            } else if state.rows.count >= retention {
                evict(&state.rows, now: now)
            }
            let attempt = (prior?.attempt ?? 0) + 1
            var offer = request.offer
            (offer.network, offer.asset) = (request.key.network, request.key.asset)  // as the SQL ledgers keep them
            state.rows[request.key] = PaymentRecord(
                key: request.key, offer: offer, routeID: request.routeID, method: request.method, path: request.path,
                requestID: request.requestID, state: .claimed, attempt: attempt, instanceID: instanceID, leaseUntil: lease,
                validBefore: request.validBefore, claimedAt: now, updatedAt: now, paymentIdentifier: request.paymentIdentifier)
            state.pending[request.key] = nil
            let ticket = ClaimTicket(key: request.key, attempt: attempt)
            // A retry whose holder died is still a retry.
            if let prior, PaymentState.outcomeUnknown.contains(prior.state) || (prior.state.isInFlight && state.retries.contains(request.key)) {
                state.retries.insert(request.key)
                return .claimedAfterUnknownOutcome(ticket)
            }
            state.retries.remove(request.key)
            return .claimed(ticket)
        }
    }

    public func record(_ ticket: ClaimTicket, _ steps: [PaymentStep]) async throws {
        guard PaymentStep.isChain(steps) else { throw StorageError(.outOfOrder, "steps out of order: \(steps.map(\.transition.target))") }
        let now = settings.clock()
        try state.withLock { state in
            guard var row = state.rows[ticket.key], row.attempt == ticket.attempt else {
                throw StorageError(.leaseLost, "\(ticket.key) attempt \(ticket.attempt) is no longer held")
            }
            let first = steps[0].transition, last = steps[steps.count - 1].transition
            if row.state == last.state(after: row.state), !first.predecessors.contains(row.state) { return }
            guard first.predecessors.contains(row.state) else {
                throw StorageError(.outOfOrder, "\(first.target.rawValue) cannot follow \(row.state.rawValue)")
            }
            let wasQueued = row.state == .settlementPending
            for step in steps { row.apply(step) }
            // `forwarded` on a queued row hands it to the settlement workers: its lease ends now.
            row.leaseUntil = wasQueued && row.state == .settlementPending ? now : now + settings.leaseMilliseconds
            row.updatedAt = now
            state.rows[ticket.key] = row
            switch last {
            case .pending(let pending): state.pending[ticket.key] = pending
            case .refused, .released, .unknown: state.pending[ticket.key] = nil
            default: break
            }
        }
    }

    public func now() -> Int64 { settings.clock() }

    public func reconcile(_ key: PaymentKey, attempt: Int, _ outcome: ReconciledOutcome) async throws -> Bool {
        let now = settings.clock()
        return state.withLock { state in
            guard var row = state.rows[key], row.attempt == attempt,
                  row.state == .unknown || (row.state == .settling && row.leaseUntil <= now)
            else { return false }
            row.reconcile(outcome, now: now)
            state.rows[key] = row
            state.retries.remove(key)
            return true
        }
    }

    public func payments(_ query: PaymentQuery) async throws -> [PaymentRecord] {
        let all = state.withLock { Array($0.rows.values) }
        return Array(all.filter { query.matches($0) }.sorted(by: PaymentRecord.newestFirst).prefix(query.limit))
    }

    public func revenue(_ query: RevenueQuery) async throws -> RevenueSummary {
        let all = state.withLock { Array($0.rows.values) }
        return RevenueSummary(records: all, query: query, now: settings.clock())
    }

    public func claimIdentifier(_ request: IdentifierClaimRequest) async throws -> IdentifierClaim {
        let now = settings.clock()
        let scope = IdentifierScope(routeID: request.routeID, id: request.id)
        return identifiers.withLock { records in
            let prior = records[scope]
            if let prior, !prior.isClaimable(now: now) { return .existing(prior) }
            if prior == nil, records.count >= retention {
                records = records.filter { !$0.value.isClaimable(now: now) || $0.value.expiresAt > now }
            }
            let attempt = (prior?.attempt ?? 0) + 1
            records[scope] = IdentifierRecord(
                routeID: request.routeID, id: request.id, paymentHash: request.paymentHash, bindingHash: request.bindingHash,
                key: request.key, requestID: request.requestID, state: .inFlight, attempt: attempt, instanceID: instanceID,
                leaseUntil: now + settings.leaseMilliseconds, createdAt: now, expiresAt: request.expiresAt, updatedAt: now)
            return .claimed(IdentifierTicket(routeID: request.routeID, id: request.id, attempt: attempt))
        }
    }

    public func completeIdentifier(_ ticket: IdentifierTicket, _ response: StoredResponse) async throws {
        let now = settings.clock()
        try identifiers.withLock { records in
            let scope = IdentifierScope(routeID: ticket.routeID, id: ticket.id)
            guard var record = records[scope], record.attempt == ticket.attempt, record.state != .released else {
                throw StorageError(.leaseLost, "payment identifier \(ticket.id) attempt \(ticket.attempt) is no longer held")
            }
            if record.state == .completed { return }
            record.state = .completed
            record.response = response
            record.completedAt = now
            record.leaseUntil = now
            record.updatedAt = now
            records[scope] = record
        }
    }

    public func releaseIdentifier(_ ticket: IdentifierTicket) async throws {
        let now = settings.clock()
        identifiers.withLock { records in
            let scope = IdentifierScope(routeID: ticket.routeID, id: ticket.id)
            guard var record = records[scope], record.attempt == ticket.attempt, record.state == .inFlight else { return }
            record.state = .released
            record.leaseUntil = now
            record.updatedAt = now
            records[scope] = record
        }
    }

    public func identifier(routeID: String, id: String) async throws -> IdentifierRecord? {
        let now = settings.clock()
        guard let record = identifiers.withLock({ $0[IdentifierScope(routeID: routeID, id: id)] }) else { return nil }
        return record.state == .released || (record.state == .completed && record.expiresAt <= now) ? nil : record
    }

    public func claimPending(_ request: ClaimRequest, _ pending: PendingSettlement) async throws -> ClaimTicket? {
        let now = settings.clock()
        return state.withLock { state in
            let prior = state.rows[request.key]
            if let prior {
                let fresh = [PaymentState.released, .refused, .reconciledUnsettled].contains(prior.state)
                    || ([PaymentState.claimed, .verified, .forwarded].contains(prior.state) && prior.leaseUntil <= now
                        && !state.retries.contains(request.key))
                guard fresh else { return nil }
            } else if state.rows.count >= retention {
                evict(&state.rows, now: now)
            }
            let attempt = (prior?.attempt ?? 0) + 1
            var offer = request.offer
            (offer.network, offer.asset) = (request.key.network, request.key.asset)
            state.rows[request.key] = PaymentRecord(
                key: request.key, offer: offer, routeID: request.routeID, method: request.method, path: request.path,
                requestID: request.requestID, state: .settlementPending, attempt: attempt, instanceID: instanceID,
                leaseUntil: now + settings.leaseMilliseconds, validBefore: request.validBefore, claimedAt: now, updatedAt: now,
                deferred: true, paymentIdentifier: request.paymentIdentifier)
            state.pending[request.key] = pending
            state.retries.remove(request.key)
            return ClaimTicket(key: request.key, attempt: attempt)
        }
    }

    public func takePending(limit: Int, leaseMilliseconds: Int64) async throws -> [DeferredSettlement] {
        let now = settings.clock()
        return state.withLock { state in
            let due = state.rows.values.filter { $0.state == .settlementPending && $0.leaseUntil <= now }
                .sorted { ($0.leaseUntil, $0.key.description) < ($1.leaseUntil, $1.key.description) }
                .prefix(max(0, limit))
            return due.map { taken in
                var row = taken
                row.instanceID = instanceID
                row.leaseUntil = now + leaseMilliseconds
                row.settleAttempts += 1
                row.settlingAt = now
                row.updatedAt = now
                state.rows[row.key] = row
                return DeferredSettlement(
                    ticket: DeferredTicket(key: row.key, settleAttempt: row.settleAttempts), routeID: row.routeID, offer: row.offer,
                    validBefore: row.validBefore, claimedAt: row.claimedAt, upstreamStatus: row.forwardedAt == nil ? nil : row.upstreamStatus,
                    pending: state.pending[row.key])
            }
        }
    }

    public func takeHandedOver(_ ticket: ClaimTicket, upstreamStatus: Int, forwardedAt: Int64, leaseMilliseconds: Int64) async throws
        -> DeferredSettlement?
    {
        let now = settings.clock()
        return state.withLock { state in
            guard var row = state.rows[ticket.key], row.attempt == ticket.attempt, row.state == .settlementPending, row.forwardedAt == nil
            else { return nil }
            row.upstreamStatus = upstreamStatus
            row.forwardedAt = forwardedAt
            row.instanceID = instanceID
            row.leaseUntil = now + leaseMilliseconds
            row.settleAttempts += 1
            row.settlingAt = now
            row.updatedAt = now
            state.rows[ticket.key] = row
            return DeferredSettlement(
                ticket: DeferredTicket(key: row.key, settleAttempt: row.settleAttempts), routeID: row.routeID, offer: row.offer,
                validBefore: row.validBefore, claimedAt: row.claimedAt, upstreamStatus: upstreamStatus, pending: state.pending[row.key])
        }
    }

    public func finishPending(_ ticket: DeferredTicket, _ outcome: DeferredOutcome) async throws -> Bool {
        let now = settings.clock()
        return state.withLock { state in
            guard var row = state.rows[ticket.key], row.state == .settlementPending, row.settleAttempts == ticket.settleAttempt else {
                return false
            }
            row.updatedAt = now
            switch outcome {
            case .retry(let reason, let notBefore):
                row.reason = reason
                row.leaseUntil = notBefore
                state.rows[ticket.key] = row
                return true
            case .settled(let transaction):
                row.state = .settled
                row.transaction = transaction
                row.reason = nil
            case .failed(let reason):
                row.state = .settleFailedAfterDelivery
                row.reason = reason
            case .unknown(let reason):
                row.state = .unknown
                row.reason = reason
            case .released(let reason):
                row.state = .released
                row.reason = reason
            }
            row.finishedAt = now
            row.leaseUntil = now
            state.rows[ticket.key] = row
            state.pending[ticket.key] = nil
            return true
        }
    }

    public func deferredSummary(failuresSince: Int64) async throws -> DeferredSummary {
        let all = state.withLock { Array($0.rows.values) }
        struct GroupKey: Hashable { var route: String, payer: String, amount: String, state: PaymentState }
        var groups: [GroupKey: DeferredSummary.Group] = [:]
        var summary = DeferredSummary()
        for row in all {
            switch row.state {
            case .settlementPending, .unknown:
                guard row.deferred else { continue }
                let key = GroupKey(route: row.routeID, payer: row.key.payer, amount: row.offer.amount, state: row.state)
                var group = groups[key] ?? DeferredSummary.Group(routeID: row.routeID, payer: row.key.payer, amount: row.offer.amount,
                                                                  state: row.state, count: 0, oldestClaimedAt: row.claimedAt)
                group.count += 1
                group.oldestClaimedAt = min(group.oldestClaimedAt, row.claimedAt)
                groups[key] = group
            case .settleFailedAfterDelivery:
                summary.failures += 1
                if let at = row.finishedAt, at >= failuresSince { summary.failedPayers[row.key.payer] = max(at, summary.failedPayers[row.key.payer] ?? at) }
            default: break
            }
        }
        summary.unsettled = Array(groups.values)
        return summary
    }

    public func ping() async throws {}

    private func evict(_ rows: inout [PaymentKey: PaymentRecord], now: Int64) {
        let nowSeconds = UInt64(max(0, now / 1000))
        rows = rows.filter { _, row in
            row.validBefore >= nowSeconds || row.state.isInFlight || row.state == .unknown || row.state == .settlementPending
        }
    }
}

extension PaymentRecord {
    /// The row after `transition` at time `now` (already checked against the order), as every backend writes it.
    mutating func apply(_ step: PaymentStep) {
        let (transition, now) = (step.transition, step.at)
        state = transition.state(after: state)
        switch transition {
        case .verified(let payer):
            verifiedPayer = payer.lowercased()
            verifiedAt = now
        case .forwarded(let status):
            upstreamStatus = status
            forwardedAt = now
        case .settling:
            settlingAt = now
            chargedAmount = step.charge?.amount ?? offer.amount
            chargeBasis = step.charge?.basis
        case .settled(let hash):
            transaction = hash
            chargedAmount = chargedAmount ?? offer.amount
            finishedAt = now
        case .refused(let why), .released(let why), .unknown(let why):
            reason = why
            finishedAt = now
        case .pending:
            deferred = true
        }
    }

    mutating func reconcile(_ outcome: ReconciledOutcome, now: Int64) {
        switch outcome {
        case .settled(let hash):
            state = .reconciledSettled
            if let hash { transaction = hash }
        case .unsettled:
            state = .reconciledUnsettled
        }
        reconciledAt = now
        updatedAt = now
    }

    static func newestFirst(_ a: PaymentRecord, _ b: PaymentRecord) -> Bool {
        PaymentCursor.listedFirst((a.claimedAt, a.key), (b.claimedAt, b.key))
    }
}

extension PaymentQuery {
    func matches(_ row: PaymentRecord) -> Bool {
        if let since, row.claimedAt < since { return false }
        if let before, row.claimedAt >= before { return false }
        if let after, !PaymentCursor.listedFirst((after.claimedAt, after.key), (row.claimedAt, row.key)) { return false }
        if let routeID, row.routeID != routeID { return false }
        if let states, !states.contains(row.state) { return false }
        if let payer, row.key.payer != payer { return false }
        return true
    }
}

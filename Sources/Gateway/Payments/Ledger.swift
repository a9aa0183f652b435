import GatewayStorage
import Logging

/// One paid request's view of the payment store: the claim it holds and the steps it records.
/// Store failures are logged here and reported as `false`/`nil`; the caller fails closed on them
/// before the settlement and carries on after it (money that moved is never left undelivered).
struct Ledger {
    let store: any PaymentStore
    let logger: Logger
    private(set) var ticket: ClaimTicket?
    /// The payment identifier this request holds, when it presented one and claimed it.
    private(set) var identifierTicket: IdentifierTicket?
    /// The facilitator's reason when it refused the payment (the claim then ends as `refused`).
    var refusal: String?
    /// Steps noted, not written yet: they go with the next ``step(_:)``.
    private var noted: [PaymentStep] = []

    init(store: any PaymentStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Claims the payment; nil when the store failed.
    mutating func claim(_ request: ClaimRequest) async -> ClaimResult? {
        do {
            let result = try await store.claim(request)
            switch result {
            case .claimed(let ticket), .claimedAfterUnknownOutcome(let ticket): self.ticket = ticket
            case .taken: break
            }
            return result
        } catch {
            logger.error("payment store failed; failing closed", metadata: ["x402.stage": "claim", "error": "\(error)"])
            return nil
        }
    }

    /// Claims the payment straight into the settlement queue (deferred settlement): `.some(nil)`
    /// when the store could not (the caller claims the ordinary way to learn why), nil when it failed.
    mutating func claimPending(_ request: ClaimRequest, _ pending: PendingSettlement) async -> ClaimTicket?? {
        do {
            let ticket = try await store.claimPending(request, pending)
            if let ticket { self.ticket = ticket }
            return .some(ticket)
        } catch {
            logger.error("payment store failed; failing closed", metadata: ["x402.stage": "claim", "error": "\(error)"])
            return nil
        }
    }

    /// The steps noted so far and the ticket they are for, handed to someone else to write (they
    /// are no longer noted here); nil when there is nothing to write.
    mutating func takeNoted() -> (ticket: ClaimTicket, steps: [PaymentStep])? {
        guard let ticket, !noted.isEmpty else { return nil }
        defer { noted = [] }
        return (ticket, noted)
    }

    /// Writes `steps` for `ticket` in one change; false when the store failed (logged here).
    func write(_ ticket: ClaimTicket, _ steps: [PaymentStep]) async -> Bool {
        do {
            try await store.record(ticket, steps)
            return true
        } catch {
            logger.error("payment store failed", metadata: ["x402.stage": "\(steps.last?.transition.target.rawValue ?? "")", "error": "\(error)"])
            return false
        }
    }

    /// Notes a step that needs no durability of its own (`verified`, `forwarded` before any
    /// settlement: a crash there ends the claim as released either way) with its time; it is
    /// written with the next ``step(_:)``, which saves the paid path a write per step.
    mutating func note(_ transition: PaymentTransition) {
        guard ticket != nil else { return }
        noted.append(PaymentStep(transition, at: store.now()))
    }

    /// Records a step of the claim held, after the steps noted before it, in one change; false
    /// when the store failed (logged here). Before `settling` the caller fails closed on it; after
    /// it, a row left in `settling` is an unknown outcome for reconciliation and any other
    /// in-flight row is free again once its lease ends.
    @discardableResult
    mutating func step(_ transition: PaymentTransition, charge: PaymentCharge? = nil) async -> Bool {
        guard let (ticket, steps) = takeChain(transition, charge: charge) else { return false }
        return await write(ticket, steps)
    }

    /// The steps noted, then `transition` timed now, for the claim held (nil without one); none stay noted.
    private mutating func takeChain(_ transition: PaymentTransition, charge: PaymentCharge? = nil) -> (ClaimTicket, [PaymentStep])? {
        guard let ticket else { return nil }
        defer { noted = [] }
        return (ticket, noted + [PaymentStep(transition, at: store.now(), charge: charge)])
    }

    /// Records the last step of the claim held, after the steps noted before it, without waiting
    /// for the write (see ``LedgerWriteBehind``); a failure is logged.
    mutating func stepWithoutWaiting(_ transition: PaymentTransition, in writes: LedgerWriteBehind) {
        guard let (ticket, steps) = takeChain(transition) else { return }
        let ledger = self
        writes.start { _ = await ledger.write(ticket, steps) }
    }

    /// Claims the payment's identifier; nil when the store failed.
    mutating func claimIdentifier(_ request: IdentifierClaimRequest) async -> IdentifierClaim? {
        do {
            let result = try await store.claimIdentifier(request)
            if case .claimed(let ticket) = result { identifierTicket = ticket }
            return result
        } catch {
            logger.error("payment store failed; failing closed", metadata: ["x402.stage": "identifier", "error": "\(error)"])
            return nil
        }
    }

    /// The live record of an identifier, without claiming it; `.failure` when the store failed.
    func lookUpIdentifier(routeID: String, id: String) async -> Result<IdentifierRecord?, StorageError> {
        do {
            return .success(try await store.identifier(routeID: routeID, id: id))
        } catch {
            logger.error("payment store failed; failing closed", metadata: ["x402.stage": "identifier", "error": "\(error)"])
            return .failure(error as? StorageError ?? StorageError(.unavailable, "\(error)"))
        }
    }

    /// Stores the answer for the identifier held. A failure is logged: the record stays in flight
    /// until its lease ends (retries get 409 meanwhile), and the answer is delivered anyway.
    func completeIdentifier(_ response: StoredResponse) async {
        guard let identifierTicket else { return }
        do {
            try await store.completeIdentifier(identifierTicket, response)
        } catch {
            logger.error("payment store failed; the answer is not stored for its payment identifier",
                         metadata: ["x402.stage": "identifier", "error": "\(error)"])
        }
    }

    /// Lets the identifier held go (nothing stored: the client may use it again).
    func releaseIdentifier() async {
        guard let identifierTicket else { return }
        do {
            try await store.releaseIdentifier(identifierTicket)
        } catch {
            logger.error("payment store failed", metadata: ["x402.stage": "identifier", "error": "\(error)"])
        }
    }
}

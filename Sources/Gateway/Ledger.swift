import GatewayStorage
import Logging

/// One paid request's view of the payment store: the claim it holds and the steps it records.
/// Store failures are logged here and reported as `false`/`nil`; the caller fails closed on them
/// before the settlement and carries on after it (money that moved is never left undelivered).
struct Ledger {
    let store: any PaymentStore
    let logger: Logger
    private(set) var ticket: ClaimTicket?
    /// The facilitator's reason when it refused the payment (the claim then ends as `refused`).
    var refusal: String?

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

    /// Records a step of the claim held; false when the store failed.
    func step(_ transition: PaymentTransition) async -> Bool {
        guard let ticket else { return false }
        do {
            try await store.record(ticket, transition)
            return true
        } catch {
            logger.error("payment store failed", metadata: ["x402.stage": "\(transition.target.rawValue)", "error": "\(error)"])
            return false
        }
    }

    /// Records how the claim ended (settled, refused, released, unknown). A failure is logged: a row
    /// left in `settling` is an unknown outcome for reconciliation, and any other in-flight row is
    /// free again once its lease ends.
    func end(_ transition: PaymentTransition) async {
        _ = await step(transition)
    }
}

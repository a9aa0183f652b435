/// A step of a claimed payment and when it happened (unix ms, the store's clock). Steps that need
/// no durability of their own (`verified`, and `forwarded` before any settlement) are noted by the
/// request and written together with the next one that does, in one change.
public struct PaymentStep: Sendable, Equatable {
    public var transition: PaymentTransition
    public var at: Int64
    /// With `settling`: what the settlement is asked to move (for `upto`, decided from the
    /// upstream's answer) and how that was decided; durable before `/settle` is called. Without
    /// one, a settlement charges the offer's amount.
    public var charge: PaymentCharge?

    public init(_ transition: PaymentTransition, at: Int64, charge: PaymentCharge? = nil) {
        self.transition = transition
        self.at = at
        self.charge = charge
    }

    /// Whether `steps` is a non-empty chain in the ledger's order: each step may follow the one before it.
    public static func isChain(_ steps: [PaymentStep]) -> Bool {
        guard !steps.isEmpty else { return false }
        return zip(steps, steps.dropFirst()).allSatisfy { $1.transition.predecessors.contains($0.transition.target) }
    }
}

/// The amount a settlement moves and how it was decided (`exact`; for `upto`: `report`,
/// `per_kib`, `per_unit`, `maximum`, with `_capped` when the request was cut to the maximum).
public struct PaymentCharge: Sendable, Equatable {
    /// Atomic units, decimal digits.
    public var amount: String
    public var basis: String

    public init(amount: String, basis: String) {
        self.amount = amount
        self.basis = basis
    }
}

/// A step of a claimed payment and when it happened (unix ms, the store's clock). Steps that need
/// no durability of their own (`verified`, and `forwarded` before any settlement) are noted by the
/// request and written together with the next one that does, in one change.
public struct PaymentStep: Sendable, Equatable {
    public var transition: PaymentTransition
    public var at: Int64

    public init(_ transition: PaymentTransition, at: Int64) {
        self.transition = transition
        self.at = at
    }

    /// Whether `steps` is a non-empty chain in the ledger's order: each step may follow the one before it.
    public static func isChain(_ steps: [PaymentStep]) -> Bool {
        guard !steps.isEmpty else { return false }
        return zip(steps, steps.dropFirst()).allSatisfy { $1.transition.predecessors.contains($0.transition.target) }
    }
}

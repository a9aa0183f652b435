import Synchronization

/// Identifies one payment authorization: the token's own replay key (EIP-3009 nonces are per
/// authorizer and token), scoped by network.
public struct PaymentKey: Sendable, Hashable, CustomStringConvertible {
    public var network: String
    public var asset: String
    public var from: String
    public var nonce: String

    /// Addresses and nonce are lower-cased so spellings of one payment collide.
    public init(network: String, asset: String, from: String, nonce: String) {
        self.network = network
        self.asset = asset.lowercased()
        self.from = from.lowercased()
        self.nonce = nonce.lowercased()
    }

    public var description: String { "\(network)/\(asset)/\(from)/\(nonce)" }
}

/// What a claim found.
public enum ClaimResult: Sendable, Equatable {
    /// The key was free; this request holds it.
    case claimed
    /// An earlier settlement of this payment ended without an answer (outcome unknown); this
    /// request holds the key and may try again. The key returns to "unknown" if it is released.
    case claimedAfterUnknownOutcome
    /// In flight elsewhere, or spent.
    case taken
}

/// Claims on payments in flight, spent, or whose settlement outcome is unknown.
///
/// Atomicity contract: `claim` is linearisable — of any number of concurrent claims on one key,
/// at most one succeeds until that claim ends (release, markSpent or markUnknown). A durable
/// backend (SQLite, or PostgreSQL shared by several gateways) must keep the same contract, e.g. with
/// `INSERT … ON CONFLICT DO NOTHING` on the key plus a conditional `UPDATE` for unknown-outcome keys.
public protocol ReplayGuard: Sendable {
    func claim(_ key: PaymentKey) async -> ClaimResult
    /// Ends the claim without a charge: the payment may be presented again (a key claimed after
    /// an unknown outcome goes back to unknown).
    func release(_ key: PaymentKey) async
    /// Marks the key as spent for good (settled on chain).
    func markSpent(_ key: PaymentKey) async
    /// The settlement's outcome is unknown: the key is not free, but the same payment may be
    /// presented again to retry (and is then claimed with `.claimedAfterUnknownOutcome`).
    func markUnknown(_ key: PaymentKey) async
}

/// In-memory replay guard for a single gateway instance. Spent keys are kept for `retention`
/// claims (authorizations expire, so old keys stop mattering); in-flight and unknown-outcome keys
/// are never evicted.
public final class InMemoryReplayGuard: ReplayGuard {
    private struct State {
        var inFlight: Set<PaymentKey> = []
        /// In flight, and unknown before this claim.
        var retrying: Set<PaymentKey> = []
        var unknown: Set<PaymentKey> = []
        var spent: Set<PaymentKey> = []
        var spentOrder: [PaymentKey] = []
    }

    private let state = Mutex(State())
    private let retention: Int

    public init(retention: Int = 1_000_000) {
        self.retention = retention
    }

    public func claim(_ key: PaymentKey) async -> ClaimResult {
        state.withLock { s in
            if s.inFlight.contains(key) || s.spent.contains(key) { return .taken }
            s.inFlight.insert(key)
            if s.unknown.remove(key) != nil {
                s.retrying.insert(key)
                return .claimedAfterUnknownOutcome
            }
            return .claimed
        }
    }

    public func release(_ key: PaymentKey) async {
        state.withLock { s in
            s.inFlight.remove(key)
            if s.retrying.remove(key) != nil { s.unknown.insert(key) }
        }
    }

    public func markUnknown(_ key: PaymentKey) async {
        state.withLock { s in
            s.inFlight.remove(key)
            s.retrying.remove(key)
            s.unknown.insert(key)
        }
    }

    public func markSpent(_ key: PaymentKey) async {
        state.withLock { s in
            s.inFlight.remove(key)
            s.retrying.remove(key)
            s.unknown.remove(key)
            guard s.spent.insert(key).inserted else { return }
            s.spentOrder.append(key)
            // Evict the oldest tenth in one go, so eviction stays cheap per claim.
            if s.spentOrder.count > retention + retention / 10 {
                let drop = s.spentOrder.count - retention
                for old in s.spentOrder[..<drop] { s.spent.remove(old) }
                s.spentOrder.removeFirst(drop)
            }
        }
    }
}

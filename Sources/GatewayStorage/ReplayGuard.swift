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

/// Claims on payments in flight or spent.
///
/// Atomicity contract: `claim` is linearisable — of any number of concurrent claims on one key,
/// exactly one returns `true` until that claim is released. A durable backend (SQLite, or
/// PostgreSQL shared by several gateways) must keep the same contract, e.g. with an
/// `INSERT … ON CONFLICT DO NOTHING` on the key.
public protocol ReplayGuard: Sendable {
    /// Claims `key`; false if it is already claimed (in flight or settled).
    func claim(_ key: PaymentKey) async -> Bool
    /// Gives the key back: the payment was not spent (verify refused it, the upstream failed, or
    /// settlement definitely failed) and may be presented again.
    func release(_ key: PaymentKey) async
    /// Marks the key as spent for good (settled on chain, or outcome unknown: fail closed).
    func markSpent(_ key: PaymentKey) async
}

/// In-memory replay guard for a single gateway instance. Spent keys are kept for `retention`
/// claims (authorizations expire, so old keys stop mattering); in-flight claims are never evicted.
public final class InMemoryReplayGuard: ReplayGuard {
    private struct State {
        var inFlight: Set<PaymentKey> = []
        var spent: Set<PaymentKey> = []
        var spentOrder: [PaymentKey] = []
    }

    private let state = Mutex(State())
    private let retention: Int

    public init(retention: Int = 1_000_000) {
        self.retention = retention
    }

    public func claim(_ key: PaymentKey) async -> Bool {
        state.withLock { s in
            if s.inFlight.contains(key) || s.spent.contains(key) { return false }
            s.inFlight.insert(key)
            return true
        }
    }

    public func release(_ key: PaymentKey) async {
        _ = state.withLock { $0.inFlight.remove(key) }
    }

    public func markSpent(_ key: PaymentKey) async {
        state.withLock { s in
            s.inFlight.remove(key)
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

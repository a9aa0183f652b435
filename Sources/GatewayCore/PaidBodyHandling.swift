/// What a paid request does with the upstream's response body before its settlement is decided.
public enum PaidBodyHandling: Sendable, Equatable {
    /// Relayed as it comes: `before` (settled already), `after-headers` (settled on the head), and
    /// any status ≥ 400 (never settled, nothing to hold).
    case relay
    /// Read whole (at most `limit` bytes) before `/settle`: `after-success` delivers nothing unpaid.
    case holdWhole(limit: Int)
    /// Streamed `upto`: relayed as it comes but for its last `holdBack` bytes, which wait for the
    /// settlement of what was counted.
    case holdTail(holdBack: Int)

    /// Decided from the policy the request is served under, the upstream's status, the route's
    /// `upto.holdBack` (nil: not streamed) and `limits.maxBufferedResponse`.
    public init(policy: SettlementPolicy, status: Int, holdBack: Int?, bufferLimit: Int) {
        guard policy == .afterSuccess, status < 400 else {
            self = .relay
            return
        }
        self = holdBack.map { .holdTail(holdBack: $0) } ?? .holdWhole(limit: bufferLimit)
    }
}

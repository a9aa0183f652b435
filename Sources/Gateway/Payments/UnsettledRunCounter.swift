import GatewayCore
import Synchronization

/// ``UnsettledRuns`` for the whole process, behind a lock (paid requests on every event loop use it).
final class UnsettledRunCounter: Sendable {
    private let runs = Mutex(UnsettledRuns())

    func mustSettleFirst(_ key: UnsettledRuns.Key, limit: Int, window: Duration, now: UInt64) -> Bool {
        runs.withLock { $0.mustSettleFirst(key, limit: limit, window: Self.seconds(window), now: now) }
    }

    func record(_ key: UnsettledRuns.Key, limit: Int, window: Duration, now: UInt64) {
        runs.withLock { $0.record(key, limit: limit, window: Self.seconds(window), now: now) }
    }

    private static func seconds(_ window: Duration) -> UInt64 { UInt64(max(window.components.seconds, 1)) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What every backend is configured with.
public struct StoreSettings: Sendable {
    /// Written into the rows this instance claims; unique among the instances sharing a store.
    public var instanceID: String
    /// How long a claim stays held without a step (milliseconds); every step renews it. Longer than
    /// the slowest paid request (upstream and facilitator deadlines together).
    public var leaseMilliseconds: Int64
    /// Unix milliseconds (injected: tests move time).
    public var clock: @Sendable () -> Int64

    public init(instanceID: String, leaseMilliseconds: Int64 = 300_000,
                clock: @escaping @Sendable () -> Int64 = StoreSettings.systemClock) {
        self.instanceID = instanceID
        self.leaseMilliseconds = leaseMilliseconds
        self.clock = clock
    }

    public static let systemClock: @Sendable () -> Int64 = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

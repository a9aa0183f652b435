import Foundation
import Testing

/// Runs a test on a thread of its own instead of Swift concurrency's shared pool.
///
/// Swift Testing runs every test of the process at once on the cooperative pool, which has one
/// thread per core (two here). A test that computes for seconds without suspending (a property
/// test's thousands of cases, a fuzz-like loop) holds one of them: two such tests hold both, and
/// every other test's awaits, timers and PostgreSQL pool stall behind them (a loaded run measured
/// 9 s stalls: connect timeouts, deadlines missed). Marked `.cpuHeavy`, a test or suite runs on
/// ``CPUHeavyThread`` instead (one thread, so heavy tests take turns there), and the operating
/// system shares the cores between it and the pool.
public struct CPUHeavyTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        testCase == nil ? nil : self  // each test case's run, not the suite around them
    }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(CPUHeavyThread.shared, operation: function)
    }
}

extension Trait where Self == CPUHeavyTrait {
    /// Runs the test (or each test of the suite) on a thread of its own: see ``CPUHeavyTrait``.
    public static var cpuHeavy: Self { Self() }
}

/// One thread that runs the jobs of the tasks that prefer it, in order; it lives as long as the process.
public final class CPUHeavyThread: TaskExecutor, @unchecked Sendable {
    public static let shared = CPUHeavyThread()

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []  // guarded by `condition`

    private init() {
        let thread = Thread { [self] in run() }
        thread.name = "cpu-heavy-tests"
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() -> Never {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

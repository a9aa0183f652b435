import Gateway
import Synchronization
import Testing

/// The `settled` steps a paid answer does not wait for: what `drain()` waits for (shutdown and
/// the admin's listings rely on it), and what it does not.
@Suite("Ledger writes behind the answer", .timeLimit(.minutes(1)))
struct LedgerWriteBehindTests {
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .sequentiallyConsistent) }
        var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
    }

    /// A write that ends when its gate opens, and says when it has ended.
    final class Gate: Sendable {
        private let opened: AsyncStream<Void>
        private let open: AsyncStream<Void>.Continuation
        let ended = Flag()
        init() { (opened, open) = AsyncStream<Void>.makeStream() }
        func release() { open.finish() }
        func wait() async {
            for await _ in opened {}
            ended.set()
        }
    }

    @Test("drain returns at once when nothing was started, and after every write started before it")
    func drainWaitsForStartedWrites() async {
        let writes = LedgerWriteBehind()
        await writes.drain()
        let first = Gate(), second = Gate()
        writes.start { await first.wait() }
        writes.start { await second.wait() }
        let drained = Flag()
        async let drain: Void = { await writes.drain(); drained.set() }()
        second.release()
        try? await Task.sleep(for: .milliseconds(50))
        // The second write ended; the first has not, so the drain still waits.
        #expect(second.ended.isSet)
        #expect(!drained.isSet)
        first.release()
        await drain
        #expect(first.ended.isSet)
    }

    @Test("a write started after drain was called is not waited for")
    func laterWritesAreNotWaitedFor() async {
        let writes = LedgerWriteBehind()
        let early = Gate(), late = Gate()
        writes.start { await early.wait() }
        async let drain: Void = writes.drain()
        try? await Task.sleep(for: .milliseconds(20))
        writes.start { await late.wait() }
        early.release()
        await drain
        #expect(early.ended.isSet)
        #expect(!late.ended.isSet)
        late.release()
        await writes.drain()
        #expect(late.ended.isSet)
    }
}

import Synchronization

/// Ledger writes a paid answer does not wait for: the `settled` step of a payment whose answer
/// follows its settlement. The row is `settling` on disk before `/settle` is called (that write is
/// awaited, as is the claim), so a crash before this one lands leaves an unknown outcome that
/// reconciliation settles from the chain; waiting for its commit would add a third durable write to
/// every paid answer's latency. A failed write is logged by the ledger, as an awaited one would be
/// after the money moved.
///
/// ``drain()`` waits for the writes started before it was called: graceful shutdown does (nothing
/// started is dropped), and so does every ledger listing of the admin listener, so that a payment
/// whose answer went out is listed as settled by this instance.
package final class LedgerWriteBehind: Sendable {
    private struct State {
        var nextID = 0
        var running: Set<Int> = []
        /// Each waiter, with the first write id it does not wait for.
        var waiters: [(upTo: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    package init() {}

    /// Starts `write` now, without waiting for it.
    package func start(_ write: @escaping @Sendable () async -> Void) {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            state.running.insert(state.nextID)
            return state.nextID
        }
        Task {
            await write()
            self.finished(id)
        }
    }

    private func finished(_ id: Int) {
        let ready = state.withLock { state in
            state.running.remove(id)
            let oldest = state.running.min() ?? state.nextID
            let ready = state.waiters.filter { $0.upTo <= oldest }
            state.waiters.removeAll { $0.upTo <= oldest }
            return ready
        }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Returns once every write started before the call has ended (writes started later are not
    /// waited for, so a listing under load is never held up for long).
    package func drain() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state in
                let oldest = state.running.min() ?? state.nextID
                if oldest >= state.nextID { return true }
                state.waiters.append((state.nextID, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }
}

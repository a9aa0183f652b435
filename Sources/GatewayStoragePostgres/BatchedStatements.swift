import GatewayStorage
import Synchronization

/// Group commit for the ledger's hot statements: while a statement of one kind runs, the ones of
/// the same kind that concurrent payments send wait and then run together, as one statement over
/// many rows (``BatchedLedgerStatement``), in one round trip and one commit. A payment alone runs
/// at once; under load, the round trips and commits per payment fall with the batch size.
///
/// Per kind, one batch runs at a time (measured: four at a time left most batches at one
/// statement and cost more CPU per payment; docs/performance.md). A batch holds each
/// payment key once (a second statement on one key waits for the next batch, so the rows of one
/// statement never meet in one `ON CONFLICT`), and at most ``maximumBatch`` statements. Every
/// caller is answered after its batch committed, with the rows of its own statement; a failure of
/// the batch fails every statement in it (none of it was committed).
public final class BatchedStatements: Sendable {
    struct Job: Sendable {
        var binds: [SQLValue]
        /// The payment key: the first four values of every hot statement.
        var key: PaymentKey
        var done: CheckedContinuation<[[SQLValue]], any Error>

        static func key(_ values: ArraySlice<SQLValue>) -> PaymentKey? {
            guard values.count == 4 else { return nil }
            var texts: [String] = []
            for value in values {
                guard case .text(let text) = value else { return nil }
                texts.append(text)
            }
            return PaymentKey(network: texts[0], asset: texts[1], payer: texts[2], nonce: texts[3])
        }
    }

    private struct Queue {
        var jobs: [Job] = []
        /// A batch of this kind is running (its runner takes the next one when it ends).
        var running = false
    }

    /// How many statements have run, in how many batches, and the largest batch.
    public struct Counts: Sendable, Equatable {
        public var statements = 0
        public var batches = 0
        public var largest = 0
    }

    static let maximumBatch = 256
    private let queues = Mutex<[HotStatement: Queue]>([:])
    private let counted = Mutex(Counts())

    var counts: Counts { counted.withLock { $0 } }

    func enqueue(_ job: Job, _ hot: HotStatement, database: PostgresDatabase) {
        let start = queues.withLock { queues in
            queues[hot, default: Queue()].jobs.append(job)
            guard !queues[hot]!.running else { return false }
            queues[hot]!.running = true
            return true
        }
        if start { Task { await self.drain(hot, database: database) } }
    }

    /// Runs batches of `hot` until none waits.
    private func drain(_ hot: HotStatement, database: PostgresDatabase) async {
        while true {
            let batch = nextBatch(hot)
            if batch.isEmpty { return }
            counted.withLock { counts in
                counts.statements += batch.count
                counts.batches += 1
                counts.largest = max(counts.largest, batch.count)
            }
            do {
                let rows = try await database.run(hot, batch.map(\.binds))
                Self.answer(batch, rows)
            } catch {
                for job in batch { job.done.resume(throwing: error) }
            }
        }
    }

    /// Takes the next batch off the queue (distinct keys, in arrival order); when it is empty, this
    /// runner ends.
    private func nextBatch(_ hot: HotStatement) -> [Job] {
        queues.withLock { queues in
            var queue = queues[hot] ?? Queue()
            var batch: [Job] = []
            var later: [Job] = []
            var keys = Set<PaymentKey>()
            for job in queue.jobs {
                if batch.count < Self.maximumBatch, keys.insert(job.key).inserted {
                    batch.append(job)
                } else {
                    later.append(job)
                }
            }
            queue.jobs = later
            if batch.isEmpty { queue.running = false }
            queues[hot] = queue
            return batch
        }
    }

    /// Gives each statement of the batch the row it changed (none when it changed nothing), found
    /// by the key every hot statement returns last.
    static func answer(_ batch: [Job], _ rows: [[SQLValue]]) {
        if batch.count == 1 {
            batch[0].done.resume(returning: rows)
            return
        }
        var byKey: [PaymentKey: [SQLValue]] = [:]
        for row in rows {
            if let key = Job.key(row.suffix(4)) { byKey[key] = row }
        }
        for job in batch {
            job.done.resume(returning: byKey[job.key].map { [$0] } ?? [])
        }
    }
}

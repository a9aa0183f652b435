import NIOCore

/// Runs a task's jobs on one NIO event loop. The paid path's task prefers its connection's loop:
/// every `await` in it (facilitator answers, the upstream hop, the payment store) then resumes
/// on the thread that serves the connection, instead of hopping to and from Swift's global pool.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}

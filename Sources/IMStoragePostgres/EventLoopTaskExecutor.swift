import NIOCore

/// Runs a task's jobs on one NIO event loop: under `withTaskExecutorPreference`, a transaction on a PostgreSQL
/// connection stays on that connection's loop across its statements. Each statement then costs the database's
/// round trip and nothing more: the query is written from the loop itself, and its answer resumes the waiting code
/// right there, instead of a hand-off to the loop for every query and another back to Swift's thread pool for
/// every answer (two thread wake-ups per statement, five statements per group commit).
///
/// Only for short, non-blocking work: everything run here holds up the loop's other channels while it runs.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = self
        loop.execute { job.runSynchronously(on: executor.asUnownedTaskExecutor()) }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}

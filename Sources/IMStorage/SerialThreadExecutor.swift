import Foundation

/// A thread of its own that runs tasks' jobs one at a time, in the order they arrive: a `TaskExecutor` for work
/// that must stay on one thread, such as one SQLite connection's statements. Code run under
/// `withTaskExecutorPreference(executor)` stays on this thread across its awaits (a whole transaction's statements
/// in one hand-off, instead of one hand-off to a thread pool and back per statement).
public final class SerialThreadExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false
    /// Set once by the thread before `init` returns; read-only afterwards.
    private var thread: pthread_t?

    /// Starts the thread, named `name` (shown by `top -H`, `perf`).
    public init(name: String) {
        let started = DispatchSemaphore(value: 0)
        let t = Thread { [self] in
            thread = pthread_self()
            // Named from inside the thread, where Linux applies it: the name `top -H` and `perf` show.
            Thread.current.name = name
            started.signal()
            run()
        }
        t.start()
        started.wait()
    }

    /// True on this executor's thread.
    public var isCurrent: Bool {
        guard let thread else { return false }
        return pthread_equal(pthread_self(), thread) != 0
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        if stopped {
            condition.unlock()
            // After `shutdown` the thread is gone: the job still runs (what it asks of the closed resource fails).
            globalConcurrentExecutor.enqueue(job)
            return
        }
        jobs.append(job)
        let wake = jobs.count == 1
        condition.unlock()
        if wake { condition.signal() }
    }

    /// Runs the jobs already queued, then ends the thread. Jobs enqueued afterwards run on the global executor.
    public func shutdown() {
        condition.lock()
        stopped = true
        condition.unlock()
        condition.signal()
    }

    private func run() {
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty && stopped {
                condition.unlock()
                return
            }
            swap(&batch, &jobs)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}

/// `body`'s result, or nil when `seconds` pass first. The body runs in a task of its own, so that a caller is
/// freed even from an await that never resumes (a lost continuation in a lower layer): on the deadline it is
/// cancelled and left to end on its own (a task group would wait for it, and not every await heeds cancellation).
/// The timer is cancelled when the body ends, so a call that ends in time leaves no sleeper behind. Cancelling
/// the caller cancels the body.
public func firstOf<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async -> Result<T, any Error>? {
    let race = LockedBox(FirstOfRace<T>())
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
            race.withLock { $0.waiter = continuation }
            let work = Task {
                let r: Result<T, any Error>
                do { r = .success(try await body()) } catch { r = .failure(error) }
                let (waiter, timer) = race.withLock { s in
                    defer { s.waiter = nil; s.timer = nil; s.ended = true }
                    return (s.waiter, s.timer)
                }
                timer?.cancel()
                waiter?.resume(returning: r)
            }
            let timer = Task {
                try? await Task.sleep(for: .seconds(seconds))
                if Task.isCancelled { return }
                if let waiter = race.withLock({ s in defer { s.waiter = nil }; return s.waiter }) {
                    work.cancel()
                    waiter.resume(returning: nil)
                }
            }
            // The body may have ended already: then nobody else cancels the timer.
            let (ended, cancelled) = race.withLock { s in
                s.work = work
                if !s.ended { s.timer = timer }
                return (s.ended, s.cancelled)
            }
            if ended { timer.cancel() }
            if cancelled { work.cancel() }
        }
    } onCancel: {
        race.withLock { s in s.cancelled = true; return s.work }?.cancel()
    }
}

/// `firstOf`'s shared state: who waits, the body's task and the timer's.
private struct FirstOfRace<T: Sendable> {
    var waiter: CheckedContinuation<Result<T, any Error>?, Never>?
    var work: Task<Void, Never>?
    var timer: Task<Void, Never>?
    var ended = false
    var cancelled = false
}

/// `body`'s result, or nil when `seconds` pass first. The body runs in a task of its own, so that a caller is
/// freed even from an await that never resumes (a lost continuation in a lower layer): on the deadline it is
/// cancelled and left to end on its own (a task group would wait for it, and not every await heeds cancellation).
/// The timer is cancelled when the body ends, so a call that ends in time leaves no sleeper behind. Cancelling
/// the caller cancels the body.
public func firstOf<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async -> Result<T, any Error>? {
    await firstOf(seconds: Optional(seconds)) { _ in try await body() }
}

/// The same race, with a third way for it to end: `body` is handed a `RaceEnd`, which anything the body hands it
/// to (a connection's close callback) may call to make the race answer `.failure(error)` at once, the body
/// cancelled and left to end on its own as on the deadline. With `seconds` nil there is no deadline.
public func firstOf<T: Sendable>(seconds: Double?, _ body: @escaping @Sendable (RaceEnd) async throws -> T) async -> Result<T, any Error>? {
    let race = LockedBox(FirstOfRace<T>())
    // The body's result, the deadline (nil) or an end from outside: whichever comes first answers; the rest do nothing.
    @Sendable func finish(_ r: Result<T, any Error>?) {
        let (waiter, work, timer, bodyDone) = race.withLock { s in
            defer { s.waiter = nil; s.timer = nil; s.ended = true }
            return (s.waiter, s.work, s.timer, s.bodyDone)
        }
        timer?.cancel()
        guard let waiter else { return }
        if !bodyDone { work?.cancel() }
        waiter.resume(returning: r)
    }
    let end = RaceEnd { error in finish(.failure(error)) }
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
            race.withLock { $0.waiter = continuation }
            let work = Task {
                let r: Result<T, any Error>
                do { r = .success(try await body(end)) } catch { r = .failure(error) }
                race.withLock { $0.bodyDone = true }
                finish(r)
            }
            let timer = seconds.map { seconds in
                Task {
                    try? await Task.sleep(for: .seconds(seconds))
                    if !Task.isCancelled { finish(nil) }
                }
            }
            // The race may be over already (the body ended, or was ended): then nobody else cancels the timer,
            // and the body ended from outside before its task was known is cancelled here.
            let (ended, cancelled, bodyDone) = race.withLock { s in
                s.work = work
                if !s.ended { s.timer = timer }
                return (s.ended, s.cancelled, s.bodyDone)
            }
            if ended { timer?.cancel() }
            if cancelled || (ended && !bodyDone) { work.cancel() }
        }
    } onCancel: {
        race.withLock { s in s.cancelled = true; return s.work }?.cancel()
    }
}

/// Ends a `firstOf` race from outside its body with an error (see `firstOf(seconds:_:)`). Calling it after the race
/// is over does nothing.
public struct RaceEnd: Sendable {
    let end: @Sendable (any Error) -> Void
    public func callAsFunction(_ error: any Error) { end(error) }
}

/// `firstOf`'s shared state: who waits, the body's task and the timer's.
private struct FirstOfRace<T: Sendable> {
    var waiter: CheckedContinuation<Result<T, any Error>?, Never>?
    var work: Task<Void, Never>?
    var timer: Task<Void, Never>?
    var ended = false
    var bodyDone = false
    var cancelled = false
}

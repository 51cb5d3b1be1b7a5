import Foundation
import IMCore
import Testing

/// `firstOf` frees its caller from an await that never resumes, and otherwise answers with the body's result.
@Suite struct FirstOfTests {
    @Test func anAwaitThatNeverResumesGivesNilAtTheDeadlineAndIsCancelled() async {
        let cancelled = LockedBox(false)
        let started = ContinuousClock.now
        // A continuation nobody resumes, except the cancellation handler: what a lost wake-up in a lower layer is.
        let result: Result<Int, any Error>? = await firstOf(seconds: 0.3) {
            let parked = LockedBox<CheckedContinuation<Void, Never>?>(nil)
            await withTaskCancellationHandler {
                await withCheckedContinuation { c in parked.withLock { $0 = c } }
            } onCancel: {
                cancelled.withLock { $0 = true }
                // Resumed only so that the test leaves no task behind.
                Task { try? await Task.sleep(for: .milliseconds(50)); parked.withLock { $0.take() }?.resume() }
            }
            return 1
        }
        #expect(result == nil)
        // Bounded, not timed: a loaded machine may schedule the timer late, but the call returns.
        #expect(started.duration(to: .now) < .seconds(60))
        try? await Task.sleep(for: .milliseconds(100))
        #expect(cancelled.withLock { $0 }, "the body was not cancelled at the deadline")
    }

    @Test func aBodyThatEndsInTimeGivesItsResultOrError() async throws {
        let value = await firstOf(seconds: 5) { 42 }
        #expect(try value?.get() == 42)
        struct Boom: Error {}
        let failed: Result<Int, any Error>? = await firstOf(seconds: 5) { throw Boom() }
        guard case .failure(let e)? = failed else { Issue.record("expected the body's error, got \(String(describing: failed))"); return }
        #expect(e is Boom)
    }

    @Test func anEndFromOutsideAnswersAtOnceWithItsErrorAndCancelsTheBody() async throws {
        // What a PostgreSQL connection's close does to the read or write on it (ConnectionCloseWatch).
        struct Closed: Error {}
        let cancelled = LockedBox(false)
        let handed = LockedBox<RaceEnd?>(nil)
        let outsider = Task {
            while handed.withLock({ $0 }) == nil { try? await Task.sleep(for: .milliseconds(10)) }
            handed.withLock { $0 }?(Closed())
        }
        let result: Result<Int, any Error>? = await firstOf(seconds: nil) { end in
            handed.withLock { $0 = end }
            do { try await Task.sleep(for: .seconds(600)) } catch { cancelled.withLock { $0 = true } }
            return 1
        }
        await outsider.value
        guard case .failure(let e)? = result else { Issue.record("expected the end's error, got \(String(describing: result))"); return }
        #expect(e is Closed)
        try? await Task.sleep(for: .milliseconds(100))
        #expect(cancelled.withLock { $0 }, "the body was not cancelled when the race was ended")
        // An end after the race is over changes nothing.
        let late = LockedBox<RaceEnd?>(nil)
        let done: Result<Int, any Error>? = await firstOf(seconds: nil) { end in late.withLock { $0 = end }; return 7 }
        late.withLock { $0 }?(Closed())
        #expect(try done?.get() == 7)
    }

    @Test func cancellingTheCallerCancelsTheBody() async {
        let cancelled = LockedBox(false)
        let caller = Task {
            await firstOf(seconds: 30) {
                do { try await Task.sleep(for: .seconds(30)) } catch { cancelled.withLock { $0 = true } }
                return 0
            }
        }
        try? await Task.sleep(for: .milliseconds(100))
        caller.cancel()
        _ = await caller.value
        #expect(cancelled.withLock { $0 })
    }
}

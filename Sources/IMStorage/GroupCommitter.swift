import Foundation
import IMCore

/// The eventual outcome of one submitted append.
public final class AppendTicket: Sendable {
    public typealias Outcome = Result<Result<AppendResult, IMError>, any Error>
    private enum Waiter { case task(CheckedContinuation<Result<AppendResult, IMError>, any Error>), callback(@Sendable (Outcome) -> Void) }
    private enum State { case waiting([Waiter]), done(Outcome) }
    private let state = LockedBox<State>(.waiting([]))

    public init() {}

    /// Calls `body` with the outcome once the append is durable (or failed): at once if it already is, otherwise
    /// on the committer, right after the commit. `body` must be quick (queue a frame, count a metric); a socket's
    /// ack this way costs no task of its own and no extra hop between threads.
    public func onCompletion(_ body: @escaping @Sendable (Outcome) -> Void) {
        let done: Outcome? = state.withLock { s in
            switch s {
            case .waiting(var list): list.append(.callback(body)); s = .waiting(list); return nil
            case .done(let r): return r
            }
        }
        if let done { body(done) }
    }

    /// Waits until the append is durable (or failed).
    public func result() async throws -> Result<AppendResult, IMError> {
        try await withCheckedThrowingContinuation { cont in
            let done: Result<Result<AppendResult, IMError>, any Error>? = state.withLock { s in
                switch s {
                case .waiting(var list): list.append(.task(cont)); s = .waiting(list); return nil
                case .done(let r): return r
                }
            }
            if let done { cont.resume(with: done) }
        }
    }

    func complete(_ r: Outcome) {
        let waiters: [Waiter] = state.withLock { s in
            guard case .waiting(let list) = s else { return [] }
            s = .done(r)
            return list
        }
        for w in waiters {
            switch w {
            case .task(let cont): cont.resume(with: r)
            case .callback(let body): body(r)
            }
        }
    }
}


/// Batches concurrent appends into one transaction (one fsync) per commit: the way a single SQLite writer
/// gets durability and throughput together. Submissions are committed in the order they were submitted.
///
/// Not an actor: a submission takes a lock for a moment and never waits, so a connection's reader neither hops
/// to an actor's executor nor contends for it with the commit loop; the loop runs on the database's writer
/// thread when it has one (`SQLDriver.writeExecutor`), so a commit starts there without a hop.
final class GroupCommitter: Sendable {
    private struct State {
        var pending: [(NewMessage, AppendTicket)] = []
        var flushing = false
        var commitObserver: (@Sendable (Int, Duration) -> Void)?
        var appendObserver: (@Sendable ([Message]) -> Void)?
    }
    private let driver: any SQLDriver
    private let maxBatch: Int
    private let outbox: Bool
    private let state = LockedBox(State())

    init(driver: any SQLDriver, maxBatch: Int, outbox: Bool = true) {
        self.driver = driver
        self.maxBatch = max(1, maxBatch)
        self.outbox = outbox
    }

    func setCommitObserver(_ o: @escaping @Sendable (Int, Duration) -> Void) { state.withLock { $0.commitObserver = o } }
    func setAppendObserver(_ o: @escaping @Sendable ([Message]) -> Void) { state.withLock { $0.appendObserver = o } }

    func submit(_ m: NewMessage) -> AppendTicket {
        let ticket = AppendTicket()
        let start = state.withLock { s -> Bool in
            s.pending.append((m, ticket))
            if s.flushing { return false }
            s.flushing = true
            return true
        }
        if start {
            Task(executorPreference: driver.writeExecutor) { await self.flushLoop() }
        }
        return ticket
    }

    /// Waits until everything submitted so far is committed.
    func drain() async {
        while state.withLock({ $0.flushing || !$0.pending.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    private func flushLoop() async {
        while true {
            let next = state.withLock { s -> (batch: [(NewMessage, AppendTicket)], commit: (@Sendable (Int, Duration) -> Void)?, append: (@Sendable ([Message]) -> Void)?)? in
                if s.pending.isEmpty { s.flushing = false; return nil }
                let take = min(s.pending.count, maxBatch)
                let batch = Array(s.pending.prefix(take))
                s.pending.removeFirst(take)
                return (batch, s.commitObserver, s.appendObserver)
            }
            guard let (batch, commitObserver, appendObserver) = next else { return }
            let started = ContinuousClock.now
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            do {
                let results = try await SQLStore.appendBatch(driver, batch.map(\.0), now: now, outbox: outbox)
                commitObserver?(batch.count, started.duration(to: .now))
                // New messages are published in commit (seq) order before anyone hears their ack.
                let fresh = results.compactMap { r -> Message? in
                    if case .success(let a) = r, !a.duplicate { return a.message }
                    return nil
                }
                if !fresh.isEmpty { appendObserver?(fresh) }
                for (i, item) in batch.enumerated() { item.1.complete(.success(results[i])) }
            } catch {
                for item in batch { item.1.complete(.failure(error)) }
            }
        }
    }
}

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
///
/// A commit that does not end within `commitTimeout` is given up on: a watchdog answers its submissions with the
/// retryable `unavailable` (the SDK sends them again with the same cid, which is stored once) and starts a new
/// loop for what queued behind it. Measured on booted hosts: after a PostgreSQL switchover one node's commit never
/// returned, and without the watchdog every later send to that node queued behind it unanswered, for good. If the
/// abandoned commit does end, its new messages are still published (they are stored); its submissions, answered
/// already, ignore the late outcome.
final class GroupCommitter: Sendable {
    private struct InFlight {
        let generation: UInt64
        let started: ContinuousClock.Instant
        let tickets: [AppendTicket]
    }
    private struct State {
        var pending: [(NewMessage, AppendTicket)] = []
        var flushing = false
        /// The loop that owns `flushing`; a loop whose generation is older was given up on and only finishes its commit.
        var generation: UInt64 = 0
        var inFlight: InFlight?
        var watchdog = false
        var commitObserver: (@Sendable (Int, Duration) -> Void)?
        var appendObserver: (@Sendable ([Message]) -> Void)?
        var stallObserver: (@Sendable (Int, Duration) -> Void)?
    }
    private let driver: any SQLDriver
    private let maxBatch: Int
    private let outbox: Bool
    private let commitTimeout: Duration
    /// The store's own follow-up to a commit, with how many new messages it stored (SQLite's search indexing).
    private let afterCommit: (@Sendable (Int) -> Void)?
    private let state = LockedBox(State())

    init(driver: any SQLDriver, maxBatch: Int, outbox: Bool = true, commitTimeout: Duration = .seconds(10),
         afterCommit: (@Sendable (Int) -> Void)? = nil) {
        self.driver = driver
        self.maxBatch = max(1, maxBatch)
        self.outbox = outbox
        self.commitTimeout = commitTimeout
        self.afterCommit = afterCommit
    }

    func setCommitObserver(_ o: @escaping @Sendable (Int, Duration) -> Void) { state.withLock { $0.commitObserver = o } }
    func setAppendObserver(_ o: @escaping @Sendable ([Message]) -> Void) { state.withLock { $0.appendObserver = o } }
    /// Called when a commit is given up on, with its batch size and how long it had run.
    func setStallObserver(_ o: @escaping @Sendable (Int, Duration) -> Void) { state.withLock { $0.stallObserver = o } }

    func submit(_ m: NewMessage) -> AppendTicket {
        let ticket = AppendTicket()
        let (start, generation, watchdog) = state.withLock { s -> (Bool, UInt64, Bool) in
            s.pending.append((m, ticket))
            let watchdog = !s.watchdog
            s.watchdog = true
            if s.flushing { return (false, s.generation, watchdog) }
            s.flushing = true
            return (true, s.generation, watchdog)
        }
        if watchdog { startWatchdog() }
        if start {
            Task(executorPreference: driver.writeExecutor) { await self.flushLoop(generation) }
        }
        return ticket
    }

    /// Waits until everything submitted so far is committed.
    func drain() async {
        while state.withLock({ $0.flushing || !$0.pending.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// One task per committer, for as long as it exists: checks the commit in flight every quarter of the timeout.
    private func startWatchdog() {
        let period = commitTimeout / 4
        Task { [weak self] in
            while true {
                try? await Task.sleep(for: period)
                guard let self else { return }
                self.giveUpOnAStalledCommit()
            }
        }
    }

    private func giveUpOnAStalledCommit() {
        let now = ContinuousClock.now
        let stalled = state.withLock { s -> (InFlight, UInt64, Bool, (@Sendable (Int, Duration) -> Void)?)? in
            guard let f = s.inFlight, f.generation == s.generation, f.started.duration(to: now) >= commitTimeout else { return nil }
            s.inFlight = nil
            s.generation &+= 1
            // The stalled loop no longer owns `flushing`: a new one takes what queued behind it.
            let restart = !s.pending.isEmpty
            s.flushing = restart
            return (f, s.generation, restart, s.stallObserver)
        }
        guard let (f, generation, restart, observer) = stalled else { return }
        let waited = f.started.duration(to: now)
        observer?(f.tickets.count, waited)
        let why = StorageError.unavailable("the database did not finish a commit within \(commitTimeout); send again with the same cid")
        for t in f.tickets { t.complete(.failure(why)) }
        if restart {
            Task(executorPreference: driver.writeExecutor) { await self.flushLoop(generation) }
        }
    }

    private func flushLoop(_ generation: UInt64) async {
        while true {
            let next = state.withLock { s -> (batch: [(NewMessage, AppendTicket)], commit: (@Sendable (Int, Duration) -> Void)?, append: (@Sendable ([Message]) -> Void)?)? in
                guard s.generation == generation else { return nil }
                if s.pending.isEmpty { s.flushing = false; s.inFlight = nil; return nil }
                let take = min(s.pending.count, maxBatch)
                let batch = Array(s.pending.prefix(take))
                s.pending.removeFirst(take)
                s.inFlight = InFlight(generation: generation, started: .now, tickets: batch.map(\.1))
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
                afterCommit?(fresh.count)
            } catch {
                for item in batch { item.1.complete(.failure(error)) }
            }
        }
    }
}

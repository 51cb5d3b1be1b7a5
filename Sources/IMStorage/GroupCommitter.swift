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
/// gets durability and throughput together. Submissions are committed in the order they were submitted, and
/// each commit's new messages are published (the fan-out) and its tickets answered in that order too.
///
/// With `commitsInFlight` above 1 (PostgreSQL: a pool of connections, each commit a round trip per statement
/// and a WAL flush that PostgreSQL shares between concurrent commits) the next batch starts on another connection
/// while earlier ones still run. It starts at once if it shares no conversation with a batch that does not yet
/// hold its seqs (`SQLStore.appendMany`'s `reserved`); otherwise when that one does. So a later batch never takes
/// a conversation's seqs before an earlier one (it waits for the earlier one's commit on the conversation's row and
/// gets the later seqs), and no two batches wait for each other in a circle: a batch waits only for locks an
/// earlier one already holds (conversation rows, their members' cursors, a message being recalled, a duplicate's
/// client id). At one send in flight per sender, the commits then overlap instead of each send waiting for the
/// commit in progress and then its own.
///
/// Not an actor: a submission takes a lock for a moment and never waits, so a connection's reader neither hops
/// to an actor's executor nor contends for it with the commit loop; the loop runs on the database's writer
/// thread when it has one (`SQLDriver.writeExecutor`), so a commit starts there without a hop.
///
/// A commit that does not end within `commitTimeout` is given up on: a watchdog answers its submissions with the
/// retryable `unavailable` (the SDK sends them again with the same cid, which is stored once) and lets new commits
/// start for what queued behind it. Measured on booted hosts: after a PostgreSQL switchover one node's commit never
/// returned, and without the watchdog every later send to that node queued behind it unanswered, for good. If the
/// abandoned commit does end, its new messages are still published (they are stored); its submissions, answered
/// already, ignore the late outcome.
final class GroupCommitter: Sendable {
    private struct Batch {
        let started: ContinuousClock.Instant
        let tickets: [AppendTicket]
        /// The conversations it appends to, and its sends' `sender:cid` (kept only with `depth` above 1).
        let conversations: Set<ConversationID>
        let keys: Set<String>
        /// Past its seq reservation (or finished): the next batch may start.
        var reserved = false
    }
    /// What a finished batch does once every batch before it has done its own.
    private enum Publication {
        case publish(fresh: [Message], answers: [(AppendTicket, AppendTicket.Outcome)], count: Int)
        /// Given up on by the watchdog: its tickets are answered; its messages, if it ever commits, go out then.
        case skip
    }
    private struct State {
        var pending: [(NewMessage, AppendTicket)] = []
        /// Batches taken and not finished (nor given up on), by number.
        var inFlight: [UInt64: Batch] = [:]
        var nextBatch: UInt64 = 0
        /// Runner tasks alive and owned (one given up on is disowned): more than `inFlight.count` means one is
        /// between batches and will take what is pending.
        var runners = 0
        var nextToPublish: UInt64 = 0
        var ready: [UInt64: Publication] = [:]
        var publishing = false
        var watchdog = false
        var commitObserver: (@Sendable (Int, Duration) -> Void)?
        var appendObserver: (@Sendable ([Message]) -> Void)?
        var stallObserver: (@Sendable (Int, Duration) -> Void)?

        /// Whether a send must wait for the batches in flight: its conversation is one a batch not yet past its
        /// reservation appends to, or the same send (a client's retry) is in a batch that has not committed: it
        /// would wait for that one's row and then fail its whole batch on the unique `(sender, cid)`, where after
        /// that commit the dedupe lookup answers it.
        func heldUp(_ m: NewMessage, key: String) -> Bool {
            inFlight.values.contains { b in (!b.reserved && b.conversations.contains(m.conversation)) || b.keys.contains(key) }
        }
        func mayStart(_ depth: Int) -> Bool {
            guard let first = pending.first, inFlight.count < depth else { return false }
            return depth == 1 || !heldUp(first.0, key: GroupCommitter.key(first.0))
        }
        /// Whether a new runner is needed for what is pending (and counts it if so).
        mutating func wantsRunner(_ depth: Int) -> Bool {
            guard mayStart(depth), runners == inFlight.count else { return false }
            runners += 1
            return true
        }
    }
    private let driver: any SQLDriver
    private let maxBatch: Int
    private let depth: Int
    private let outbox: Bool
    private let commitTimeout: Duration
    /// The store's own follow-up to a commit, with how many new messages it stored (SQLite's search indexing).
    private let afterCommit: (@Sendable (Int) -> Void)?
    private let state = LockedBox(State())

    init(driver: any SQLDriver, maxBatch: Int, commitsInFlight: Int = 1, outbox: Bool = true,
         commitTimeout: Duration = .seconds(10), afterCommit: (@Sendable (Int) -> Void)? = nil) {
        self.driver = driver
        self.maxBatch = max(1, maxBatch)
        self.depth = max(1, commitsInFlight)
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
        let (start, watchdog) = state.withLock { s -> (Bool, Bool) in
            s.pending.append((m, ticket))
            let watchdog = !s.watchdog
            s.watchdog = true
            return (s.wantsRunner(depth), watchdog)
        }
        if watchdog { startWatchdog() }
        if start { startRunner() }
        return ticket
    }

    /// Waits until everything submitted so far is committed and answered.
    func drain() async {
        while state.withLock({ !$0.pending.isEmpty || !$0.inFlight.isEmpty || !$0.ready.isEmpty || $0.publishing }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    private func startRunner() {
        Task(executorPreference: driver.writeExecutor) { await self.run() }
    }

    /// One task per committer, for as long as it exists: checks the commits in flight every quarter of the timeout.
    private func startWatchdog() {
        let period = commitTimeout / 4
        Task { [weak self] in
            while true {
                try? await Task.sleep(for: period)
                guard let self else { return }
                self.giveUpOnStalledCommits()
            }
        }
    }

    private func giveUpOnStalledCommits() {
        let now = ContinuousClock.now
        let (stalled, start, observer) = state.withLock { s -> ([Batch], Bool, (@Sendable (Int, Duration) -> Void)?) in
            let old = s.inFlight.filter { $0.value.started.duration(to: now) >= commitTimeout }
            guard !old.isEmpty else { return ([], false, nil) }
            for (number, _) in old {
                s.inFlight[number] = nil
                s.runners -= 1      // its runner, if it ever returns, only publishes what it stored
                s.ready[number] = .skip
            }
            return (Array(old.values), s.wantsRunner(depth), s.stallObserver)
        }
        guard !stalled.isEmpty else { return }
        let why = StorageError.unavailable("the database did not finish a commit within \(commitTimeout); send again with the same cid")
        for batch in stalled {
            observer?(batch.tickets.count, batch.started.duration(to: now))
            for t in batch.tickets { t.complete(.failure(why)) }
        }
        publishReady()
        if start { startRunner() }
    }

    /// Takes batches while it may; several run at once only with `depth` above 1.
    private func run() async {
        while true {
            let next = state.withLock { s -> (number: UInt64, batch: [(NewMessage, AppendTicket)], commit: (@Sendable (Int, Duration) -> Void)?)? in
                guard s.mayStart(depth) else { s.runners -= 1; return nil }
                var take = min(s.pending.count, maxBatch)
                var conversations = Set<ConversationID>(), keys = Set<String>()
                if depth > 1 {
                    // The longest run of pending sends, in order, that the batches in flight do not hold up.
                    for (i, item) in s.pending.prefix(take).enumerated() {
                        let key = Self.key(item.0)
                        if s.heldUp(item.0, key: key) { take = i; break }
                        conversations.insert(item.0.conversation)
                        keys.insert(key)
                    }
                }
                let batch = Array(s.pending.prefix(take))
                s.pending.removeFirst(take)
                let number = s.nextBatch
                s.nextBatch &+= 1
                s.inFlight[number] = Batch(started: .now, tickets: batch.map(\.1), conversations: conversations, keys: keys)
                return (number, batch, s.commitObserver)
            }
            guard let (number, batch, commitObserver) = next else { return }
            let started = ContinuousClock.now
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let reserved: (@Sendable () -> Void)? = depth > 1 ? { @Sendable [self] in self.reserved(number) } : nil
            let beforeRetry: (@Sendable () async -> Void)? = depth > 1 ? { @Sendable [self] in await self.letLaterBatchesEnd(number) } : nil
            let publication: Publication
            do {
                let results = try await SQLStore.appendBatch(driver, batch.map(\.0), now: now, outbox: outbox, reserved: reserved,
                                                             beforeRetry: beforeRetry)
                commitObserver?(batch.count, started.duration(to: .now))
                let fresh = results.compactMap { r -> Message? in
                    if case .success(let a) = r, !a.duplicate { return a.message }
                    return nil
                }
                publication = .publish(fresh: fresh, answers: batch.enumerated().map { ($0.element.1, .success(results[$0.offset])) },
                                       count: fresh.count)
            } catch {
                publication = .publish(fresh: [], answers: batch.map { ($0.1, .failure(error)) }, count: 0)
            }
            // This runner takes what is pending next (it is still counted), so no other need start here.
            let owned = state.withLock { s -> Bool in
                guard s.inFlight.removeValue(forKey: number) != nil else { return false }
                s.ready[number] = publication
                return true
            }
            guard owned else {
                // Given up on while it ran: its tickets were answered, but what it stored is stored.
                if case .publish(let fresh, _, let count) = publication, !fresh.isEmpty {
                    state.withLock { $0.appendObserver }?(fresh)
                    afterCommit?(count)
                }
                return
            }
            publishReady()
        }
    }

    static func key(_ m: NewMessage) -> String { "\(m.sender):\(m.cid)" }

    /// A batch failed as a whole after its reservation (its transaction rolled back) and retries its sends one by
    /// one: later batches of its conversations may have taken seqs meanwhile. Before the retries, new batches of
    /// its conversations are held up again and the later batches in flight are let finish, so that the retried
    /// sends' seqs come after every seq those took and are committed by the time they are published (a receiver
    /// reading the gap before them finds it stored).
    private func letLaterBatchesEnd(_ number: UInt64) async {
        let later = state.withLock { s -> [UInt64] in
            s.inFlight[number]?.reserved = false
            return s.inFlight.keys.filter { $0 > number }
        }
        while state.withLock({ s in later.contains { s.inFlight[$0] != nil } }) {
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// A batch holds its seqs: the next may start.
    private func reserved(_ number: UInt64) {
        let start = state.withLock { s -> Bool in
            guard s.inFlight[number]?.reserved == false else { return false }
            s.inFlight[number]?.reserved = true
            return s.wantsRunner(depth)
        }
        if start { startRunner() }
    }

    /// Publishes finished batches in batch order: new messages (the fan-out) in commit order before anyone hears
    /// their ack, then the answers. One thread publishes at a time; others leave theirs in `ready` for it.
    private func publishReady() {
        while true {
            let (due, append) = state.withLock { s -> ([Publication], (@Sendable ([Message]) -> Void)?) in
                // The thread publishing now looks again when it is done, and finds what was left here.
                if s.publishing { return ([], nil) }
                var due: [Publication] = []
                while let p = s.ready.removeValue(forKey: s.nextToPublish) {
                    due.append(p)
                    s.nextToPublish &+= 1
                }
                s.publishing = !due.isEmpty
                return (due, s.appendObserver)
            }
            if due.isEmpty { return }
            for p in due {
                guard case .publish(let fresh, let answers, let count) = p else { continue }
                if !fresh.isEmpty { append?(fresh) }
                for (ticket, outcome) in answers { ticket.complete(outcome) }
                afterCommit?(count)
            }
            state.withLock { $0.publishing = false }
        }
    }
}

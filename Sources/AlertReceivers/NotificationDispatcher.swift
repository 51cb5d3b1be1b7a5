import Foundation
import Logging

/// How the dispatcher retries a failed delivery.
public struct RetryPolicy: Sendable, Equatable {
    /// Tries in all, the first included.
    public var attempts: Int
    /// The wait after the first failure; it doubles after each further one.
    public var baseDelay: Duration
    /// The longest wait between tries.
    public var maxDelay: Duration
    /// Notifications waiting per receiver; beyond it the oldest is dropped (and logged).
    public var queueLimit: Int

    public init(attempts: Int = 6, baseDelay: Duration = .seconds(2), maxDelay: Duration = .seconds(60),
                queueLimit: Int = 256) {
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.queueLimit = max(1, queueLimit)
    }

    /// The wait after failed try number `attempt` (1-based): base × 2^(attempt-1), at most `maxDelay`.
    public func delay(afterAttempt attempt: Int) -> Duration {
        var d = baseDelay
        for _ in 1..<max(1, attempt) {
            d = d * 2
            if d >= maxDelay { return maxDelay }
        }
        return min(d, maxDelay)
    }
}

/// Sends notifications to receivers: one queue and one worker per receiver, so a slow or failing receiver
/// never holds up another; failed deliveries are retried with exponential backoff and logged.
public actor NotificationDispatcher {
    /// What happened to a receiver's notifications since start.
    public struct ReceiverStats: Sendable, Equatable {
        public var delivered = 0
        /// Given up on after the last retry (or at once when the remote refused it outright).
        public var failed = 0
        /// Failed tries that were retried.
        public var retries = 0
        /// Dropped unsent: the queue was full, or shutdown came first.
        public var dropped = 0
        public var queued = 0
        public var lastError: String?
        public var lastDelivery: Date?
    }

    private let receivers: [String: any AlertReceiver]
    private let logger: Logger
    private let retry: RetryPolicy
    private var queues: [String: [AlertNotification]] = [:]
    private var workers: [String: Task<Void, Never>] = [:]
    private var stats: [String: ReceiverStats] = [:]
    private var idleWaiters: [UUID: (continuation: CheckedContinuation<Bool, Never>, timer: Task<Void, Never>?)] = [:]
    private var closing = false
    /// Notifications addressed to a receiver nobody configured.
    public private(set) var unknownReceiverDrops = 0

    public init(receivers: [any AlertReceiver], logger: Logger, retry: RetryPolicy = RetryPolicy()) {
        var byName: [String: any AlertReceiver] = [:]
        for r in receivers where byName[r.name] == nil { byName[r.name] = r }
        self.receivers = byName
        self.logger = logger
        self.retry = retry
        self.stats = byName.mapValues { _ in ReceiverStats() }
    }

    public var receiverNames: [String] { receivers.keys.sorted() }

    public func statistics() -> [String: ReceiverStats] {
        var result = stats
        for (name, queue) in queues { result[name, default: ReceiverStats()].queued = queue.count }
        return result
    }

    /// Queues `n` for the receiver called `receiverName` and returns at once. An unknown name is logged as an error.
    public func dispatch(_ n: AlertNotification, to receiverName: String) {
        var meta: Logger.Metadata = ["alert.receiver": "\(receiverName)", "alert.group": "\(n.groupKey)", "alert.status": "\(n.status)"]
        guard let receiver = receivers[receiverName] else {
            unknownReceiverDrops += 1
            meta["alert.receivers.known"] = "\(receiverNames.joined(separator: ","))"
            logger.error("no receiver named '\(receiverName)'; notification dropped: fix the route or add the receiver", metadata: meta)
            return
        }
        guard !closing else {
            stats[receiverName, default: ReceiverStats()].dropped += 1
            logger.error("notification dropped: the dispatcher is shutting down", metadata: meta)
            return
        }
        var queue = queues[receiverName] ?? []
        if queue.count >= retry.queueLimit {
            let old = queue.removeFirst()
            stats[receiverName, default: ReceiverStats()].dropped += 1
            logger.error("receiver's queue is full (\(retry.queueLimit)); oldest notification dropped",
                         metadata: meta.merging(["alert.dropped.group": "\(old.groupKey)"]) { $1 })
        }
        queue.append(n)
        queues[receiverName] = queue
        if workers[receiverName] == nil {
            workers[receiverName] = Task { await self.work(receiver) }
        }
    }

    /// Waits until every queue is empty and every delivery finished, at most `timeout`; returns whether it did.
    /// After this, new notifications are refused; on timeout the pending ones are cancelled and logged as dropped.
    public func drain(timeout: Duration) async -> Bool {
        closing = true
        if workers.isEmpty { return true }
        let id = UUID()
        return await withCheckedContinuation { continuation in
            let timer = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                await self?.expire(id)
            }
            idleWaiters[id] = (continuation, timer)
        }
    }

    private func expire(_ id: UUID) {
        guard let waiter = idleWaiters.removeValue(forKey: id) else { return }
        for (name, queue) in queues where !queue.isEmpty {
            stats[name, default: ReceiverStats()].dropped += queue.count
            logger.error("shutdown: \(queue.count) notification(s) not delivered", metadata: ["alert.receiver": "\(name)"])
        }
        queues = [:]
        for (_, task) in workers { task.cancel() }
        waiter.continuation.resume(returning: false)
    }

    private func next(for name: String) -> AlertNotification? {
        guard var queue = queues[name], !queue.isEmpty, !Task.isCancelled else {
            workers[name] = nil
            if workers.isEmpty {
                let waiters = idleWaiters
                idleWaiters = [:]
                for (_, w) in waiters {
                    w.timer?.cancel()
                    w.continuation.resume(returning: true)
                }
            }
            return nil
        }
        let n = queue.removeFirst()
        queues[name] = queue
        return n
    }

    private func work(_ receiver: any AlertReceiver) async {
        while let n = next(for: receiver.name) {
            await deliver(n, to: receiver)
        }
    }

    private func deliver(_ n: AlertNotification, to receiver: any AlertReceiver) async {
        let name = receiver.name
        var meta: Logger.Metadata = ["alert.receiver": "\(name)", "alert.group": "\(n.groupKey)", "alert.status": "\(n.status)"]
        for attempt in 1...retry.attempts {
            do {
                try await receiver.send(n)
                stats[name, default: ReceiverStats()].delivered += 1
                stats[name, default: ReceiverStats()].lastDelivery = Date()
                logger.info("notification delivered", metadata: meta.merging(["alert.attempt": "\(attempt)"]) { $1 })
                return
            } catch {
                if Task.isCancelled || error is CancellationError {
                    stats[name, default: ReceiverStats()].dropped += 1
                    logger.error("shutdown: delivery abandoned", metadata: meta)
                    return
                }
                let text = "\(error)"
                stats[name, default: ReceiverStats()].lastError = text
                meta["alert.attempt"] = "\(attempt)"
                meta["error"] = "\(text)"
                let refused = (error as? ReceiverError)?.permanent ?? false
                if refused || attempt == retry.attempts {
                    stats[name, default: ReceiverStats()].failed += 1
                    logger.error(refused ? "notification refused; not retried, as the same request would be refused again"
                                         : "notification failed \(attempt) time(s); giving up", metadata: meta)
                    return
                }
                let wait = retry.delay(afterAttempt: attempt)
                stats[name, default: ReceiverStats()].retries += 1
                logger.warning("notification failed; retrying in \(wait)", metadata: meta)
                try? await Task.sleep(for: wait)
                if Task.isCancelled {
                    stats[name, default: ReceiverStats()].dropped += 1
                    logger.error("shutdown: delivery abandoned", metadata: meta)
                    return
                }
            }
        }
    }
}

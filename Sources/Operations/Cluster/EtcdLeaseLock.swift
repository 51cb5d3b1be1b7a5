import Foundation
import Synchronization

/// A cluster-wide lock in etcd: one key, created in a transaction only when it (and any other blocking key) is
/// absent, and attached to a lease, so that it goes when its holder revokes the lease or, if the holder dies, when
/// the lease's TTL runs out. The daily backup lock and the cluster upgrade lock are both this.
public struct EtcdLeaseLock: Sendable {
    public var etcd: Etcdctl
    public var key: String
    /// Seconds the lock outlives a holder that neither renews nor releases it.
    public var ttl: Int

    public init(etcd: Etcdctl, key: String, ttl: Int) {
        self.etcd = etcd; self.key = key; self.ttl = ttl
    }

    public enum Outcome: Sendable, Equatable {
        /// Taken, under this lease.
        case acquired(lease: UInt64)
        /// Not taken: the lock's or a blocking key's value now (key → value; at least one).
        case refused([String: String])
    }

    /// Takes the lock with the value `value(lease)` unless it or any of `blockers` exists. A lease whose
    /// transaction fails is revoked at once, so refused attempts leave nothing behind.
    public func acquire(value: (UInt64) -> String, unless blockers: [String] = []) throws -> Outcome {
        // Twice at most: a holder that released between our transaction and our reading of its keys leaves nothing
        // to name, and the second try then either takes the lock or finds what blocks it.
        for _ in 0..<2 {
            let lease = try etcd.grantLease(ttl: ttl)
            let result: Etcdctl.TxnResult
            do {
                result = try etcd.putIfAbsent(key, value(lease), lease: lease, absent: [key] + blockers)
            } catch {
                try? etcd.revokeLease(lease)
                throw error
            }
            if result.succeeded { return .acquired(lease: lease) }
            try? etcd.revokeLease(lease)
            if !result.values.isEmpty { return .refused(result.values) }
        }
        throw ClusterOpsError("the lock \(key) changed hands twice while it was being taken; try again")
    }

    /// The lock's value now; nil when no one holds it.
    public func holder() throws -> String? {
        try etcd.get(prefix: key).first { $0.key == key }.map { String(decoding: $0.value, as: UTF8.self) }
    }

    /// Renews the lease for another `ttl`. Throws `ClusterOpsError` when etcd cannot be asked; returns false when
    /// the lease is gone (it ran out or was revoked): the lock is no longer held.
    public func renew(_ lease: UInt64) throws -> Bool { try etcd.keepAliveOnce(lease) }

    /// Revokes the lease, which deletes the lock. A lease already gone is no error.
    public func release(_ lease: UInt64) throws {
        do { try etcd.revokeLease(lease) } catch let e as ClusterOpsError where e.description.contains("lease not found") {}
    }
}

/// Renews a held `EtcdLeaseLock`'s lease on a thread of its own (every third of the TTL) for as long as the holder
/// works, so the TTL can be short: a holder that dies frees the lock within the TTL. A thread, not a task: the
/// holder's own work may block the cooperative pool's few threads for minutes (pg_dump, etcdctl, a release's
/// install). When renewals fail until the TTL has passed, or etcd says the lease is gone, `lost` says why; the
/// holder checks it before each change and stops.
public final class LeaseKeeper: Sendable {
    struct State {
        var stopped = false
        var lost: String?
        var lastRenewed: Date
    }
    let lock: EtcdLeaseLock
    public let lease: UInt64
    let interval: Double
    let state: Mutex<State>

    /// Keeps `lease` (just granted, so counted as renewed now); `start` begins the renewals.
    public init(lock: EtcdLeaseLock, lease: UInt64, interval: Double? = nil) {
        self.lock = lock; self.lease = lease
        self.interval = interval ?? max(1, Double(lock.ttl) / 3)
        state = Mutex(State(lastRenewed: Date()))
    }

    /// Starts the renewing thread; it ends at `release`, `stop`, or when the lock is lost.
    @discardableResult
    public func start() -> LeaseKeeper {
        let thread = Thread { [self] in self.loop() }
        thread.name = "warbler-lease-keeper"
        thread.start()
        return self
    }

    /// Why the lock is no longer held, or nil while it is.
    public var lost: String? { state.withLock { $0.lost } }

    /// One renewal now (the thread's step; tests call it directly). Returns whether the lock is still held.
    @discardableResult
    public func renewNow(now: Date = Date()) -> Bool {
        if let _ = state.withLock({ $0.lost }) { return false }
        do {
            if try lock.renew(lease) {
                state.withLock { $0.lastRenewed = now }
            } else {
                state.withLock { $0.lost = "its lease \(String(lease, radix: 16)) ended (etcd says it is gone): another run may hold \(lock.key) now" }
            }
        } catch {
            state.withLock { s in
                if now.timeIntervalSince(s.lastRenewed) >= Double(lock.ttl) {
                    s.lost = "its lease could not be renewed for \(lock.ttl) s, so it has ended (\(error))"
                }
            }
        }
        return lost == nil
    }

    func loop() {
        var next = Date().addingTimeInterval(interval)
        while true {
            if state.withLock({ $0.stopped || $0.lost != nil }) { return }
            if Date() >= next {
                renewNow()
                next = Date().addingTimeInterval(interval)
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }

    /// Stops renewing and revokes the lease (deleting the lock); nothing when it was lost already.
    public func release() {
        let wasLost = state.withLock { s -> Bool in s.stopped = true; return s.lost != nil }
        if !wasLost { try? lock.release(lease) }
    }

    /// Stops renewing without revoking (the lock then ends with its TTL).
    public func stop() { state.withLock { $0.stopped = true } }
}

/// The cluster-wide upgrade lock: one cluster upgrade, rollback or contract step at a time, whichever member runs
/// it. `/warbler/upgrade/lock` = `NODE LEASE-HEX STARTED` under a short lease that the holder renews while it runs
/// (`LeaseKeeper`); an upgrade that crashed leaves the lock for at most `ttl` seconds, and `--resume` then takes it.
public struct ClusterUpgradeLock: Sendable {
    public static let key = "/warbler/upgrade/lock"
    public var lock: EtcdLeaseLock
    public var member: String

    public init(etcd: Etcdctl, member: String, ttl: Int = 60) {
        lock = EtcdLeaseLock(etcd: etcd, key: Self.key, ttl: ttl)
        self.member = member
    }

    public enum Outcome: Sendable, Equatable {
        case acquired(lease: UInt64)
        /// Another run holds it: the holder's node and when it started (as recorded).
        case held(by: String, since: String)
    }

    public func acquire(now: Date) throws -> Outcome {
        let started = ISO8601DateFormatter().string(from: now)
        switch try lock.acquire(value: { "\(member) \(String($0, radix: 16)) \(started)" }) {
        case .acquired(let lease):
            return .acquired(lease: lease)
        case .refused(let values):
            let f = (values[Self.key] ?? "?").split(separator: " ").map(String.init)
            return .held(by: f.first ?? "?", since: f.count >= 3 ? f[2] : "?")
        }
    }

    /// The lock's value for people: `NODE since TIME`.
    public static func describe(_ value: String) -> String {
        let f = value.split(separator: " ").map(String.init)
        return f.count >= 3 ? "\(f[0]) since \(f[2])" : value
    }

    /// The refusal an operator reads when another run holds the lock.
    public func heldMessage(by node: String, since: String) -> String {
        "another cluster upgrade, rollback or contract step holds the cluster upgrade lock (\(Self.key)): run on \(node), started \(since). "
            + "Wait for it; if that run is dead (its process was killed or its host went down), the lock ends by itself within \(lock.ttl) s, and `warbler upgrade --resume FILE` then continues it"
    }
}

import Foundation

/// The cluster's daily backup runs on one member a day, never on all. Every member's `warbler-backup.timer` fires;
/// before its backup starts, root asks etcd (`warbler backup-lock acquire`, the unit's `ExecCondition=+`) for the
/// lock: one transaction creates `/warbler/backup/lock` (attached to a lease) only if neither the lock nor today's
/// done-mark `/warbler/backup/day/YYYY-MM-DD` (UTC) exists. The others skip and log who holds it or who took
/// today's. After the run (`ExecStopPost=+`, `warbler backup-lock release`) the holder writes the day's mark when
/// the backup succeeded, and revokes the lease, which deletes the lock. A holder that dies leaves the lock until its
/// lease ends (`ttl`), so a crashed run blocks the others for at most that long and never for ever. The lock itself
/// is an `EtcdLeaseLock`, as the cluster upgrade's is.
public struct DailyBackupLock: Sendable {
    public static let lockKey = "/warbler/backup/lock"
    public static let dayPrefix = "/warbler/backup/day/"

    public var etcd: Etcdctl
    /// This member's node name.
    public var member: String
    /// Seconds the lock outlives a holder that never releases it: the backup unit's `TimeoutStartSec` (6 h) and a
    /// margin.
    public var ttl: Int

    public init(etcd: Etcdctl, member: String, ttl: Int = 6 * 3600 + 600) {
        self.etcd = etcd; self.member = member; self.ttl = ttl
    }

    public enum Outcome: Sendable, Equatable {
        /// This member holds the lock (under `lease`) and takes today's backup.
        case acquired(lease: UInt64)
        /// Another member's run holds it now.
        case held(by: String)
        /// Today's backup is taken already (the mark's value: who, and when it finished).
        case done(mark: String)
    }

    /// The day a run counts for: the UTC date, the same on every member whatever its time zone.
    public static func day(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }

    /// The lock's value: `NODE LEASE-HEX DAY`, so the release finds its lease and day without local state.
    struct Holder: Equatable {
        var member: String
        var lease: UInt64
        var day: String
        var value: String { "\(member) \(String(lease, radix: 16)) \(day)" }
        static func parse(_ value: String) -> Holder? {
            let f = value.split(separator: " ")
            guard f.count == 3, let lease = UInt64(f[1], radix: 16) else { return nil }
            return Holder(member: String(f[0]), lease: lease, day: String(f[2]))
        }
    }

    public func acquire(now: Date) throws -> Outcome {
        let day = Self.day(now)
        let mark = Self.dayPrefix + day
        let lock = EtcdLeaseLock(etcd: etcd, key: Self.lockKey, ttl: ttl)
        switch try lock.acquire(value: { Holder(member: member, lease: $0, day: day).value }, unless: [mark]) {
        case .acquired(let lease):
            return .acquired(lease: lease)
        case .refused(let values):
            if let done = values[mark] { return .done(mark: done) }
            let held = values[Self.lockKey] ?? "?"
            return .held(by: Holder.parse(held)?.member ?? held)
        }
    }

    /// Ends this member's hold: writes today's mark when the backup succeeded (dropping older marks), then revokes
    /// the lease, which deletes the lock. Says whether this member held it and what it did; a lock this member does
    /// not hold is left alone.
    public func release(succeeded: Bool, now: Date) throws -> (held: Bool, message: String) {
        guard let value = try etcd.get(prefix: Self.lockKey).first(where: { $0.key == Self.lockKey })?.value else {
            return (false, "the backup lock is not held (its lease ended); nothing to release")
        }
        let text = String(decoding: value, as: UTF8.self)
        guard let holder = Holder.parse(text), holder.member == member else {
            return (false, "the backup lock is held by \(Holder.parse(text)?.member ?? text), not \(member); left alone")
        }
        var said: [String] = []
        if succeeded {
            try etcd.put(Self.dayPrefix + holder.day, "\(member) \(ISO8601DateFormatter().string(from: now))")
            for (key, _) in try etcd.get(prefix: Self.dayPrefix) where key != Self.dayPrefix + holder.day {
                try etcd.delete(key)
            }
            said.append("marked \(holder.day)'s backup as taken by \(member)")
        }
        try etcd.revokeLease(holder.lease)
        said.append("released the backup lock")
        return (true, said.joined(separator: "; "))
    }
}

import DurableFiles
import Foundation
import Installer

/// What HAProxy's slots should hold for a set of members: every member's IM server in `im`, every database
/// member's PostgreSQL in `primary` (Patroni's health check picks the primary among them), and which `im` slots are
/// drained (DrainMarks). Pure.
public enum SlotPlan {
    public struct Want: Sendable, Equatable {
        public var backend: String
        public var server: String
        /// nil: the slot stays empty (maintenance).
        public var address: String?
        public var port: Int
        /// true: drained (no new connections); false: ready; nil: whichever it is (an operator's own drain stays).
        public var drain: Bool? = nil
    }

    /// One runtime change to a slot: a new address first (the slot in maintenance meanwhile) when `address` is set,
    /// then `state`.
    public struct Command: Sendable, Equatable {
        public enum State: String, Sendable { case ready, drain, maint }
        public var backend: String
        public var server: String
        public var address: String?
        public var port: Int
        public var state: State
        /// In service (ready or drained), not emptied.
        public var ready: Bool { state != .maint }
    }

    /// `primary`: false on a cluster using the site's PostgreSQL (`--database-url`), whose HAProxy has no
    /// `primary` backend. `drain`: members to drain; `undrain`: members to set back to ready (drained by a mark
    /// that is gone); any other member's drain state is left as it is.
    public static func plan(members: [ClusterMember], slots: Int = ClusterSettings.maxMembers, primary: Bool = true,
                            drain: Set<String> = [], undrain: Set<String> = []) -> [Want] {
        let sorted = members.sorted { $0.name < $1.name }
        let db = sorted.filter { $0.roles.contains(.database) }
        var out: [Want] = []
        for i in 0..<slots {
            let name = i < sorted.count ? sorted[i].name : nil
            out.append(Want(backend: "im", server: "m\(i + 1)", address: i < sorted.count ? sorted[i].address : nil, port: ClusterSettings.Port.im,
                            drain: name.flatMap { drain.contains($0) ? true : undrain.contains($0) ? false : nil }))
        }
        for i in 0..<slots where primary {
            out.append(Want(backend: "primary", server: "db\(i + 1)", address: i < db.count ? db[i].address : nil, port: ClusterSettings.Port.postgres))
        }
        return out
    }

    /// The runtime commands that take `current` to `wants`. Slots already right get none, so existing connections
    /// are left alone.
    public static func commands(current: [HAProxyRuntime.Slot], wants: [Want]) -> [Command] {
        var out: [Command] = []
        for w in wants {
            let c = current.first { $0.backend == w.backend && $0.name == w.server }
            if let address = w.address {
                let moved = c?.address != address || c?.port != w.port
                let inService = !moved && c?.maintenance == false
                let drained = w.drain ?? (inService && c?.draining == true)
                if !inService || (c?.draining == true) != drained {
                    out.append(Command(backend: w.backend, server: w.server, address: moved ? address : nil, port: w.port, state: drained ? .drain : .ready))
                }
            } else if c?.maintenance == false {
                out.append(Command(backend: w.backend, server: w.server, address: nil, port: w.port, state: .maint))
            }
        }
        return out
    }
}

/// Where etcd's leader should be: not on a PostgreSQL member when a voter without the database role (the witness)
/// exists. etcd renews every lease to its full TTL when it elects a new leader, so losing a host that is both the
/// PostgreSQL primary and the etcd leader delayed the failover by the election (measured: 20 s instead of 14). Pure.
public enum EtcdLeaderPlacement {
    /// The etcd member to hand leadership to, or nil to leave it.
    public static func target(leader: UInt64, etcdMembers: [Etcdctl.Member], members: [ClusterMember]) -> Etcdctl.Member? {
        let roles = Dictionary(members.map { ($0.name, Set($0.roles)) }, uniquingKeysWith: { a, _ in a })
        guard let current = etcdMembers.first(where: { $0.id == leader }), roles[current.name]?.contains(.database) == true else { return nil }
        return etcdMembers.filter { !$0.isLearner && $0.id != leader && roles[$0.name] != nil && roles[$0.name]?.contains(.database) == false }
            .min { $0.name < $1.name }
    }
}

/// `warbler cluster agent`: every few seconds, reads the members from etcd and fills HAProxy's server slots
/// through its admin socket, then saves HAProxy's server state so a reload starts from it. Runs as HAProxy's user.
public struct ClusterAgent: Sendable {
    public var etcd: Etcdctl
    public var haproxy: HAProxyRuntime
    public var stateFile: String
    public var interval: Double
    /// The cluster runs its own PostgreSQL, reached through HAProxy's `primary` backend.
    public var primaryBackend: Bool
    /// This member's name: its acknowledgement of drain marks is `DrainMarks.appliedPrefix` + it.
    public var member: String
    /// Where the members' releases go for the exporter (`MemberReleases`), and who reads them.
    public var releasesFile: String
    public var versions: any MemberVersionReading

    public init(etcd: Etcdctl, member: String, haproxy: HAProxyRuntime = HAProxyRuntime(), stateFile: String = ClusterPaths.haproxyState + "/servers.state",
                interval: Double = 3, primaryBackend: Bool = true, releasesFile: String = ClusterPaths.memberReleases,
                versions: any MemberVersionReading = MemberVersionReader()) {
        self.etcd = etcd; self.member = member; self.haproxy = haproxy; self.stateFile = stateFile; self.interval = interval
        self.primaryBackend = primaryBackend; self.releasesFile = releasesFile; self.versions = versions
    }

    /// Reads every member's release and writes them to `releasesFile` (world-readable: release numbers are no
    /// secret, and the exporter, another user, reads them). The exporter cannot ask the members itself: their
    /// cluster listener admits only holders of a cluster certificate, which this agent has and the service user
    /// must not. Returns the releases, for the log.
    @discardableResult
    public func recordReleases(members: [ClusterMember], at now: Date = Date()) async throws -> MemberReleases {
        let found = try await versions.versions(of: members)
        let record = MemberReleases(at: now, members: members.sorted { $0.name < $1.name }.map { .init(name: $0.name, address: $0.address, version: found[$0.name]) })
        try AtomicFile.write(try record.encoded(), to: releasesFile, mode: 0o644)
        return record
    }

    /// One pass. Returns what changed, for the log.
    public func reconcile() throws -> [String] {
        let (members, rejected) = try MemberRegistry.load(etcd)
        var notes = rejected.map { "ignored a member record: \($0)" }
        guard !members.isEmpty else { return notes + ["no members registered in etcd yet"] }
        let marks = try DrainMarks.load(etcd)
        notes += marks.rejected.map { "ignored a drain record: \($0)" }
        let drains = DrainMarks.plan(members: members.map(\.name), snapshot: marks, me: member)
        if let note = drains.note { notes.append(note) }
        let current = try haproxy.slots(backend: "im") + (primaryBackend ? haproxy.slots(backend: "primary") : [])
        let wants = SlotPlan.plan(members: members, primary: primaryBackend, drain: Set(drains.drain.keys), undrain: drains.undrain)
        let changes = SlotPlan.commands(current: current, wants: wants)
        for c in changes {
            if let address = c.address {
                try haproxy.state(backend: c.backend, server: c.server, "maint")
                try haproxy.set(backend: c.backend, server: c.server, address: address, port: c.port)
            }
            try haproxy.state(backend: c.backend, server: c.server, c.state.rawValue)
            notes.append("\(c.backend)/\(c.server): " + (c.state == .maint ? "emptied" : "\(c.address ?? "same address"):\(c.port) \(c.state.rawValue)"))
        }
        if !changes.isEmpty {
            // The state file HAProxy loads at a reload: the filled slots survive it.
            let state = try haproxy.send("show servers state")
            try AtomicFile.write(Data(state.utf8), to: stateFile, mode: 0o600)
        }
        // Only now, with HAProxy changed: the driver of an upgrade waits for this before it moves clients.
        if marks.applied[member]?.drained != drains.drain {
            let applied = DrainMarks.Applied(member: member, drained: drains.drain, at: Date())
            try etcd.put(DrainMarks.appliedPrefix + member, String(decoding: try DrainMarks.encoder.encode(applied), as: UTF8.self))
            notes.append("drained by mark: " + (drains.drain.isEmpty ? "none" : drains.drain.keys.sorted().joined(separator: ", ")))
        }
        return notes
    }

    /// On the member whose etcd leads: hands the leadership to the witness when this member carries PostgreSQL.
    public func placeEtcdLeader() throws -> String? {
        guard etcd.endpoints == ["127.0.0.1"] else { return nil }   // only a member with its own etcd acts
        let (me, leader) = try etcd.status()
        guard me == leader else { return nil }
        let etcdMembers = try etcd.memberList()
        guard let to = EtcdLeaderPlacement.target(leader: leader, etcdMembers: etcdMembers, members: try MemberRegistry.load(etcd).members) else { return nil }
        try etcd.moveLeader(to: to.id)
        return "moved etcd's leadership to \(to.name), which carries no PostgreSQL (a failover of this host's primary then waits for no etcd election)"
    }

    /// The HAProxy loop every `interval` seconds and, beside it, the members' releases every
    /// `MemberReleases.interval`: a member that does not answer (up to the reader's timeouts) never holds up HAProxy.
    public func run(log: @escaping @Sendable (String) -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await runHAProxy(log: log) }
            group.addTask { await runReleases(log: log) }
        }
    }

    func runHAProxy(log: @Sendable (String) -> Void) async {
        var lastPlacement = Date.distantPast
        await AgentLoop.run(every: interval, failing: "cannot reconcile HAProxy with the members yet", log: log) {
            var notes = try reconcile()
            if Date().timeIntervalSince(lastPlacement) >= 30 {
                lastPlacement = Date()
                do { if let note = try placeEtcdLeader() { notes.append(note) } } catch { notes.append("etcd leadership stays: \(error)") }
            }
            return notes
        }
    }

    /// A failure is logged once; the record then ages and the exporter stops trusting it.
    func runReleases(log: @Sendable (String) -> Void) async {
        var said = ""
        await AgentLoop.run(every: MemberReleases.interval, failing: "cannot record the members' releases", log: log) {
            let now = Self.describe(try await recordReleases(members: try MemberRegistry.load(etcd).members))
            defer { said = now }
            return now == said ? [] : [now]
        }
    }

    /// One line for the log: which member runs which release.
    static func describe(_ r: MemberReleases) -> String {
        let by = Dictionary(grouping: r.members, by: { $0.version ?? "no answer" })
        return "members' releases: " + by.keys.sorted().map { "\($0) on \(by[$0]!.map(\.name).joined(separator: ", "))" }.joined(separator: "; ")
    }
}

/// The member agents' loop: a pass every `interval` seconds, its notes logged, a failure logged once until it
/// changes or a pass succeeds.
enum AgentLoop {
    static func run(every interval: Double, failing: String, log: @Sendable (String) -> Void, _ pass: () async throws -> [String]) async {
        var lastError = ""
        while !Task.isCancelled {
            do {
                for note in try await pass() { log(note) }
                lastError = ""
            } catch {
                let text = "\(error)"
                if text != lastError { log("\(failing): \(text)") }
                lastError = text
            }
            try? await Task.sleep(for: .seconds(interval))
        }
    }
}

import Backup
import DurableFiles
import Foundation
import IMStorage
import Installer
import Logging
import Operations
import Synchronization
import WarblerConfig

/// The cluster upgrade's effects on a real cluster, from a member (root).
///
/// Reading the cluster (etcd's members, each IM server's `/v1/version`, Patroni's primary, the schema), verifying
/// the file (checksum, and signature with the release key), the recorded progress (root's file and etcd's copy), the
/// cluster-wide lock (`ClusterUpgradeLock`, renewed while the run lasts), the cluster backup (in process, on this
/// member), the expand and contract migrations (`warbler cluster migrate` of the release they belong to), copying
/// the file to a member and switching or returning its release (orders signed with the cluster CA key to its
/// upgrade receiver, `UpgradeReceiverClient`; this member's own receiver too), waiting for a member to be ready on a
/// release (`NodeReadiness`), the Patroni switchover, draining a node in every member's HAProxy (a mark in etcd each
/// member's agent applies, `DrainMarks`), and telling one node's clients to reconnect and counting its sessions (a
/// signed cluster operation to its IM server, `NodeSessions`).
public struct LiveClusterUpgradeDriver: ClusterUpgradeDriver {
    public static let etcdKey = "/warbler/upgrade/progress"
    /// How long the switchover step waits for Patroni to name a synchronous standby (seconds).
    static let syncStandbyWait = 60

    let member: MemberFile
    let etcd: Etcdctl
    let host: LiveUpgradeHost
    let progressFile: ClusterUpgradeProgressFile
    let upgradeLock: ClusterUpgradeLock
    /// The lock's renewals while this process holds it.
    let keeper = HeldLock()
    /// Each line a member's receiver streams while it switches (`NODE: line`).
    let log: @Sendable (String) -> Void

    public init(progressFile: ClusterUpgradeProgressFile = ClusterUpgradeProgressFile(), log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        member = try ClusterTasks().memberFile()
        etcd = Etcdctl(endpoints: member.etcdEndpoints)
        host = LiveUpgradeHost()
        self.progressFile = progressFile
        upgradeLock = ClusterUpgradeLock(etcd: etcd, member: member.member.name)
        self.log = log
    }

    /// Whether this host is a cluster member (its member file exists).
    public static var isClusterMember: Bool { FileManager.default.fileExists(atPath: ClusterPaths.memberFile) }

    /// Every step has its primitive in this build.
    public func unavailable(_ step: ClusterUpgradeStep?) -> String? { nil }

    public func survey() async throws -> ClusterUpgradeFacts {
        let report = try await ClusterStatusCollector(member: member, etcd: etcd).collect()
        var nodes: [ClusterUpgradeNode] = []
        for n in report.nodes {
            guard let version = n.version else {
                throw ClusterUpgradeRefusal("cannot read \(n.name)'s release (\(n.imDetail ?? "its IM server does not answer /v1/version")): every member must be up to upgrade the cluster; see `warbler cluster status`")
            }
            var roles: [ClusterUpgradeNode.Role] = [.im]
            if n.roles.contains(ClusterRole.database.rawValue) { roles.append(.database) }
            else if n.roles.contains(ClusterRole.etcd.rawValue) { roles.append(.witness) }
            nodes.append(ClusterUpgradeNode(name: n.name, roles: roles, version: version, isPrimary: ["leader", "master"].contains(n.postgresRole ?? "")))
        }
        guard let oldest = nodes.compactMap({ ReleaseVersion($0.version) }).min() else {
            throw ClusterUpgradeRefusal("etcd lists no member whose release can be read")
        }
        let binary = host.layout.path(Paths.release(oldest.text) + "/bin/warbler")
        guard FileManager.default.fileExists(atPath: binary) else {
            throw ClusterUpgradeRefusal("this member does not hold \(oldest.text), the oldest release the cluster runs (\(binary)); run the upgrade on a member that does")
        }
        return ClusterUpgradeFacts(nodes: nodes, databaseSchema: try await Self.clusterSchemaVersion(), runningSchema: try host.releaseInfo(binary: binary).schema)
    }

    /// The shared database's schema, read as `warbler cluster migrate` connects (root's copy of the password: the
    /// service user's password file is one it could rewrite).
    static func clusterSchemaVersion() async throws -> Int {
        var logger = Logger(label: "warbler.upgrade")
        logger.logLevel = .error
        let driver = try await ClusterTasks.connectDatabase(logger: logger)
        do {
            let v = try await Migrations.currentVersion(driver)
            try await driver.close()
            return v
        } catch {
            try? await driver.close()
            throw error
        }
    }

    public func loadProgress() async throws -> ClusterUpgradeProgress? { try progressFile.load() }

    public func recordedElsewhere() async -> ClusterUpgradeProgress? {
        guard let value = (try? etcd.get(prefix: Self.etcdKey))?.first(where: { $0.key == Self.etcdKey })?.value else { return nil }
        return try? ClusterUpgradeProgressFile.decode(value)
    }

    public func save(_ progress: ClusterUpgradeProgress) async throws {
        // Before every step: a run that lost the lock (its lease ended: the process stalled, or etcd was away for the
        // whole TTL) may no longer be the only one, so it stops here, where a resume continues.
        if let lost = keeper.lost {
            let again = progress.state == .finished ? "`warbler upgrade --contract` again"
                : progress.kind == .upgrade ? "`warbler upgrade --resume \(progress.file)`" : "`warbler rollback --resume`"
            let at = progress.state == .finished ? "the contract migrations"
                : "step \(progress.done + 1) of \(progress.steps.count)\(progress.done < progress.steps.count ? " (\(progress.steps[progress.done]))" : "")"
            throw ClusterUpgradeRefusal("this run lost the cluster upgrade lock: \(lost). It stopped before \(at); see `warbler cluster status`, then \(again)")
        }
        var progress = progress
        progress.ranOn = member.member.name
        try progressFile.save(progress)
        // etcd's copy is for `cluster status` on any member; root's file is what a resume trusts.
        let compact = try JSONEncoder.iso8601Compact.encode(progress)
        try etcd.put(Self.etcdKey, String(decoding: compact, as: UTF8.self))
        try etcd.put(ClusterStatusCollector.upgradeSummaryKey, progress.summary)
    }

    public func lock() async throws {
        switch try upgradeLock.acquire(now: Date()) {
        case .acquired(let lease):
            keeper.hold(LeaseKeeper(lock: upgradeLock.lock, lease: lease).start())
        case .held(let node, let since):
            throw ClusterUpgradeRefusal(upgradeLock.heldMessage(by: node, since: since))
        }
    }

    public func unlock() async { keeper.release() }

    public func verify(file: String) async throws -> ReleaseInfo {
        // The checks of a single-node upgrade, on a copy only root can write.
        let staged = try host.stage(file: file)
        defer { host.removeStaged(staged) }
        try host.verify(file: staged)
        return try host.releaseInfo(binary: staged)
    }

    public func distribute(file: String, to node: String) async throws { try await orders.distribute(file: file, to: node) }

    /// The orders to the members' upgrade receivers, each found by its address in etcd.
    var orders: ReleaseOrders {
        ReleaseOrders(host: host, progress: { [progressFile] in try progressFile.load() }, log: log) { [self] node in
            let m = try registered(node)
            return try UpgradeReceiverClient.forMember(name: m.name, address: m.address)
        }
    }

    /// Where the cluster's pre-upgrade backups go on the member that runs the upgrade: root's directory (0700, in
    /// root's install state), not the backup directory, which the service user can write; the archive holds the
    /// internal CA's key.
    public static let backups = Paths.installState + "/cluster-backups"

    /// The cluster backup, in this process as `warbler backup` takes it on a member as root: a pg_dump of the
    /// primary, the configs and the secrets, a format-2 manifest naming the cluster, authenticated with the install's
    /// backup key. The previous upgrade's backup there is deleted once this one is written. Returns where it went
    /// (`PATH on NODE`), which the progress keeps and every report names.
    public func backup(label: String) async throws -> String {
        let layout = host.layout
        let system = LocalSystem()
        let config = try ServerConfig.load(path: layout.path(Paths.config), environment: [:])
        let state = layout.path(Paths.installState), dir = layout.path(Self.backups)
        for d in [state, dir] where try system.info(d) == nil {
            try system.makeDirectory(d, mode: 0o700, owner: layout.isStaging ? nil : .root)
        }
        try RootState(system: system, layout: layout).requireTrusted(dir, kind: .directory)
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        var logger = Logger(label: "warbler.backup")
        logger.logLevel = .warning
        let result = try await BackupEngine(logger: logger).create(BackupRequest(
            layout: layout, config: config, output: "\(dir)/warbler-\(label)-\(stamp).tar.gz", unattended: false,
            clusterView: LiveClusterView(layout: layout)))
        _ = try? Retention.prunePreUpgrade(directory: dir, keeping: result.file)
        return "\(result.file) on \(member.member.name)"
    }

    /// Runs the migrations of `phase` through `schema` with the release they belong to: `warbler cluster migrate`
    /// of the target release, as root, against the primary through this member's HAProxy listener (root's copy of
    /// the database password). Expand: the target is not installed anywhere yet, so it runs from a fresh root-only
    /// copy of the upgrade's file, verified again (checksum, signature) and checked to be the recorded target.
    /// Contract: every member runs the target by then, this one included, so its installed release runs them.
    public func migrate(through schema: Int, phase: Migration.Phase) async throws {
        guard let progress = try progressFile.load() else {
            throw ClusterUpgradeRefusal("no cluster upgrade is recorded here; migrations run only as its steps")
        }
        let binary: String
        var staged: String?
        defer { if let staged { host.removeStaged(staged) } }
        switch phase {
        case .expand:
            let copy = try host.stage(file: progress.file)
            staged = copy
            try host.verify(file: copy)
            let info = try host.releaseInfo(binary: copy)
            guard info.version == progress.to, info.build == progress.toBuild else {
                throw ClusterUpgradeRefusal("\(progress.file) now holds \(info.version) (build \(info.build)), not \(progress.to) (build \(progress.toBuild)) that this upgrade verified; put that file back and resume")
            }
            binary = copy
        case .contract:
            let installed = try host.installed()
            guard installed.current == progress.to else {
                throw ClusterUpgradeRefusal("this member runs \(installed.current), not \(progress.to): run `warbler upgrade --contract` on a member the upgrade switched")
            }
            binary = installed.currentBinary
        }
        let result = try LocalSystem().run([binary, "cluster", "migrate", "--phase", phase.rawValue, "--through", String(schema)], as: nil)
        _ = try Self.migrationRun(result, phase: phase, through: schema)
    }

    /// Reads `warbler cluster migrate`'s answer, and holds it to what was asked: the schema must reach `through`.
    static func migrationRun(_ result: CommandResult, phase: Migration.Phase, through: Int) throws -> ClusterTasks.MigrationRun {
        guard result.status == 0 else {
            throw ClusterUpgradeRefusal("the \(phase.rawValue) migrations failed: \(result.output.split(separator: "\n").suffix(4).joined(separator: "\n"))")
        }
        guard let line = result.output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let run = try? JSONDecoder().decode(ClusterTasks.MigrationRun.self, from: Data(line.utf8)) else {
            throw ClusterUpgradeRefusal("`warbler cluster migrate` did not say what it did: \(result.output.prefix(300))")
        }
        guard run.schema >= through else {
            throw ClusterUpgradeRefusal("the \(phase.rawValue) migrations left the database at schema \(run.schema), short of \(through) (applied: \(run.applied.map(String.init).joined(separator: ", ")))")
        }
        return run
    }

    public func switchRelease(node: String, to version: String) async throws { try await orders.switchRelease(node: node, to: version) }
    /// How long a switched member's IM server has to be ready on the new release.
    public static let readyTimeout: Duration = .seconds(120)

    /// Polls the member's IM server over the cluster listener (root's cluster identity, the member's certificate
    /// verified against the cluster CA for the address dialled) until `/readyz` is 200 and `/v1/version` names
    /// `version`.
    public func waitReady(node: String, version: String) async throws {
        guard let address = try MemberRegistry.load(etcd).members.first(where: { $0.name == node })?.address else {
            throw ClusterUpgradeRefusal("etcd lists no member \(node); see `warbler cluster status`")
        }
        try await NodeReadiness.live(member: member, etcd: etcd) {
            try await $0.wait(node: node, address: address, version: version, timeout: Self.readyTimeout)
        }
    }

    /// How long every member's agent has to apply a drain mark (they pass every 3 s).
    static let drainTimeout: Duration = .seconds(30)
    /// The window over which a node's clients are told to reconnect (well inside the engine's session wait).
    static let reconnectWindow: Duration = .seconds(10)

    public func drain(node: String) async throws {
        try await DrainControl(etcd: etcd, by: member.member.name).drain(node: node, reason: "cluster upgrade", timeout: Self.drainTimeout)
    }

    public func reconnectClients(node: String) async throws {
        _ = try await NodeSessions.forMember(try registered(node)).reconnect(window: Self.reconnectWindow)
    }

    public func waitForSessions(node: String, timeout: Duration) async throws -> Int? {
        try await NodeSessions.forMember(try registered(node)).waitUntilEmpty(timeout: timeout)
    }

    func registered(_ node: String) throws -> ClusterMember {
        guard let m = try MemberRegistry.load(etcd).members.first(where: { $0.name == node }) else {
            throw ClusterUpgradeRefusal("\(node) is not a member registered in etcd; see `warbler cluster status`")
        }
        return m
    }
    public func undrain(node: String) async throws {
        try await DrainControl(etcd: etcd, by: member.member.name).undrain(node: node, timeout: Self.drainTimeout)
    }

    public func switchover(from primary: String) async throws -> String {
        let patroni = try PatroniControl.fromMember(member, etcd: etcd)
        // The standby switched just before this step restarted its PostgreSQL: Patroni makes it the synchronous
        // standby again only once it streams, a loop or two later (loop_wait 2 s), and a planned switchover goes only
        // to the synchronous standby. So the plan waits for one, up to a minute, before it gives up.
        let deadline = ContinuousClock.now + .seconds(Self.syncStandbyWait)
        var planned: (leader: PatroniControl.Member?, candidate: PatroniControl.Member)?
        var waited = false
        while planned == nil {
            do {
                planned = try PatroniControl.plan(try await patroni.members(), to: nil, forced: false)
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                if !waited { log("waiting for a synchronous standby (\(error))"); waited = true }
                try await Task.sleep(for: .seconds(1))
            }
        }
        let (leader, candidate) = planned!
        guard leader?.name == primary else {
            throw ClusterUpgradeRefusal("the PostgreSQL primary is \(leader?.name ?? "none"), not \(primary) as planned; see `warbler cluster status`")
        }
        _ = try await patroni.move(to: candidate, from: leader, forced: false) { _ in }
        return candidate.name
    }
}

extension JSONEncoder {
    static var iso8601Compact: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }
}

/// The upgrade lock this process holds, with the thread that renews it.
final class HeldLock: Sendable {
    let keeper = Mutex<LeaseKeeper?>(nil)
    func hold(_ k: LeaseKeeper) { keeper.withLock { $0 = k } }
    var lost: String? { keeper.withLock { $0?.lost } }
    func release() { keeper.withLock { k in k?.release(); k = nil } }
}

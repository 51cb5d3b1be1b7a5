import DurableFiles
import Foundation
import IMStorage
import Installer
import Operations

/// The cluster upgrade's effects on a real cluster, from a member (root): what this build has a primitive for, and
/// for the rest, a refusal that names the step. Nothing here pretends: the engine asks `unavailable` before the
/// first change and refuses the whole run when any step it needs is missing.
///
/// Real: reading the cluster (etcd's members, each IM server's `/v1/version`, Patroni's primary, the schema),
/// verifying the file (checksum, and signature with the release key), the recorded progress (root's file and
/// etcd's copy), the Patroni switchover, draining a node in every member's HAProxy (a mark in etcd each member's
/// agent applies, `DrainMarks`), and telling one node's clients to reconnect and counting its sessions (a signed
/// cluster operation to its IM server, `NodeSessions`). Missing: the cluster-wide lock, copying the file to another
/// node, the cluster backup, running only the expand (or contract) migrations, and switching another node's
/// release.
public struct LiveClusterUpgradeDriver: ClusterUpgradeDriver {
    public static let etcdKey = "/warbler/upgrade/progress"

    let member: MemberFile
    let etcd: Etcdctl
    let host: LiveUpgradeHost
    let progressFile: ClusterUpgradeProgressFile

    public init(progressFile: ClusterUpgradeProgressFile = ClusterUpgradeProgressFile()) throws {
        member = try ClusterTasks().memberFile()
        etcd = Etcdctl(endpoints: member.etcdEndpoints)
        host = LiveUpgradeHost()
        self.progressFile = progressFile
    }

    /// Whether this host is a cluster member (its member file exists).
    public static var isClusterMember: Bool { FileManager.default.fileExists(atPath: ClusterPaths.memberFile) }

    public func unavailable(_ step: ClusterUpgradeStep?) -> String? {
        let missing: String
        switch step {
        case nil: missing = "the cluster-wide upgrade lock"
        case .distribute?: missing = "copy the file to another node (distribute)"
        case .backup?: missing = "the cluster database backup (backup)"
        case .expandMigrations?, .contractMigrations?: missing = "running only the expand or contract migrations (migrate)"
        case .switchRelease?, .waitReady?: missing = "switching another node's release (switch)"
        case .verifyFile?, .checkSkew?, .switchover?, .drain?, .undrain?, .reconnectClients?, .waitSessions?: return nil
        }
        return "cluster upgrade: step \(missing) is not available in this build"
    }

    func refuse(_ step: ClusterUpgradeStep?) -> ClusterUpgradeRefusal { ClusterUpgradeRefusal(unavailable(step) ?? "\(step.map { "\($0)" } ?? "lock")") }

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
        return ClusterUpgradeFacts(nodes: nodes, databaseSchema: try await host.schemaVersion(), runningSchema: try host.releaseInfo(binary: binary).schema)
    }

    public func loadProgress() async throws -> ClusterUpgradeProgress? { try progressFile.load() }

    public func save(_ progress: ClusterUpgradeProgress) async throws {
        try progressFile.save(progress)
        // etcd's copy is for `cluster status` on any member; root's file is what a resume trusts.
        let compact = try JSONEncoder.iso8601Compact.encode(progress)
        try etcd.put(Self.etcdKey, String(decoding: compact, as: UTF8.self))
        try etcd.put(ClusterStatusCollector.upgradeSummaryKey, progress.summary)
    }

    public func lock() async throws { throw refuse(nil) }
    public func unlock() async {}

    public func verify(file: String) async throws -> ReleaseInfo {
        // The checks of a single-node upgrade, on a copy only root can write.
        let staged = try host.stage(file: file)
        defer { host.removeStaged(staged) }
        try host.verify(file: staged)
        return try host.releaseInfo(binary: staged)
    }

    public func distribute(file: String, to node: String) async throws { throw refuse(.distribute(node: node)) }
    public func backup(label: String) async throws -> String { throw refuse(.backup) }
    public func migrate(through schema: Int, phase: Migration.Phase) async throws { throw refuse(.expandMigrations(through: schema)) }
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
    public func switchRelease(node: String, to version: String) async throws { throw refuse(.switchRelease(node: node)) }
    public func waitReady(node: String, version: String) async throws { throw refuse(.waitReady(node: node)) }
    public func undrain(node: String) async throws {
        try await DrainControl(etcd: etcd, by: member.member.name).undrain(node: node, timeout: Self.drainTimeout)
    }

    public func switchover(from primary: String) async throws -> String {
        let patroni = try PatroniControl.fromMember(member, etcd: etcd)
        let (leader, candidate) = try PatroniControl.plan(try await patroni.members(), to: nil, forced: false)
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

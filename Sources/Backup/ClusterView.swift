import DurableFiles
import Foundation
import Glibc
import Installer
import Operations

/// What a cluster backup records about the cluster and a cluster restore checks: etcd's cluster id and the
/// members registered now. A protocol so tests give a recording fake; `LiveClusterView` asks etcd.
public protocol ClusterView: Sendable {
    /// This member's node name (from its member file).
    func node() throws -> String
    /// etcd's cluster id and the registered members.
    func state() throws -> (id: String, members: [ClusterMember])
}

/// The cluster as this member's etcdctl (root's client certificate) sees it. Only root can ask etcd; a backup run by
/// the service user (the daily unit) reads instead the snapshot root wrote when it took the daily lock
/// (`ClusterSnapshotFile`).
public struct LiveClusterView: ClusterView {
    public var layout: Layout
    public var system: any System

    public init(layout: Layout, system: any System = LocalSystem()) {
        self.layout = layout; self.system = system
    }

    func memberFile() throws -> MemberFile {
        try MemberFile.load(try RootFile.read(layout.path(ClusterPaths.memberFile)))
    }

    public func node() throws -> String { try memberFile().member.name }

    public func state() throws -> (id: String, members: [ClusterMember]) {
        let m = try memberFile()
        let etcd = Etcdctl(endpoints: m.etcdEndpoints, system: system)
        let id = try etcd.clusterID()
        let members = try MemberRegistry.load(etcd).members
        return (String(id), members)
    }
}

/// The cluster's state as root saw it when it took the daily backup lock, for the backup the service user then runs
/// (which cannot ask etcd): `/run/warbler-backup-cluster.json`, root's and readable by all, removed at release.
public enum ClusterSnapshotFile {
    public static let path = "/run/warbler-backup-cluster.json"

    public static func write(_ cluster: BackupManifest.Cluster, layout: Layout) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try Files.writeAtomically(layout.path(path), try encoder.encode(cluster), mode: 0o644)
    }

    /// The snapshot, when there is one root wrote (root's, writable by no one else) in the last `maxAge` seconds.
    public static func read(layout: Layout, maxAge: TimeInterval = 7 * 3600, now: Date = Date()) -> BackupManifest.Cluster? {
        let file = layout.path(path)
        var st = stat()
        guard Glibc.lstat(file, &st) == 0, now.timeIntervalSince1970 - Double(st.st_mtim.tv_sec) < maxAge,
              let data = try? RootFile.read(file) else { return nil }
        return try? JSONDecoder().decode(BackupManifest.Cluster.self, from: data)
    }

    public static func remove(layout: Layout) { unlink(layout.path(path)) }
}

extension BackupManifest.Cluster {
    /// What a backup on this member records: from etcd when `view` can ask it (root), else the daily lock's
    /// snapshot, else only this member's name with a note saying why the rest is missing.
    static func current(layout: Layout, view: (any ClusterView)?, unattended: Bool) -> BackupManifest.Cluster {
        let member = try? MemberFile.load(try RootFile.read(layout.path(ClusterPaths.memberFile)))
        let node = member?.member.name ?? "unknown"
        if !unattended, let view {
            do {
                let (id, members) = try view.state()
                return .init(id: id, node: (try? view.node()) ?? node, members: members, database: member?.database)
            } catch {
                return .init(id: nil, node: node, members: [], database: member?.database,
                             note: "etcd could not be asked for the cluster's id and members: \(error)")
            }
        }
        if let snapshot = ClusterSnapshotFile.read(layout: layout), snapshot.node == node { return snapshot }
        return .init(id: nil, node: node, members: [], database: member?.database,
                     note: "taken by the service user, which cannot ask etcd, without the daily lock's snapshot")
    }
}

/// The daily timer's lock on a cluster member (`warbler backup-lock acquire|release`, root, around the service
/// user's backup): `DailyBackupLock` in etcd, and the cluster snapshot the backup records.
public enum ClusterDailyBackup {
    public struct Decision: Sendable, Equatable {
        /// Whether this member takes today's backup.
        public var takeBackup: Bool
        /// What to log.
        public var message: String
    }

    static func lock(layout: Layout, system: any System) throws -> DailyBackupLock {
        let m = try MemberFile.load(try RootFile.read(layout.path(ClusterPaths.memberFile)))
        return DailyBackupLock(etcd: Etcdctl(endpoints: m.etcdEndpoints, system: system), member: m.member.name)
    }

    public static func acquire(layout: Layout, system: any System = LocalSystem(), now: Date) throws -> Decision {
        let lock = try lock(layout: layout, system: system)
        switch try lock.acquire(now: now) {
        case .acquired(let lease):
            // What the backup records about the cluster; it runs as the service user, which cannot ask etcd.
            let view = LiveClusterView(layout: layout, system: system)
            let cluster = BackupManifest.Cluster.current(layout: layout, view: view, unattended: false)
            try? ClusterSnapshotFile.write(cluster, layout: layout)
            return Decision(takeBackup: true, message: "\(lock.member) holds the cluster's daily backup lock (lease \(String(lease, radix: 16))): it takes today's backup")
        case .held(let member):
            return Decision(takeBackup: false, message: "another member (\(member)) holds the cluster's daily backup lock and takes today's backup; \(lock.member) skips it")
        case .done(let mark):
            return Decision(takeBackup: false, message: "today's cluster backup is taken already (\(mark)); \(lock.member) skips it")
        }
    }

    public static func release(layout: Layout, system: any System = LocalSystem(), succeeded: Bool, now: Date) throws -> String {
        let lock = try lock(layout: layout, system: system)
        let (held, said) = try lock.release(succeeded: succeeded, now: now)
        if held { ClusterSnapshotFile.remove(layout: layout) }
        return said
    }
}

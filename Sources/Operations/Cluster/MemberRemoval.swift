import Foundation
import Installer

/// `warbler cluster remove NODE`: taking a member that is gone (powered off, its disk lost) out of the cluster from
/// any other member. A member that still runs leaves by `warbler uninstall` on itself, which stops its services
/// first; removing a running one from elsewhere would leave it serving outside the cluster, so that needs `--force`.
///
/// What the decision looks at is the cluster's status as `cluster status` collects it (one view, one code path);
/// what it does is all in etcd: the member's record (every agent then empties its HAProxy slots), its VIP peer
/// record and drain mark, and its etcd member. Patroni's own key for it expires with its lease (ttl), which also
/// drops its replication slot on the primary.
public enum MemberRemoval {
    public struct Plan: Sendable, Equatable {
        public var node: String
        /// The member record is in etcd (a half-joined host may have only an etcd member).
        public var record: Bool
        /// Its etcd member, when it has one.
        public var etcdMember: UInt64?
        /// Why it was removed although something said it still runs (only with `--force`).
        public var forcedOver: [String]
    }

    /// The plan for removing `node`, run on `me`, or the refusal that says what to do instead.
    public static func decide(node: String, me: String, report: ClusterStatusReport, etcdMembers: [Etcdctl.Member],
                              force: Bool) -> Result<Plan, ClusterOpsError> {
        if node == me {
            return .failure(ClusterOpsError("\(node) is this host: run `warbler uninstall` here instead, which stops its services and leaves the cluster cleanly"))
        }
        let row = report.nodes.first { $0.name == node }
        let etcdMember = etcdMembers.first { $0.name == node }
        guard row != nil || etcdMember != nil else {
            let names = Set(report.nodes.map(\.name) + etcdMembers.map(\.name)).sorted()
            return .failure(ClusterOpsError("no member is named '\(node)' (members: \(names.joined(separator: ", ")))"))
        }
        // The primary is never removed, forced or not: Patroni must first hand it over.
        if row?.postgresRole == "leader" || report.primary == node {
            return .failure(ClusterOpsError("\(node) is the PostgreSQL primary: move the primary first (`warbler cluster switchover`, or `warbler cluster failover` when it is down), then remove it"))
        }
        var alive: [String] = []
        if let row {
            if row.imReady { alive.append("its IM server is ready") }
            if let state = row.postgresState, ["running", "streaming"].contains(state) { alive.append("its PostgreSQL is \(state)") }
            if row.etcdHealthy == true { alive.append("its etcd member is healthy") }
        }
        var forcedOver: [String] = []
        if !alive.isEmpty {
            guard force else {
                return .failure(ClusterOpsError("\(node) is running (\(alive.joined(separator: "; "))): run `warbler uninstall` on it, which stops it and leaves the cluster cleanly, or power it off and run this again; --force removes it anyway and leaves it running outside the cluster"))
            }
            forcedOver += alive
        }
        if row?.roles.contains("database") == true {
            let databaseLeft = report.nodes.filter { $0.name != node && $0.roles.contains("database") }
            if databaseLeft.count < 2 {
                let left = databaseLeft.map(\.name).joined(separator: ", ")
                guard force else {
                    return .failure(ClusterOpsError("removing \(node) leaves \(left.isEmpty ? "no database member" : left) without a standby: every acknowledged write would then live on one host only. Join another host with the database role first, or use --force"))
                }
                forcedOver.append("it leaves \(left.isEmpty ? "no database member" : left) without a standby")
            }
        }
        if let etcdMember, !etcdMember.isLearner {
            // etcd itself refuses a removal that loses its quorum; say it before trying, in the cluster's words.
            let voters = etcdMembers.filter { !$0.isLearner && $0.id != etcdMember.id }
            let healthy = voters.filter { v in report.nodes.first { $0.name == v.name }?.etcdHealthy == true }
            if voters.isEmpty {
                return .failure(ClusterOpsError("\(node) is etcd's last voter: it cannot be removed"))
            }
            if healthy.count * 2 <= voters.count {
                return .failure(ClusterOpsError("after removing \(node), only \(healthy.count) of etcd's \(voters.count) remaining voters would be healthy, which is no quorum: bring \(voters.filter { v in !healthy.contains { $0.id == v.id } }.map(\.name).joined(separator: ", ")) back first"))
            }
        }
        return .success(Plan(node: node, record: row != nil, etcdMember: etcdMember?.id, forcedOver: forcedOver))
    }
}

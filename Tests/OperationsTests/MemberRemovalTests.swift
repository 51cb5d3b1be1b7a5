import Foundation
import Installer
@testable import Operations
import Testing

/// `warbler cluster remove NODE`: what may be removed from where, and what is said otherwise.
@Suite struct MemberRemovalTests {
    /// A member as `cluster status` sees it: `up` false is a powered-off host (nothing answers).
    func node(_ name: String, _ roles: [String], up: Bool, pg: (String, String)? = nil) -> ClusterStatusReport.Node {
        .init(name: name, address: "10.0.0.\(name.last!)", roles: roles, version: up ? "0.1.0" : nil, imReady: up, imDetail: up ? nil : "no answer",
              haproxy: up ? "UP" : "DOWN", connections: up ? 0 : nil, postgresRole: up ? pg?.0 : nil, postgresState: up ? pg?.1 : nil,
              lagBytes: nil, etcd: roles.contains("etcd") ? "voter" : nil, etcdHealthy: roles.contains("etcd") ? up : nil)
    }

    /// Four members: two database hosts, the witness, and an IM-only fourth host; `down` are powered off.
    func cluster(down: Set<String>, fourthDatabase: Bool = false) -> (ClusterStatusReport, [Etcdctl.Member]) {
        let nodes = [node("warbler-1", ["im", "database", "etcd"], up: !down.contains("warbler-1"), pg: ("leader", "running")),
                     node("warbler-2", ["im", "database", "etcd"], up: !down.contains("warbler-2"), pg: ("sync_standby", "streaming")),
                     node("warbler-3", ["im", "etcd"], up: !down.contains("warbler-3")),
                     node("warbler-4", fourthDatabase ? ["im", "database"] : ["im"], up: !down.contains("warbler-4"), pg: ("replica", "streaming"))]
        let etcd = (1...3).map { Etcdctl.Member(id: UInt64($0) * 0x1111, name: "warbler-\($0)", peerURLs: [], clientURLs: [], isLearner: false) }
        let report = ClusterStatusReport(nodes: nodes, primary: down.contains("warbler-1") ? nil : "warbler-1", etcdVoters: 3,
                                         etcdHealthyVoters: nodes.filter { $0.etcdHealthy == true }.count, quorum: true,
                                         imUp: nodes.filter(\.imReady).count, problems: [])
        return (report, etcd)
    }

    func refusal(_ r: Result<MemberRemoval.Plan, ClusterOpsError>) -> String? {
        if case .failure(let e) = r { return e.description }
        return nil
    }

    @Test func aPoweredOffWitnessLosesItsRecordAndItsEtcdMember() throws {
        let (report, etcd) = cluster(down: ["warbler-3"])
        let plan = try MemberRemoval.decide(node: "warbler-3", me: "warbler-1", report: report, etcdMembers: etcd, force: false).get()
        #expect(plan == .init(node: "warbler-3", record: true, etcdMember: 0x3333, forcedOver: []))
    }

    @Test func aPoweredOffImOnlyHostHasNoEtcdMemberToRemove() throws {
        let (report, etcd) = cluster(down: ["warbler-4"])
        let plan = try MemberRemoval.decide(node: "warbler-4", me: "warbler-2", report: report, etcdMembers: etcd, force: false).get()
        #expect(plan.etcdMember == nil && plan.record && plan.forcedOver.isEmpty)
    }

    @Test func aHalfJoinedHostWithOnlyAnEtcdMemberCanBeRemoved() throws {
        let (report, etcd) = cluster(down: [])
        let lone = etcd + [Etcdctl.Member(id: 0x5555, name: "warbler-5", peerURLs: [], clientURLs: [], isLearner: true)]
        let plan = try MemberRemoval.decide(node: "warbler-5", me: "warbler-1", report: report, etcdMembers: lone, force: false).get()
        #expect(plan == .init(node: "warbler-5", record: false, etcdMember: 0x5555, forcedOver: []))
    }

    @Test func thisHostIsLeftByUninstallNotRemoved() {
        let (report, etcd) = cluster(down: [])
        let why = refusal(MemberRemoval.decide(node: "warbler-2", me: "warbler-2", report: report, etcdMembers: etcd, force: true))
        #expect(why?.contains("warbler uninstall") == true)
    }

    @Test func anUnknownNameIsRefusedWithTheMembersNamed() {
        let (report, etcd) = cluster(down: [])
        let why = refusal(MemberRemoval.decide(node: "warbler-9", me: "warbler-1", report: report, etcdMembers: etcd, force: true))
        #expect(why == "no member is named 'warbler-9' (members: warbler-1, warbler-2, warbler-3, warbler-4)")
    }

    @Test func thePrimaryIsNeverRemovedEvenForced() {
        let (report, etcd) = cluster(down: [])
        let why = refusal(MemberRemoval.decide(node: "warbler-1", me: "warbler-3", report: report, etcdMembers: etcd, force: true))
        #expect(why?.contains("is the PostgreSQL primary") == true)
        #expect(why?.contains("switchover") == true)
    }

    @Test func aRunningMemberIsRefusedUnlessForcedAndTheForceIsSaid() throws {
        let (report, etcd) = cluster(down: [])
        let why = refusal(MemberRemoval.decide(node: "warbler-3", me: "warbler-1", report: report, etcdMembers: etcd, force: false))
        #expect(why == "warbler-3 is running (its IM server is ready; its etcd member is healthy): run `warbler uninstall` on it, which stops it and leaves the cluster cleanly, or power it off and run this again; --force removes it anyway and leaves it running outside the cluster")
        let plan = try MemberRemoval.decide(node: "warbler-3", me: "warbler-1", report: report, etcdMembers: etcd, force: true).get()
        #expect(plan.forcedOver == ["its IM server is ready", "its etcd member is healthy"])
    }

    @Test func theOnlyStandbyIsRefusedUnlessForced() throws {
        let (report, etcd) = cluster(down: ["warbler-2"])
        let why = refusal(MemberRemoval.decide(node: "warbler-2", me: "warbler-1", report: report, etcdMembers: etcd, force: false))
        #expect(why?.hasPrefix("removing warbler-2 leaves warbler-1 without a standby") == true)
        let plan = try MemberRemoval.decide(node: "warbler-2", me: "warbler-1", report: report, etcdMembers: etcd, force: true).get()
        #expect(plan.forcedOver == ["it leaves warbler-1 without a standby"])
    }

    @Test func aStandbyWithAnotherDatabaseMemberLeftNeedsNoForce() throws {
        let (report, etcd) = cluster(down: ["warbler-2"], fourthDatabase: true)
        let plan = try MemberRemoval.decide(node: "warbler-2", me: "warbler-1", report: report, etcdMembers: etcd, force: false).get()
        #expect(plan.forcedOver.isEmpty && plan.etcdMember == 0x2222)
    }

    @Test func aRemovalThatLeavesEtcdWithoutQuorumIsRefusedEvenForced() {
        // Two of three etcd voters down: removing one leaves two voters, one healthy.
        let (report, etcd) = cluster(down: ["warbler-2", "warbler-3"])
        let why = refusal(MemberRemoval.decide(node: "warbler-3", me: "warbler-1", report: report, etcdMembers: etcd, force: true))
        #expect(why == "after removing warbler-3, only 1 of etcd's 2 remaining voters would be healthy, which is no quorum: bring warbler-2 back first")
    }
}

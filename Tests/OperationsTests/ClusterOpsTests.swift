import Foundation
import IMServer
import Installer
@testable import Operations
import Testing

@Suite struct ClusterOpsTests {
    let one = ClusterMember(name: "one", address: "10.0.0.1", roles: [.database, .etcd])
    let two = ClusterMember(name: "two", address: "10.0.0.2", roles: [.database, .etcd])
    let three = ClusterMember(name: "three", address: "10.0.0.3", roles: [.etcd])

    @Test func slotsHoldEveryIMServerAndEveryDatabaseMemberInNameOrder() {
        let wants = SlotPlan.plan(members: [three, two, one], slots: 4)
        #expect(wants.filter { $0.backend == "im" }.map(\.address) == ["10.0.0.1", "10.0.0.3", "10.0.0.2", nil])
        #expect(wants.filter { $0.backend == "primary" }.map(\.address) == ["10.0.0.1", "10.0.0.2", nil, nil])
        #expect(wants.first { $0.backend == "primary" }?.port == 5432 && wants.first?.port == 8444)
        // On the site's PostgreSQL HAProxy has no `primary` backend to fill.
        let external = SlotPlan.plan(members: [three, two, one], slots: 4, primary: false)
        #expect(external.allSatisfy { $0.backend == "im" } && external.count == 4)
    }

    @Test func onlySlotsThatDifferGetCommandsAndADrainedSlotIsLeftToTheOperator() {
        let wants = SlotPlan.plan(members: [one, two], slots: 3).filter { $0.backend == "im" }
        func slot(_ n: Int, _ addr: String, maint: Bool, drain: Bool = false) -> HAProxyRuntime.Slot {
            .init(backend: "im", name: "m\(n)", address: addr, port: 8444, maintenance: maint, draining: drain, operational: maint ? 0 : 2)
        }
        // Fresh HAProxy: every slot in maintenance at 127.0.0.1.
        let fresh = SlotPlan.commands(current: [slot(1, "127.0.0.1", maint: true), slot(2, "127.0.0.1", maint: true), slot(3, "127.0.0.1", maint: true)], wants: wants)
        #expect(fresh.map(\.server) == ["m1", "m2"] && fresh.allSatisfy { $0.ready && $0.address != nil })
        // Filled and drained by an operator: nothing to do.
        #expect(SlotPlan.commands(current: [slot(1, "10.0.0.1", maint: false), slot(2, "10.0.0.2", maint: false, drain: true),
                                            slot(3, "127.0.0.1", maint: true)], wants: wants).isEmpty)
        // A member left: its slot is emptied; a member moved: its slot gets the new address.
        let left = SlotPlan.commands(current: [slot(1, "10.0.0.1", maint: false), slot(2, "10.0.0.9", maint: false), slot(3, "10.0.0.3", maint: false)], wants: wants)
        #expect(left.count == 2 && left[0].server == "m2" && left[0].address == "10.0.0.2" && left[1].server == "m3" && !left[1].ready)
    }

    @Test func clusterStatusShowsTheUpgradesProgressLine() throws {
        var report = ClusterStatusReport(nodes: [], primary: "one", etcdVoters: 3, etcdHealthyVoters: 3, quorum: true, imUp: 0, problems: [])
        #expect(!report.render().contains("upgrade:"))
        report.upgrade = "upgrade 1.0.0 → 1.1.0: running, step 12 of 26 (wait for w1 to be ready)"
        #expect(report.render().contains("\nupgrade: upgrade 1.0.0 → 1.1.0: running, step 12 of 26 (wait for w1 to be ready)\n"))
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any]
        #expect(json?["upgrade"] as? String == report.upgrade)
    }

    @Test func haproxyServerStateIsRead() {
        let text = """
        1
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
        3 im 1 m1 10.0.0.1 2 0 1 1 12 6 3 4 6 0 0 0 - 8444 - 1 0 - - 0
        3 im 2 m2 127.0.0.1 0 5 1 1 12 1 0 0 14 0 0 0 - 8444 - 1 0 - - 0
        3 im 3 m3 10.0.0.3 2 8 1 1 12 6 3 4 6 0 0 0 - 8444 - 1 0 - - 0
        3 im 4 m4 10.0.0.4 2 4 1 1 12 6 3 4 6 0 0 0 - 8444 - 1 0 - - 0
        """
        let slots = HAProxyRuntime.parseState(text)
        #expect(slots.map(\.name) == ["m1", "m2", "m3", "m4"])
        // A slot made ready keeps the config's `disabled` bit (0x04) but is in service.
        #expect(!slots[3].maintenance && !slots[3].draining)
        #expect(slots[0].address == "10.0.0.1" && !slots[0].maintenance && slots[0].operational == 2)
        #expect(slots[1].maintenance && slots[2].draining && !slots[2].maintenance)
    }

    @Test func etcdMembersAreReadFromTheSimpleFormatWithHexIDs() {
        let text = """
        8e9e05c52164694d, started, one, https://10.0.0.1:2380, https://10.0.0.1:2379, false
        fd422379fda50e48, unstarted, , https://10.0.0.2:2380, , true
        """
        let m = Etcdctl.parseMembers(text)
        #expect(m.count == 2 && m[0].id == 0x8e9e05c52164694d && m[0].name == "one" && !m[0].isLearner)
        #expect(m[1].name == "" && m[1].isLearner && m[1].peerURLs == ["https://10.0.0.2:2380"] && m[1].clientURLs.isEmpty)
    }

    @Test func joiningHostsGetTheDefaultRolesOfAThreeHostCluster() {
        #expect(ClusterJoin.defaultRoles(members: [one], etcdMembers: 1) == [.database, .etcd])
        #expect(ClusterJoin.defaultRoles(members: [one, two], etcdMembers: 2) == [.etcd])
        #expect(ClusterJoin.defaultRoles(members: [one, two, three], etcdMembers: 3) == [])
    }

    @Test func memberRecordsFromEtcdAreChecked() throws {
        #expect(try ClusterMember.decode(one.encoded()) == one)
        #expect(throws: (any Error).self) { try ClusterMember.decode(Data(#"{"name":"x;y","address":"10.0.0.1","roles":[]}"#.utf8)) }
        #expect(throws: (any Error).self) { try ClusterMember.decode(Data(#"{"name":"x","address":"10.0.0.1\nserver evil","roles":[]}"#.utf8)) }
    }

    /// With a member down etcdctl prints retry warnings, the JSON, then "Error: unhealthy cluster" (exit 1): the
    /// two healthy members must still count (status once said the quorum was lost with one member of three down).
    @Test func etcdHealthWithAMemberDownIsRead() throws {
        let output = """
        {"level":"warn","ts":"2026-12-05T07:47:46.778Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","attempt":0}
        [{"endpoint":"https://10.232.0.12:2379","health":true,"took":"588ms"},{"endpoint":"https://10.232.0.13:2379","health":true,"took":"594ms"},{"endpoint":"https://10.232.0.11:2379","health":false,"took":"3s","error":"context deadline exceeded"}]
        Error: unhealthy cluster
        """
        let h = try Etcdctl.parseHealth(output)
        #expect(h.map(\.healthy) == [true, true, false])
        #expect(h[2].error == "context deadline exceeded")
        #expect(throws: ClusterOpsError.self) { try Etcdctl.parseHealth("Error: context deadline exceeded") }
    }

    @Test func etcdsLeadershipGoesToTheWitnessOnlyFromADatabaseMember() throws {
        func e(_ id: UInt64, _ name: String, learner: Bool = false) -> Etcdctl.Member {
            Etcdctl.Member(id: id, name: name, peerURLs: [], clientURLs: [], isLearner: learner)
        }
        let etcd = [e(1, "one"), e(2, "two"), e(3, "three")]
        #expect(EtcdLeaderPlacement.target(leader: 1, etcdMembers: etcd, members: [one, two, three])?.name == "three")
        #expect(EtcdLeaderPlacement.target(leader: 2, etcdMembers: etcd, members: [one, two, three])?.name == "three")
        #expect(EtcdLeaderPlacement.target(leader: 3, etcdMembers: etcd, members: [one, two, three]) == nil)
        // No witness (two database members only), or the witness a learner still: leave it.
        #expect(EtcdLeaderPlacement.target(leader: 1, etcdMembers: etcd.prefix(2).map { $0 }, members: [one, two]) == nil)
        #expect(EtcdLeaderPlacement.target(leader: 1, etcdMembers: [e(1, "one"), e(2, "two"), e(3, "three", learner: true)], members: [one, two, three]) == nil)
        let status = "\"ClusterID\" : 14351609496173374412\n\"MemberID\" : 5638483246965029977\n\"Leader\" : 12557232440838382315\n\"IsLearner\" : false\n"
        let s = try Etcdctl.parseStatus(status)
        #expect(s.member == 5638483246965029977 && s.leader == 12557232440838382315)
    }

    @Test func theServerStoresTheProofUnderTheHashTheInstallerComputes() throws {
        let token = JoinToken(caKeyHash: String(repeating: "a", count: 64), id: "abcdefgh", secret: "0123456789abcdefghijklmnopqrstuv")
        #expect(JoinProof.hash(token.proof) == JoinToken.proofHash(token.proof))
    }
}

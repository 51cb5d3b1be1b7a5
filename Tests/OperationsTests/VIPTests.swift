import Foundation
@testable import Installer
@testable import Operations
import Testing

/// keepalived's config and the VIP agent's decisions (pure); the address moving between hosts is proven on booted
/// hosts by scripts/e2e-cluster-faults.sh.
@Suite struct VIPTests {
    let one = ClusterMember(name: "one", address: "10.0.0.1", roles: [.database, .etcd])
    let two = ClusterMember(name: "two", address: "10.0.0.2", roles: [.database, .etcd])
    let three = ClusterMember(name: "three", address: "10.0.0.3", roles: [.etcd])

    func member(_ m: ClusterMember, vip: String? = "10.0.0.10") -> MemberFile {
        var f = MemberFile(member: m, frontendPort: 8443, etcdEndpoints: ["127.0.0.1"], balance: "leastconn", domains: [], registration: "admin")
        f.vip = vip
        return f
    }
    let nics = [NetworkInterfaces.Entry(interface: "lo", address: "127.0.0.1", prefixLength: 8),
                NetworkInterfaces.Entry(interface: "eth0", address: "10.0.0.1", prefixLength: 24)]

    @Test func everyOtherMemberIsAUnicastPeerAndOnlyThemOnTheAdvertiseInterface() throws {
        let c = try VIPAgent.config(member: member(one), members: [three, one, two], interfaces: nics)
        #expect(c.peers == ["10.0.0.2", "10.0.0.3"])
        #expect(c.interface == "eth0" && c.prefixLength == 24)
        let text = c.render()
        #expect(text.contains("unicast_src_ip 10.0.0.1"))
        #expect(text.contains("unicast_peer {\n        10.0.0.2\n        10.0.0.3\n    }\n    check_unicast_src"))
        #expect(text.contains("10.0.0.10/24 dev eth0"))
        #expect(text.contains("state BACKUP") && text.contains("nopreempt") && text.contains("priority 100"))
        #expect(text.contains("script \"/opt/warbler/current/bin/warbler cluster vip-check\""))
        #expect(text.contains("track_script {\n        haproxy_health"))
        #expect(text.contains("virtual_router_id 11"))
        // The same members in another order give the same file (the agent rewrites only on a real change).
        #expect(try VIPAgent.config(member: member(one), members: [two, three, one], interfaces: nics).render() == text)
    }

    @Test func aLoneFounderHasNoPeersYet() throws {
        let text = try VIPAgent.config(member: member(one), members: [one], interfaces: nics).render()
        #expect(!text.contains("unicast_peer") && !text.contains("unicast_src_ip"))
        #expect(text.contains("10.0.0.10/24 dev eth0"))
    }

    @Test func noInterfaceWithTheAdvertiseAddressOrNoVIPIsAClearError() {
        #expect(throws: ClusterOpsError.self) { try VIPAgent.config(member: member(one), members: [one], interfaces: [nics[0]]) }
        #expect(throws: ClusterOpsError.self) { try VIPAgent.config(member: member(one, vip: nil), members: [one], interfaces: nics) }
    }

    @Test func aJoiningHostWaitsOnlyForRunningMembersThatDoNotSendToItYet() {
        let published = ["one": "10.0.0.2", "two": "10.0.0.1,10.0.0.3"]
        // one's keepalived does not send to three yet; two does; three itself is never waited for.
        #expect(VIPAgent.notYetSending(to: "10.0.0.3", members: [one, two, three], published: published) == ["one"])
        // A member that published nothing runs no keepalived yet.
        #expect(VIPAgent.notYetSending(to: "10.0.0.3", members: [one, two, three], published: ["two": "10.0.0.1,10.0.0.3"]).isEmpty)
        // A prefix of another address is not that address.
        #expect(VIPAgent.notYetSending(to: "10.0.0.3", members: [one], published: ["one": "10.0.0.30"]) == ["one"])
    }

    @Test func theVIPMustBeAnotherIPv4Address() {
        for bad in ["10.0.0.1", "127.0.0.5", "0.0.0.0", "fe80::1", "nonsense"] {
            var problems: [String] = []
            let s = ClusterSettings(ClusterAnswers(founder: true, advertiseAddress: "10.0.0.1", vip: bad), hostname: "one", problems: &problems)
            #expect(s.vip == nil && problems.contains { $0.contains("--vip") }, "\(bad) accepted")
        }
        var problems: [String] = []
        let s = ClusterSettings(ClusterAnswers(founder: true, advertiseAddress: "10.0.0.1", vip: "10.0.0.10"), hostname: "one", problems: &problems)
        #expect(s.vip?.description == "10.0.0.10" && problems.isEmpty)
        #expect(ClusterPaths.components(for: [.etcd], vip: true).contains("keepalived"))
        #expect(!ClusterPaths.components(for: [.etcd]).contains("keepalived"))
    }
}

/// Which standby a switchover or a forced failover picks, and what the confirmation says (pure).
@Suite struct SwitchoverPlanTests {
    typealias M = PatroniControl.Member
    let leader = M(name: "one", host: "10.0.0.1", role: "leader", state: "running", lagBytes: nil)
    let sync = M(name: "two", host: "10.0.0.2", role: "sync_standby", state: "streaming", lagBytes: 0)
    let async = M(name: "four", host: "10.0.0.4", role: "replica", state: "streaming", lagBytes: 4096)
    let stopped = M(name: "five", host: "10.0.0.5", role: "replica", state: "stopped", lagBytes: nil)

    @Test func aSwitchoverGoesToTheSynchronousStandbyOnly() throws {
        let (l, c) = try PatroniControl.plan([leader, sync, async], to: nil, forced: false)
        #expect(l?.name == "one" && c.name == "two")
        #expect(throws: ClusterOpsError.self) { try PatroniControl.plan([leader, sync, async], to: "four", forced: false) }
        #expect(throws: ClusterOpsError.self) { try PatroniControl.plan([leader, sync, stopped], to: "five", forced: false) }
        #expect(throws: ClusterOpsError.self) { try PatroniControl.plan([leader, sync], to: "one", forced: false) }
        #expect(throws: ClusterOpsError.self) { try PatroniControl.plan([leader, sync], to: "nine", forced: false) }
        // No primary: a switchover cannot hand over; a failover can.
        #expect(throws: ClusterOpsError.self) { try PatroniControl.plan([sync], to: nil, forced: false) }
        #expect(try PatroniControl.plan([sync, async], to: nil, forced: true).candidate.name == "two")
    }

    @Test func aForcedFailoverWithoutASynchronousStandbyTakesTheLeastBehindAndSaysWhatIsLost() throws {
        let closer = M(name: "six", host: "10.0.0.6", role: "replica", state: "streaming", lagBytes: 10)
        let (l, c) = try PatroniControl.plan([leader, async, closer], to: nil, forced: true)
        #expect(c.name == "six")
        let risk = PatroniControl.risk(c, leader: l)
        #expect(risk.contains("10 bytes of WAL") && risk.contains("lost") && risk.contains("pg_rewind"))
        #expect(PatroniControl.risk(sync, leader: leader).contains("nothing acknowledged should be lost"))
    }

    @Test func patronisClusterAnswerIsRead() {
        let body = #"{"members":[{"name":"warbler-1","role":"leader","state":"running","host":"10.0.0.1","timeline":3},{"name":"warbler-2","role":"sync_standby","state":"streaming","host":"10.0.0.2","lag":0}]}"#
        let m = PatroniControl.parse(Data(body.utf8))
        #expect(m?.count == 2 && m?[0].isLeader == true && m?[1].isSyncStandby == true && m?[1].lagBytes == 0)
        #expect(PatroniControl.parse(Data("nonsense".utf8)) == nil)
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import Installer
import Templates
import Testing

/// The one description of each cluster component that both its systemd unit and the built-in supervisor run.
@Suite struct ClusterComponentTests {
    static func member(_ roles: [ClusterRole], vip: String? = nil) -> MemberFile {
        var m = MemberFile(member: ClusterMember(name: "warbler-2", address: "10.0.0.12", roles: roles), frontendPort: 8443,
                           etcdEndpoints: ["127.0.0.1"], balance: "leastconn", domains: [], registration: "admin")
        m.vip = vip
        return m
    }

    @Test func aDatabaseMemberRunsEtcdPatroniHAProxyAndTheAgentEachAsItsOwnUser() throws {
        let list = ClusterPaths.components(of: Self.member([.database, .etcd]))
        #expect(list.map(\.unit) == [ClusterPaths.etcdUnit, ClusterPaths.patroniUnit, ClusterPaths.haproxyUnit, ClusterPaths.agentUnit])
        let etcd = list[0], patroni = list[1], haproxy = list[2], agent = list[3]

        #expect(etcd.execStart == ["/opt/warbler/current/embedded/etcd/usr/bin/etcd", "--config-file", "/etc/warbler/cluster/etcd.yaml"])
        #expect(etcd.user == "warbler-etcd" && etcd.restart == .onFailure && etcd.stopTimeout == 30)
        #expect(etcd.stateDirectory == .init(path: "/var/lib/warbler-etcd", mode: 0o700))
        #expect(etcd.readyAddress == "127.0.0.1" && etcd.readyPort == 2379)

        #expect(patroni.execStart == ["/opt/warbler/current/embedded/patroni/usr/bin/python3.11", "/opt/warbler/current/embedded/patroni/usr/bin/patroni",
                                      "/etc/warbler/cluster/patroni.yml"])
        #expect(patroni.user == "warbler-postgres")
        #expect(patroni.environment == ["PYTHONDONTWRITEBYTECODE=1", "LC_ALL=C.UTF-8"])
        #expect(patroni.stateDirectory == .init(path: "/var/lib/warbler-postgresql", mode: 0o700))
        #expect(patroni.runtimeDirectory == .init(path: "/run/warbler-postgresql", mode: 0o755))
        #expect(patroni.stopSignal == .int && patroni.stopTimeout == 60)
        // Patroni's REST API listens on the member's own address.
        #expect(patroni.readyAddress == "10.0.0.12" && patroni.readyPort == 8008)

        let cfg = "/etc/warbler/cluster/haproxy.cfg", bin = "/opt/warbler/current/embedded/haproxy/usr/sbin/haproxy"
        #expect(haproxy.execStartPre == [[bin, "-c", "-q", "-f", cfg]])
        #expect(haproxy.execStart == [bin, "-Ws", "-f", cfg, "-p", "/var/lib/warbler-haproxy/haproxy.pid"])
        #expect(haproxy.user == "warbler-haproxy" && haproxy.restart == .always)
        #expect(haproxy.runtimeDirectory == .init(path: "/run/warbler-haproxy", mode: 0o700))
        #expect(haproxy.readyAddress == "127.0.0.1" && haproxy.readyPort == 8405)

        #expect(agent.execStart == ["/opt/warbler/current/bin/warbler", "cluster", "agent"])
        #expect(agent.user == "warbler-haproxy" && agent.readyPort == nil)
        #expect(agent.runtimeDirectory == .init(path: "/run/warbler-cluster-agent", mode: 0o755))
    }

    @Test func theWitnessRunsNoPatroni() {
        #expect(ClusterPaths.components(of: Self.member([.etcd])).map(\.name) == ["etcd", "haproxy", "cluster-agent"])
        // On the site's PostgreSQL a member without etcd runs only HAProxy and its agent.
        #expect(ClusterPaths.components(of: Self.member([])).map(\.name) == ["haproxy", "cluster-agent"])
    }

    @Test func withAVirtualIPKeepalivedRunsAsRootBetweenTheWaitAndTheRelease() throws {
        let list = ClusterPaths.components(of: Self.member([.database, .etcd], vip: "10.0.0.10"))
        #expect(list.map(\.name) == ["etcd", "patroni", "haproxy", "cluster-agent", "vip-agent", "keepalived"])
        let vipAgent = list[4], keepalived = list[5]
        #expect(vipAgent.execStart == ["/opt/warbler/current/bin/warbler", "cluster", "vip-agent"])
        #expect(vipAgent.user == nil && vipAgent.stateDirectory == .init(path: "/var/lib/warbler-keepalived", mode: 0o700))
        #expect(keepalived.user == nil)
        #expect(keepalived.execStartPre == [["/opt/warbler/current/bin/warbler", "cluster", "vip-wait"]])
        #expect(keepalived.execStopPost == [["/opt/warbler/current/bin/warbler", "cluster", "vip-release"]])
        #expect(keepalived.execStart.first == "/opt/warbler/current/embedded/keepalived/usr/sbin/keepalived")
        #expect(keepalived.execStart.contains("--dont-fork") && keepalived.execStart.contains("/var/lib/warbler-keepalived/keepalived.conf"))
        // Without --vip neither runs.
        #expect(!ClusterPaths.components(of: Self.member([.database, .etcd])).contains { $0.name == "keepalived" || $0.name == "vip-agent" })
    }

    @Test func theSupervisorRunsADescriptionWithItsOwnLogPIDFilesStepsAndSignal() throws {
        let list = ClusterPaths.components(of: Self.member([.database, .etcd], vip: "10.0.0.10"))
        let patroni = SupervisorConfig.component(try #require(list.first { $0.name == "patroni" }))
        #expect(patroni.argv == list[1].execStart && patroni.user == "warbler-postgres")
        #expect(patroni.logFile == "/var/log/warbler/patroni.log")
        #expect(patroni.pidFile == "/run/warbler/supervise-patroni.pid" && patroni.childPIDFile == "/run/warbler/patroni.pid")
        #expect(patroni.environment == ["PYTHONDONTWRITEBYTECODE=1", "LC_ALL=C.UTF-8"])
        #expect(patroni.directories.map(\.path) == ["/var/lib/warbler-postgresql", "/run/warbler-postgresql"])
        #expect(patroni.stopSignal == SIGINT && patroni.stopTimeout == 60)
        #expect(patroni.policy.restartCleanExit == false && patroni.periodic.isEmpty)

        let keepalived = SupervisorConfig.component(try #require(list.first { $0.name == "keepalived" }))
        #expect(keepalived.user == nil && keepalived.stopSignal == SIGTERM && keepalived.policy.restartCleanExit)
        #expect(keepalived.preStart == [["/opt/warbler/current/bin/warbler", "cluster", "vip-wait"]])
        #expect(keepalived.postStop == [["/opt/warbler/current/bin/warbler", "cluster", "vip-release"]])
    }

    @Test func theDescriptionIsWhatTheUnitRunsAndTheUnitNamesTheSameUserAndDirectories() throws {
        var ctx = ClusterPaths.context(member: Self.member([.database, .etcd], vip: "10.0.0.10"))
        ctx.initialMembers = [.init(name: "warbler-2", address: "10.0.0.12")]
        let templates = try TemplateSet(directory: Repo.templates)
        for c in ctx.allComponents {
            let unit = try templates.renderCluster(c.unit, ctx)
            let lines = Set(unit.split(separator: "\n").map(String.init))
            #expect(lines.contains("ExecStart=" + c.execStart.joined(separator: " ")), "\(c.unit)")
            for step in c.execStartPre { #expect(lines.contains("ExecStartPre=" + step.joined(separator: " ")), "\(c.unit)") }
            for step in c.execStopPost { #expect(lines.contains("ExecStopPost=" + step.joined(separator: " ")), "\(c.unit)") }
            #expect(unit.components(separatedBy: "ExecStartPre=").count - 1 == c.execStartPre.count, "\(c.unit)")
            #expect(unit.components(separatedBy: "ExecStopPost=").count - 1 == c.execStopPost.count, "\(c.unit)")
            if let user = c.user { #expect(lines.contains("User=" + user) && lines.contains("Group=" + user), "\(c.unit)") } else { #expect(!unit.contains("\nUser="), "\(c.unit)") }
            for e in c.environment { #expect(lines.contains("Environment=" + e), "\(c.unit)") }
            if let s = c.stateDirectory { #expect(lines.contains("StateDirectory=" + s.path.dropFirst("/var/lib/".count)), "\(c.unit)") }
            if let r = c.runtimeDirectory { #expect(lines.contains("RuntimeDirectory=" + r.path.dropFirst("/run/".count)), "\(c.unit)") }
            #expect(lines.contains("Restart=" + c.restart.rawValue), "\(c.unit)")
        }
    }
}

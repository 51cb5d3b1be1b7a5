import Foundation
import Templates
import Testing

/// The cluster's component units: systemd-analyze verifies each and rates its exposure.
@Suite struct ClusterUnitTests {
    /// `systemd-analyze security` ratings each unit must stay within (measured: etcd, HAProxy and the agent 1.1,
    /// Patroni 1.2, with @resources and /proc/stat left to it, as its unit says why).
    static let ceilings: [String: Double] = [
        "warbler-etcd.service": 2.0, "warbler-haproxy.service": 2.0, "warbler-cluster-agent.service": 2.0, "warbler-patroni.service": 2.0,
        // Root: keepalived needs CAP_NET_ADMIN, CAP_NET_RAW (and SETUID/SETGID for its track script); the VIP agent
        // writes root's config.
        "warbler-keepalived.service": 3.5, "warbler-vip-agent.service": 3.0,   // measured 2.9 and 2.2
        // Root, running an install (its unit says which directives are relaxed and why).
        "warbler-upgrade-receiver.service": 4.0,   // measured 3.3
    ]

    @Test(arguments: ["warbler-etcd.service", "warbler-patroni.service", "warbler-haproxy.service", "warbler-cluster-agent.service",
                      "warbler-keepalived.service", "warbler-vip-agent.service", "warbler-upgrade-receiver.service"])
    func clusterUnitsVerifyAndRateWithinTheirCeiling(_ name: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-cluster-units-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        for b in ["etcd", "python3.11", "haproxy", "warbler", "keepalived"] { try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/bin/" + b) }
        var c = ClusterContext()
        c.nodeName = "one"; c.advertise = "10.0.0.1"
        c.etcdBin = dir + "/bin"; c.etcdConfig = dir + "/etcd.yaml"
        c.python = dir + "/bin/python3.11"; c.patroniScript = dir + "/patroni"; c.patroniConfig = dir + "/patroni.yml"
        c.haproxyBin = dir + "/bin/haproxy"; c.haproxyConfig = dir + "/haproxy.cfg"; c.warblerBinary = dir + "/bin/warbler"
        c.vip = "10.0.0.10"; c.keepalivedBin = dir + "/bin/keepalived"; c.keepalivedConfig = dir + "/keepalived.conf"
        let unit = dir + "/" + name
        try TemplateSet(directory: Repo.templates).renderCluster(name, c).write(toFile: unit, atomically: true, encoding: .utf8)
        let verify = try SystemdAnalyzeTests.run(["verify", "--man=no", unit])
        let ours = verify.output.split(separator: "\n").filter { $0.contains(name) && !$0.contains("not found") && !$0.contains("User") && !$0.contains("Group") }
        #expect(ours.isEmpty, "systemd-analyze verify complained:\n\(ours.joined(separator: "\n"))")
        let r = try SystemdAnalyzeTests.run(["security", "--offline=yes", "--no-pager", unit])
        let line = r.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        print("systemd-analyze security, \(name): \(line.trimmingCharacters(in: .whitespaces))")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        #expect(try #require(score, "no exposure level in:\n\(r.output)") <= Self.ceilings[name]!)
    }
}

/// The cluster's rendered configs, as golden files (a change shows as a reviewed diff:
/// `WARBLER_UPDATE_GOLDEN=1 swift test --filter ClusterConfigGoldenTests`).
@Suite struct ClusterConfigGoldenTests {
    /// A joining database member of a three-host cluster, with every path as the installer lays it out.
    static var member: ClusterContext {
        var c = ClusterContext()
        c.nodeName = "warbler-2"; c.advertise = "10.0.0.12"
        c.frontendHost = "0.0.0.0"; c.frontendPort = 8443; c.balance = "leastconn"; c.slots = 16
        c.newCluster = false
        c.initialMembers = [.init(name: "warbler-1", address: "10.0.0.11"), .init(name: "warbler-2", address: "10.0.0.12")]
        c.etcdEndpoints = ["127.0.0.1"]
        c.caFile = "/etc/warbler/cluster/tls/ca.crt"
        c.etcdCert = "/etc/warbler/cluster/tls/etcd.crt"; c.etcdKey = "/etc/warbler/cluster/tls/etcd.key"
        c.postgresCert = "/etc/warbler/cluster/tls/postgres.crt"; c.postgresKey = "/etc/warbler/cluster/tls/postgres.key"
        c.agentCert = "/etc/warbler/cluster/tls/agent.crt"; c.agentKey = "/etc/warbler/cluster/tls/agent.key"
        c.haproxyPem = "/etc/warbler/cluster/tls/haproxy.pem"
        c.etcdBin = "/opt/warbler/current/embedded/etcd/usr/bin"; c.etcdConfig = "/etc/warbler/cluster/etcd.yaml"; c.etcdData = "/var/lib/warbler-etcd"
        c.postgresBin = "/opt/warbler/current/embedded/postgresql/usr/lib/postgresql/15/bin"
        c.postgresData = "/var/lib/warbler-postgresql/15/data"
        c.python = "/opt/warbler/current/embedded/patroni/usr/bin/python3.11"
        c.patroniScript = "/opt/warbler/current/embedded/patroni/usr/bin/patroni"; c.patroniConfig = "/etc/warbler/cluster/patroni.yml"
        c.haproxyBin = "/opt/warbler/current/embedded/haproxy/usr/sbin/haproxy"; c.haproxyConfig = "/etc/warbler/cluster/haproxy.cfg"
        c.haproxySocket = "/run/warbler-haproxy/admin.sock"; c.haproxyState = "/var/lib/warbler-haproxy"
        c.warblerBinary = "/opt/warbler/current/bin/warbler"
        c.superuserPassword = "SUPERUSERpassword0000"; c.replicationPassword = "REPLICATIONpassword000"
        c.rewindPassword = "REWINDpassword000000"; c.patroniAPIPassword = "PATRONIAPIpassword000"
        return c
    }

    @Test(arguments: ["etcd.yaml", "patroni.yml", "haproxy.cfg"])
    func aJoiningDatabaseMembersConfigsMatchTheirGoldenFiles(_ name: String) throws {
        try expectGolden(try TemplateSet(directory: Repo.templates).renderCluster(name, Self.member), "cluster-" + name)
    }

    /// The component units as a database member with a virtual IP gets them: the command lines, users and
    /// directories come from `ClusterComponent`, which the built-in supervisor reads too.
    @Test(arguments: ["warbler-etcd.service", "warbler-patroni.service", "warbler-haproxy.service", "warbler-cluster-agent.service",
                      "warbler-keepalived.service", "warbler-vip-agent.service"])
    func aMembersUnitsMatchTheirGoldenFiles(_ name: String) throws {
        var c = Self.member
        c.vip = "10.0.0.10"; c.keepalivedBin = "/opt/warbler/current/embedded/keepalived/usr/sbin/keepalived"
        c.keepalivedConfig = "/var/lib/warbler-keepalived/keepalived.conf"
        try expectGolden(try TemplateSet(directory: Repo.templates).renderCluster(name, c), "cluster-" + name)
    }

    @Test func theUpgradeReceiversUnitMatchesItsGoldenFile() throws {
        try expectGolden(try TemplateSet(directory: Repo.templates).renderCluster("warbler-upgrade-receiver.service", Self.member),
                         "cluster-warbler-upgrade-receiver.service")
    }

    @Test func onTheSitesDatabaseHAProxyHasNoPrimaryListener() throws {
        var c = Self.member
        c.externalDatabase = true; c.balance = "source"
        try expectGolden(try TemplateSet(directory: Repo.templates).renderCluster("haproxy.cfg", c), "cluster-haproxy-site-database.cfg")
    }
}

import AsyncHTTPClient
import DurableFiles
import Foundation
import Installer
import NIOSSL

/// `warbler cluster status`: every member as etcd, Patroni, this member's HAProxy and each IM server see it.
public struct ClusterStatusReport: Encodable, Sendable {
    public struct Node: Codable, Sendable {
        public var name: String
        public var address: String
        public var roles: [String]
        public var version: String?
        public var imReady: Bool
        public var imDetail: String?
        /// This member's HAProxy's view of the member's IM server: UP, DOWN, DRAIN, MAINT, or absent.
        public var haproxy: String
        /// Sessions HAProxy holds to it now.
        public var connections: Int?
        /// leader, sync_standby, replica (Patroni's words), nil without the database role.
        public var postgresRole: String?
        public var postgresState: String?
        public var lagBytes: Int64?
        /// voter, learner, or absent.
        public var etcd: String?
        public var etcdHealthy: Bool?
    }
    public var nodes: [Node]
    public var primary: String?
    public var etcdVoters: Int
    public var etcdHealthyVoters: Int
    public var quorum: Bool
    public var imUp: Int
    public var problems: [String]
    /// Worth knowing, not a fault (two etcd voters: working, but losing either stops the cluster).
    public var warnings: [String] = []
    /// The last cluster upgrade's (or rollback's) progress in one line, as its engine left it in etcd.
    public var upgrade: String? = nil
    /// Who holds the cluster upgrade lock now (`NODE since TIME`), nil when no upgrade, rollback or contract step runs.
    public var upgradeLock: String? = nil
    public var healthy: Bool { problems.isEmpty }

    /// One release and the members that run it.
    public struct Release: Codable, Sendable, Equatable {
        public var version: String
        public var nodes: [String]
    }
    /// The releases the members' IM servers say they run, in the order of the members; a member that did not
    /// answer `/v1/version` is in none.
    public var versions: [Release] {
        var releases: [Release] = []
        for n in nodes {
            guard let v = n.version else { continue }
            if let i = releases.firstIndex(where: { $0.version == v }) { releases[i].nodes.append(n.name) } else { releases.append(Release(version: v, nodes: [n.name])) }
        }
        return releases
    }
    /// More than one release runs: a rolling upgrade (or rollback) is under way or stopped part way. Said, not a
    /// fault by itself: the members are compatible across one release.
    public var mixedVersions: Bool { versions.count > 1 }

    enum CodingKeys: String, CodingKey { case nodes, primary, etcdVoters, etcdHealthyVoters, quorum, imUp, problems, warnings, upgrade, upgradeLock, versions, mixedVersions, healthy }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nodes, forKey: .nodes); try c.encodeIfPresent(primary, forKey: .primary)
        try c.encode(etcdVoters, forKey: .etcdVoters); try c.encode(etcdHealthyVoters, forKey: .etcdHealthyVoters)
        try c.encode(quorum, forKey: .quorum); try c.encode(imUp, forKey: .imUp); try c.encode(problems, forKey: .problems)
        try c.encode(warnings, forKey: .warnings)
        try c.encodeIfPresent(upgrade, forKey: .upgrade)
        try c.encodeIfPresent(upgradeLock, forKey: .upgradeLock)
        try c.encode(versions, forKey: .versions); try c.encode(mixedVersions, forKey: .mixedVersions)
        try c.encode(healthy, forKey: .healthy)
    }

    public func render() -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s.padding(toLength: n, withPad: " ", startingAt: 0) }
        var out = pad("NODE", 14) + pad("ADDRESS", 15) + pad("ROLES", 16) + pad("VERSION", 9) + pad("IM", 7) + pad("HAPROXY", 8)
            + pad("CONNS", 6) + pad("POSTGRESQL", 24) + "ETCD\n"
        for n in nodes {
            let pg = n.postgresRole.map { "\($0) \(n.postgresState ?? "")\(n.lagBytes.map { $0 > 0 ? " lag \($0)B" : "" } ?? "")" } ?? "-"
            out += pad(n.name, 14) + pad(n.address, 15) + pad(n.roles.isEmpty ? "im" : "im," + n.roles.joined(separator: ","), 16)
                + pad(n.version ?? "?", 9) + pad(n.imReady ? "ready" : "DOWN", 7) + pad(n.haproxy, 8) + pad(n.connections.map(String.init) ?? "-", 6)
                + pad(pg, 24) + (n.etcd.map { "\($0)\(n.etcdHealthy == false ? " (unhealthy)" : "")" } ?? "-") + "\n"
        }
        out += "PostgreSQL primary: \(primary ?? "none")   etcd: \(etcdHealthyVoters)/\(etcdVoters) voters healthy, quorum \(quorum ? "yes" : "NO")   IM servers up: \(imUp)/\(nodes.count)\n"
        if let upgrade { out += "upgrade: \(upgrade)\n" }
        if let upgradeLock { out += "upgrade lock: held by \(upgradeLock)\n" }
        if mixedVersions {
            out += "versions: " + versions.map { "\($0.version) on \($0.nodes.joined(separator: ", "))" }.joined(separator: ", ")
                + " (upgrade in progress or unfinished)\n"
        }
        out += warnings.map { "warning: \($0)\n" }.joined()
        out += problems.isEmpty ? "healthy\n" : problems.map { "problem: \($0)\n" }.joined()
        return out
    }
}

public struct ClusterStatusCollector: Sendable {
    /// Where the cluster upgrade engine keeps its one-line progress for this report.
    public static let upgradeSummaryKey = "/warbler/upgrade/summary"
    public var member: MemberFile
    public var etcd: Etcdctl
    public var haproxy: HAProxyRuntime

    public init(member: MemberFile, etcd: Etcdctl, haproxy: HAProxyRuntime = HAProxyRuntime()) {
        self.member = member; self.etcd = etcd; self.haproxy = haproxy
    }

    func client(tls: Bool) throws -> HTTPClient {
        var config = TLSConfiguration.makeClientConfiguration()
        if tls {
            // Verified in full: every member's certificate names its own address, which is the one dialled.
            config.trustRoots = .file(Paths.caCert)
            try config.presentClusterIdentity()
        }
        var c = HTTPClient.Configuration(tlsConfiguration: config)
        c.timeout = .init(connect: .seconds(2), read: .seconds(3))
        c.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }

    func get(_ client: HTTPClient, _ url: String) async -> (Int, Data)? {
        guard let r = try? await client.execute(HTTPClientRequest(url: url), timeout: .seconds(4)),
              let body = try? await r.body.collect(upTo: 1 << 20) else { return nil }
        return (Int(r.status.code), Data(buffer: body))
    }

    public func collect() async throws -> ClusterStatusReport {
        var problems: [String] = []
        let (members, rejected) = try MemberRegistry.load(etcd)
        problems += rejected.map { "a member record in etcd is unusable: \($0)" }
        let etcdMembers = (try? etcd.memberList()) ?? []
        let health = (try? etcd.health()) ?? []
        if etcdMembers.isEmpty { problems.append("etcd does not answer (\(member.etcdEndpoints.joined(separator: ", ")))") }

        // HAProxy's view from this member.
        var slots: [HAProxyRuntime.Slot] = []
        var sessions: [String: Int] = [:]
        do {
            slots = try haproxy.slots(backend: "im")
            for line in try haproxy.send("show stat").split(separator: "\n") where line.hasPrefix("im,") {
                let f = line.split(separator: ",", omittingEmptySubsequences: false)
                if f.count > 4, let cur = Int(f[4]) { sessions[String(f[1])] = cur }
            }
        } catch {
            problems.append("this member's HAProxy does not answer on \(haproxy.socketPath): \(error)")
        }

        let https = try client(tls: true), http = try client(tls: false)
        var report = await collect(members: members, etcdMembers: etcdMembers, health: health, slots: slots, sessions: sessions,
                                   problems: problems, https: https, http: http)
        try? await https.shutdown()
        try? await http.shutdown()
        report.upgrade = (try? etcd.get(prefix: Self.upgradeSummaryKey))?.first { $0.key == Self.upgradeSummaryKey }
            .map { String(decoding: $0.value, as: UTF8.self) }
        report.upgradeLock = (try? EtcdLeaseLock(etcd: etcd, key: ClusterUpgradeLock.key, ttl: 0).holder()).flatMap { $0 }
            .map(ClusterUpgradeLock.describe)
        return report
    }

    func collect(members: [ClusterMember], etcdMembers: [Etcdctl.Member], health: [(endpoint: String, healthy: Bool, error: String?)],
                 slots: [HAProxyRuntime.Slot], sessions: [String: Int], problems initial: [String], https: HTTPClient, http: HTTPClient) async -> ClusterStatusReport {
        var problems = initial

        // Patroni's view of the database members.
        var patroni: [String: [String: Any]] = [:]
        for m in members where m.roles.contains(.database) {
            if let (status, body) = await get(http, "http://\(m.address):\(ClusterSettings.Port.patroni)/cluster"), status == 200,
               let obj = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let list = obj["members"] as? [[String: Any]] {
                for p in list { if let name = p["name"] as? String { patroni[name] = p } }
                break
            }
        }

        var nodes: [ClusterStatusReport.Node] = []
        for m in members {
            var node = ClusterStatusReport.Node(name: m.name, address: m.address, roles: m.roles.map(\.rawValue), version: nil, imReady: false,
                                                imDetail: nil, haproxy: "absent", connections: nil, postgresRole: nil, postgresState: nil,
                                                lagBytes: nil, etcd: nil, etcdHealthy: nil)
            let base = "https://\(m.address):\(ClusterSettings.Port.im)"
            if let (status, body) = await get(https, base + "/readyz") {
                node.imReady = status == 200
                if status != 200 { node.imDetail = String(decoding: body.prefix(200), as: UTF8.self) }
            } else {
                node.imDetail = "no answer on \(base)"
            }
            if let (status, body) = await get(https, base + "/v1/version"), status == 200,
               let obj = try? JSONSerialization.jsonObject(with: body) as? [String: Any] {
                node.version = obj["version"] as? String
            }
            if let slot = slots.first(where: { $0.address == m.address && $0.port == ClusterSettings.Port.im }) {
                node.haproxy = slot.maintenance ? "MAINT" : slot.draining ? "DRAIN" : slot.operational == 2 ? "UP" : "DOWN"
                node.connections = sessions[slot.name]
            }
            if m.roles.contains(.database) {
                if let p = patroni[m.name] {
                    node.postgresRole = p["role"] as? String
                    node.postgresState = p["state"] as? String
                    node.lagBytes = (p["lag"] as? NSNumber)?.int64Value
                } else {
                    problems.append("\(m.name): Patroni does not list it as a database member")
                }
            }
            if let e = etcdMembers.first(where: { $0.name == m.name }) {
                node.etcd = e.isLearner ? "learner" : "voter"
                let url = e.clientURLs.first ?? ""
                node.etcdHealthy = health.first(where: { $0.endpoint == url })?.healthy
            } else if m.roles.contains(.etcd) {
                node.etcd = "absent"
            }
            if !node.imReady { problems.append("\(m.name): its IM server is not ready (\(node.imDetail ?? "?"))") }
            if node.haproxy != "UP" && node.haproxy != "DRAIN" { problems.append("\(m.name): this member's HAProxy has it \(node.haproxy)") }
            if m.roles.contains(.etcd) && node.etcd != "voter" { problems.append("\(m.name): its etcd is \(node.etcd ?? "absent"), not a voter") }
            if node.etcdHealthy == false { problems.append("\(m.name): its etcd member is unhealthy") }
            if let role = node.postgresRole, role != "leader" {
                if !["streaming", "running"].contains(node.postgresState ?? "") { problems.append("\(m.name): PostgreSQL standby is \(node.postgresState ?? "?")") }
                if let lag = node.lagBytes, lag > 16 << 20 { problems.append("\(m.name): PostgreSQL standby lags \(lag) bytes") }
            }
            nodes.append(node)
        }
        let leaders = patroni.values.filter { ($0["role"] as? String) == "leader" }.compactMap { $0["name"] as? String }
        // On the site's PostgreSQL its failover is the site's; each IM server's /readyz says whether it reaches it.
        if member.database == nil && leaders.isEmpty { problems.append("PostgreSQL has no primary") }
        if members.filter({ $0.roles.contains(.database) }).count > 1,
           !patroni.values.contains(where: { ($0["role"] as? String) == "sync_standby" }) {
            problems.append("PostgreSQL has no synchronous standby: a failover now could lose acknowledged messages")
        }
        let voters = etcdMembers.filter { !$0.isLearner }
        let healthyVoters = voters.filter { v in health.contains { h in v.clientURLs.contains(h.endpoint) && h.healthy } }.count
        let quorum = healthyVoters >= voters.count / 2 + 1
        if !quorum { problems.append("etcd has lost its quorum (\(healthyVoters) of \(voters.count) voters healthy)") }
        var warnings: [String] = []
        if voters.count == 2 { warnings.append("etcd has two voters: losing either stops the cluster; join a third host") }
        return ClusterStatusReport(nodes: nodes, primary: member.database.map { "the site's \($0)" } ?? leaders.first, etcdVoters: voters.count, etcdHealthyVoters: healthyVoters,
                                   quorum: quorum, imUp: nodes.filter { $0.imReady && ["UP", "DRAIN"].contains($0.haproxy) }.count,
                                   problems: problems, warnings: warnings)
    }
}

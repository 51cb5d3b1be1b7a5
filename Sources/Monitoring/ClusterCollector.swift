import Foundation
import Installer
import Operations

/// A cluster member's view of the cluster, from what the exporter (the service user, no cluster secrets) may read:
/// this member's HAProxy counters on loopback, Patroni's read-only REST API on the database members, etcd's
/// metrics listener on loopback, and whether this host holds the virtual IP. Nothing on a single node.
public struct ClusterCollector: Collector {
    public let name = "cluster"
    public var files: HostFiles
    /// The GET the collector makes (a test feeds recorded answers).
    public var get: @Sendable (_ host: String, _ port: Int, _ path: String) -> (status: Int, body: String)?
    public var interfaces: @Sendable () -> [NetworkInterfaces.Entry]

    public init(files: HostFiles = HostFiles(),
                get: @escaping @Sendable (String, Int, String) -> (status: Int, body: String)? = { PlainHTTP.get($0, $1, $2) },
                interfaces: @escaping @Sendable () -> [NetworkInterfaces.Entry] = { NetworkInterfaces.ipv4() }) {
        self.files = files; self.get = get; self.interfaces = interfaces
    }

    public func collect() async throws -> MetricSet {
        var set = MetricSet()
        guard files.exists(ClusterPaths.memberFile) else { return set }
        let member = try MemberFile.load(Data(try files.read(ClusterPaths.memberFile).utf8))

        if let vip = member.vip {
            set.add(Catalog.clusterVIPHeld, ["vip": vip], interfaces().contains { $0.address == vip } ? 1 : 0)
        }

        // HAProxy's view of every IM server, and the database members it routes the primary through.
        guard let stats = get("127.0.0.1", ClusterPaths.haproxyMonitorPort, ClusterPaths.haproxyStatsPath + ";csv"), stats.status == 200 else {
            throw MonitoringError("this member's HAProxy does not answer on 127.0.0.1:\(ClusterPaths.haproxyMonitorPort) (systemctl status warbler-haproxy)")
        }
        let servers = Self.parseStats(stats.body)
        for s in servers where s.backend == "im" && s.status != "MAINT" {
            set.add(Catalog.clusterIMServerUp, ["member": s.address], ["UP", "DRAIN", "NOLB"].contains(s.status) ? 1 : 0)
        }

        // Patroni's view of the database members (the first that answers).
        let databases = servers.filter { $0.backend == "primary" && $0.status != "MAINT" }.map(\.address)
        if member.database == nil && !databases.isEmpty {
            var answered = false
            for a in databases {
                guard let r = get(a, ClusterSettings.Port.patroni, "/cluster"), r.status == 200 else { continue }
                answered = true
                Self.addPatroni(r.body, to: &set)
                break
            }
            set.add(Catalog.clusterPatroniUp, answered ? 1 : 0)
        }

        // etcd on this member: a leader, and each peer's connection.
        if member.member.roles.contains(.etcd) {
            if let r = get("127.0.0.1", ClusterSettings.Port.etcdMetrics, "/metrics"), r.status == 200 {
                Self.addEtcd(r.body, to: &set)
            } else {
                set.add(Catalog.clusterEtcdHasLeader, 0)
            }
        }
        return set
    }

    struct Server: Equatable {
        var backend: String
        var name: String
        var status: String
        var address: String
    }

    /// HAProxy's CSV (`show stat`): pxname, svname, … status, … addr (ADDRESS:PORT).
    static func parseStats(_ csv: String) -> [Server] {
        let lines = csv.split(separator: "\n")
        guard let header = lines.first(where: { $0.hasPrefix("# ") })?.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init),
              let status = header.firstIndex(of: "status"), let addr = header.firstIndex(of: "addr") else { return [] }
        return lines.filter { !$0.hasPrefix("#") }.compactMap { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count > max(status, addr), !["FRONTEND", "BACKEND"].contains(f[1]) else { return nil }
            let host = f[addr].split(separator: ":").first.map(String.init) ?? ""
            return Server(backend: f[0], name: f[1], status: f[status].split(separator: " ").first.map(String.init) ?? f[status], address: host)
        }
    }

    static func addPatroni(_ body: String, to set: inout MetricSet) {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], let list = obj["members"] as? [[String: Any]] else { return }
        for m in list {
            guard let name = m["name"] as? String else { continue }
            let role = m["role"] as? String ?? ""
            let leader = role == "leader" || role == "master"
            set.add(Catalog.clusterPostgresPrimary, ["member": name], leader ? 1 : 0)
            if leader {
                if let tl = (m["timeline"] as? NSNumber)?.doubleValue { set.add(Catalog.clusterPostgresTimeline, tl) }
            } else {
                set.add(Catalog.clusterStandbyStreaming, ["member": name], (m["state"] as? String) == "streaming" ? 1 : 0)
                if let lag = (m["lag"] as? NSNumber)?.doubleValue { set.add(Catalog.clusterStandbyLagBytes, ["member": name], lag) }
            }
        }
    }

    static func addEtcd(_ text: String, to set: inout MetricSet) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let value = Double(parts[1]) else { continue }
            if parts[0] == "etcd_server_has_leader" {
                set.add(Catalog.clusterEtcdHasLeader, value)
            } else if parts[0].hasPrefix("etcd_network_active_peers{"), let r = parts[0].range(of: "Remote=\""),
                      let end = parts[0][r.upperBound...].firstIndex(of: "\"") {
                set.add(Catalog.clusterEtcdPeerConnected, ["peer": String(parts[0][r.upperBound..<end])], value)
            }
        }
    }
}

import Foundation

/// What a cluster member's component configs and units are rendered from: etcd's config, Patroni's, HAProxy's,
/// and their units. Every value is checked before it reaches a file (addresses are IPv4 literals, names a-z 0-9 -,
/// passwords letters and digits), so no value can add a line or a setting of its own.
public struct ClusterContext: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var name: String
        public var address: String
        public init(name: String, address: String) { self.name = name; self.address = address }
    }

    public var nodeName = "node"
    public var advertise = "127.0.0.1"
    /// HAProxy's public frontend.
    public var frontendHost = "0.0.0.0"
    public var frontendPort = 8443
    public var imPort = 8444
    public var etcdClientPort = 2379
    public var etcdPeerPort = 2380
    public var postgresPort = 5432
    public var patroniPort = 8008
    public var primaryPort = 5433
    public var balance = "leastconn"
    /// The cluster uses the site's PostgreSQL (`--database-url`): no local listener for the primary.
    public var externalDatabase = false
    public var slots = 16
    /// etcd's `initial-cluster` members (this one included) and whether it starts a new cluster.
    public var initialMembers: [Member] = []
    public var newCluster = true
    /// Where a member reaches etcd (its own member, or the cluster's when it runs none).
    public var etcdEndpoints: [String] = []

    public var caFile = "/etc/warbler/tls/ca.crt"
    public var etcdCert = ""
    public var etcdKey = ""
    public var postgresCert = ""
    public var postgresKey = ""
    public var agentCert = ""
    public var agentKey = ""
    /// HAProxy's certificate and key in one PEM (its frontend's and its client certificate to the IM servers).
    public var haproxyPem = ""
    public var maxConnectionsPerAddress = 1000

    public var etcdBin = ""
    public var etcdConfig = ""
    public var etcdData = "/var/lib/warbler-etcd"
    public var postgresBin = ""
    public var postgresData = ""
    public var postgresHome = "/var/lib/warbler-postgresql"
    public var postgresSocketDir = "/run/warbler-postgresql"
    public var python = ""
    public var patroniScript = ""
    public var patroniConfig = ""
    public var haproxyBin = ""
    public var haproxyConfig = ""
    public var haproxySocket = "/run/warbler-haproxy/admin.sock"
    public var haproxyState = "/var/lib/warbler-haproxy"
    /// The cluster agent's runtime directory: it publishes the members' releases there for the exporter.
    public var agentRuntime = "/run/warbler-cluster-agent"
    public var warblerBinary = "/opt/warbler/current/bin/warbler"

    public var etcdUser = "warbler-etcd"
    public var postgresUser = "warbler-postgres"
    public var haproxyUser = "warbler-haproxy"
    /// The cluster's virtual IP (empty: none) and keepalived's paths.
    public var vip = ""
    public var keepalivedBin = ""
    public var keepalivedConfig = ""
    public var keepalivedState = "/var/lib/warbler-keepalived"
    public var keepalivedRuntime = "/run/warbler-keepalived"
    public var haproxyMonitorPort = 8405
    public var haproxyMonitorPath = "/warbler-haproxy-health"
    public var haproxyStatsPath = "/warbler-haproxy-stats"
    public var etcdMetricsPort = 2381
    /// The upgrade receiver's port on the advertise address (`ClusterSettings.Port.upgradeReceiver`).
    public var upgradeReceiverPort = 8445

    public var superuserPassword = ""
    public var replicationPassword = ""
    public var rewindPassword = ""
    public var patroniAPIPassword = ""

    public init() {}

    func view() throws -> [String: Any] {
        func ipv4(_ s: String, _ what: String) throws {
            let parts = s.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 4, parts.allSatisfy({ p in !p.isEmpty && p.count <= 3 && p.allSatisfy(\.isNumber) && Int(p)! <= 255 }) else {
                throw TemplateError("the \(what) '\(s)' is not an IPv4 address")
            }
        }
        func name(_ s: String, _ what: String) throws {
            guard (1...63).contains(s.count), s.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
                throw TemplateError("the \(what) '\(s)' must be 1-63 of a-z 0-9 -")
            }
        }
        func password(_ s: String, _ what: String) throws {
            guard s.count >= 16, s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                throw TemplateError("the \(what) must be 16 or more letters and digits")
            }
        }
        try name(nodeName, "node name")
        try ipv4(advertise, "advertise address")
        try ipv4(frontendHost, "frontend address")
        if !vip.isEmpty { try ipv4(vip, "virtual IP") }
        for path in [haproxyMonitorPath, haproxyStatsPath] {
            guard path.hasPrefix("/"), path.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "/-_".contains($0)) }) else {
                throw TemplateError("the HAProxy path '\(path)' must be a plain absolute path")
            }
        }
        for m in initialMembers { try name(m.name, "member name"); try ipv4(m.address, "address of member \(m.name)") }
        for e in etcdEndpoints { try ipv4(e, "etcd endpoint") }
        guard ["roundrobin", "leastconn", "source"].contains(balance) else { throw TemplateError("balance must be roundrobin, leastconn or source") }
        for (v, what) in [(superuserPassword, "PostgreSQL superuser password"), (replicationPassword, "replication password"),
                          (rewindPassword, "pg_rewind password"), (patroniAPIPassword, "Patroni API password")] where !v.isEmpty {
            try password(v, what)
        }
        for (v, what) in [(caFile, "CA file"), (etcdCert, "etcd certificate"), (etcdKey, "etcd key"), (postgresCert, "PostgreSQL certificate"),
                          (postgresKey, "PostgreSQL key"), (agentCert, "agent certificate"), (agentKey, "agent key"), (haproxyPem, "HAProxy certificate"), (etcdBin, "etcd directory"),
                          (etcdConfig, "etcd config"), (etcdData, "etcd data"), (postgresBin, "PostgreSQL binaries"), (postgresData, "PostgreSQL data"),
                          (postgresHome, "PostgreSQL home"), (postgresSocketDir, "PostgreSQL socket directory"), (python, "Python"),
                          (patroniScript, "Patroni"), (patroniConfig, "Patroni config"), (haproxyBin, "HAProxy"), (haproxyConfig, "HAProxy config"),
                          (haproxySocket, "HAProxy socket"), (haproxyState, "HAProxy state"), (agentRuntime, "agent runtime directory"), (warblerBinary, "warbler binary"),
                          (etcdUser, "etcd user"), (postgresUser, "PostgreSQL user"), (haproxyUser, "HAProxy user"),
                          (keepalivedBin, "keepalived"), (keepalivedConfig, "keepalived config"), (keepalivedState, "keepalived state"),
                          (keepalivedRuntime, "keepalived runtime directory")] where !v.isEmpty {
            try ServiceUnitContext.checkUnitValue(v, what: what)
        }
        for p in [frontendPort, imPort, etcdClientPort, etcdPeerPort, postgresPort, patroniPort, primaryPort, haproxyMonitorPort, etcdMetricsPort, upgradeReceiverPort] where !(1...65535).contains(p) {
            throw TemplateError("port \(p) is not 1-65535")
        }
        let peers = initialMembers.map { "\($0.name)=https://\($0.address):\(etcdPeerPort)" }.joined(separator: ",")
        return [
            "nodeName": nodeName, "advertise": advertise, "frontendHost": frontendHost, "frontendPort": frontendPort,
            "imPort": imPort, "etcdClientPort": etcdClientPort, "etcdPeerPort": etcdPeerPort, "postgresPort": postgresPort,
            "patroniPort": patroniPort, "primaryPort": primaryPort, "balance": balance, "hashConsistent": balance == "source", "externalDatabase": externalDatabase,
            "slots": slots,
            "initialCluster": peers, "clusterState": newCluster ? "new" : "existing",
            "etcdHosts": etcdEndpoints.map { "\($0):\(etcdClientPort)" }.joined(separator: ","),
            "caFile": caFile, "etcdCert": etcdCert, "etcdKey": etcdKey, "postgresCert": postgresCert, "postgresKey": postgresKey,
            "agentCert": agentCert, "agentKey": agentKey, "haproxyPem": haproxyPem, "maxConnectionsPerAddress": maxConnectionsPerAddress,
            "etcdBin": etcdBin, "etcdConfig": etcdConfig, "etcdData": etcdData, "etcdStateDirectory": String(etcdData.dropFirst("/var/lib/".count)),
            "postgresBin": postgresBin, "postgresData": postgresData, "postgresHome": postgresHome,
            "postgresStateDirectory": String(postgresHome.dropFirst("/var/lib/".count)),
            "postgresSocketDir": postgresSocketDir, "postgresRuntimeDirectory": String(postgresSocketDir.dropFirst("/run/".count)),
            "python": python, "patroniScript": patroniScript, "patroniConfig": patroniConfig,
            "haproxyBin": haproxyBin, "haproxyConfig": haproxyConfig, "haproxySocket": haproxySocket, "haproxyState": haproxyState,
            "haproxyStateDirectory": String(haproxyState.dropFirst("/var/lib/".count)),
            "haproxyRuntimeDirectory": String((haproxySocket as NSString).deletingLastPathComponent.dropFirst("/run/".count)),
            "agentRuntimeDirectory": String(agentRuntime.dropFirst("/run/".count)),
            "warblerBinary": warblerBinary,
            "etcdUser": etcdUser, "postgresUser": postgresUser, "haproxyUser": haproxyUser,
            "superuserPassword": superuserPassword, "replicationPassword": replicationPassword, "rewindPassword": rewindPassword,
            "patroniAPIPassword": patroniAPIPassword,
            "vip": vip, "keepalivedBin": keepalivedBin, "keepalivedConfig": keepalivedConfig,
            "keepalivedStateDirectory": String(keepalivedState.dropFirst("/var/lib/".count)),
            "keepalivedRuntime": keepalivedRuntime, "keepalivedRuntimeDirectory": String(keepalivedRuntime.dropFirst("/run/".count)),
            "haproxyMonitorPort": haproxyMonitorPort, "haproxyMonitorPath": haproxyMonitorPath, "haproxyStatsPath": haproxyStatsPath,
            "etcdMetricsPort": etcdMetricsPort, "upgradeReceiverPort": upgradeReceiverPort,
            // Each unit's command lines, user and directories, from the description the built-in supervisor runs too.
            "etcd": etcdComponent.view(), "patroni": patroniComponent.view(), "haproxy": haproxyComponent.view(),
            "agent": agentComponent.view(), "vipAgent": vipAgentComponent.view(), "keepalived": keepalivedComponent.view(),
        ]
    }
}

extension TemplateSet {
    /// The cluster's files, by template name: `etcd.yaml`, `patroni.yml`, `haproxy.cfg` and the units
    /// `warbler-etcd.service`, `warbler-patroni.service`, `warbler-haproxy.service`, `warbler-cluster-agent.service`.
    public static let clusterTemplates = ["etcd.yaml", "patroni.yml", "haproxy.cfg", "warbler-etcd.service", "warbler-patroni.service",
                                          "warbler-haproxy.service", "warbler-cluster-agent.service", "warbler-keepalived.service",
                                          "warbler-vip-agent.service", "warbler-upgrade-receiver.service"]

    public func renderCluster(_ name: String, _ context: ClusterContext) throws -> String {
        guard Self.clusterTemplates.contains(name) else { throw TemplateError("\(name) is not a cluster template") }
        return try render(name, try context.view())
    }
}

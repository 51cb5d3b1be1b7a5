import Foundation

/// What a host carries in a cluster besides what every member runs (the IM server, the exporter, alertd, HAProxy
/// and its member agent).
public enum ClusterRole: String, Codable, Sendable, CaseIterable, Comparable {
    /// PostgreSQL under Patroni: the primary or a (synchronous) standby.
    case database
    /// A voting etcd member. Every host of a three-host cluster is one; the host without `database` is the witness.
    case etcd

    public static func < (a: ClusterRole, b: ClusterRole) -> Bool { a.rawValue < b.rawValue }
}

/// One host of the cluster as the others know it (kept in etcd under `/warbler/members/NAME`).
public struct ClusterMember: Codable, Sendable, Equatable, Hashable {
    public var name: String
    public var address: String
    public var roles: [ClusterRole]

    public init(name: String, address: String, roles: [ClusterRole]) {
        self.name = name; self.address = address; self.roles = roles.sorted()
    }

    /// A member record read from etcd, which any cluster component can write: every field is checked before it
    /// reaches a config file.
    public static func decode(_ data: Data) throws -> ClusterMember {
        let m = try JSONDecoder().decode(ClusterMember.self, from: data)
        guard ClusterSettings.isNodeName(m.name) else { throw OptionsError("member name '\(m.name)' is not a node name") }
        guard let ip = IPAddress.parse(m.address), ip.isIPv4 else { throw OptionsError("member \(m.name): '\(m.address)' is not an IPv4 address") }
        return ClusterMember(name: m.name, address: ip.description, roles: m.roles)
    }

    public func encoded() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? e.encode(self)) ?? Data()
    }
}

/// The cluster answers of an install (`install --cluster-init`, or written by `warbler join`).
public struct ClusterAnswers: Codable, Sendable, Equatable {
    /// This host founded the cluster (its etcd started a new cluster, its Patroni bootstrapped the database).
    public var founder: Bool?
    public var advertiseAddress: String?
    public var nodeName: String?
    public var roles: [ClusterRole]?
    /// roundrobin, leastconn or source.
    public var balance: String?
    /// The etcd members when this host joined: its etcd's first start needs them (`initial-cluster`).
    public var seedMembers: [ClusterMember]?
    /// An existing PostgreSQL the cluster uses instead of its own (`--database-url`; no password in it).
    public var databaseURL: String?
    /// The cluster's virtual IP (`--vip`): keepalived on every member holds it on one HAProxy at a time.
    public var vip: String?

    public init(founder: Bool? = nil, advertiseAddress: String? = nil, nodeName: String? = nil, roles: [ClusterRole]? = nil,
                balance: String? = nil, seedMembers: [ClusterMember]? = nil, databaseURL: String? = nil, vip: String? = nil) {
        self.founder = founder; self.advertiseAddress = advertiseAddress; self.nodeName = nodeName; self.roles = roles
        self.balance = balance; self.seedMembers = seedMembers; self.databaseURL = databaseURL; self.vip = vip
    }

    enum CodingKeys: String, CodingKey {
        case founder, roles, balance, vip
        case advertiseAddress = "advertise_address"
        case nodeName = "node_name"
        case seedMembers = "seed_members"
        case databaseURL = "database_url"
    }

    public func over(_ base: ClusterAnswers?) -> ClusterAnswers {
        var out = base ?? ClusterAnswers()
        out.founder = founder ?? out.founder
        out.advertiseAddress = advertiseAddress ?? out.advertiseAddress
        out.nodeName = nodeName ?? out.nodeName
        out.roles = roles ?? out.roles
        out.balance = balance ?? out.balance
        out.seedMembers = seedMembers ?? out.seedMembers
        out.databaseURL = databaseURL ?? out.databaseURL
        out.vip = vip ?? out.vip
        return out
    }
}

/// A cluster member's resolved settings.
public struct ClusterSettings: Sendable, Equatable {
    public var founder: Bool
    public var advertise: IPAddress
    public var nodeName: String
    public var roles: Set<ClusterRole>
    public var balance: String
    public var seedMembers: [ClusterMember]
    /// The site's own PostgreSQL (`--database-url`): no member then runs PostgreSQL or Patroni.
    public var externalDatabase: ExternalDatabase?
    /// The virtual IP clients use (`--vip`), held by keepalived on one member at a time; nil: none.
    public var vip: IPAddress?

    /// The ports a member binds besides the HAProxy frontend (the install's `--port`).
    public enum Port {
        /// The IM server behind HAProxy, on the advertise address.
        public static let im = 8444
        /// The upgrade receiver (root; TLS under the member's certificate; orders signed with the cluster CA key).
        public static let upgradeReceiver = 8445
        public static let etcdClient = 2379
        public static let etcdPeer = 2380
        public static let postgres = 5432
        public static let patroni = 8008
        /// HAProxy on 127.0.0.1: the IM server's way to the current PostgreSQL primary.
        public static let primary = 5433
        /// HAProxy's own health on 127.0.0.1 (keepalived's track script asks it).
        public static let haproxyMonitor = 8405
        /// etcd's metrics and health, plain HTTP on 127.0.0.1 (the exporter reads them).
        public static let etcdMetrics = 2381
    }
    /// The most members HAProxy has slots for (its `server-template` lines).
    public static let maxMembers = 16

    public var me: ClusterMember { ClusterMember(name: nodeName, address: advertise.description, roles: Array(roles)) }

    public func ports(frontend: Int) -> [Int] {
        var p = [frontend, Port.im, Port.upgradeReceiver, Port.haproxyMonitor]
        if externalDatabase == nil { p.append(Port.primary) }
        if roles.contains(.etcd) { p += [Port.etcdClient, Port.etcdPeer, Port.etcdMetrics] }
        if roles.contains(.database) { p += [Port.postgres, Port.patroni] }
        return p
    }

    init(_ a: ClusterAnswers, hostname: String, problems: inout [String]) {
        founder = a.founder ?? false
        balance = a.balance ?? "leastconn"
        seedMembers = a.seedMembers ?? []
        if let url = a.databaseURL {
            do { externalDatabase = try ExternalDatabase.parse(url) } catch {
                externalDatabase = nil
                problems.append("\(error)")
            }
        } else {
            externalDatabase = nil
        }
        roles = Set(a.roles ?? (a.databaseURL == nil ? [.database, .etcd] : [.etcd]))
        if a.databaseURL != nil && roles.contains(.database) {
            problems.append("with --database-url the cluster runs no PostgreSQL of its own: no host carries the database role (drop --role database)")
        }
        let name = a.nodeName ?? Self.nodeName(fromHostname: hostname)
        nodeName = name
        if let addr = a.advertiseAddress, let ip = IPAddress.parse(addr), ip.isIPv4, addr != "0.0.0.0", !addr.hasPrefix("127.") {
            advertise = ip
        } else {
            advertise = IPAddress.parse("127.0.0.1")!
            problems.append("a cluster member needs --advertise-address: this host's IPv4 address the other members reach (not 0.0.0.0 or loopback)\(a.advertiseAddress.map { ", not '\($0)'" } ?? "")")
        }
        if let v = a.vip {
            if let ip = IPAddress.parse(v), ip.isIPv4, v != "0.0.0.0", !v.hasPrefix("127."), ip != advertise {
                vip = ip
            } else {
                vip = nil
                problems.append("--vip must be an unused IPv4 address on the members' network (not 0.0.0.0, loopback or this host's own address), not '\(v)'")
            }
        } else {
            vip = nil
        }
        if !Self.isNodeName(name) {
            problems.append("node name '\(name)' must be 1-63 of a-z 0-9 - (give --node-name)")
        }
        if !["roundrobin", "leastconn", "source"].contains(balance) {
            problems.append("--balance must be roundrobin, leastconn or source, not '\(balance)'")
        }
        if founder && a.databaseURL == nil && !(roles.contains(.database) && roles.contains(.etcd)) {
            problems.append("the first host of a cluster carries the database and etcd roles")
        }
        if founder && !roles.contains(.etcd) {
            problems.append("the first host of a cluster carries the etcd role")
        }
    }

    public static func isNodeName(_ s: String) -> Bool {
        (1...63).contains(s.count) && s.first != "-" && s.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-"
        }
    }

    /// The hostname's first label, lower case, with anything else than a-z 0-9 - turned into -.
    public static func nodeName(fromHostname h: String) -> String {
        let label = h.split(separator: ".").first.map(String.init) ?? "node"
        let cleaned = String(label.lowercased().unicodeScalars.map {
            ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" ? Character($0) : "-"
        })
        return cleaned.isEmpty ? "node" : String(cleaned.prefix(63))
    }
}

/// A PostgreSQL the site already runs, given as `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=MODE]`. The
/// password never goes in the URL (it would show in `ps` and shell history): it comes from a file.
public struct ExternalDatabase: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    /// TLS verified against the CA given (or the system's roots); `sslmode=disable` turns it off.
    public var tls: Bool

    public init(host: String, port: Int, user: String, database: String, tls: Bool) {
        self.host = host; self.port = port; self.user = user; self.database = database; self.tls = tls
    }

    public static func parse(_ url: String) throws -> ExternalDatabase {
        func bad(_ why: String) -> OptionsError {
            OptionsError("--database-url '\(url)': \(why); give postgres://USER@HOST[:PORT]/DATABASE[?sslmode=verify-full|disable]")
        }
        guard let c = URLComponents(string: url), let scheme = c.scheme, ["postgres", "postgresql"].contains(scheme) else {
            throw bad("not a postgres:// URL")
        }
        guard c.password == nil else {
            throw OptionsError("--database-url must not hold the password (it would show in ps and shell history): put it in a file only root can read and give --database-password-file FILE")
        }
        guard let host = c.host, !host.isEmpty else { throw bad("no host") }
        guard let user = c.user, !user.isEmpty else { throw bad("no user") }
        let database = String(c.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { throw bad("no database name") }
        let port = c.port ?? 5432
        guard (1...65535).contains(port) else { throw bad("port out of range") }
        var tls = true
        for item in c.queryItems ?? [] {
            switch (item.name, item.value ?? "") {
            case ("sslmode", "verify-full"), ("sslmode", "require"), ("sslmode", "verify-ca"): tls = true
            case ("sslmode", "disable"): tls = false
            case ("sslmode", let v): throw bad("sslmode \(v) is not one of verify-full, disable (TLS is always verified in full)")
            default: throw bad("unknown parameter \(item.name)")
            }
        }
        for part in [host, user, database] where part.contains(where: { $0 == "\"" || $0 == "\\" || $0.isNewline || $0 == " " }) {
            throw bad("'\(part)' holds a quote, backslash, space or line break")
        }
        return ExternalDatabase(host: host, port: port, user: user, database: database, tls: tls)
    }

    /// The URL again, canonical and without secrets (what the join bundle carries and status shows).
    public var url: String { "postgres://\(user)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)\(tls ? "" : "?sslmode=disable")" }
}

/// Where a cluster member keeps what the single-node layout does not have.
public enum ClusterPaths {
    public static let dir = "/etc/warbler/cluster"
    public static let tls = "/etc/warbler/cluster/tls"
    public static let secrets = "/etc/warbler/cluster/secrets"
    public static let superuserPassword = "/etc/warbler/cluster/secrets/postgres-superuser"
    public static let replicationPassword = "/etc/warbler/cluster/secrets/postgres-replication"
    public static let rewindPassword = "/etc/warbler/cluster/secrets/postgres-rewind"
    public static let patroniAPIPassword = "/etc/warbler/cluster/secrets/patroni-api"
    /// The IM server's PostgreSQL password (readable by the service user).
    public static let appPassword = "/etc/warbler/secrets/postgres-password"
    /// Root's copies of the service user's secrets, for root's own tools (root reads no file the service user
    /// could write) and for the join bundle.
    public static let appPasswordRootCopy = "/etc/warbler/cluster/secrets/postgres-app"
    public static let jwtKeyRootCopy = "/etc/warbler/cluster/secrets/jwt.key"
    /// The cluster CA's certificate where every component user may read it (/etc/warbler/tls is the server's).
    public static let caCert = "/etc/warbler/cluster/tls/ca.crt"
    public static let rootCert = "/etc/warbler/cluster/tls/root.crt"
    public static let rootKey = "/etc/warbler/cluster/tls/root.key"
    /// With `--database-url`: the CA the site's PostgreSQL certificate chains to (absent: the system's roots).
    public static let externalDatabaseCA = "/etc/warbler/cluster/tls/database-ca.crt"
    public static let etcdConfig = "/etc/warbler/cluster/etcd.yaml"
    public static let patroniConfig = "/etc/warbler/cluster/patroni.yml"
    public static let haproxyConfig = "/etc/warbler/cluster/haproxy.cfg"
    /// This host's member record and the cluster's shared settings (root's, read by `warbler cluster …`).
    public static let memberFile = "/etc/warbler/cluster/member.json"
    public static let etcdData = "/var/lib/warbler-etcd"
    public static let postgresHome = "/var/lib/warbler-postgresql"
    public static let postgresData = "/var/lib/warbler-postgresql/15/data"
    public static let haproxyState = "/var/lib/warbler-haproxy"
    public static let haproxySocket = "/run/warbler-haproxy/admin.sock"
    /// The cluster agent's runtime directory (systemd's, world-readable): what it publishes for the exporter.
    public static let agentRuntime = "/run/warbler-cluster-agent"
    /// Each member's release as the cluster agent last read it (`MemberReleases`); the exporter reads it.
    public static let memberReleases = "/run/warbler-cluster-agent/releases.json"
    public static let postgresSocketDir = "/run/warbler-postgresql"
    public static let databaseCreatedMarker = "/var/lib/warbler-install/cluster-database-created"
    public static let memberRegisteredMarker = "/var/lib/warbler-install/cluster-member-registered"

    public static let etcdUser = "warbler-etcd"
    public static let postgresUser = "warbler-postgres"
    public static let haproxyUser = "warbler-haproxy"

    public static let etcdUnit = "warbler-etcd.service"
    public static let patroniUnit = "warbler-patroni.service"
    public static let haproxyUnit = "warbler-haproxy.service"
    public static let agentUnit = "warbler-cluster-agent.service"
    public static let keepalivedUnit = "warbler-keepalived.service"
    public static let vipAgentUnit = "warbler-vip-agent.service"
    public static let upgradeReceiverUnit = "warbler-upgrade-receiver.service"
    public static let unitNames = [etcdUnit, patroniUnit, haproxyUnit, agentUnit, vipAgentUnit, keepalivedUnit, upgradeReceiverUnit]

    /// A component's files inside a release.
    public static func embedded(_ component: String) -> String { "embedded/\(component)" }
    public static let postgresBin = "/opt/warbler/current/embedded/postgresql/usr/lib/postgresql/15/bin"
    public static let etcdBin = "/opt/warbler/current/embedded/etcd/usr/bin"
    public static let python = "/opt/warbler/current/embedded/patroni/usr/bin/python3.11"
    public static let patroniScript = "/opt/warbler/current/embedded/patroni/usr/bin/patroni"
    public static let patronictl = "/opt/warbler/current/embedded/patroni/usr/bin/patronictl"
    public static let haproxyBin = "/opt/warbler/current/embedded/haproxy/usr/sbin/haproxy"
    public static let keepalivedBin = "/opt/warbler/current/embedded/keepalived/usr/sbin/keepalived"
    /// keepalived's config, written by the VIP agent (root's; keepalived runs as root).
    public static let keepalivedState = "/var/lib/warbler-keepalived"
    public static let keepalivedConfig = "/var/lib/warbler-keepalived/keepalived.conf"
    public static let keepalivedRuntime = "/run/warbler-keepalived"
    /// HAProxy's own health on loopback (plain HTTP, `monitor-uri`): 200 while it runs. keepalived's
    /// track script asks it.
    public static let haproxyMonitorPort = ClusterSettings.Port.haproxyMonitor
    public static let haproxyMonitorPath = "/warbler-haproxy-health"
    public static let haproxyStatsPath = "/warbler-haproxy-stats"
    /// etcd keys: each member's VIP agent publishes the peers its keepalived has (`/warbler/vip/NAME`).
    public static let vipPeersPrefix = "/warbler/vip/"

    /// The components a member with these roles runs.
    public static func components(for roles: Set<ClusterRole>, vip: Bool = false) -> [String] {
        // etcdctl serves every member (registration, status, the daily backup's lock) even without the etcd role, and
        // PostgreSQL's client tools (pg_dump, pg_restore) let `warbler backup` and `restore` run on any member.
        var c = ["etcd", "haproxy", "postgresql"]
        if roles.contains(.database) { c += ["patroni"] }
        if vip { c.append("keepalived") }
        return c.sorted()
    }
}

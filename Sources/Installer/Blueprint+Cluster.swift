import Foundation
import Templates

/// An embedded component ready to lay out: its tree unpacked (and verified) from the installer file, and the
/// digest of its archive.
public struct ComponentSource: Sendable, Equatable {
    public var directory: String
    public var digest: String
    public init(directory: String, digest: String) { self.directory = directory; self.digest = digest }
}

/// What a cluster member's blueprint needs beyond its settings.
public struct ClusterInputs: Sendable, Equatable {
    /// The secrets a joining host received (nil on the founder, and on later runs, which read them back from disk).
    public var bundle: ClusterBundle?
    /// The embedded components this release carries, by name (postgresql, etcd, patroni, haproxy).
    public var components: [String: ComponentSource]
    /// The founder of a cluster on the site's PostgreSQL (`--database-url`): the password and CA the operator gave
    /// (`--database-password-file`, `--database-ca-file`). Joining hosts get them in the bundle.
    public var externalPassword: String?
    public var externalCA: String?
    public init(bundle: ClusterBundle?, components: [String: ComponentSource], externalPassword: String? = nil, externalCA: String? = nil) {
        self.bundle = bundle; self.components = components; self.externalPassword = externalPassword; self.externalCA = externalCA
    }
}

/// This member's record and what `warbler cluster …` needs to reach the cluster (root's, no secrets).
public struct MemberFile: Codable, Sendable, Equatable {
    public var member: ClusterMember
    public var frontendPort: Int
    /// etcd client endpoints (addresses) this member uses.
    public var etcdEndpoints: [String]
    public var balance: String
    public var domains: [String]
    public var registration: String
    /// The other etcd members when this host joined: a learner's own etcd serves no membership calls, so its
    /// promotion goes through them.
    public var seedEtcdEndpoints: [String]? = nil
    /// The site's PostgreSQL (`--database-url`, without its password), nil when the cluster runs its own.
    public var database: String? = nil
    /// The cluster's virtual IP (`--vip`), nil when it has none.
    public var vip: String? = nil

    public static func load(_ data: Data) throws -> MemberFile {
        do { return try JSONDecoder().decode(MemberFile.self, from: data) } catch {
            throw JoinError("\(ClusterPaths.memberFile) does not parse (\(error)); run `warbler install` again to rewrite it")
        }
    }
}

extension Blueprint {
    /// The cluster's part of the desired state: component users, trees, secrets, certificates, configs, units,
    /// services (started before the IM server) and the one-time steps that register this member.
    func addCluster(_ c: ClusterSettings, tls: TLSMaterial, into d: inout DesiredState, on system: any System) throws {
        guard let inputs = cluster else { throw OptionsError("a cluster install needs the installer file's embedded components") }
        let root = managesOwnership ? Owner.root : nil
        func owner(_ user: String) -> Owner? { managesOwnership ? Owner(user, user) : nil }
        func group(_ user: String) -> Owner? { managesOwnership ? Owner("root", user) : nil }
        func dir(_ p: String, _ mode: UInt16, _ o: Owner?) {
            if !d.directories.contains(where: { $0.path == layout.path(p) }) { d.directories.append(.init(path: layout.path(p), mode: mode, owner: o)) }
        }
        func file(_ p: String, _ content: String, _ mode: UInt16, _ o: Owner?, label: String? = nil) {
            d.files.append(.init(path: layout.path(p), content: .bytes(Data(content.utf8)), mode: mode, owner: o, label: label))
        }
        func existing(_ p: String) throws -> String? {
            try system.info(layout.path(p))?.kind == .file
                ? String(decoding: try system.read(layout.path(p)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : nil
        }
        /// A secret: what is on disk, else what the join brought, else (the founder) a new one.
        func secret(_ p: String, _ fromBundle: (ClusterBundle) -> String, _ what: String) throws -> String {
            if let v = try existing(p), !v.isEmpty { return v }
            if let b = inputs.bundle { return fromBundle(b) }
            guard c.founder else {
                throw OptionsError("\(p) (\(what)) is missing on this cluster member; join again with a new token (`warbler cluster token` on a member)")
            }
            return Secrets.randomPassword(length: 32)
        }

        let db = c.roles.contains(.database), etcd = c.roles.contains(.etcd)
        if managesOwnership {
            d.users.append(.init(name: ClusterPaths.haproxyUser, home: ClusterPaths.haproxyState))
            if etcd { d.users.append(.init(name: ClusterPaths.etcdUser, home: ClusterPaths.etcdData)) }
            if db { d.users.append(.init(name: ClusterPaths.postgresUser, home: ClusterPaths.postgresHome)) }
        }

        // The components, each one step.
        let releaseDir = Paths.release(release.version)
        dir("\(releaseDir)/embedded", 0o755, root)
        for name in ClusterPaths.components(for: c.roles, vip: c.vip != nil) {
            guard let source = inputs.components[name] else {
                throw OptionsError("this installer file carries no \(name) component; build it with packaging/build.sh (without WARBLER_NO_COMPONENTS)")
            }
            d.trees.append(.init(path: layout.path("\(releaseDir)/\(ClusterPaths.embedded(name))"), source: source.directory,
                                 digest: source.digest, label: "\(name) (embedded, from Debian 12)"))
        }

        // Secrets: PostgreSQL's (root's; Patroni's copy is its config), the IM server's database password.
        dir(ClusterPaths.dir, 0o755, root)
        dir(ClusterPaths.secrets, 0o700, root)
        dir(ClusterPaths.tls, 0o755, root)
        var superuser = "", replication = "", rewind = "", api = "", app = ""
        if let external = c.externalDatabase {
            // The site's PostgreSQL: only the IM server's password (and its CA, if one was given) are ours to keep.
            if let v = try existing(ClusterPaths.appPasswordRootCopy), !v.isEmpty {
                app = v
            } else if let b = inputs.bundle, !b.appPassword.isEmpty {
                app = b.appPassword
            } else if let p = inputs.externalPassword, !p.isEmpty {
                app = p
            } else {
                throw OptionsError("the password for \(external.url) is missing: give --database-password-file FILE (a file only root can read)")
            }
            let ca = try existing(ClusterPaths.externalDatabaseCA) ?? inputs.bundle?.databaseCA ?? inputs.externalCA
            if let ca, !ca.isEmpty {
                guard ca.contains("-----BEGIN CERTIFICATE-----") else {
                    throw OptionsError("the database CA (--database-ca-file) is not a PEM certificate")
                }
                file(ClusterPaths.externalDatabaseCA, ca + "\n", 0o644, root, label: "the site database's CA certificate")
            }
        } else {
            superuser = try secret(ClusterPaths.superuserPassword, \.superuserPassword, "PostgreSQL superuser password")
            replication = try secret(ClusterPaths.replicationPassword, \.replicationPassword, "replication password")
            rewind = try secret(ClusterPaths.rewindPassword, \.rewindPassword, "pg_rewind password")
            api = try secret(ClusterPaths.patroniAPIPassword, \.patroniAPIPassword, "Patroni API password")
            app = try secret(ClusterPaths.appPasswordRootCopy, \.appPassword, "the IM server's database password")
            file(ClusterPaths.superuserPassword, superuser + "\n", 0o600, root, label: "PostgreSQL superuser password")
            file(ClusterPaths.replicationPassword, replication + "\n", 0o600, root, label: "replication password")
            file(ClusterPaths.rewindPassword, rewind + "\n", 0o600, root, label: "pg_rewind password")
            file(ClusterPaths.patroniAPIPassword, api + "\n", 0o600, root, label: "Patroni API password")
        }
        file(ClusterPaths.appPasswordRootCopy, app + "\n", 0o600, root, label: "the IM server's database password")
        file(ClusterPaths.appPassword, app + "\n", 0o600, managesOwnership ? Owner(Self.user, Self.user) : nil, label: "the IM server's database password")
        // The token signing key as the blueprint wrote it (root's copy, which the join bundle carries).
        if let jwt = d.files.first(where: { $0.path == layout.path(Paths.jwtKey) }), case .bytes(let key) = jwt.content {
            file(ClusterPaths.jwtKeyRootCopy, String(decoding: key, as: UTF8.self), 0o600, root, label: "token signing key (root's copy)")
        }

        // This member's certificate (server and client: etcd peers, Patroni and the agent authenticate with it),
        // one copy per component user, so each reads only its own key.
        let cert = tls.serverCertificatePEM, key = tls.serverKeyPEM
        var ctx = ClusterContext()
        ctx.caFile = ClusterPaths.caCert
        file(ClusterPaths.caCert, tls.caCertificatePEM ?? "", 0o644, root, label: "the cluster CA's certificate")
        if etcd {
            ctx.etcdCert = "\(ClusterPaths.tls)/etcd.crt"; ctx.etcdKey = "\(ClusterPaths.tls)/etcd.key"
            file(ctx.etcdCert, cert, 0o644, root); file(ctx.etcdKey, key, 0o600, owner(ClusterPaths.etcdUser), label: "etcd's key")
        }
        if db {
            ctx.postgresCert = "\(ClusterPaths.tls)/postgres.crt"; ctx.postgresKey = "\(ClusterPaths.tls)/postgres.key"
            file(ctx.postgresCert, cert, 0o644, root); file(ctx.postgresKey, key, 0o600, owner(ClusterPaths.postgresUser), label: "PostgreSQL's key")
        }
        ctx.agentCert = "\(ClusterPaths.tls)/agent.crt"; ctx.agentKey = "\(ClusterPaths.tls)/agent.key"
        file(ctx.agentCert, cert, 0o644, root); file(ctx.agentKey, key, 0o600, owner(ClusterPaths.haproxyUser), label: "the member agent's key")
        ctx.haproxyPem = "\(ClusterPaths.tls)/haproxy.pem"
        file(ctx.haproxyPem, cert + key, 0o600, owner(ClusterPaths.haproxyUser), label: "HAProxy's certificate and key")
        // Root's own copy for `warbler cluster …` (etcdctl): root reads no file a service user can write.
        file(ClusterPaths.rootCert, cert, 0o644, root); file(ClusterPaths.rootKey, key, 0o600, root, label: "root's cluster client key")

        // Configs.
        ctx.nodeName = c.nodeName
        ctx.advertise = c.advertise.description
        ctx.frontendHost = settings.host
        ctx.frontendPort = settings.port
        ctx.balance = c.balance
        ctx.externalDatabase = c.externalDatabase != nil
        ctx.slots = ClusterSettings.maxMembers
        let seeds = c.seedMembers.filter { $0.roles.contains(.etcd) && $0.name != c.nodeName }
        ctx.newCluster = c.founder || seeds.isEmpty
        ctx.initialMembers = (ctx.newCluster ? [] : seeds).map { .init(name: $0.name, address: $0.address) }
            + [.init(name: c.nodeName, address: c.advertise.description)]
        let endpoints = etcd ? ["127.0.0.1"] : c.seedMembers.filter { $0.roles.contains(.etcd) }.map(\.address)
        ctx.etcdEndpoints = endpoints
        // Every path and user, from the one place the built-in supervisor reads them too.
        ClusterPaths.lay(out: &ctx)
        ctx.superuserPassword = superuser
        ctx.replicationPassword = replication
        ctx.rewindPassword = rewind
        ctx.patroniAPIPassword = api

        let restartOnRelease = [Paths.current]
        var services: [DesiredState.Service] = []
        func unit(_ name: String, restartOn: [String], first: Bool = false) throws {
            file(Paths.unitFile(name), try templates.renderCluster(name, ctx), 0o644, root)
            services.append(.init(unit: name, unitFile: layout.path(Paths.unitFile(name)), restartOn: (restartOn + restartOnRelease).map(layout.path),
                                  restartsFirst: first))
        }
        if let vip = c.vip { ctx.vip = vip.description }
        // The components this member runs, as the one description says (the built-in supervisor reads it too).
        for component in ctx.components(etcd: etcd, database: db) {
            switch component.unit {
            case ClusterPaths.etcdUnit:
                file(ClusterPaths.etcdConfig, try templates.renderCluster("etcd.yaml", ctx), 0o640, group(ClusterPaths.etcdUser))
                try unit(component.unit, restartOn: [ClusterPaths.etcdConfig, ctx.etcdCert, ctx.etcdKey])
            case ClusterPaths.patroniUnit:
                file(ClusterPaths.patroniConfig, try templates.renderCluster("patroni.yml", ctx), 0o640, group(ClusterPaths.postgresUser),
                     label: "Patroni's config (holds PostgreSQL's passwords)")
                try unit(component.unit, restartOn: [ClusterPaths.patroniConfig, ctx.postgresCert, ctx.postgresKey])
            case ClusterPaths.haproxyUnit:
                file(ClusterPaths.haproxyConfig, try templates.renderCluster("haproxy.cfg", ctx), 0o640, group(ClusterPaths.haproxyUser))
                try unit(component.unit, restartOn: [ClusterPaths.haproxyConfig, ctx.haproxyPem])
            case ClusterPaths.agentUnit:
                try unit(component.unit, restartOn: [ClusterPaths.memberFile, ctx.agentCert, ctx.agentKey])
            case ClusterPaths.vipAgentUnit:
                // The virtual IP: the VIP agent writes keepalived's config from the members in etcd (root's files only).
                try unit(component.unit, restartOn: [ClusterPaths.memberFile, ClusterPaths.rootCert, ClusterPaths.rootKey])
            case ClusterPaths.keepalivedUnit:
                // Restarted before the others (a new release restarts them all): the virtual IP moves to another
                // member first, so its clients reconnect once, there, and this member's HAProxy restarts unused.
                try unit(component.unit, restartOn: [], first: true)
            default:
                try unit(component.unit, restartOn: [])
            }
        }
        // The upgrade receiver: root, on the advertise address; under systemd its own unit, under the built-in
        // supervisor its component description (`upgradeReceiverComponent`). It restarts itself after each switch (the
        // install it runs must not restart it), so neither a new release nor a changed unit restarts it here; a new
        // member certificate or member file does (an install changes them only when the member's names change).
        ctx.upgradeReceiverPort = ClusterSettings.Port.upgradeReceiver
        file(Paths.unitFile(ClusterPaths.upgradeReceiverUnit), try templates.renderCluster(ClusterPaths.upgradeReceiverUnit, ctx), 0o644, root)
        services.append(.init(unit: ClusterPaths.upgradeReceiverUnit, unitFile: layout.path(Paths.unitFile(ClusterPaths.upgradeReceiverUnit)),
                              restartOn: [ClusterPaths.memberFile, ClusterPaths.rootCert, ClusterPaths.rootKey].map(layout.path), restartsItself: true))

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        var member = MemberFile(member: c.me, frontendPort: settings.port, etcdEndpoints: endpoints, balance: c.balance,
                                domains: settings.domains, registration: settings.registration)
        member.seedEtcdEndpoints = seeds.map(\.address)
        member.database = c.externalDatabase?.url
        member.vip = c.vip?.description
        file(ClusterPaths.memberFile, String(decoding: try encoder.encode(member), as: UTF8.self) + "\n", 0o644, root)

        guard managesServices else { return }
        // The components start before the IM server (which needs the database through HAProxy).
        d.services.insert(contentsOf: services, at: 0)
        let binary = Paths.currentBinary
        let firstAfterEtcd = db ? ClusterPaths.patroniUnit : ClusterPaths.haproxyUnit
        if etcd && !ctx.newCluster {
            d.oneTime.append(.init(name: "make this host's etcd member a voter once it has caught up",
                                   argv: [binary, "cluster", "etcd-promote"], user: nil,
                                   marker: layout.path(Paths.installState + "/cluster-etcd-promoted"), beforeUnit: firstAfterEtcd))
        }
        d.oneTime.append(.init(name: "register \(c.nodeName) (\(c.advertise)) as a cluster member in etcd",
                               argv: [binary, "cluster", "register"], user: nil,
                               marker: layout.path(ClusterPaths.memberRegisteredMarker), beforeUnit: firstAfterEtcd))
        // Before the first admin is created (which needs the database).
        let serverCommands = d.oneTime.firstIndex { $0.beforeUnit == Paths.serverUnitName } ?? d.oneTime.endIndex
        if c.founder && c.externalDatabase == nil {
            d.oneTime.insert(.init(name: "create the IM server's database and role in PostgreSQL",
                                   argv: [binary, "cluster", "setup-database"], user: nil,
                                   marker: layout.path(ClusterPaths.databaseCreatedMarker), beforeUnit: Paths.serverUnitName), at: serverCommands)
        } else {
            d.oneTime.insert(.init(name: c.externalDatabase.map { "reach the site's database \($0.host):\($0.port) as \($0.user)" }
                                       ?? "wait for the cluster's database through HAProxy",
                                   argv: [binary, "cluster", "wait-database"], user: nil,
                                   marker: layout.path(Paths.installState + "/cluster-database-reached"), beforeUnit: Paths.serverUnitName),
                             at: serverCommands)
        }
    }
}

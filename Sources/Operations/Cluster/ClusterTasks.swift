import DurableFiles
import Foundation
import WarblerConfig
import IMStorage
import IMStoragePostgres
import Installer
import Logging

/// The root-run steps of a cluster member's life that need the running cluster: registering in etcd, becoming an
/// etcd voter, creating the IM server's database, making join tokens. Each reads only root's files.
public struct ClusterTasks: Sendable {
    public var logger: Logger
    public init(logger: Logger = Logger(label: "warbler.cluster")) { self.logger = logger }

    public func memberFile() throws -> MemberFile {
        try MemberFile.load(try RootFile.read(ClusterPaths.memberFile))
    }

    public func etcd(_ m: MemberFile) -> Etcdctl { Etcdctl(endpoints: m.etcdEndpoints) }

    /// Retries `body` until it succeeds or `seconds` pass; the last error says why.
    func retrying<T>(_ what: String, seconds: Double, _ body: () async throws -> T) async throws -> T {
        let deadline = Date().addingTimeInterval(seconds)
        var last: any Error = ClusterOpsError("\(what): not tried")
        while Date() < deadline {
            do { return try await body() } catch { last = error }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw ClusterOpsError("\(what) did not succeed within \(Int(seconds)) s: \(last)")
    }

    /// `warbler cluster register`: this member's record in etcd (what the agents fill HAProxy from).
    public func register() async throws {
        let m = try memberFile()
        try await retrying("registering \(m.member.name) in etcd", seconds: 90) {
            try MemberRegistry.register(m.member, in: etcd(m))
        }
    }

    /// `warbler cluster etcd-promote`: the learner this host's join added becomes a voter once it has caught up
    /// (etcd refuses the promotion until then).
    public func promote() async throws {
        let m = try memberFile()
        let seeds = m.seedEtcdEndpoints ?? []
        let etcd = seeds.isEmpty ? etcd(m) : Etcdctl(endpoints: seeds)
        try await retrying("promoting \(m.member.name)'s etcd member to a voter", seconds: 120) {
            guard let me = try etcd.memberList().first(where: { $0.name == m.member.name }) else {
                throw ClusterOpsError("\(m.member.name) is not an etcd member yet")
            }
            if me.isLearner { try etcd.promote(id: me.id) }
        }
    }

    /// Before `warbler uninstall` removes a member: its record goes from etcd (the agents empty its HAProxy slots)
    /// and its etcd member leaves the quorum. Refused when this host is the PostgreSQL primary with standbys, or
    /// when the remaining etcd voters would have no quorum.
    public func leave() async throws -> [String] {
        let m = try memberFile()
        let etcd = etcd(m)
        var done: [String] = []
        let others = try MemberRegistry.load(etcd).members.filter { $0.name != m.member.name }
        guard !others.isEmpty else { return ["the last member: nothing to leave"] }
        if m.member.roles.contains(.database), others.contains(where: { $0.roles.contains(.database) }),
           let data = try? Data(contentsOf: URL(string: "http://\(m.member.address):\(ClusterSettings.Port.patroni)/cluster")!),
           let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let list = obj["members"] as? [[String: Any]],
           list.contains(where: { ($0["name"] as? String) == m.member.name && ($0["role"] as? String) == "leader" }) {
            throw ClusterOpsError("\(m.member.name) is the PostgreSQL primary: move the primary first (\(ClusterPaths.python) \(ClusterPaths.patronictl) -c \(ClusterPaths.patroniConfig) switchover), then uninstall")
        }
        try etcd.delete(MemberRegistry.prefix + m.member.name)
        if m.vip != nil { try etcd.delete(ClusterPaths.vipPeersPrefix + m.member.name) }
        done.append("removed \(m.member.name) from the cluster's members (HAProxy stops sending it clients)")
        let members = try etcd.memberList()
        if let me = members.first(where: { $0.name == m.member.name }) {
            let voters = members.filter { !$0.isLearner && $0.id != me.id }
            guard voters.count >= 1 else { throw ClusterOpsError("removing \(m.member.name) would leave etcd without a voter") }
            // A leader that leaves forces an election (and renews every lease) while Patroni refreshes its key:
            // hand the leadership to another voter first, as etcd advises.
            if m.member.roles.contains(.etcd), let (mine, leader) = try? etcd.status(), mine == leader, mine == me.id,
               let next = voters.min(by: { $0.name < $1.name }) {
                try? etcd.moveLeader(to: next.id)
                done.append("handed etcd's leadership to \(next.name)")
            }
            // Through another member: this one's etcd stops itself once removed.
            let remote = Etcdctl(endpoints: voters.compactMap { $0.clientURLs.first.flatMap { URL(string: $0)?.host } }.filter { $0 != m.member.address })
            try (remote.endpoints.isEmpty ? etcd : remote).remove(id: me.id)
            done.append("removed \(m.member.name)'s etcd member (\(voters.count) voters remain)")
        }
        return done
    }

    /// `warbler cluster remove NODE`: a member that is gone leaves the cluster from here (MemberRemoval decides).
    /// Returns what was done, one line each.
    public func remove(node: String, force: Bool) async throws -> [String] {
        let m = try memberFile()
        let etcd = etcd(m)
        let report = try await ClusterStatusCollector(member: m, etcd: etcd).collect()
        let plan = try MemberRemoval.decide(node: node, me: m.member.name, report: report, etcdMembers: try etcd.memberList(),
                                            force: force).get()
        var done: [String] = plan.forcedOver.isEmpty ? [] : ["--force: removing \(node) although \(plan.forcedOver.joined(separator: "; "))"]
        if plan.record {
            try etcd.delete(MemberRegistry.prefix + node)
            done.append("removed \(node) from the cluster's members (every HAProxy stops sending it clients)")
        }
        try etcd.delete(ClusterPaths.vipPeersPrefix + node)
        try etcd.delete(DrainMarks.markPrefix + node)
        try etcd.delete(DrainMarks.appliedPrefix + node)
        if let id = plan.etcdMember {
            try etcd.remove(id: id)
            done.append("removed \(node)'s etcd member (\(try etcd.memberList().filter { !$0.isLearner }.count) voters remain)")
        }
        return done
    }

    /// `warbler cluster setup-database` (the founder): the IM server's role and database, created by the
    /// PostgreSQL superuser once Patroni has made this host the primary.
    public func setupDatabase() async throws {
        let superuser = try RootFile.readText(ClusterPaths.superuserPassword)
        let app = try RootFile.readText(ClusterPaths.appPasswordRootCopy)
        guard app.count >= 16, app.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw ClusterOpsError("\(ClusterPaths.appPassword) must hold 16 or more letters and digits")
        }
        let driver = try await retrying("reaching PostgreSQL as its superuser on 127.0.0.1", seconds: 120) {
            let d = try await PostgresDriver.connect(host: "127.0.0.1", port: ClusterSettings.Port.postgres, username: "postgres",
                                                     password: superuser, database: "postgres", maxConnections: 1, logger: logger)
            // A standby answers too: wait for the primary.
            let recovering = try await d.read { db in try await db.first("SELECT pg_is_in_recovery()::int AS r")?.int("r") ?? 1 }
            if recovering != 0 { try? await d.close(); throw ClusterOpsError("PostgreSQL here is not the primary yet") }
            return d
        }
        defer { Task { try? await driver.close() } }
        try await driver.read { db in
            // A password cannot be a bind parameter in CREATE ROLE; it is letters and digits only (checked above).
            if try await db.first("SELECT 1 AS x FROM pg_roles WHERE rolname = 'warbler'") == nil {
                try await db.query("CREATE ROLE warbler LOGIN PASSWORD '\(app)'")
            } else {
                try await db.query("ALTER ROLE warbler LOGIN PASSWORD '\(app)'")
            }
            if try await db.first("SELECT 1 AS x FROM pg_database WHERE datname = 'warbler'") == nil {
                try await db.query("CREATE DATABASE warbler OWNER warbler ENCODING 'UTF8' TEMPLATE template0")
            }
        }
        try await waitDatabase()
    }

    /// `warbler cluster wait-database`: the IM server's way to its database works, read from root's copy of its
    /// config: through HAProxy to the primary (the agent filled the slot, Patroni's check passed, TLS verified
    /// against the cluster CA), or straight to the site's PostgreSQL (`--database-url`); the role's password right.
    public func waitDatabase(seconds: Double = 120) async throws {
        let app = try RootFile.readText(ClusterPaths.appPasswordRootCopy)
        let s = try ServerConfig.load(path: Paths.config, environment: [:]).storage
        try await retrying("reaching the database \(s.postgresHost):\(s.postgresPort) as \(s.postgresUser)", seconds: seconds) {
            let d = try await PostgresDriver.connect(host: s.postgresHost, port: s.postgresPort, username: s.postgresUser, password: app,
                                                     database: s.postgresDatabase, tls: s.postgresTls, caFile: s.postgresCaFile,
                                                     maxConnections: 1, logger: logger)
            try? await d.close()
        }
    }
}

extension ClusterTasks {
    /// Connects to the cluster's database as the IM server does (its user and database, through this member's local
    /// HAProxy listener, which leads to the PostgreSQL primary), with root's copy of the password and root's copy of
    /// the config: never the service user's password file, which that user could rewrite.
    public static func connectDatabase(logger: Logger, maxConnections: Int = 1) async throws -> PostgresDriver {
        let config = try ServerConfig.load(path: Paths.config, environment: [:])
        guard config.storage.driver == "postgres" else { throw ClusterOpsError("this host is not a cluster member (its database is \(config.storage.driver))") }
        let password = try RootFile.readText(ClusterPaths.appPasswordRootCopy)
        return try await PostgresDriver.connect(host: config.storage.postgresHost, port: config.storage.postgresPort,
                                                username: config.storage.postgresUser, password: password,
                                                database: config.storage.postgresDatabase, tls: config.storage.postgresTls,
                                                caFile: config.storage.postgresCaFile, maxConnections: maxConnections, logger: logger)
    }

    /// Why the contract migrations of `release` may not run while the members run what they run, or nil when every
    /// member answered that it runs `release`. Pure.
    public static func contractRefusal(nodes: [(name: String, version: String?)], release: String) -> String? {
        let behind = nodes.filter { $0.version != release }
        guard !behind.isEmpty else { return nil }
        return "contract migrations remove what the previous release uses, so they run only once every member runs \(release): "
            + behind.map { "\($0.name) \($0.version.map { "runs \($0)" } ?? "does not say which release it runs")" }.joined(separator: ", ")
            + "; upgrade those members first (`warbler cluster status` shows each member's release)"
    }

    /// What `warbler cluster migrate` did: the versions it applied and the schema after, as the one JSON line it
    /// prints (what the cluster upgrade's driver reads back).
    public struct MigrationRun: Codable, Sendable, Equatable {
        public var applied: [Int]
        public var schema: Int
        public init(applied: [Int], schema: Int) { self.applied = applied; self.schema = schema }
    }

    /// `warbler cluster migrate --phase expand|contract --through N` (root, run by a cluster upgrade with the
    /// release whose migrations these are): this build's migrations of that phase, once, under the database's
    /// migration lock, against the primary.
    public func migrate(phase: Migration.Phase, through: Int) async throws -> MigrationRun {
        if phase == .contract {
            // Also when run by hand (after members were upgraded one by one with `--host-only`): a contract
            // migration removes what the previous release uses.
            let m = try memberFile()
            let report = try await ClusterStatusCollector(member: m, etcd: etcd(m)).collect()
            if let why = Self.contractRefusal(nodes: report.nodes.map { ($0.name, $0.version) }, release: WarblerVersion.version) {
                throw ClusterOpsError(why)
            }
        }
        let driver = try await Self.connectDatabase(logger: logger)
        do {
            let selection: Migrations.Selection = phase == .expand ? .expand(through: through) : .contract(through: through)
            let applied = try await Migrations.apply(driver, now: Int64(Date().timeIntervalSince1970 * 1000), selection: selection)
            let schema = try await Migrations.currentVersion(driver)
            try await driver.close()
            return MigrationRun(applied: applied, schema: schema)
        } catch {
            try? await driver.close()
            throw error
        }
    }
}

/// Making and checking join tokens.
public struct JoinTokens: Sendable {
    public var store: SQLStore
    public init(store: SQLStore) { self.store = store }

    /// Opens the cluster's database as the IM server does, from root's copy of the config.
    public static func openStore(logger: Logger) async throws -> SQLStore {
        SQLStore(driver: try await ClusterTasks.connectDatabase(logger: logger))
    }

    /// The bundle a new member receives, from this member's root-owned files.
    public static func bundle(members: [ClusterMember], member: MemberFile) throws -> ClusterBundle {
        // On the site's PostgreSQL the cluster keeps no PostgreSQL secrets of its own but the IM server's password.
        let own = member.database == nil
        func secret(_ path: String) throws -> String { own ? try RootFile.readText(path) : "" }
        var bundle = ClusterBundle(caCert: String(decoding: try RootFile.read(Paths.caCert), as: UTF8.self),
                                   caKey: String(decoding: try RootFile.read(Paths.caKey), as: UTF8.self),
                                   jwtKey: try RootFile.readText(ClusterPaths.jwtKeyRootCopy),
                                   superuserPassword: try secret(ClusterPaths.superuserPassword),
                                   replicationPassword: try secret(ClusterPaths.replicationPassword),
                                   rewindPassword: try secret(ClusterPaths.rewindPassword),
                                   patroniAPIPassword: try secret(ClusterPaths.patroniAPIPassword),
                                   appPassword: try RootFile.readText(ClusterPaths.appPasswordRootCopy),
                                   domains: member.domains, port: member.frontendPort, balance: member.balance,
                                   registration: member.registration, members: members)
        bundle.vip = member.vip
        if let url = member.database {
            bundle.databaseURL = url
            if access(ClusterPaths.externalDatabaseCA, F_OK) == 0 {
                bundle.databaseCA = String(decoding: try RootFile.read(ClusterPaths.externalDatabaseCA), as: UTF8.self)
            }
        }
        return bundle
    }

    /// A new token for this member's cluster (the bundle from root's files, the members from etcd) and the member
    /// record its join command names.
    public static func issue(ttl: TimeInterval, singleUse: Bool, logger: Logger) async throws -> (JoinToken, MemberFile) {
        let tasks = ClusterTasks(logger: logger)
        let member = try tasks.memberFile()
        let store = try await openStore(logger: logger)
        do {
            let members = (try? MemberRegistry.load(tasks.etcd(member)).members) ?? [member.member]
            let token = try await JoinTokens(store: store).create(bundle: try bundle(members: members, member: member), ttl: ttl, singleUse: singleUse)
            try? await store.close()
            return (token, member)
        } catch {
            try? await store.close()
            throw error
        }
    }

    public func create(bundle: ClusterBundle, ttl: TimeInterval, singleUse: Bool, now: Date = Date()) async throws -> JoinToken {
        let token = try JoinToken.generate(caPEM: bundle.caCert)
        try await store.createJoinToken(id: token.id, proofHash: JoinToken.proofHash(token.proof), bundle: try token.seal(bundle),
                                        now: Int64(now.timeIntervalSince1970), expiresAt: Int64(now.addingTimeInterval(ttl).timeIntervalSince1970),
                                        singleUse: singleUse)
        return token
    }
}

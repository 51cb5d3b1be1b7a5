import Backup
import Crypto
import Foundation
import Glibc
import IMClient
import IMCore
import IMServer
import IMStorage
import IMStoragePostgres
import Installer
import Logging
import Testing
import WarblerTestSupport

/// The cluster as a test says it is: what `LiveClusterView` would read from etcd.
struct FakeClusterView: ClusterView {
    var nodeName: String
    var id = "15118495548433857066"
    var members: [ClusterMember]
    var unreachable = false

    func node() throws -> String { nodeName }
    func state() throws -> (id: String, members: [ClusterMember]) {
        if unreachable { throw BackupError(.database, "etcdctl endpoint status failed: context deadline exceeded") }
        return (id, members)
    }
}

struct Activity: ServerActivityProbe {
    var evidence: String?
    func runningEvidence() -> String? { evidence }
}

/// A Warbler server in this process on a free loopback port, on a PostgreSQL database (a cluster's IM server).
final class InProcessServer: Sendable {
    let runtime: ServerRuntime
    let task: Task<Void, any Error>
    let port: Int
    var baseURL: String { "http://127.0.0.1:\(port)" }

    init(database: String, port pgPort: Int, user: String = PostgresTestServer.user, jwtKeyFile: String, dataDir: String) async throws {
        var c = ServerConfig()
        c.server.host = "127.0.0.1"
        c.server.port = 0
        c.server.drainSeconds = 1
        c.metrics.port = 0
        c.dataDir = dataDir
        c.auth.jwtKeyFile = jwtKeyFile
        c.auth.bcryptCost = 4
        c.storage.driver = "postgres"
        c.storage.postgresHost = PostgresTestServer.host
        c.storage.postgresPort = pgPort
        c.storage.postgresUser = user
        c.storage.postgresDatabase = database
        var logger = Logger(label: "test.server")
        logger.logLevel = .critical
        let runtime = try await ServerRuntime.open(config: c, logger: logger)
        self.runtime = runtime
        task = Task { try await runtime.run(handleSignals: false) }
        port = try await runtime.waitUntilListening()
    }

    func stop() async {
        await runtime.shutdown()
        _ = try? await task.value
    }
}

@Suite struct ClusterBackupTests {
    static let m1 = ClusterMember(name: "m1", address: "10.0.0.11", roles: [.database, .etcd])
    static let m2 = ClusterMember(name: "m2", address: "10.0.0.12", roles: [.database, .etcd])
    static let m3 = ClusterMember(name: "m3", address: "10.0.0.13", roles: [.etcd])
    static let n1 = ClusterMember(name: "n1", address: "10.0.1.11", roles: [.database, .etcd])

    static func newJWTKey() -> String { Curve25519.Signing.PrivateKey().rawRepresentation.base64EncodedString() + "\n" }

    /// A cluster member as `install --cluster-init`/`join` leaves one, staged: the config on `database` through the
    /// primary listener, the member file, root's cluster secrets and copies, component keys, Patroni's config.
    static func stageMember(_ node: ClusterMember, port: Int, database: String, user: String = PostgresTestServer.user, jwtKey: String) throws -> StagedHost {
        let host = try StagedHost("cluster-\(node.name)")
        try host.writeEtc(storage: """
              driver: postgres
              postgres_host: \(PostgresTestServer.host)
              postgres_port: \(port)
              postgres_user: \(user)
              postgres_password_file: \(ClusterPaths.appPassword)
              postgres_database: \(database)

            """)
        try host.write(Paths.jwtKey, jwtKey, mode: 0o600)
        try host.write(ClusterPaths.appPassword, "the-service-users-copy\n", mode: 0o600)
        try host.write(ClusterPaths.appPasswordRootCopy, "roots-copy-\(node.name)\n", mode: 0o600)
        try host.write(ClusterPaths.jwtKeyRootCopy, jwtKey, mode: 0o600)
        for (path, what) in [(ClusterPaths.superuserPassword, "superuser"), (ClusterPaths.replicationPassword, "replication"),
                             (ClusterPaths.rewindPassword, "rewind"), (ClusterPaths.patroniAPIPassword, "patroni-api")] {
            try host.write(path, "\(what)-secret-of-\(node.name)\n", mode: 0o600)
        }
        #expect(chmod(host.path(ClusterPaths.secrets), 0o700) == 0)
        try host.write(ClusterPaths.caCert, "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n", mode: 0o644)
        for name in ["root", "etcd", "postgres", "agent"] {
            try host.write(ClusterPaths.tls + "/\(name).crt", "-----BEGIN CERTIFICATE-----\n\(node.name)\n-----END CERTIFICATE-----\n", mode: 0o644)
            try host.write(ClusterPaths.tls + "/\(name).key", "-----BEGIN PRIVATE KEY-----\nkey-secret-of-\(node.name)\n-----END PRIVATE KEY-----\n", mode: 0o600)
        }
        try host.write(ClusterPaths.tls + "/haproxy.pem", "-----BEGIN PRIVATE KEY-----\nkey-secret-of-\(node.name)\n-----END PRIVATE KEY-----\n", mode: 0o600)
        try host.write(ClusterPaths.patroniConfig, "postgresql:\n  authentication:\n    superuser:\n      password: superuser-secret-of-\(node.name)\n", mode: 0o640)
        try host.write(ClusterPaths.haproxyConfig, "global\n", mode: 0o640)
        try host.write(ClusterPaths.memberFile, """
            {"balance":"leastconn","domains":[],"etcdEndpoints":["127.0.0.1"],"frontendPort":8443,\
            "member":{"address":"\(node.address)","name":"\(node.name)","roles":["database","etcd"]},"registration":"open"}

            """, mode: 0o644)
        return host
    }

    static func connect(_ port: Int, _ database: String, user: String = PostgresTestServer.user) async throws -> PostgresDriver {
        try await PostgresDriver.connect(host: PostgresTestServer.host, port: port, username: user,
                                         password: nil, database: database, maxConnections: 4)
    }

    /// A database owned by its own login role, not a superuser: as `cluster setup-database` makes the cluster's
    /// (role `warbler`, owner of database `warbler`), so pg_dump and pg_restore run with the IM server's rights only.
    static func appDatabase() async throws -> (port: Int, database: String, user: String) {
        let (port, database) = try await PostgresTestServer.shared.freshDatabase()
        let user = "app_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
        let admin = try await connect(port, database)
        do {
            _ = try await admin.read { db in
                try await db.query("CREATE ROLE \(user) LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
                try await db.query("ALTER DATABASE \(database) OWNER TO \(user)")
            }
            try await admin.close()
        } catch {
            try? await admin.close()
            throw error
        }
        return (port, database, String(user))
    }

    static let tables = Fixture.tables + ["attachment_chunks", "cluster_join_tokens"]

    /// Every row of every table that holds users' data, in a stable order.
    static func dump(_ port: Int, _ database: String) async throws -> [String: [[String: SQLValue]]] {
        let driver = try await connect(port, database)
        do {
            var out = try await Fixture.dump(driver)
            for table in ["attachment_chunks", "cluster_join_tokens"] {
                out[table] = try await driver.read { db in try await db.query("SELECT * FROM \(table) ORDER BY 1, 2").map(\.values) }
            }
            try await driver.close()
            return out
        } catch {
            try? await driver.close()
            throw error
        }
    }

    /// A cluster backup of a small database (written with the store, no server): for the refusal tests.
    static func smallClusterBackup(passphrase: String = "cluster pass") async throws -> (file: String, host: StagedHost) {
        let (port, database) = try await PostgresTestServer.shared.freshDatabase()
        let host = try stageMember(m1, port: port, database: database, jwtKey: newJWTKey())
        let driver = try await connect(port, database)
        do {
            try await Migrations.apply(driver, now: 1_000)
            try await Fixture.populate(SQLStore(driver: driver), host: host, messages: 12)
            try await driver.close()
        } catch {
            try? await driver.close()
            throw error
        }
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), passphrase: passphrase,
                                                                   unattended: false, clusterView: FakeClusterView(nodeName: "m1", members: [m1, m2, m3])))
        return (result.file, host)
    }

    /// A freshly founded cluster: its server ran the migrations and made the first admin, and nothing else.
    static func freshCluster(withMessages: Bool = false, ownRole: Bool = false) async throws -> (host: StagedHost, port: Int, database: String, user: String) {
        let port: Int, database: String, user: String
        if ownRole {
            (port, database, user) = try await appDatabase()
        } else {
            (port, database) = try await PostgresTestServer.shared.freshDatabase()
            user = PostgresTestServer.user
        }
        let host = try stageMember(n1, port: port, database: database, user: user, jwtKey: newJWTKey())
        let driver = try await connect(port, database, user: user)
        do {
            try await Migrations.apply(driver, now: 5_000)
            if withMessages {
                try await Fixture.populate(SQLStore(driver: driver), host: host, messages: 5)
            } else {
                _ = try await SQLStore(driver: driver).createUser(username: "admin", passwordHash: "$2b$12$new", displayName: "Admin", admin: true, now: 5_000)
            }
            try await driver.close()
        } catch {
            try? await driver.close()
            throw error
        }
        return (host, port, database, user)
    }

    // MARK: The whole round

    /// Issue 12: a cluster's backup (pg_dump through the member's way to the primary, the cluster's secrets sealed,
    /// a manifest that says cluster) restored onto a freshly founded cluster gives back every message and every
    /// attachment byte for byte, and a token the old cluster issued is accepted by the new one.
    @Test func aClusterBackupRestoredOntoAFreshClusterGivesBackEveryMessageAndAttachmentAndKeepsOldTokensValid() async throws {
        // The old cluster: its IM server (in process, on PostgreSQL), used through the client SDK.
        let (oldPort, oldDatabase, oldUser) = try await Self.appDatabase()
        let oldKey = Self.newJWTKey()
        let old = try Self.stageMember(Self.m1, port: oldPort, database: oldDatabase, user: oldUser, jwtKey: oldKey)
        defer { old.remove() }
        let server = try await InProcessServer(database: oldDatabase, port: oldPort, user: oldUser, jwtKeyFile: old.path(Paths.jwtKey), dataDir: old.path(Paths.data))
        var attachments: [String: Data] = [:]
        let session: IMSession
        let direct: ConversationID, group: ConversationID
        do {
            let alice = try IMClient(baseURL: server.baseURL, deviceName: "test")
            _ = try await alice.register(username: "alice", password: "password-123")
            let bob = try IMClient(baseURL: server.baseURL, deviceName: "test")
            let bobProfile = try await bob.register(username: "bob", password: "password-123")
            let carol = try IMClient(baseURL: server.baseURL, deviceName: "test")
            let carolProfile = try await carol.register(username: "carol", password: "password-123")
            direct = try await alice.createDirectConversation(with: bobProfile.id).id
            group = try await alice.createGroup(name: "Team ✓", members: [bobProfile.id, carolProfile.id]).id
            let connection = alice.makeConnection()
            try await connection.connect()
            for i in 0..<40 {
                _ = try await connection.send(conversation: i % 3 == 0 ? group : direct, text: "hello \(i) — ünïcödé 🐦 \"quoted\"\n\(i)")
            }
            _ = try await connection.send(conversation: group, data: .object(["n": .number(7), "s": .string("x\"y")]))
            // Attachments are chunked rows in PostgreSQL (256 KiB each): one of several chunks with every byte value,
            // a small one, a one-byte one.
            var big = [UInt8](repeating: 0, count: 3 * 256 * 1024 + 12_345)
            for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
            for (n, bytes) in [Data(big), Fixture.randomBytes(5_000), Data([0])].enumerated() {
                let conv = n == 1 ? group : direct
                let ref = try await alice.uploadAttachment(to: conv, name: "file-\(n).bin", contentType: "application/octet-stream", data: bytes)
                _ = try await connection.send(conversation: conv, attachment: ref, caption: "caption \(n)")
                attachments[ref.id] = bytes
            }
            await connection.close()
            session = try #require(await alice.session)
            try? await alice.shutdown(); try? await bob.shutdown(); try? await carol.shutdown()
        } catch {
            await server.stop()
            throw error
        }

        // `warbler backup` on a member, while the server runs. Root reads the database password from its own copy:
        // the service user's file is gone here, and the backup does not notice.
        try FileManager.default.removeItem(atPath: old.path(ClusterPaths.appPassword))
        let result: BackupResult
        do {
            result = try await BackupEngine().create(BackupRequest(
                layout: old.layout, config: try old.config(), passphrase: "cluster pass", unattended: false,
                clusterView: FakeClusterView(nodeName: "m1", members: [Self.m1, Self.m2, Self.m3])))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
        let m = result.manifest
        #expect(m.format == BackupManifest.clusterFormat && m.backend == .postgres && m.schemaVersion == Migrations.latest)
        #expect(m.cluster == BackupManifest.Cluster(id: "15118495548433857066", node: "m1", members: [Self.m1, Self.m2, Self.m3]))
        // The cluster's secrets are sealed as the host's are: none of them is in the archive in the clear.
        for path in ["etc/warbler/cluster/secrets/postgres-superuser", "etc/warbler/cluster/secrets/jwt.key", "etc/warbler/cluster/secrets/postgres-app",
                     "etc/warbler/cluster/tls/root.key", "etc/warbler/cluster/tls/etcd.key", "etc/warbler/cluster/tls/haproxy.pem",
                     "etc/warbler/cluster/patroni.yml", "etc/warbler/secrets/jwt.key"] {
            #expect(m.entry(path)?.encrypted == true, "\(path) is not sealed")
        }
        #expect(m.entry("etc/warbler/cluster/member.json")?.encrypted == false)
        for (path, data) in try Fixture.members(of: result.file) {
            #expect(data.range(of: Data("secret-of-m1".utf8)) == nil, "\(path) holds a cluster secret in the clear")
            #expect(data.range(of: Data(oldKey.utf8.dropLast())) == nil, "\(path) holds the token key in the clear")
        }
        let expected = try await Self.dump(oldPort, oldDatabase)
        #expect(expected["messages"]?.count ?? 0 >= 44)
        #expect(expected["attachment_chunks"]?.count == 6)

        // A freshly founded cluster on another database: `warbler restore` there.
        let (fresh, newPort, newDatabase, newUser) = try await Self.freshCluster(ownRole: true)
        defer { fresh.remove() }
        let untouched = [ClusterPaths.superuserPassword, ClusterPaths.appPasswordRootCopy, ClusterPaths.rootKey, ClusterPaths.patroniConfig,
                         ClusterPaths.memberFile, ClusterPaths.caCert, Paths.config]
        let before = try untouched.map { try Data(contentsOf: URL(fileURLWithPath: fresh.path($0))) }
        let restored = try await RestoreEngine().restore(RestoreRequest(
            layout: fresh.layout, file: result.file, passphrase: "cluster pass", activity: Activity(evidence: nil),
            clusterView: FakeClusterView(nodeName: "n1", id: "99", members: [Self.n1])))
        #expect(restored.manifest.cluster?.node == "m1")
        #expect(restored.migrationsApplied.isEmpty)

        // Every row, every attachment chunk's bytes, the same.
        let got = try await Self.dump(newPort, newDatabase)
        for table in Self.tables { #expect(got[table] == expected[table], "table \(table) differs after the restore") }
        // The token key (both copies) is the old cluster's; the new cluster's own secrets and configs stayed.
        #expect(try String(contentsOfFile: fresh.path(Paths.jwtKey), encoding: .utf8) == oldKey)
        #expect(try String(contentsOfFile: fresh.path(ClusterPaths.jwtKeyRootCopy), encoding: .utf8) == oldKey)
        #expect(try untouched.map { try Data(contentsOf: URL(fileURLWithPath: fresh.path($0))) } == before)

        // The new cluster's server, with the restored key: the old session works, every attachment comes back whole.
        let newServer = try await InProcessServer(database: newDatabase, port: newPort, user: newUser, jwtKeyFile: fresh.path(Paths.jwtKey), dataDir: fresh.path(Paths.data))
        do {
            let client = try IMClient(baseURL: newServer.baseURL, deviceName: "test")
            // The access token alone (no refresh token, whose rows the restore brought back and which would get a
            // new pair under any key): it was signed by the old cluster's key.
            var accessOnly = session
            accessOnly.refreshToken = ""
            await client.setSession(accessOnly)
            let directHistory = try await client.history(direct, limit: 200).messages
            let groupHistory = try await client.history(group, limit: 200).messages
            #expect(directHistory.filter { $0.kind == .text }.count + groupHistory.filter { $0.kind == .text }.count == 40)
            #expect(directHistory.contains { $0.text == "hello 1 — ünïcödé 🐦 \"quoted\"\n1" })
            for (id, bytes) in attachments {
                let download = try await client.downloadAttachment(id)
                #expect(download.data == bytes, "attachment \(id) differs after the restore")
            }
            try? await client.shutdown()
        } catch {
            await newServer.stop()
            throw error
        }
        await newServer.stop()
    }

    // MARK: Refusals

    /// A damaged archive (cut short, or one byte of the dump changed) is refused, and the target cluster keeps its
    /// database and its key.
    @Test func aTruncatedOrAlteredClusterBackupIsRefusedAndTheTargetKeepsEverything() async throws {
        let (file, source) = try await Self.smallClusterBackup()
        defer { source.remove() }
        let (target, port, database, _) = try await Self.freshCluster(withMessages: true)
        defer { target.remove() }
        let before = try await Self.dump(port, database)
        let etcBefore = try target.tree(Paths.etc)

        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        let truncated = file + ".truncated.tar.gz"
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        let altered = file + ".altered.tar.gz"
        try Fixture.tamper(file, member: "database/warbler.pgdump", into: altered)
        for (damaged, code) in [(truncated, BackupError.Code.invalidArchive), (altered, .checksumMismatch)] {
            await expectBackupError(code) {
                _ = try await RestoreEngine().restore(RestoreRequest(
                    layout: target.layout, file: damaged, passphrase: "cluster pass", force: true, activity: Activity(evidence: nil),
                    clusterView: FakeClusterView(nodeName: "n1", members: [Self.n1])))
            }
            #expect(try await Self.dump(port, database) == before, "\(damaged): the database changed")
            #expect(try target.tree(Paths.etc) == etcBefore, "\(damaged): /etc/warbler changed")
        }
    }

    /// A cluster's backup is refused on a single host and a single host's on a cluster member, each saying what it is.
    @Test func theWrongKindOfBackupIsRefusedEitherWay() async throws {
        let (clusterFile, source) = try await Self.smallClusterBackup()
        defer { source.remove() }

        // A single host on PostgreSQL (no member file).
        let (port, database) = try await PostgresTestServer.shared.freshDatabase()
        let single = try StagedHost("single")
        defer { single.remove() }
        try single.writeEtc(storage: """
              driver: postgres
              postgres_host: \(PostgresTestServer.host)
              postgres_port: \(port)
              postgres_user: \(PostgresTestServer.user)
              postgres_database: \(database)

            """)
        let driver = try await Self.connect(port, database)
        try await Migrations.apply(driver, now: 1_000)
        try await driver.close()
        let etcBefore = try single.tree(Paths.etc)
        let e1 = await expectBackupError(.wrongKind) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: single.layout, file: clusterFile, passphrase: "cluster pass",
                                                                 activity: Activity(evidence: nil)))
        }
        #expect(e1?.message.contains("is a cluster's backup") == true && e1?.message.contains("--cluster-init") == true)
        #expect(try single.tree(Paths.etc) == etcBefore)

        // That host's backup onto a cluster member.
        let singleBackup = try await BackupEngine().create(BackupRequest(layout: single.layout, config: try single.config(), passphrase: "p"))
        #expect(singleBackup.manifest.format == BackupManifest.currentFormat && singleBackup.manifest.cluster == nil)
        let (target, tPort, tDatabase, _) = try await Self.freshCluster()
        defer { target.remove() }
        let before = try await Self.dump(tPort, tDatabase)
        let e2 = await expectBackupError(.wrongKind) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: target.layout, file: singleBackup.file, passphrase: "p",
                                                                 activity: Activity(evidence: nil),
                                                                 clusterView: FakeClusterView(nodeName: "n1", members: [Self.n1])))
        }
        #expect(e2?.message.contains("is a single host's backup") == true)
        #expect(try await Self.dump(tPort, tDatabase) == before)
    }

    /// The restore runs on a cluster founded a moment ago: alone, its IM server stopped, its database without
    /// messages (unless --force).
    @Test func aClusterRestoreNeedsTheOnlyMemberItsServerStoppedAndNoMessagesUnlessForced() async throws {
        let (file, source) = try await Self.smallClusterBackup()
        defer { source.remove() }
        let (target, port, database, _) = try await Self.freshCluster(withMessages: true)
        defer { target.remove() }
        let before = try await Self.dump(port, database)
        func restore(force: Bool = false, running: String? = nil, members: [ClusterMember] = [Self.n1], unreachable: Bool = false) async throws {
            _ = try await RestoreEngine().restore(RestoreRequest(
                layout: target.layout, file: file, passphrase: "cluster pass", force: force, activity: Activity(evidence: running),
                clusterView: FakeClusterView(nodeName: "n1", members: members, unreachable: unreachable)))
        }
        let others = await expectBackupError(.otherMembers) { try await restore(force: true, members: [Self.n1, Self.m2]) }
        #expect(others?.message.contains("m2") == true)
        await expectBackupError(.otherMembers) { try await restore(force: true, unreachable: true) }
        await expectBackupError(.serverRunning) { try await restore(force: true, running: "the unit warbler-server.service is active") }
        await expectBackupError(.targetHasData) { try await restore() }
        #expect(try await Self.dump(port, database) == before, "a refused restore changed the database")

        // With --force it replaces them, and drops the old cluster's join tokens.
        try await restore(force: true)
        let after = try await Self.dump(port, database)
        #expect(after["messages"]?.count == 12)
    }

    /// A member's own backup in its own cluster (what a rollback restores) puts that member back as a host's restore
    /// does, whatever other members there are: the database, and its /etc/warbler with its cluster files.
    @Test func aMembersOwnBackupInItsOwnClusterRestoresAsTheMembersState() async throws {
        let (file, host) = try await Self.smallClusterBackup()
        defer { host.remove() }
        let expected = try await Self.dump(try host.config().storage.postgresPort, try host.config().storage.postgresDatabase)
        try host.write(ClusterPaths.haproxyConfig, "global\n# changed since the backup\n", mode: 0o640)
        let restored = try await RestoreEngine().restore(RestoreRequest(
            layout: host.layout, file: file, passphrase: "cluster pass", force: true, migrate: false, activity: Activity(evidence: nil),
            clusterView: FakeClusterView(nodeName: "m1", members: [Self.m1, Self.m2, Self.m3])))
        #expect(restored.replaced.contains(host.path(Paths.etc)))
        #expect(try String(contentsOfFile: host.path(ClusterPaths.haproxyConfig), encoding: .utf8) == "global\n")
        #expect(try await Self.dump(try host.config().storage.postgresPort, try host.config().storage.postgresDatabase) == expected)
        // From another cluster (a new etcd id), the same file goes the fresh-cluster way, which refuses other members.
        await expectBackupError(.otherMembers) {
            _ = try await RestoreEngine().restore(RestoreRequest(
                layout: host.layout, file: file, passphrase: "cluster pass", force: true, activity: Activity(evidence: nil),
                clusterView: FakeClusterView(nodeName: "m1", id: "77", members: [Self.m1, Self.m2])))
        }
    }

    /// The daily unit runs as the service user: it cannot read root's cluster files, so its backup leaves
    /// /etc/warbler/cluster out (a restore never needs it) and records the cluster as the lock's snapshot says.
    @Test func anUnattendedClusterBackupLeavesTheClusterDirectoryOutAndUsesTheLocksSnapshot() async throws {
        let (port, database) = try await PostgresTestServer.shared.freshDatabase()
        let host = try Self.stageMember(Self.m2, port: port, database: database, jwtKey: Self.newJWTKey())
        defer { host.remove() }
        let driver = try await Self.connect(port, database)
        try await Migrations.apply(driver, now: 1_000)
        try await driver.close()
        let snapshot = BackupManifest.Cluster(id: "42", node: "m2", members: [Self.m1, Self.m2, Self.m3])
        try FileManager.default.createDirectory(atPath: host.path("/run"), withIntermediateDirectories: true)
        try ClusterSnapshotFile.write(snapshot, layout: host.layout)
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), unattended: true,
                                                                   clusterView: FakeClusterView(nodeName: "m2", members: [])))
        #expect(!result.manifest.entries.contains { $0.path.hasPrefix("etc/warbler/cluster") })
        #expect(result.manifest.entry("etc/warbler/secrets/jwt.key") != nil)
        #expect(result.manifest.cluster == snapshot)
    }
}

import Foundation
import IMServer
import IMStorage
import IMStoragePostgres
import Logging
import Testing
import WarblerTestSupport

/// What the server runs when it opens its database (`StorageFactory.openStorage`, as `ServerRuntime.open` calls
/// it): a cluster node leaves a contract migration for the upgrade's separate last step, a single node runs it.
@Suite struct ClusterOpenMigrationTests {
    /// This build's migrations and a newer release's two: an expand one, then a contract one that drops a table
    /// the previous release still reads.
    static let newer: [Migration] = Migrations.all + [
        Migration(version: Migrations.latest + 1, name: "grown", sqlite: ["CREATE TABLE grown (id INTEGER PRIMARY KEY)"],
                  postgres: ["CREATE TABLE grown (id BIGINT PRIMARY KEY)"], phase: .expand),
        Migration(version: Migrations.latest + 2, name: "shrunk", sqlite: ["DROP TABLE grown"], postgres: ["DROP TABLE grown"], phase: .contract),
    ]

    func config(_ backend: Backend, cluster: Bool) async throws -> (ServerConfig, cleanup: () -> Void) {
        var config = ServerConfig()
        let dir = NSTemporaryDirectory() + "warbler-open-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        config.storage.path = dir + "/warbler.db"
        if backend == .postgres {
            let (port, database) = try await PostgresTestServer.shared.freshDatabase()
            config.storage.driver = "postgres"
            config.storage.postgresHost = PostgresTestServer.host
            config.storage.postgresPort = port
            config.storage.postgresUser = PostgresTestServer.user
            config.storage.postgresDatabase = database
        }
        config.cluster.enabled = cluster
        return (config, { try? FileManager.default.removeItem(atPath: dir) })
    }

    func open(_ config: ServerConfig, _ migrations: [Migration] = Migrations.all) async throws -> Int {
        let store = try await StorageFactory.openStorage(config: config, logger: Logger(label: "test"), migrations: migrations)
        let v = try await Migrations.currentVersion(store.driver)
        try await store.close()
        return v
    }

    /// A cluster needs PostgreSQL (`cluster.enabled` is refused on SQLite), so the cluster case runs there.
    @Test func aClusterServerLeavesAPendingContractMigrationPending() async throws {
        let (config, cleanup) = try await config(.postgres, cluster: true)
        defer { cleanup() }
        // The previous release made the database.
        #expect(try await open(config) == Migrations.latest)
        // The new release's server starts on it: its expand migration runs, its contract one waits.
        #expect(try await open(config, Self.newer) == Migrations.latest + 1)
        #expect(try await open(config, Self.newer) == Migrations.latest + 1)
        // The upgrade's last step runs it.
        let store = try await StorageFactory.openStorage(config: config, logger: Logger(label: "test"))
        #expect(try await Migrations.apply(store.driver, now: 1, migrations: Self.newer, selection: .contract(through: nil)) == [Migrations.latest + 2])
        try await store.close()
    }

    /// A cluster node whose first connection reaches a read-only database (a standby behind a HAProxy that was just
    /// restarted) waits for it to become writable instead of exiting; a single node still fails at once.
    @Test func aClusterServerWaitsForADatabaseThatIsReadOnlyForAMoment() async throws {
        let (config, cleanup) = try await config(.postgres, cluster: true)
        defer { cleanup() }
        let admin = try await StorageFactory.openDriver(config: config, logger: Logger(label: "test"))
        func readOnly(_ on: Bool) async throws {
            try await admin.write { db in
                _ = try await db.query("SET TRANSACTION READ WRITE", [])
                _ = try await db.query("ALTER DATABASE \"\(config.storage.postgresDatabase)\" SET default_transaction_read_only = \(on ? "on" : "off")", [])
            }
        }
        try await readOnly(true)
        var single = config
        single.cluster.enabled = false
        await #expect(throws: PostgresServerError.self) { _ = try await open(single) }
        let started = ContinuousClock.now
        let writable = Task { try await Task.sleep(for: .seconds(2)); try await readOnly(false) }
        #expect(try await open(config) == Migrations.latest)
        #expect(ContinuousClock.now - started >= .seconds(2), "it waited for the database to become writable")
        try await writable.value
        try await admin.close()
    }

    /// A new cluster's database is empty: no older release runs on it, so its first server runs everything.
    @Test func aClusterServerOnAnEmptyDatabaseRunsEveryMigration() async throws {
        let (config, cleanup) = try await config(.postgres, cluster: true)
        defer { cleanup() }
        #expect(try await open(config, Self.newer) == Migrations.latest + 2)
    }

    /// A single node has no older release beside it: it runs its contract migrations when it opens the database.
    @Test(arguments: Backend.allCases)
    func aSingleNodeRunsItsContractMigrationsAtOpen(_ backend: Backend) async throws {
        let (config, cleanup) = try await config(backend, cluster: false)
        defer { cleanup() }
        #expect(try await open(config) == Migrations.latest)
        #expect(try await open(config, Self.newer) == Migrations.latest + 2)
    }
}

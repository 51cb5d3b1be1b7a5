import Foundation
import IMCore
import IMStorage
import IMStoragePostgres
import IMStorageSQLite
import Testing
import WarblerTestSupport

/// Migrations on a database several nodes share: one runner at a time, and a node tolerates a schema one additive
/// version newer than its own (a rolling upgrade migrated it first), on both backends.
@Suite struct MigrationRunnerTests {
    /// `count` separate drivers (as separate nodes would have) on one fresh, empty database.
    func withDrivers<T: Sendable>(_ backend: Backend, count: Int, _ body: ([any SQLDriver]) async throws -> T) async throws -> T {
        var drivers: [any SQLDriver] = []
        var directory: String?
        do {
            switch backend {
            case .sqlite:
                let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-sqlite-\(UUID().uuidString)").path
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                directory = dir
                for _ in 0..<count { drivers.append(try await SQLiteDriver.open(path: dir + "/warbler.db")) }
            case .postgres:
                let (port, database) = try await PostgresTestServer.shared.freshDatabase()
                for _ in 0..<count {
                    drivers.append(try await PostgresDriver.connect(host: PostgresTestServer.host, port: port,
                                                                    username: PostgresTestServer.user, password: nil,
                                                                    database: database, maxConnections: 4))
                }
            }
            let result = try await body(drivers)
            for d in drivers { try await d.close() }
            if let directory { try? FileManager.default.removeItem(atPath: directory) }
            return result
        } catch {
            for d in drivers { try? await d.close() }
            if let directory { try? FileManager.default.removeItem(atPath: directory) }
            throw error
        }
    }

    /// A statement that takes a noticeable moment, so that concurrent runners overlap.
    static func slow(_ backend: Backend) -> String {
        switch backend {
        case .postgres: "SELECT pg_sleep(0.3)"
        case .sqlite: "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 300000) SELECT count(*) FROM r"
        }
    }

    /// This build's migrations and one more from a newer build.
    static func withNewer(_ backend: Backend, additive: Bool, count: Int = 1) -> [Migration] {
        Migrations.all + (1...count).map { i in
            Migration(version: Migrations.latest + i, name: "newer \(i)",
                      sqlite: ["CREATE TABLE newer_\(i) (id INTEGER PRIMARY KEY, note TEXT)"],
                      postgres: ["CREATE TABLE newer_\(i) (id BIGINT PRIMARY KEY, note TEXT)"], phase: additive ? .expand : .contract)
        }
    }

    @Test(arguments: Backend.allCases)
    func concurrentRunnersApplyEachMigrationExactlyOnce(_ backend: Backend) async throws {
        let migrations = Migrations.all + [
            Migration(version: Migrations.latest + 1, name: "slow",
                      sqlite: [Self.slow(backend), "CREATE TABLE probe (id INTEGER PRIMARY KEY)"],
                      postgres: [Self.slow(backend), "CREATE TABLE probe (id BIGINT PRIMARY KEY)"], phase: .expand),
        ]
        // Two on SQLite: in one process its connections share a small thread pool, and a writer waiting out
        // another's lock (busy_timeout) holds a thread; separate processes, the real case, have no such limit.
        try await withDrivers(backend, count: backend == .sqlite ? 2 : 4) { drivers in
            let results = try await withThrowingTaskGroup(of: [Int].self) { group in
                for d in drivers { group.addTask { try await Migrations.apply(d, now: 1_000, migrations: migrations) } }
                var all: [[Int]] = []
                for try await r in group { all.append(r) }
                return all
            }
            let applied = results.flatMap { $0 }
            #expect(applied.sorted() == migrations.map(\.version), "each version applied once in all: \(results)")
            if backend == .postgres {
                // Under the advisory lock the first runner does all of it; SQLite's writers may take turns.
                #expect(results.filter { !$0.isEmpty }.count == 1, "one runner migrated, the others found it done: \(results)")
            }
            let rows = try await drivers[0].read { db in try await db.query("SELECT version FROM schema_migrations ORDER BY version") }
            #expect(try rows.map { Int(try $0.int("version")) } == migrations.map(\.version))
            // Every node can run afterwards, and finds nothing left to do.
            for d in drivers { #expect(try await Migrations.apply(d, now: 2_000, migrations: migrations).isEmpty) }
        }
    }

    @Test(arguments: Backend.allCases)
    func aSchemaOneAdditiveVersionNewerIsAccepted(_ backend: Backend) async throws {
        try await withDrivers(backend, count: 2) { drivers in
            let (newer, older) = (drivers[0], drivers[1])
            #expect(try await Migrations.apply(newer, now: 1_000, migrations: Self.withNewer(backend, additive: true)).last == Migrations.latest + 1)
            #expect(try await Migrations.apply(older, now: 2_000).isEmpty)
            #expect(try await Migrations.currentVersion(older) == Migrations.latest + 1)
            // This build's statements work on it.
            let store = SQLStore(driver: older)
            let alice = try await store.createUser(username: "alice", passwordHash: "h", displayName: "Alice", admin: false, now: 1)
            #expect(try await store.user(id: alice.id)?.profile.username == "alice")
        }
    }

    /// The real pair a rolling upgrade to this build makes: the previous release's migrations (this build's less
    /// its last) start on the database this build migrated, and run on it exactly when that last migration is an
    /// expand one; the previous build's statements then work on it alongside this build's.
    @Test(arguments: Backend.allCases)
    func thePreviousReleaseRunsOnThisSchemaWhenItsLastMigrationExpands(_ backend: Backend) async throws {
        try await withDrivers(backend, count: 2) { drivers in
            let (current, previous) = (drivers[0], drivers[1])
            try await Migrations.apply(current, now: 1_000)
            let last = Migrations.all.last!
            if last.phase == .expand {
                #expect(try await Migrations.apply(previous, now: 2_000, migrations: Array(Migrations.all.dropLast())).isEmpty)
                let old = SQLStore(driver: previous), new = SQLStore(driver: current)
                let alice = try await old.createUser(username: "alice", passwordHash: "h", displayName: "Alice", admin: false, now: 1)
                #expect(try await new.user(id: alice.id)?.profile.username == "alice")
                let bob = try await new.createUser(username: "bob", passwordHash: "h", displayName: "Bob", admin: false, now: 2)
                #expect(try await old.user(id: bob.id)?.profile.username == "bob")
            } else {
                let why = try await refusal { try await Migrations.apply(previous, now: 2_000, migrations: Array(Migrations.all.dropLast())) }
                #expect(why.contains("not additive"), "\(why)")
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func aSchemaOneNonAdditiveVersionNewerIsRefused(_ backend: Backend) async throws {
        try await withDrivers(backend, count: 1) { drivers in
            try await Migrations.apply(drivers[0], now: 1_000, migrations: Self.withNewer(backend, additive: false))
            let why = try await refusal { try await Migrations.apply(drivers[0], now: 2_000) }
            #expect(why.contains("schema version \(Migrations.latest + 1)") && why.contains("not additive"), "\(why)")
            #expect(why.contains("newer Warbler release"), "says what to do: \(why)")
        }
    }

    @Test(arguments: Backend.allCases)
    func aSchemaTwoVersionsNewerIsRefusedEvenWhenAdditive(_ backend: Backend) async throws {
        try await withDrivers(backend, count: 1) { drivers in
            try await Migrations.apply(drivers[0], now: 1_000, migrations: Self.withNewer(backend, additive: true, count: 2))
            let why = try await refusal { try await Migrations.apply(drivers[0], now: 2_000) }
            #expect(why.contains("schema version \(Migrations.latest + 2)") && why.contains("2 versions newer"), "\(why)")
        }
    }

    /// A database migrated by a build from before `additive` was recorded gets the column, with its old rows
    /// counted as not additive, and carries on.
    @Test(arguments: Backend.allCases)
    func aMigrationsTableWithoutTheAdditiveColumnGetsIt(_ backend: Backend) async throws {
        try await withDrivers(backend, count: 1) { drivers in
            let driver = drivers[0]
            let bigint = backend == .sqlite ? "INTEGER" : "BIGINT"
            try await driver.write { db in
                try await db.query("CREATE TABLE schema_migrations (version \(bigint) PRIMARY KEY, name TEXT NOT NULL, applied_at \(bigint) NOT NULL)")
                return ()
            }
            let first = Array(Migrations.all.prefix(1))
            // As the older build did it: its statements, then the row without the column.
            try await driver.write { db in
                for sql in (backend == .sqlite ? first[0].sqlite : first[0].postgres) { try await db.query(sql) }
                try await db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, 'initial', 1)")
                return ()
            }
            #expect(try await Migrations.apply(driver, now: 2_000) == Array(Migrations.all.dropFirst().map(\.version)))
            let rows = try await driver.read { db in try await db.query("SELECT version, additive FROM schema_migrations ORDER BY version") }
            #expect(rows.map { $0.bool("additive") } == [false] + Migrations.all.dropFirst().map(\.additive))
        }
    }

    /// This build's migrations, then a newer release's: expand, expand, contract (drops what the previous release
    /// reads), expand.
    static func upgradeMigrations() -> [Migration] {
        let n = Migrations.latest
        func m(_ i: Int, _ phase: Migration.Phase, _ sqlite: String, _ postgres: String) -> Migration {
            Migration(version: n + i, name: "newer \(i)", sqlite: [sqlite], postgres: [postgres], phase: phase)
        }
        return Migrations.all + [
            m(1, .expand, "CREATE TABLE grown_a (id INTEGER PRIMARY KEY)", "CREATE TABLE grown_a (id BIGINT PRIMARY KEY)"),
            m(2, .expand, "CREATE TABLE grown_b (id INTEGER PRIMARY KEY)", "CREATE TABLE grown_b (id BIGINT PRIMARY KEY)"),
            m(3, .contract, "DROP TABLE grown_a", "DROP TABLE grown_a"),
            m(4, .expand, "CREATE TABLE grown_c (id INTEGER PRIMARY KEY)", "CREATE TABLE grown_c (id BIGINT PRIMARY KEY)"),
        ]
    }

    func tables(_ driver: any SQLDriver, _ backend: Backend) async throws -> Set<String> {
        let sql = backend == .sqlite ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'grown_%'"
            : "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'grown_%'"
        return Set(try await driver.read { db in try await db.query(sql) }.map { try $0.text("name") })
    }

    /// A cluster upgrade's two runs: expand-only stops before the first contract migration (leaving it and what
    /// follows pending), contract-only then runs the rest; each refuses to run out of turn.
    @Test(arguments: Backend.allCases)
    func expandOnlyStopsBeforeTheFirstContractMigrationAndContractOnlyRunsTheRest(_ backend: Backend) async throws {
        try await withDrivers(backend, count: 1) { drivers in
            let db = drivers[0], n = Migrations.latest, migrations = Self.upgradeMigrations()
            try await Migrations.apply(db, now: 1_000)
            // Contract before expand: refused, nothing changed.
            let early = try await refusal { try await Migrations.apply(db, now: 1_500, migrations: migrations, selection: .contract(through: nil)) }
            #expect(early.contains("expand one"), "\(early)")
            #expect(try await Migrations.currentVersion(db) == n)
            // Expand through the first only, then through the newest: stops before the contract one.
            #expect(try await Migrations.apply(db, now: 2_000, migrations: migrations, selection: .expand(through: n + 1)) == [n + 1])
            #expect(try await Migrations.apply(db, now: 2_500, migrations: migrations, selection: .expand(through: nil)) == [n + 2])
            #expect(try await Migrations.apply(db, now: 3_000, migrations: migrations, selection: .expand(through: nil)).isEmpty)
            #expect(try await tables(db, backend) == ["grown_a", "grown_b"])
            #expect(try await Migrations.currentVersion(db) == n + 2)
            // A `through` beyond this build's migrations is refused.
            let beyond = try await refusal { try await Migrations.apply(db, now: 3_500, migrations: migrations, selection: .contract(through: n + 9)) }
            #expect(beyond.contains("reach only \(n + 4)"), "\(beyond)")
            // Contract through the contract one, then the rest (the expand one after it comes with the contract run).
            #expect(try await Migrations.apply(db, now: 4_000, migrations: migrations, selection: .contract(through: n + 3)) == [n + 3])
            #expect(try await tables(db, backend) == ["grown_b"])
            #expect(try await Migrations.apply(db, now: 5_000, migrations: migrations, selection: .expand(through: nil)) == [n + 4])
            #expect(try await Migrations.currentVersion(db) == n + 4)
            let rows = try await db.read { db in try await db.query("SELECT version, additive FROM schema_migrations WHERE version > $1 ORDER BY version", [.int(Int64(n))]) }
            #expect(rows.map { $0.bool("additive") } == [true, true, false, true])
        }
    }

    /// A cluster node opening the database runs the pending expand migrations and leaves a contract one pending,
    /// except on an empty database, where no older release runs.
    @Test(arguments: Backend.allCases)
    func aClusterOpenLeavesContractMigrationsPendingExceptOnAnEmptyDatabase(_ backend: Backend) async throws {
        try await withDrivers(backend, count: 1) { drivers in
            let existing = drivers[0]
            let n = Migrations.latest, migrations = Self.upgradeMigrations()
            try await Migrations.apply(existing, now: 1_000)
            #expect(try await Migrations.apply(existing, now: 2_000, migrations: migrations, selection: .clusterOpen) == [n + 1, n + 2])
            #expect(try await Migrations.currentVersion(existing) == n + 2)
            #expect(try await tables(existing, backend) == ["grown_a", "grown_b"])
            // `.all` (a single node) runs the contract one too.
            #expect(try await Migrations.apply(existing, now: 3_000, migrations: migrations, selection: .all) == [n + 3, n + 4])
        }
        try await withDrivers(backend, count: 1) { drivers in
            let migrations = Self.upgradeMigrations()
            let applied = try await Migrations.apply(drivers[0], now: 1_000, migrations: migrations, selection: .clusterOpen)
            #expect(applied == migrations.map(\.version))
        }
    }

    func refusal(_ body: () async throws -> Void) async throws -> String {
        do {
            try await body()
        } catch let StorageError.migration(why) {
            return why
        }
        Issue.record("a newer schema was accepted")
        return ""
    }
}

/// Branches that each add a migration can merge them out of order; the runner applies them in array order.
@Suite struct MigrationOrderTests {
    @Test func migrationsAreListedOncePerVersionInAscendingOrder() {
        let versions = Migrations.all.map(\.version)
        #expect(versions == Array(1...versions.count))
        #expect(Migrations.latest == versions.count)
    }
}

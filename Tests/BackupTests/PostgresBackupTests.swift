import Backup
import Foundation
import IMStorage
import IMStoragePostgres
import Installer
import Testing
import WarblerTestSupport

@Suite struct PostgresBackupTests {
    @Test func pgDumpBackupWipeRestoreGivesBackEveryMessageAndAttachment() async throws {
        let (port, database) = try await PostgresTestServer.shared.freshDatabase()
        let host = try StagedHost("pg")
        defer { host.remove() }
        // The password travels in a file under /etc/warbler/secrets (the test server trusts loopback, so any works).
        try host.writeEtc(storage: """
              driver: postgres
              postgres_host: \(PostgresTestServer.host)
              postgres_port: \(port)
              postgres_user: \(PostgresTestServer.user)
              postgres_password_file: /etc/warbler/secrets/postgres-password
              postgres_database: \(database)

            """)
        try host.write("/etc/warbler/secrets/postgres-password", "not-needed-but-read\n", mode: 0o600)
        func connect() async throws -> PostgresDriver {
            try await PostgresDriver.connect(host: PostgresTestServer.host, port: port, username: PostgresTestServer.user,
                                             password: nil, database: database, maxConnections: 4)
        }
        let driver = try await connect()
        let expected: [String: [[String: SQLValue]]]
        do {
            try await Migrations.apply(driver, now: 1_000)
            try await Fixture.populate(SQLStore(driver: driver), host: host, messages: 80)
            expected = try await Fixture.dump(driver)
        } catch {
            try? await driver.close()
            throw error
        }
        #expect(expected["messages"]?.count == 80)
        let expectedEtc = try host.tree(Paths.etc)
        let expectedAttachments = try host.tree(Paths.data + "/attachments")

        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), passphrase: "pg pass"))
        #expect(result.manifest.backend == .postgres)
        #expect(result.manifest.schemaVersion == Migrations.latest)
        #expect(result.manifest.entry("database/warbler.pgdump") != nil)
        // A custom-format dump starts with PGDMP.
        let dump = try #require(try Fixture.member("database/warbler.pgdump", of: result.file))
        #expect(dump.prefix(5) == Data("PGDMP".utf8))

        // Wipe the database (every table), the config and secrets, the attachments.
        do {
            try await driver.write { db in
                try await db.query("DROP SCHEMA public CASCADE")
                try await db.query("CREATE SCHEMA public")
            }
            try await driver.close()
        } catch {
            try? await driver.close()
            throw error
        }
        // The live config and its password file stay (as after `warbler install` on a new host): a restore takes
        // every destination, the database's connection included, from the live install, never from the archive.
        let liveConfig = try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.config)))
        let livePassword = try Data(contentsOf: URL(fileURLWithPath: host.path("/etc/warbler/secrets/postgres-password")))
        for p in [Paths.etc, Paths.data + "/attachments"] { try FileManager.default.removeItem(atPath: host.path(p)) }
        try host.write(Paths.config, liveConfig, mode: 0o640)
        try host.write("/etc/warbler/secrets/postgres-password", livePassword, mode: 0o600)

        let restored = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, passphrase: "pg pass"))
        #expect(restored.migrationsApplied.isEmpty)
        let after = try await connect()
        let got: [String: [[String: SQLValue]]]
        do {
            got = try await Fixture.dump(after)
            try await after.close()
        } catch {
            try? await after.close()
            throw error
        }
        for table in Fixture.tables { #expect(got[table] == expected[table], "table \(table) differs after the restore") }
        #expect(try host.tree(Paths.etc) == expectedEtc)
        #expect(try host.tree(Paths.data + "/attachments") == expectedAttachments)

        // Restoring again over the now-populated database needs --force, and then replaces it in one transaction.
        await expectBackupError(.targetHasData) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, passphrase: "pg pass"))
        }
        _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, passphrase: "pg pass", force: true))
        let again = try await connect()
        let count = try await again.read { db in try await db.first("SELECT COUNT(*) AS n FROM messages")?.int("n") }
        try await again.close()
        #expect(count == 80)
    }

    @Test func aFailedPgRestoreLeavesTheFilesAsTheyWere() async throws {
        let (port, database) = try await PostgresTestServer.shared.freshDatabase()
        let host = try StagedHost("pgfail")
        defer { host.remove() }
        let storage = """
              driver: postgres
              postgres_host: \(PostgresTestServer.host)
              postgres_port: \(port)
              postgres_user: \(PostgresTestServer.user)
              postgres_database: \(database)

            """
        try host.writeEtc(storage: storage)
        let driver = try await PostgresDriver.connect(host: PostgresTestServer.host, port: port, username: PostgresTestServer.user,
                                                      password: nil, database: database, maxConnections: 2)
        try await Migrations.apply(driver, now: 1_000)
        try await driver.close()
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config()))
        // The database it names is gone by the time of the restore: pg_restore fails, the file swaps are undone.
        let (_, other) = try await PostgresTestServer.shared.freshDatabase()
        let admin = try await PostgresDriver.connect(host: PostgresTestServer.host, port: port, username: PostgresTestServer.user,
                                                     password: nil, database: other, maxConnections: 1)
        _ = try await admin.read { db in try await db.query("DROP DATABASE \(database) WITH (FORCE)") }
        try await admin.close()
        try host.write(Paths.config, "# the live config, which must survive\nstorage:\n\(storage)data_dir: /var/lib/warbler\n", mode: 0o640)
        let etcBefore = try host.tree(Paths.etc)
        let e = await expectBackupError(.database) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, force: true))
        }
        #expect(e != nil)
        #expect(try host.tree(Paths.etc) == etcBefore, "a failed restore changed /etc/warbler")
        let hidden = try FileManager.default.contentsOfDirectory(atPath: host.path("/etc")).filter { $0.hasPrefix(".") }
        #expect(hidden.isEmpty, "left behind: \(hidden)")
    }
}

import Foundation
import IMServer
import IMStorage
import IMStoragePostgres
import IMStorageSQLite
import Installer
import Logging
@testable import Monitoring
import Testing
import WarblerTestSupport

@Suite struct DatabaseCollectorTests {
    static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-mon-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func sqliteSizesAndCheckpointFromARealWALDatabase() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/warbler.db"
        let driver = try await SQLiteDriver.open(path: path)
        _ = try await Migrations.apply(driver, now: 0)
        let store = SQLStore(driver: driver)
        for i in 0..<20 {
            _ = try await store.createUser(username: "user\(i)", passwordHash: "x", displayName: "U", admin: false, now: 0)
        }
        var st = stat()
        #expect(stat(path, &st) == 0)
        var s = try await SQLiteCollector(path: path).collect()
        let l = ["path": path]
        #expect(s.value("warbler_sqlite_database_bytes", l) == Double(st.st_size))
        #expect(s.value("warbler_sqlite_last_checkpoint_timestamp_seconds", l) == Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
        let wal = try #require(s.value("warbler_sqlite_wal_bytes", l))
        #expect(wal > 0, "the writes sit in the WAL until a checkpoint")
        #expect(s.value("warbler_sqlite_wal_checkpoint_sequence", l) != nil)

        // A checkpoint moves the pages into the database file: its mtime (our "last checkpoint") moves, and a
        // TRUNCATE checkpoint empties the WAL.
        let before = try #require(s.value("warbler_sqlite_last_checkpoint_timestamp_seconds", l))
        try await Task.sleep(for: .milliseconds(20))
        _ = try await driver.write { db in try await db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'x', 0)") }
        _ = try await driver.read { db in try await db.query("PRAGMA wal_checkpoint(TRUNCATE)") }
        s = try await SQLiteCollector(path: path).collect()
        #expect(s.value("warbler_sqlite_wal_bytes", l) == 0)
        #expect((s.value("warbler_sqlite_last_checkpoint_timestamp_seconds", l) ?? 0) > before)
        try await store.close()

        // The database file gone: the collector fails, saying which file.
        let e = await #expect(throws: MonitoringError.self) { try await SQLiteCollector(path: dir + "/none.db").collect() }
        #expect(e?.description.contains(dir + "/none.db") == true)
    }

    @Test func walHeaderSequenceIsReadBigEndian() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var header: [UInt8] = [0x37, 0x7f, 0x06, 0x82, 0, 0x2d, 0xe2, 0x18, 0, 0, 0x10, 0, 0, 0, 0x01, 0x02]
        header += [UInt8](repeating: 0, count: 16)
        try Data(header).write(to: URL(fileURLWithPath: dir + "/a-wal"))
        #expect(SQLiteCollector.walCheckpointSequence(dir + "/a-wal") == 0x0102)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/b-wal"))
        #expect(SQLiteCollector.walCheckpointSequence(dir + "/b-wal") == nil)
        try Data(repeating: 0xff, count: 32).write(to: URL(fileURLWithPath: dir + "/c-wal"))
        #expect(SQLiteCollector.walCheckpointSequence(dir + "/c-wal") == nil)
    }

    @Test func postgresConnectionsSizeAndPrimaryReplicationAgainstARealServer() async throws {
        let (port, database) = try await PostgresTestServer.shared.freshDatabase()
        var settings = ServerConfig().storage
        settings.driver = "postgres"
        settings.postgresHost = PostgresTestServer.host
        settings.postgresPort = port
        settings.postgresUser = PostgresTestServer.user
        settings.postgresDatabase = database
        // A second session that sits idle, as a server's pool does.
        let other = try await PostgresDriver.connect(host: PostgresTestServer.host, port: port, username: PostgresTestServer.user,
                                                     password: nil, database: database, maxConnections: 1)
        _ = try await other.read { db in try await db.query("SELECT 1") }
        let collector = PostgresCollector(settings: settings, logger: Logger(label: "test"))
        let s = try await collector.collect()
        #expect(s.value("warbler_postgres_up") == 1)
        #expect(s.value("warbler_postgres_in_recovery") == 0)
        #expect(s.value("warbler_postgres_replicas") == 0)
        #expect((s.value("warbler_postgres_database_bytes", ["database": database]) ?? 0) > 1024.0 * 1024)
        #expect((s.value("warbler_postgres_max_connections") ?? 0) >= 10)
        // Our own query runs in an active backend; the other session is idle.
        #expect((s.value("warbler_postgres_connections", ["state": "active"]) ?? 0) >= 1)
        #expect((s.value("warbler_postgres_connections", ["state": "idle"]) ?? 0) >= 1)
        #expect(s.value("warbler_postgres_connections", ["state": "idle in transaction"]) != nil)
        #expect(s.series("warbler_postgres_replication_lag_seconds").isEmpty)
        // The connection is kept for the next scrape.
        #expect(try await collector.collect().value("warbler_postgres_up") == 1)
        await collector.shutdown()
        try await other.close()
        #expect(s.names.allSatisfy { Catalog.contains($0) })
    }

    @Test func postgresDownFailsTheCollectorWithTheAddress() async throws {
        var settings = ServerConfig().storage
        settings.driver = "postgres"
        settings.postgresHost = "127.0.0.1"
        settings.postgresPort = 1   // nothing listens on port 1
        let e = await #expect(throws: (any Error).self) {
            try await PostgresCollector(settings: settings, logger: Logger(label: "test")).collect()
        }
        #expect("\(e.map { "\($0)" } ?? "")".contains("127.0.0.1:1"))
    }
}

@Suite struct FileCollectorTests {
    @Test func tlsSecondsToExpiryOfTheConfiguredCertificate() async throws {
        let dir = try DatabaseCollectorTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let now = Date()
        let tls = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                     names: CertificateNames(dns: ["localhost"], ips: []), now: now)
        // A chain: the server's certificate first, then the CA's.
        try (tls.serverCertificatePEM + (tls.caCertificatePEM ?? "")).write(toFile: dir + "/server.crt", atomically: true, encoding: .utf8)
        let s = try await TLSCollector(paths: [dir + "/server.crt", ""], now: { now }).collect()
        let l = ["path": dir + "/server.crt"]
        #expect(s.value("warbler_tls_certificate_expiry_seconds", l) == tls.notAfter.timeIntervalSince(now))
        #expect(s.value("warbler_tls_certificate_not_after_timestamp_seconds", l) == tls.notAfter.timeIntervalSince1970)
        // The server certificate lives about 397 days, not the CA's ten years.
        #expect(abs((s.value("warbler_tls_certificate_expiry_seconds", l) ?? 0) - 397 * 86400) < 2.0 * 86400)
        // An unset path means no TLS: nothing to report.
        #expect(try await TLSCollector(paths: [""]).collect().names.isEmpty)

        try "not a certificate".write(toFile: dir + "/bad.crt", atomically: true, encoding: .utf8)
        let e = await #expect(throws: (any Error).self) { try await TLSCollector(paths: [dir + "/bad.crt"]).collect() }
        #expect("\(e.map { "\($0)" } ?? "")".contains(dir + "/bad.crt"))
        await #expect(throws: (any Error).self) { try await TLSCollector(paths: [dir + "/missing.crt"]).collect() }
    }

    @Test func backupAgeFromTheMarkerFile() async throws {
        let dir = try DatabaseCollectorTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let now = Date(timeIntervalSince1970: 1_750_000_000)
        let marker = dir + "/last-success.json"
        try #"{"finishedAt": "2025-06-12T15:06:40Z", "file": "/var/lib/warbler/backups/warbler-20250615.tar.gz", "bytes": 123456}"#
            .write(toFile: marker, atomically: true, encoding: .utf8)
        var s = try await BackupCollector(markerPath: marker, now: { now }).collect()
        #expect(s.value("warbler_backup_present") == 1)
        #expect(s.value("warbler_backup_last_success_timestamp_seconds") == 1_750_000_000.0 - 3 * 86400)
        #expect(s.value("warbler_backup_age_seconds") == 3.0 * 86400)
        #expect(s.value("warbler_backup_last_size_bytes") == 123456)

        try #"{"finishedAt": "2025-06-15T15:06:39.500Z", "file": "f", "bytes": 1}"#.write(toFile: marker, atomically: true, encoding: .utf8)
        s = try await BackupCollector(markerPath: marker, now: { now }).collect()
        #expect(abs((s.value("warbler_backup_age_seconds") ?? 0) - 0.5) < 0.001)

        // No marker: no backup yet. Only the timestamp is left out; the age is infinite so staleness rules fire.
        s = try await BackupCollector(markerPath: dir + "/none.json", now: { now }).collect()
        #expect(s.value("warbler_backup_present") == 0)
        #expect(s.value("warbler_backup_last_success_timestamp_seconds") == nil)
        #expect(s.value("warbler_backup_age_seconds") == .infinity)
        #expect(s.render().contains("warbler_backup_age_seconds +Inf\n"))

        for bad in [#"{"file": "f", "bytes": 1}"#, #"{"finishedAt": "yesterday", "file": "f", "bytes": 1}"#, "garbage"] {
            try bad.write(toFile: marker, atomically: true, encoding: .utf8)
            let e = await #expect(throws: MonitoringError.self) { try await BackupCollector(markerPath: marker).collect() }
            #expect(e?.description.contains(marker) == true)
        }
    }
}

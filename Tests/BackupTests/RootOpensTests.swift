import Foundation
import Glibc
import IMStorage
import IMStorageSQLite
import Logging
import Testing
@testable import Backup

/// What root opens in the service user's directory (the live SQLite database, its -wal and -shm) and hands to
/// pg_dump (the database's CA): never through a link, never another file by another name.
@Suite struct RootOpensTests {
    static let logger = Logger(label: "test")

    /// A directory with a database file in it (closed: no -wal or -shm left).
    static func database() async throws -> (dir: String, db: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("root-opens-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let db = dir + "/warbler.db"
        let driver = try await SQLiteDriver.open(path: db)
        try await Migrations.apply(driver, now: 1)
        try await driver.close()
        return (dir, db)
    }

    @Test func aLinkAnywhereInTheDatabasePathIsRefused() async throws {
        let (dir, db) = try await Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A directory link (a swap of a directory on the way) and a link as the file itself.
        let linkedDir = dir + "-link"
        #expect(symlink(dir, linkedDir) == 0)
        defer { unlink(linkedDir) }
        #expect(symlink(db, dir + "/other.db") == 0)
        for path in [linkedDir + "/warbler.db", dir + "/other.db"] {
            await #expect(throws: BackupError.self, "\(path)") {
                await (try await Database.openLiveSQLite(path)).close()
            }
            await #expect(throws: BackupError.self, "\(path)") {
                try await Database.snapshotSQLite(source: path, destination: dir + "/copy-\(UUID().uuidString).db", logger: Self.logger)
            }
        }
        // The real path opens.
        await (try await Database.openLiveSQLite(db)).close()
    }

    @Test func aPlantedSidecarIsRefusedAndTheFileItNamesIsUntouched() async throws {
        let (dir, db) = try await Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        let content = Data("root's file, not SQLite's index\n".utf8)
        #expect(FileManager.default.createFile(atPath: victim, contents: content))
        // A hard link as the -shm: SQLite would truncate and write it, and root would then hand it over.
        #expect(link(victim, db + "-shm") == 0)
        await #expect(throws: BackupError.self) {
            try await Database.snapshotSQLite(source: db, destination: dir + "/copy.db", logger: Self.logger)
        }
        await #expect(throws: BackupError.self) { _ = try await Database.sqliteHasMessages(db, logger: Self.logger) }
        #expect(FileManager.default.contents(atPath: victim) == content)
        unlink(db + "-shm")
        // A symbolic link as the -wal.
        #expect(symlink(victim, db + "-wal") == 0)
        await #expect(throws: BackupError.self) {
            try await Database.snapshotSQLite(source: db, destination: dir + "/copy.db", logger: Self.logger)
        }
        #expect(FileManager.default.contents(atPath: victim) == content)
        unlink(db + "-wal")
        // Nothing planted: the snapshot is taken.
        try await Database.snapshotSQLite(source: db, destination: dir + "/copy.db", logger: Self.logger)
        #expect(!(try await Database.sqliteHasMessages(db, logger: Self.logger)))
    }

    @Test(.enabled(if: geteuid() == 0)) func aSidecarOfAnotherOwnerIsRefusedAndRootsOwnGoToTheDatabaseOwner() async throws {
        let (dir, db) = try await Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let nobody: uid_t = 65534
        #expect(chown(db, nobody, gid_t(nobody)) == 0)
        // A -wal that is not the database owner's (root's here, as a file another user left).
        #expect(FileManager.default.createFile(atPath: db + "-wal", contents: Data()))
        await #expect(throws: BackupError.self) {
            try await Database.snapshotSQLite(source: db, destination: dir + "/copy.db", logger: Self.logger)
        }
        unlink(db + "-wal")
        // No server: root's open makes the -wal and -shm, and SQLite gives them to the database's owner, so the
        // server can open them when it starts.
        let connection = try await Database.openLiveSQLite(db)
        _ = try await connection.query("SELECT count(*) AS n FROM messages")
        var made = 0
        for s in ["-wal", "-shm"] {
            var st = stat()
            if lstat(db + s, &st) == 0 { made += 1; #expect(st.st_uid == nobody && st.st_gid == gid_t(nobody), "\(s)") }
        }
        #expect(made > 0, "a WAL database's first read makes its -shm")
        await connection.close()
        // The same through the backup's snapshot.
        for s in ["-wal", "-shm"] { unlink(db + s) }
        try await Database.snapshotSQLite(source: db, destination: dir + "/copy.db", logger: Self.logger)
        for s in ["-wal", "-shm"] { var st = stat(); if lstat(db + s, &st) == 0 { #expect(st.st_uid == nobody, "\(s)") } }
    }

    @Test(.enabled(if: geteuid() == 0)) func rootsOwnLinkInADirectoryOnlyRootCanWriteIsFollowed() async throws {
        let (dir, db) = try await Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // /var on another disk: root's link, in a directory only root can write.
        let parent = dir + "-parent"
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(atPath: parent) }
        #expect(symlink(dir, parent + "/data") == 0)
        await (try await Database.openLiveSQLite(parent + "/data/warbler.db")).close()
        try await Database.snapshotSQLite(source: parent + "/data/warbler.db", destination: parent + "/copy.db", logger: Self.logger)
        #expect(try await Database.integrityCheck(parent + "/copy.db", logger: Self.logger) == "ok")
        #expect(db == dir + "/warbler.db")
        // The same link in a directory others can write could have been anyone's: refused.
        #expect(chmod(parent, 0o777) == 0)
        await #expect(throws: BackupError.self) { await (try await Database.openLiveSQLite(parent + "/data/warbler.db")).close() }
    }

    @Test func aRestoreStageIsMigratedInPlaceAndNeverThroughALinkPutInItsStead() async throws {
        let (dir, db) = try await Self.database()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let stage = try Stage(besides: db, tag: "restore")
        let bytes = try #require(FileManager.default.contents(atPath: db))
        let fd = try stage.createFile("warbler.db")
        try bytes.withUnsafeBytes { try Files.writeAll(fd: fd, path: stage.path + "/warbler.db", $0) }
        close(fd)
        #expect(try await Database.migrateSQLite(in: stage, name: "warbler.db", logger: Self.logger) == [])
        #expect(stage.contains("warbler.db") && !stage.contains("warbler.db-wal") && !stage.contains("warbler.db-shm"))
        // The stage renamed away and a link to another directory put in its place: nothing is opened through it.
        let elsewhere = dir + "/elsewhere"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: false)
        #expect(rename(stage.path, dir + "/moved") == 0)
        #expect(symlink(elsewhere, stage.path) == 0)
        await #expect(throws: BackupError.self) { _ = try await Database.migrateSQLite(in: stage, name: "warbler.db", logger: Self.logger) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
    }

    @Test(.enabled(if: geteuid() == 0)) func theDatabaseCAMustBeRootsInRootsDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("root-ca-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ca = dir + "/ca.crt"
        #expect(FileManager.default.createFile(atPath: ca, contents: Data("-----BEGIN CERTIFICATE-----\n".utf8), attributes: [.posixPermissions: 0o644]))
        try Database.Postgres.checkRootCA(ca)
        // A link to it (the service user's, or anyone's) is refused, though the file it names is fine.
        #expect(symlink(ca, dir + "/link.crt") == 0)
        #expect(throws: BackupError.self) { try Database.Postgres.checkRootCA(dir + "/link.crt") }
        // Writable by others, or owned by someone else.
        #expect(chmod(ca, 0o666) == 0)
        #expect(throws: BackupError.self) { try Database.Postgres.checkRootCA(ca) }
        #expect(chmod(ca, 0o644) == 0 && chown(ca, 65534, 65534) == 0)
        #expect(throws: BackupError.self) { try Database.Postgres.checkRootCA(ca) }
        #expect(chown(ca, 0, 0) == 0)
        // In a directory someone else can write (and so swap the file in).
        #expect(chmod(dir, 0o777) == 0)
        #expect(throws: BackupError.self) { try Database.Postgres.checkRootCA(ca) }
        #expect(chmod(dir, 0o755) == 0)
        try Database.Postgres.checkRootCA(ca)
    }
}

import Backup
import Foundation
import Glibc
import Installer
import Testing

/// Root writes archives, `last-success.json` and deletes old backups in the backup directory, which the service
/// user can write: only through one descriptor of it, opened without following links and owned by root or the
/// service user. A link or a foreign directory put there is refused before anything is written or deleted.
@Suite struct BackupDirectoryTests {
    /// A directory outside the install holding what a link could point root at: an "old backup" and a marker.
    static func decoy(_ host: StagedHost) throws -> (dir: String, files: [String: Data]) {
        let dir = host.root + "/elsewhere"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let files = ["warbler-h-20200101T000000Z.tar.gz": Data("someone's file".utf8),
                     "warbler-pre-upgrade-0.9.0-to-1.0.0-20200101T000000Z.tar.gz": Data("another".utf8),
                     LastSuccess.fileName: Data("not yours".utf8)]
        for (name, data) in files {
            try data.write(to: URL(fileURLWithPath: dir + "/" + name))
            var times = [timespec(tv_sec: 1_000, tv_nsec: 0), timespec(tv_sec: 1_000, tv_nsec: 0)]
            #expect(utimensat(AT_FDCWD, dir + "/" + name, &times, 0) == 0)
        }
        return (dir, files)
    }

    static func contents(_ dir: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            out[name] = FileManager.default.contents(atPath: dir + "/" + name) ?? Data("(unreadable)".utf8)
        }
        return out
    }

    /// The service user replaced the backup directory with a link: the old code wrote the archive and the marker
    /// there and deleted the "old backup" it found.
    @Test func aBackupDirectoryThatIsALinkIsRefused() async throws {
        guard geteuid() == 0 else { return }
        let host = try await SQLiteBackupTests.populatedHost("dirlink", messages: 2)
        defer { host.remove() }
        let config = try host.config()
        let backups = host.path(config.backup.directory)
        let (elsewhere, files) = try Self.decoy(host)
        try? FileManager.default.removeItem(atPath: backups)
        #expect(symlink(elsewhere, backups) == 0)
        // As on an install: the data directory (where the link is) is the service user's (65534 here).
        #expect(chown(host.path(Paths.data), 65534, 65534) == 0)
        #expect(lchown(backups, 65534, 65534) == 0)

        await #expect { _ = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h")) } throws: { e in
            "\(e)".contains("refusing the backup directory") && "\(e)".contains("is a link") && "\(e)".contains("nothing was written or deleted")
        }
        // The pre-upgrade backup goes there by --output too.
        await #expect(throws: BackupError.self) {
            _ = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, output: backups + "/warbler-pre-upgrade-x.tar.gz", hostname: "h"))
        }
        #expect(throws: BackupError.self) { try Retention.apply(directory: backups, keep: 1) }
        #expect(throws: BackupError.self) { try Retention.prunePreUpgrade(directory: backups, keeping: backups + "/warbler-pre-upgrade-keep.tar.gz") }
        #expect(try Self.contents(elsewhere) == files)
    }

    /// A link further up the path is opened one component at a time: followed where only root could have made it
    /// (/var on another disk), refused where the service user could have.
    @Test func aLinkAboveTheBackupDirectoryIsFollowedOnlyWhereOnlyRootCouldHaveMadeIt() async throws {
        guard geteuid() == 0 else { return }
        let host = try await SQLiteBackupTests.populatedHost("parentlink", messages: 2)
        defer { host.remove() }
        var config = try host.config()
        let (elsewhere, files) = try Self.decoy(host)
        let srv = host.path("/srv")
        try FileManager.default.createDirectory(atPath: srv, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        #expect(symlink(host.root + "/", srv + "/link") == 0)
        config.backup.directory = "/srv/link/elsewhere"
        // Root's link in root's directory: followed.
        let made = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 0, hostname: "h"))
        #expect(FileManager.default.fileExists(atPath: elsewhere + "/" + (made.file as NSString).lastPathComponent))
        let now = try Self.contents(elsewhere)

        // The same link in a directory the service user owns (it could have swapped it): refused.
        #expect(chown(srv, 65534, 65534) == 0)
        await #expect { _ = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h")) } throws: { e in
            "\(e)".contains("/srv/link") && "\(e)".contains("is a link someone other than root could have made")
        }
        #expect(try Self.contents(elsewhere) == now)
        #expect(files.allSatisfy { now[$0.key] != nil })
    }

    /// A backup directory owned by someone who is neither root nor the service user (uid 4242 here), or one others
    /// may write, is not root's to act in.
    @Test func aBackupDirectoryOwnedBySomeoneElseIsRefused() async throws {
        guard geteuid() == 0 else { return }
        let host = try await SQLiteBackupTests.populatedHost("dirowner", messages: 2)
        defer { host.remove() }
        let config = try host.config()
        let backups = host.path(config.backup.directory)
        try FileManager.default.createDirectory(atPath: backups, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        #expect(chown(backups, 4242, 4242) == 0)
        await #expect { _ = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h")) } throws: { e in
            "\(e)".contains("owned by uid 4242") && "\(e)".contains("chown/chmod")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: backups).isEmpty)

        #expect(chown(backups, 0, 0) == 0)
        #expect(chmod(backups, 0o777) == 0)
        await #expect { _ = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h")) } throws: { e in
            "\(e)".contains("writable by no one else")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: backups).isEmpty)

        // Fixed as the message says, the backup is written, and retention works through the descriptor.
        #expect(chmod(backups, 0o700) == 0)
        let first = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h",
                                                                  now: Date(timeIntervalSince1970: 1_800_000_000)))
        let second = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h",
                                                                   now: Date(timeIntervalSince1970: 1_800_086_400)))
        #expect(second.removed == [first.file])
        let names = try FileManager.default.contentsOfDirectory(atPath: backups).sorted()
        #expect(names == [LastSuccess.fileName, (second.file as NSString).lastPathComponent].sorted())
        let marker = try JSONDecoder().decode(LastSuccess.self, from: Data(contentsOf: URL(fileURLWithPath: backups + "/" + LastSuccess.fileName)))
        #expect(marker.file == second.file)
        #expect(marker.bytes == second.bytes)
    }

    /// A single host's PostgreSQL password file is one the service user may keep: root reads it without following a
    /// link (the old code read the link's target and sent it to the database server as the password).
    @Test func aPasswordFileThatIsALinkIsNotRead() async throws {
        let host = try StagedHost("pglink")
        defer { host.remove() }
        try host.writeEtc(storage: """
              driver: postgres
              postgres_host: 127.0.0.1
              postgres_port: 1
              postgres_user: warbler
              postgres_password_file: /etc/warbler/secrets/postgres-password
              postgres_database: warbler

            """)
        try host.write("/root/secret", "root's secret\n", mode: 0o600)
        #expect(symlink(host.path("/root/secret"), host.path("/etc/warbler/secrets/postgres-password")) == 0)
        await #expect { _ = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), hostname: "h")) } throws: { e in
            "\(e)".contains("cannot read storage.postgres_password_file") && "\(e)".contains("not following links")
        }
    }
}

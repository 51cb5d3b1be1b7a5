import Backup
import Foundation
import Glibc
import WarblerConfig
import Installer
import Testing
import Upgrade

/// The upgrade's automatic rollback and `warbler rollback` restore as root: the same checks as `warbler restore`.
@Suite struct LiveRestoreTests {
    /// A staged install: a config, secrets, a TLS directory, an empty SQLite database.
    static func stagedInstall(_ tag: String) throws -> (root: String, layout: Layout, config: ServerConfig) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-upgrade-\(tag)-\(UUID().uuidString.prefix(8))").path
        let layout = Layout(root: root)
        for dir in [Paths.secrets, Paths.tls, Paths.data] {
            try FileManager.default.createDirectory(atPath: layout.path(dir), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let port = Int.random(in: 40_000...60_000)
        try "server:\n  host: 127.0.0.1\n  port: \(port)\nstorage:\n  driver: sqlite\n  path: /var/lib/warbler/warbler.db\ndata_dir: /var/lib/warbler\n"
            .write(toFile: layout.path(Paths.config), atomically: true, encoding: .utf8)
        try "jwt\n".write(toFile: layout.path(Paths.jwtKey), atomically: true, encoding: .utf8)
        try "ca key\n".write(toFile: layout.path(Paths.caKey), atomically: true, encoding: .utf8)
        try "ca cert\n".write(toFile: layout.path(Paths.caCert), atomically: true, encoding: .utf8)
        // An empty file is an empty SQLite database.
        #expect(FileManager.default.createFile(atPath: layout.path(Paths.database), contents: Data()))
        return (root, layout, try ServerConfig.load(path: layout.path(Paths.config), environment: [:]))
    }

    /// Before: the restore ran the old release's `warbler restore --force` (here a binary that does not exist), with
    /// none of the checks; an archive nobody authenticated went back as root.
    @Test func aRollbackRestoresWithThisBuildsChecksAndRefusesAnUnauthenticatedBackup() async throws {
        let (root, layout, config) = try Self.stagedInstall("rollback")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let backups = layout.path(LiveUpgradeHost.backups)
        try FileManager.default.createDirectory(atPath: backups, withIntermediateDirectories: true)
        let byRoot = try await BackupEngine().create(BackupRequest(layout: layout, config: config, output: backups + "/warbler-pre-upgrade-1.0.0-to-1.1.0-a.tar.gz",
                                                                   unattended: false))
        let byServiceUser = try await BackupEngine().create(BackupRequest(layout: layout, config: config, output: backups + "/warbler-pre-upgrade-1.0.0-to-1.1.0-b.tar.gz",
                                                                          unattended: true))
        let host = LiveUpgradeHost(layout: layout)
        try await host.restore(backup: byRoot.file, using: "/nonexistent/releases/1.0.0/bin/warbler")
        await #expect { try await host.restore(backup: byServiceUser.file, using: "/nonexistent/releases/1.0.0/bin/warbler") } throws: { e in
            "\(e)".contains("not authenticated") && "\(e)".contains("warbler rollback --trust-unauthenticated")
        }
        try await LiveUpgradeHost(layout: layout, trustUnauthenticated: true)
            .restore(backup: byServiceUser.file, using: "/nonexistent/releases/1.0.0/bin/warbler")

        // Pre-upgrade backups no record names any more go when the next upgrade succeeds; the named one stays.
        let pruned = try host.prunePreUpgradeBackups(keeping: byServiceUser.file)
        #expect(pruned == [byRoot.file])
        #expect(FileManager.default.fileExists(atPath: byServiceUser.file))
    }
}

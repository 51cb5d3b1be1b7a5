import Foundation
import Glibc
import IMStorage
import Installer
import Logging
import Testing
@testable import Upgrade
import WarblerConfig

/// `warbler upgrade` runs as root, and the database is the service user's: root never opens it. The service user
/// (here uid 65534, standing in for warbler) reads the schema version with this build's `warbler schema-version`.
@Suite struct SchemaReadTests {
    /// The `warbler` this test run built, beside the test bundle.
    static var warbler: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return ((exe as NSString).deletingLastPathComponent as NSString).appendingPathComponent("warbler")
    }

    /// A staged install whose data directory belongs to the service user (65534), with no database in it yet.
    static func stage(_ tag: String) throws -> (root: String, layout: Layout) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-schema-\(tag)-\(UUID().uuidString.prefix(8))").path
        let layout = Layout(root: root)
        try FileManager.default.createDirectory(atPath: layout.path(Paths.etc), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        // Intermediate directories get the attributes too: 0755 on the way, the data directory itself 0700.
        try FileManager.default.createDirectory(atPath: layout.path(Paths.data), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        #expect(chmod(layout.path(Paths.data), 0o700) == 0)
        #expect(chown(layout.path(Paths.data), 65534, 65534) == 0)
        try "server:\n  host: 127.0.0.1\n  port: 8443\nstorage:\n  driver: sqlite\n  path: /var/lib/warbler/warbler.db\ndata_dir: /var/lib/warbler\n"
            .write(toFile: layout.path(Paths.config), atomically: true, encoding: .utf8)
        #expect(chmod(layout.path(Paths.config), 0o644) == 0)
        return (root, layout)
    }

    /// A migrated SQLite database at `path`, as this process (root) makes it.
    static func makeDatabase(_ path: String) async throws {
        var config = ServerConfig()
        config.storage.driver = "sqlite"
        config.storage.path = path
        let driver = try await StorageFactory.openDriver(config: config, logger: Logger(label: "test"))
        _ = try await Migrations.apply(driver, now: 1_000)
        try await driver.close()
    }

    func host(_ layout: Layout) -> LiveUpgradeHost {
        var host = LiveUpgradeHost(layout: layout)
        host.serviceUser = "65534"
        host.schemaExecutable = Self.warbler
        return host
    }

    /// The service user's own database: read by the service user (the answer is right), and no file in its
    /// directory becomes root's.
    @Test func readsTheServiceUsersDatabaseAsTheServiceUser() async throws {
        guard geteuid() == 0 else { return }
        #expect(FileManager.default.isExecutableFile(atPath: Self.warbler), "build the package first (swift build --build-tests)")
        let (root, layout) = try Self.stage("own")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let db = layout.path(Paths.database)
        try await Self.makeDatabase(db)
        for name in try FileManager.default.contentsOfDirectory(atPath: layout.path(Paths.data)) {
            #expect(lchown(layout.path(Paths.data) + "/" + name, 65534, 65534) == 0)
        }
        #expect(try await host(layout).schemaVersion() == Migrations.latest)
        for name in try FileManager.default.contentsOfDirectory(atPath: layout.path(Paths.data)) {
            var st = stat()
            #expect(lstat(layout.path(Paths.data) + "/" + name, &st) == 0)
            #expect(st.st_uid == 65534, "\(name) is owned by uid \(st.st_uid) after reading the schema version")
        }
    }

    /// The service user plants a link where the database goes, to a database only root can read: the old code opened
    /// it as root and answered with its version. Now the read runs as the service user, which cannot open it, and the
    /// upgrade stops, saying why.
    @Test func aLinkPlantedForTheDatabaseIsNotFollowedByRoot() async throws {
        guard geteuid() == 0 else { return }
        let (root, layout) = try Self.stage("link")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let hidden = root + "/root-only"
        try FileManager.default.createDirectory(atPath: hidden, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try await Self.makeDatabase(hidden + "/secret.db")
        let before = try FileManager.default.contentsOfDirectory(atPath: hidden).sorted()
        #expect(symlink(hidden + "/secret.db", layout.path(Paths.database)) == 0)
        #expect(lchown(layout.path(Paths.database), 65534, 65534) == 0)

        await #expect { _ = try await host(layout).schemaVersion() } throws: { e in
            "\(e)".contains("cannot read the database's schema version as the service user 65534") && "\(e)".contains("can open it")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: hidden).sorted() == before)
    }

    @Test func theSchemaLineIsParsedStrictly() throws {
        #expect(try SchemaProbe.parse("{\"schema\":12}\n") == 12)
        #expect(try SchemaProbe.parse(SchemaProbe.line(0)) == 0)
        for bad in ["", "{\"schema\":12}\n{\"schema\":13}", "{\"schema\":-1}", "{\"schema\":012}", "{\"schema\":1e3}",
                    "{\"schema\":12,\"x\":1}", "note\n{\"schema\":12}", "{\"schema\":1234567890}", "{\"schema\":\"12\"}"] {
            #expect(throws: (any Error).self, "\(bad)") { try SchemaProbe.parse(bad) }
        }
    }

    /// The self-check's password file is in the service user's secrets directory, and root sends what it reads there
    /// to the server as a password: a link planted there is not followed (the old code sent the first line of the
    /// link's target); it is replaced by a fresh password file.
    @Test func theSelfCheckPasswordIsNotReadThroughALink() throws {
        let (root, layout) = try Self.stage("selfcheck")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: layout.path(Paths.secrets), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let secret = root + "/root-secret"
        try "root's secret\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let file = layout.path(SelfCheck.passwordFile)
        #expect(symlink(secret, file) == 0)
        // It goes on to create the account with the release's binary, which a staged install does not have.
        #expect(throws: (any Error).self) { _ = try SelfCheck(layout: layout).ensureAccount() }
        var st = stat()
        #expect(lstat(file, &st) == 0 && st.st_mode & S_IFMT == S_IFREG, "the link was left in place (its target was used)")
        #expect(try String(contentsOfFile: secret, encoding: .utf8) == "root's secret\n")
        #expect(try String(contentsOfFile: file, encoding: .utf8) != "root's secret\n")
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Installer
import Templates
import Testing

/// `--root` installs on the real filesystem, through `LocalSystem`.
@Suite struct RootInstallTests {
    struct Stage {
        let root: String
        let binary: String
        let installer = Installer(system: LocalSystem(), probe: LiveHostProbe())

        init() throws {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-stage-\(UUID().uuidString)").path
            root = base + "/root"
            binary = base + "/warbler"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            // Any executable stands in for the release binary: the layout does not care what it runs.
            try FileManager.default.copyItem(atPath: "/bin/true", toPath: binary)
        }

        func install(_ answers: InstallAnswers = InstallAnswers()) throws -> InstallOutcome {
            try installer.install(InstallRequest(answers: answers, layout: Layout(root: root),
                                                 release: BinaryRelease(version: "0.1.0", binaryPath: binary),
                                                 templates: try TemplateSet(directory: Repo.templates)))
        }

        func remove() { try? FileManager.default.removeItem(atPath: (root as NSString).deletingLastPathComponent) }

        func lstat(_ path: String) -> (kind: mode_t, mode: UInt16, mtime: Int, inode: UInt64)? {
            var st = stat()
            guard Glibc.lstat(root + path, &st) == 0 else { return nil }
            return (st.st_mode & S_IFMT, UInt16(st.st_mode & 0o7777), st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec, UInt64(st.st_ino))
        }

        /// Every path under the root, relative, sorted.
        func tree() throws -> [String] {
            let e = try #require(FileManager.default.enumerator(atPath: root))
            return e.compactMap { $0 as? String }.map { "/" + $0 }.sorted()
        }
    }

    @Test func stagesTheWholeLayoutWithItsModesAndStartsNothing() throws {
        let stage = try Stage()
        defer { stage.remove() }
        let outcome = try stage.install()
        #expect(outcome.initSystem == InitSystem.none)
        #expect(outcome.plan.serviceActions.isEmpty)
        #expect(outcome.render().contains("staged under \(stage.root)"))

        let expected: [(String, mode_t, UInt16)] = [
            ("/etc/warbler", S_IFDIR, 0o755),
            ("/etc/warbler/warbler.yaml", S_IFREG, 0o640),
            ("/etc/warbler/secrets", S_IFDIR, 0o700),
            ("/etc/warbler/secrets/jwt.key", S_IFREG, 0o600),
            ("/etc/warbler/secrets/admin-password", S_IFREG, 0o600),
            ("/etc/warbler/tls", S_IFDIR, 0o750),
            ("/etc/warbler/tls/ca.crt", S_IFREG, 0o644),
            ("/etc/warbler/tls/ca.key", S_IFREG, 0o600),
            ("/etc/warbler/tls/server.crt", S_IFREG, 0o644),
            ("/etc/warbler/tls/server.key", S_IFREG, 0o600),
            ("/etc/systemd/system/warbler-server.service", S_IFREG, 0o644),
            ("/etc/systemd/system/warbler-exporter.service", S_IFREG, 0o644),
            ("/etc/systemd/system/warbler-alertd.service", S_IFREG, 0o644),
            ("/etc/warbler/alerts.yaml", S_IFREG, 0o640),
            ("/var/lib/warbler/alertd", S_IFDIR, 0o700),
            ("/var/lib/warbler/backups", S_IFDIR, 0o700),
            ("/opt/warbler/releases/0.1.0/bin/warbler", S_IFREG, 0o755),
            ("/opt/warbler/current", S_IFLNK, 0o777),
            ("/var/lib/warbler", S_IFDIR, 0o700),
            ("/var/lib/warbler-install", S_IFDIR, 0o700),
            ("/var/lib/warbler-install/journal.json", S_IFREG, 0o600),
            ("/usr/local/bin", S_IFDIR, 0o755),
            ("/usr/local/bin/warbler", S_IFLNK, 0o777),
        ]
        for (path, kind, mode) in expected {
            let st = try #require(stage.lstat(path), "\(path) missing")
            #expect(st.kind == kind, "\(path) kind")
            #expect(st.mode == mode, "\(path) is \(String(st.mode, radix: 8)), not \(String(mode, radix: 8))")
        }
        let tree = try stage.tree()
        #expect(tree.count == 35, "nothing else: \(tree)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: stage.root + "/opt/warbler/current") == "releases/0.1.0")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: stage.root + "/usr/local/bin/warbler") == "/opt/warbler/current/bin/warbler")
        #expect(FileManager.default.contentsEqual(atPath: stage.binary, andPath: stage.root + "/opt/warbler/releases/0.1.0/bin/warbler"))
        let config = try String(contentsOfFile: stage.root + "/etc/warbler/warbler.yaml", encoding: .utf8)
        #expect(config.contains("tls_cert: \"/etc/warbler/tls/server.crt\""), "paths are the host's, not the staging root's")
        #expect(!config.contains(stage.root))
        let journal = try #require(try JournalStore(system: LocalSystem(), layout: Layout(root: stage.root)).load())
        #expect(journal.state == .complete)
        #expect(journal.entries.allSatisfy { $0.status == .done })
    }

    @Test func aStagedRerunRewritesNothing() throws {
        let stage = try Stage()
        defer { stage.remove() }
        _ = try stage.install(.with { $0.port = 9443 })
        let paths = try stage.tree()
        let before = paths.map { stage.lstat($0).map { "\($0.inode)/\($0.mtime)/\($0.mode)" } }
        let again = try stage.install()
        #expect(again.plan.isEmpty)
        #expect(again.settings.port == 9443, "inherited from the first run's journal")
        #expect(try stage.tree() == paths)
        #expect(paths.map { stage.lstat($0).map { "\($0.inode)/\($0.mtime)/\($0.mode)" } } == before, "a file was rewritten")
    }

    @Test func aStagedReconfigurationRewritesOnlyTheConfigAndTheUnit() throws {
        let stage = try Stage()
        defer { stage.remove() }
        _ = try stage.install()
        let outcome = try stage.install(.with { $0.port = 443 })
        #expect(outcome.plan.writtenPaths == [stage.root + Paths.config, stage.root + Paths.serverUnit])
        let unit = try String(contentsOfFile: stage.root + Paths.serverUnit, encoding: .utf8)
        #expect(unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"))
        #expect(unit.contains("PrivateUsers=no"))
    }
}

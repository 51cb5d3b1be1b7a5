import Backup
import Crypto
import Foundation
import Glibc
import IMServer
import Installer
import Payload
import Testing

/// A member of an archive a forger writes: any path, kind, mode and owner, with a manifest that matches it.
struct CraftedMember {
    enum Kind: String { case file, directory, symlink }
    var path: String
    var kind: Kind
    var mode: UInt16 = 0o644
    var data = Data()
    var target: String?
    var owner = "root"
    var group = "root"
}

/// Archives as someone who can write the backup directory (but not read the install's backup key) would make them.
enum Craft {
    /// The members of a real backup, with their manifest entries' modes and owners; and the manifest as JSON.
    static func members(of archive: String) throws -> (members: [CraftedMember], manifest: [String: Any]) {
        let manifestData = try #require(try Fixture.member(BackupManifest.memberName, of: archive))
        let manifest = try #require(try JSONSerialization.jsonObject(with: manifestData) as? [String: Any])
        let entries = try #require(manifest["entries"] as? [[String: Any]])
        var byPath: [String: [String: Any]] = [:]
        for e in entries { byPath[e["path"] as! String] = e }
        var out: [CraftedMember] = []
        for (raw, data) in try Fixture.members(of: archive) where raw != BackupManifest.memberName && raw != "manifest.mac" {
            let path = raw.hasSuffix("/") ? String(raw.dropLast()) : raw
            let e = try #require(byPath[path])
            out.append(CraftedMember(path: path, kind: CraftedMember.Kind(rawValue: e["kind"] as! String)!, mode: UInt16(e["mode"] as! Int),
                                     data: data, target: e["target"] as? String, owner: e["owner"] as! String, group: e["group"] as! String))
        }
        return (out, manifest)
    }

    /// Writes `members` and a manifest listing them with fresh checksums (self-consistent, as a forger makes it),
    /// then a tag under `key` when given.
    static func write(_ members: [CraftedMember], manifest base: [String: Any], to output: String, tagKey key: SymmetricKey? = nil) throws {
        let writer = try ArchiveWriter(path: output)
        var entries: [[String: Any]] = []
        for m in members {
            var entry: [String: Any] = ["path": m.path, "kind": m.kind.rawValue, "size": 0, "sha256": "", "mode": Int(m.mode),
                                        "owner": m.owner, "group": m.group, "encrypted": false]
            switch m.kind {
            case .directory:
                try writer.writeHeader(path: m.path, kind: .directory, permissions: m.mode)
            case .symlink:
                entry["target"] = m.target
                try writer.writeHeader(path: m.path, kind: .symlink, permissions: m.mode, target: m.target)
            case .file:
                entry["size"] = m.data.count
                entry["sha256"] = SHA256.hash(data: m.data).map { String(format: "%02x", $0) }.joined()
                try writer.writeHeader(path: m.path, kind: .file, permissions: m.mode, size: UInt64(m.data.count))
                try m.data.withUnsafeBytes { try writer.writeData($0) }
            }
            entries.append(entry)
        }
        var manifest = base
        manifest["entries"] = entries
        manifest["encryption"] = nil
        let manifestData = try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys])
        try writer.writeHeader(path: BackupManifest.memberName, kind: .file, permissions: 0o600, size: UInt64(manifestData.count))
        try manifestData.withUnsafeBytes { try writer.writeData($0) }
        if let key {
            let tag = Data(HMAC<SHA256>.authenticationCode(for: manifestData, using: key)).map { String(format: "%02x", $0) }.joined()
            let mac = try JSONSerialization.data(withJSONObject: ["algorithm": "HMAC-SHA256", "tags": [["key": "install", "value": tag]]])
            try writer.writeHeader(path: "manifest.mac", kind: .file, permissions: 0o600, size: UInt64(mac.count))
            try mac.withUnsafeBytes { try writer.writeData($0) }
        }
        try writer.finish()
    }

    /// A real backup of `host`, rewritten by `change`, untagged.
    static func altered(_ host: StagedHost, _ change: (inout [CraftedMember]) -> Void) async throws -> String {
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(),
                                                                   output: host.root + "/real-\(UUID().uuidString.prefix(6)).tar.gz"))
        var (members, manifest) = try members(of: result.file)
        change(&members)
        let output = host.root + "/crafted-\(UUID().uuidString.prefix(6)).tar.gz"
        try write(members, manifest: manifest, to: output)
        return output
    }

    /// A plain ustar archive, written byte by byte: ArchiveWriter makes no hard links, a forger's tar does.
    static func tar(_ entries: [(name: String, type: Character, data: Data, link: String)]) -> Data {
        func field(_ text: String, _ width: Int) -> [UInt8] {
            Array(Array(text.utf8).prefix(width)) + [UInt8](repeating: 0, count: max(0, width - text.utf8.count))
        }
        func octal(_ n: Int, _ width: Int) -> [UInt8] { field(String(repeating: "0", count: max(0, width - 1 - String(n, radix: 8).count)) + String(n, radix: 8), width) }
        var out = Data()
        for e in entries {
            var h = field(e.name, 100) + octal(e.type == "5" ? 0o755 : 0o644, 8) + octal(0, 8) + octal(0, 8) + octal(e.data.count, 12) + octal(0, 12)
            h += [UInt8](repeating: 0x20, count: 8) + [UInt8](String(e.type).utf8) + field(e.link, 100) + Array("ustar\u{0}00".utf8)
            h += field("root", 32) + field("root", 32) + octal(0, 8) + octal(0, 8) + field("", 155) + field("", 12)
            let sum = h.reduce(0) { $0 + Int($1) }
            let check = Array(String(repeating: "0", count: 6 - String(sum, radix: 8).count).utf8) + Array(String(sum, radix: 8).utf8) + [0, 0x20]
            h.replaceSubrange(148..<156, with: check)
            out.append(contentsOf: h)
            out.append(e.data)
            out.append(Data(count: (512 - e.data.count % 512) % 512))
        }
        out.append(Data(count: 1024))
        return out
    }
}

@Suite struct RestoreHardeningTests {
    /// Issue 9, item 1: a symlink member followed by a file under it wrote a setuid root file outside the restore.
    @Test func aSymlinkMemberIsRefusedAndNothingIsWrittenThroughIt() async throws {
        let host = try await SQLiteBackupTests.populatedHost("symlink", messages: 3)
        defer { host.remove() }
        let outside = host.root + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        let crafted = try await Craft.altered(host) { members in
            let at = members.firstIndex { $0.path == "etc/warbler" }! + 1
            members.insert(CraftedMember(path: "etc/warbler/linked", kind: .symlink, mode: 0o777, target: outside), at: at)
            members.insert(CraftedMember(path: "etc/warbler/linked/payload", kind: .file, mode: 0o4755, data: Data("#!/bin/sh\nid\n".utf8)), at: at + 1)
        }
        let etcBefore = try host.tree(Paths.etc)
        // Even an operator who says "trust it" gets no link followed.
        let e = await expectBackupError(.invalidArchive) { _ = try RestoreEngine().verify(file: crafted, layout: host.layout, trustUnauthenticated: true) }
        #expect(e?.message.contains("symlink") == true)
        await expectBackupError(.invalidArchive) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: crafted, force: true, trustUnauthenticated: true))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "the restore wrote through a symlink")
        #expect(try host.tree(Paths.etc) == etcBefore)
    }

    @Test func membersABackupNeverMakesAreRefused() async throws {
        let host = try await SQLiteBackupTests.populatedHost("strange", messages: 3)
        defer { host.remove() }
        let strangers: [CraftedMember] = [
            CraftedMember(path: "database/other.db", kind: .file, data: Data("x".utf8)),
            CraftedMember(path: "database", kind: .directory, mode: 0o755),
            CraftedMember(path: "etc/warbler/secrets/backup-hmac.key", kind: .file, mode: 0o600, data: Data("a key of the forger's\n".utf8)),
            CraftedMember(path: "attachments/../../evil", kind: .file, data: Data("x".utf8)),
            CraftedMember(path: "/etc/evil", kind: .file, data: Data("x".utf8)),
        ]
        for stranger in strangers {
            let crafted = try await Craft.altered(host) { members in
                let at = members.firstIndex { $0.path == "database/warbler.db" }!
                members.insert(stranger, at: at)
            }
            let e = await expectBackupError(.invalidArchive) { _ = try RestoreEngine().verify(file: crafted, layout: host.layout, trustUnauthenticated: true) }
            #expect(e != nil, "\(stranger.path) was accepted")
        }
    }

    @Test func aHardLinkMemberIsRefused() async throws {
        let host = try StagedHost("hardlink")
        defer { host.remove() }
        let empty = SHA256.hash(data: Data()).map { String(format: "%02x", $0) }.joined()
        let manifest: [String: Any] = [
            "format": 1, "warblerVersion": "0", "schemaVersion": 0, "backend": "sqlite", "createdAt": "2026-01-01T00:00:00Z",
            "hostname": "h", "dataDir": "/var/lib/warbler", "databasePath": "/var/lib/warbler/warbler.db",
            "entries": [
                ["path": "attachments", "kind": "directory", "size": 0, "sha256": "", "mode": 0o755, "owner": "root", "group": "root", "encrypted": false],
                ["path": "attachments/x", "kind": "file", "size": 0, "sha256": empty, "mode": 0o644, "owner": "root", "group": "root", "encrypted": false],
                ["path": "database/warbler.db", "kind": "file", "size": 0, "sha256": empty, "mode": 0o600, "owner": "root", "group": "root", "encrypted": false],
            ]]
        let manifestData = try JSONSerialization.data(withJSONObject: manifest)
        let archive = host.root + "/hardlink.tar"
        try Craft.tar([("attachments/", "5", Data(), ""), ("database/warbler.db", "0", Data(), ""),
                       ("attachments/x", "1", Data(), "database/warbler.db"), ("manifest.json", "0", manifestData, "")])
            .write(to: URL(fileURLWithPath: archive))
        let e = await expectBackupError(.invalidArchive) { _ = try RestoreEngine().verify(file: archive, layout: host.layout, trustUnauthenticated: true) }
        #expect(e?.message.contains("hard link") == true, "\(e?.message ?? "")")
    }

    /// A directory member chmodded an existing file 04777; an archive may name any owner.
    @Test func modesLoseSetuidSetgidAndStickyAndOwnersAreOnlyRootOrTheServiceUser() async throws {
        guard geteuid() == 0, getpwnam("daemon") != nil else { return }
        let host = try await SQLiteBackupTests.populatedHost("modes", messages: 5)   // the fourth message has an attachment
        defer { host.remove() }
        let crafted = try await Craft.altered(host) { members in
            for i in members.indices {
                if members[i].path == "etc/warbler/warbler.yaml" { members[i].mode = 0o4755; members[i].owner = "daemon"; members[i].group = "daemon" }
                if members[i].path == "attachments" { members[i].mode = 0o3777 }
                if members[i].path == "etc/warbler/tls" { members[i].mode = 0o2775; members[i].owner = "nobody"; members[i].group = "nogroup" }
            }
        }
        let result = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: crafted, force: true, trustUnauthenticated: true,
                                                                      serviceUser: "nobody"))
        #expect(result.authentication == .trustedOnRequest)
        let config = FileState.of(host.path(Paths.config))
        #expect(config.mode & 0o7777 == 0o755, "mode \(String(config.mode, radix: 8))")
        #expect(config.uid == 0 && config.gid == 0, "a file restored for daemon, who is neither root nor the service user")
        #expect(FileState.of(host.path(Paths.data + "/attachments")).mode & 0o7777 == 0o777)
        let tls = FileState.of(host.path(Paths.tls))
        #expect(tls.mode & 0o7777 == 0o775)
        #expect(tls.uid == getpwnam("nobody")!.pointee.pw_uid, "the service user's files stay the service user's")
    }

    /// The database was renamed to a path taken from the config inside the archive.
    @Test func everyDestinationComesFromTheLiveInstallNotTheArchive() async throws {
        let host = try await SQLiteBackupTests.populatedHost("dest", messages: 7)
        defer { host.remove() }
        let expected = try await SQLiteBackupTests.dump(host.path(Paths.database))
        let crafted = try await Craft.altered(host) { members in
            let i = members.firstIndex { $0.path == "etc/warbler/warbler.yaml" }!
            members[i].data = Data("""
                server:
                  host: 127.0.0.1
                  port: 8443
                storage:
                  driver: sqlite
                  path: /var/lib/elsewhere/evil.db
                data_dir: /var/lib/elsewhere

                """.utf8)
        }
        _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: crafted, force: true, trustUnauthenticated: true))
        #expect(!FileManager.default.fileExists(atPath: host.path("/var/lib/elsewhere")), "the archive's config chose where the restore wrote")
        #expect(try await SQLiteBackupTests.dump(host.path(Paths.database)) == expected)
        #expect(FileManager.default.fileExists(atPath: host.path(Paths.data + "/attachments")))
    }

    /// `--verify-only` called a crafted archive good: its checksums were its own.
    @Test func anUnauthenticatedOrForeignBackupIsRefusedUnlessTrusted() async throws {
        let host = try await SQLiteBackupTests.populatedHost("auth", messages: 5)
        defer { host.remove() }
        let real = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config()))
        #expect(try RestoreEngine().verify(file: real.file, layout: host.layout).authentication == .installKey)
        #expect(real.manifest.entry("etc/warbler/secrets/backup-hmac.key") == nil, "a backup carries the key that authenticates it")

        // Untagged, self-consistent: refused, with what to do.
        let untagged = try await Craft.altered(host) { _ in }
        let e = await expectBackupError(.unauthenticated) { _ = try RestoreEngine().verify(file: untagged, layout: host.layout) }
        #expect(e?.message.contains("--trust-unauthenticated") == true)
        #expect(try RestoreEngine().verify(file: untagged, layout: host.layout, trustUnauthenticated: true).authentication == .trustedOnRequest)
        let before = try host.tree(Paths.etc), dataBefore = try host.tree(Paths.data + "/attachments")
        await expectBackupError(.unauthenticated) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: untagged, force: true))
        }
        #expect(try host.tree(Paths.etc) == before && host.tree(Paths.data + "/attachments") == dataBefore)

        // Tagged under a key that is not this install's.
        var (members, manifest) = try Craft.members(of: real.file)
        members.removeAll { $0.path.hasPrefix("attachments/") && $0.kind == .file }
        let forged = host.root + "/forged.tar.gz"
        try Craft.write(members, manifest: manifest, to: forged, tagKey: SymmetricKey(size: .bits256))
        await expectBackupError(.unauthenticated) { _ = try RestoreEngine().verify(file: forged, layout: host.layout) }

        // The real one on another host: without the key there, or with that host's own key, it is not authenticated.
        let other = try StagedHost("auth-other")
        defer { other.remove() }
        try other.writeEtc()
        await expectBackupError(.unauthenticated) { _ = try RestoreEngine().verify(file: real.file, layout: other.layout) }
        try other.write(BackupKey.path, Data((SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString() + "\n").utf8), mode: 0o600)
        let foreign = await expectBackupError(.unauthenticated) { _ = try RestoreEngine().verify(file: real.file, layout: other.layout) }
        #expect(foreign?.message.contains("another install") == true)
        // A key file others could write is no key.
        try other.write(BackupKey.path, try Data(contentsOf: URL(fileURLWithPath: host.path(BackupKey.path))), mode: 0o666)
        await expectBackupError(.unauthenticated) { _ = try RestoreEngine().verify(file: real.file, layout: other.layout) }
        #expect(chmod(other.path(BackupKey.path), 0o600) == 0)
        #expect(try RestoreEngine().verify(file: real.file, layout: other.layout).authentication == .installKey)
    }

    /// Issue 9, item 4: the timer's backup (the service user) wrote the CA key into an archive the server's user can read.
    @Test func anUnattendedBackupHoldsNoCAKeyAndRestoringItKeepsTheLiveCA() async throws {
        let host = try await SQLiteBackupTests.populatedHost("unattended", messages: 3)
        defer { host.remove() }
        let caKey = try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.caKey)))
        let caCert = try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.caCert)))
        let timer = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), output: host.root + "/timer.tar.gz",
                                                                  unattended: true))
        #expect(timer.manifest.entry("etc/warbler/tls/ca.key") == nil)
        #expect(timer.manifest.entry("etc/warbler/tls/ca.crt") != nil)
        let everything = try Fixture.members(of: timer.file).reduce(into: Data()) { $0.append($1.data) }
        #expect(everything.range(of: caKey) == nil, "the CA key is in an unattended backup")
        // The service user holds no key to tag it with.
        await expectBackupError(.unauthenticated) { _ = try RestoreEngine().verify(file: timer.file, layout: host.layout) }
        // A backup by root holds the key.
        let full = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), output: host.root + "/full.tar.gz",
                                                                 unattended: false))
        #expect(full.manifest.entry("etc/warbler/tls/ca.key") != nil)

        // Restored over an install with a CA: that CA stays, key and certificate.
        let restored = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: timer.file, force: true, trustUnauthenticated: true))
        #expect(restored.caNote?.contains("kept") == true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.caKey))) == caKey)
        #expect(try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.caCert))) == caCert)
        #expect(FileManager.default.fileExists(atPath: host.path(BackupKey.path)), "the restore lost the install's backup key")

        // Onto a host without a CA: no lone certificate; the next install makes a new CA.
        let bare = try StagedHost("unattended-bare")
        defer { bare.remove() }
        try await SQLiteBackupTests.emptyDatabase(bare)
        let onto = try await RestoreEngine().restore(RestoreRequest(layout: bare.layout, file: timer.file, trustUnauthenticated: true))
        #expect(onto.caNote?.contains("warbler install") == true)
        #expect(!FileManager.default.fileExists(atPath: bare.path(Paths.caCert)))
        #expect(FileManager.default.fileExists(atPath: bare.path(Paths.serverCert)))
    }

    /// The target's messages were looked for only after everything was unpacked beside it.
    @Test func theMessagesCheckComesBeforeAnythingIsUnpacked() async throws {
        let source = try await SQLiteBackupTests.populatedHost("early-source", messages: 3)
        defer { source.remove() }
        let result = try await BackupEngine().create(BackupRequest(layout: source.layout, config: try source.config()))
        let target = try await SQLiteBackupTests.populatedHost("early-target", messages: 3)
        defer { target.remove() }
        // No /etc at all on the target: a restore that unpacked first would have made it.
        try FileManager.default.removeItem(atPath: target.path("/etc"))
        await expectBackupError(.targetHasData) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: target.layout, file: result.file, trustUnauthenticated: true))
        }
        #expect(!FileManager.default.fileExists(atPath: target.path("/etc")), "the restore unpacked before it checked for messages")
        let hidden = try FileManager.default.contentsOfDirectory(atPath: target.path(Paths.data)).filter { $0.hasPrefix(".") }
        #expect(hidden.isEmpty, "staged: \(hidden)")
    }

    /// Issue 9, item 5: pre-upgrade backups counted toward daily retention, so `warbler rollback` found its backup gone.
    @Test func aPreUpgradeBackupIsNeverPrunedByDailyRetention() async throws {
        let host = try await SQLiteBackupTests.populatedHost("preupgrade", messages: 3)
        defer { host.remove() }
        let config = try host.config()
        let dir = host.path(config.backup.directory)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let named = dir + "/warbler-pre-upgrade-1.0.0-to-1.1.0-20270101T000000Z.tar.gz"
        let older = dir + "/warbler-pre-upgrade-0.9.0-to-1.0.0-20261201T000000Z.tar.gz"
        for f in [older, named] {
            try Data("backup".utf8).write(to: URL(fileURLWithPath: f))
            var times = [timespec(tv_sec: 1_000, tv_nsec: 0), timespec(tv_sec: 1_000, tv_nsec: 0)]   // oldest of all
            #expect(utimensat(AT_FDCWD, f, &times, 0) == 0)
        }
        for i in 0..<3 {
            _ = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h",
                                                              now: Date(timeIntervalSince1970: 1_800_000_000 + Double(i) * 86_400)))
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tar.gz") }
        #expect(left.contains((named as NSString).lastPathComponent), "daily retention deleted the backup an upgrade record names")
        #expect(left.filter { !$0.hasPrefix("warbler-pre-upgrade-") }.count == 1)
        // The upgrade prunes the pre-upgrade backups no record names any more.
        #expect(try Retention.prunePreUpgrade(directory: dir, keeping: named) == [older])
        #expect(FileManager.default.fileExists(atPath: named))
    }
}

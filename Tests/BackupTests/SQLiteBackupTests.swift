import Backup
import Crypto
import Foundation
import Glibc
import IMCore
import IMServer
import IMStorage
import IMStorageSQLite
import Installer
import Payload
import SQLiteNIO
import Testing

@Suite struct SQLiteBackupTests {
    /// A staged host with config, secrets, a populated SQLite database and attachments; the driver is closed.
    static func populatedHost(_ tag: String, messages: Int = 60, extra: String = "", serverPort: Int = 8443) async throws -> StagedHost {
        let host = try StagedHost(tag)
        try host.writeEtc(serverPort: serverPort, extra: extra)
        let driver = try await SQLiteDriver.open(path: host.path(Paths.database))
        do {
            try await Migrations.apply(driver, now: 1_000)
            try await Fixture.populate(SQLStore(driver: driver), host: host, messages: messages)
        } catch {
            try? await driver.close()
            throw error
        }
        try await driver.close()
        return host
    }

    static func dump(_ path: String) async throws -> [String: [[String: SQLValue]]] {
        let driver = try await SQLiteDriver.open(path: path)
        do {
            let d = try await Fixture.dump(driver)
            try await driver.close()
            return d
        } catch {
            try? await driver.close()
            throw error
        }
    }

    @Test func aSnapshotTakenWhileAWriterKeepsInsertingIsConsistent() async throws {
        let host = try StagedHost("online")
        defer { host.remove() }
        try host.writeEtc()
        let driver = try await SQLiteDriver.open(path: host.path(Paths.database))
        try await Migrations.apply(driver, now: 1_000)
        let store = SQLStore(driver: driver)
        let a = try await store.createUser(username: "a", passwordHash: "h", displayName: "A", admin: false, now: 1)
        let b = try await store.createUser(username: "b", passwordHash: "h", displayName: "B", admin: false, now: 1)
        let conv = try await store.directConversation(between: a.id, and: b.id)
        // Enough rows that the snapshot takes a while, so the writer's commits interleave with it.
        for start in stride(from: 0, to: 20_000, by: 500) {
            for r in try await store.append((start..<start + 500).map {
                NewMessage(conversation: conv.id, sender: a.id, cid: "pre\($0)", kind: .text, text: String(repeating: "x", count: 100) + "\($0)")
            }) { _ = try r.get() }
        }

        let written = Counter()
        let stop = Counter()
        let writer = Task {
            var i = 0
            while stop.value == 0 {
                let batch = (0..<5).map { NewMessage(conversation: conv.id, sender: b.id, cid: "live\(i)-\($0)", kind: .text, text: "live \(i) \($0)") }
                for r in try await store.append(batch) { _ = try r.get() }
                written.add(batch.count)
                i += 1
            }
        }
        // Let the writer get going, then back up under it.
        for _ in 0..<2_000 where written.value < 50 { try await Task.sleep(for: .milliseconds(5)) }
        try #require(written.value >= 50, "the writer did not get going")
        let before = written.value
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), keep: 0))
        let after = written.value
        stop.add(1)
        try await writer.value
        let total = try await store.messageCount()
        try await driver.close()
        #expect(after > before, "the writer committed nothing while the backup ran (\(before) → \(after)); the test proves nothing")

        // The snapshot opens, passes integrity_check, and holds every message up to its last_seq, none torn.
        let snapshot = host.root + "/snapshot.db"
        try #require(try Fixture.member("database/warbler.db", of: result.file)).write(to: URL(fileURLWithPath: snapshot))
        let connection = try await SQLiteConnection.open(storage: .file(path: snapshot))
        let check = try await connection.query("PRAGMA integrity_check", []).first?.column("integrity_check")?.string
        let lastSeq = try await connection.query("SELECT last_seq FROM conversations WHERE id = ?1", [.integer(Int(conv.id))]).first?.column("last_seq")?.integer
        let stats = try await connection.query("SELECT COUNT(*) AS n, MIN(seq) AS lo, MAX(seq) AS hi, COUNT(DISTINCT seq) AS d FROM messages WHERE conv_id = ?1", [.integer(Int(conv.id))]).first
        try await connection.close()
        #expect(check == "ok")
        let n = try #require(stats?.column("n")?.integer), hi = try #require(stats?.column("hi")?.integer)
        #expect(stats?.column("lo")?.integer == 1)
        #expect(stats?.column("d")?.integer == n)
        #expect(hi == n, "a gap: \(n) messages but the highest seq is \(hi)")
        #expect(lastSeq == hi, "torn: conversations.last_seq is \(lastSeq ?? -1) but the messages end at \(hi)")
        #expect(Int(n) >= 20_000 + before && Int(n) <= 20_000 + after, "the snapshot (\(n) messages) is not from the backup's window (\(20_000 + before)…\(20_000 + after))")
        #expect(Int(total) > n, "the writer kept going after the snapshot")
        print("online snapshot: \(n) messages while the writer went from \(20_000 + before) to \(20_000 + after) (\(total) at the end); \(result.bytes) bytes")
    }

    @Test func backupWipeRestoreGivesBackEveryMessageAttachmentAndSecret() async throws {
        let host = try await Self.populatedHost("roundtrip")
        defer { host.remove() }
        // Owners by name come back too (nobody:nogroup stands in for the warbler user on this test machine).
        if geteuid() == 0 { #expect(lchown(host.path(Paths.jwtKey), 65534, 65534) == 0) }
        let expectedDB = try await Self.dump(host.path(Paths.database))
        let expectedEtc = try host.tree(Paths.etc)
        let expectedAttachments = try host.tree(Paths.data + "/attachments")
        #expect(expectedAttachments.count > 10)

        let passphraseFile = host.root + "/passphrase"
        try "correct horse battery staple\n".write(toFile: passphraseFile, atomically: true, encoding: .utf8)
        let passphrase = try BackupEngine.readPassphrase(file: passphraseFile)
        #expect(passphrase == "correct horse battery staple")
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), passphrase: passphrase,
                                                                   hostname: "chat-1", now: Date(timeIntervalSince1970: 1_800_000_000)))
        #expect(result.file == host.path("/var/lib/warbler/backups/warbler-chat-1-20270115T080000Z.tar.gz"))
        #expect(FileState.of(result.file).mode & 0o777 == 0o600)
        #expect(result.manifest.schemaVersion == Migrations.latest)
        #expect(result.manifest.backend == .sqlite)
        #expect(result.manifest.entries.filter(\.encrypted).map(\.path).sorted() ==
                ["etc/warbler/secrets/admin-password", "etc/warbler/secrets/jwt.key", "etc/warbler/tls/ca.key", "etc/warbler/tls/server.key"])

        // last-success.json for the exporter.
        let last = try JSONDecoder().decode(LastSuccess.self, from: Data(contentsOf: URL(fileURLWithPath: host.path("/var/lib/warbler/backups/last-success.json"))))
        #expect(last.file == result.file)
        #expect(last.bytes == result.bytes)
        #expect(ISO8601DateFormatter.withFractions.date(from: last.finishedAt) != nil)

        // Wipe: config, secrets, database and attachments gone, as after uninstall --purge.
        for p in [Paths.etc, Paths.database, Paths.data + "/attachments"] { try FileManager.default.removeItem(atPath: host.path(p)) }
        for s in ["-wal", "-shm"] { unlink(host.path(Paths.database) + s) }

        let restored = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, passphrase: passphrase,
                                                                        serviceUser: "nobody"))
        #expect(restored.migrationsApplied.isEmpty)
        // The install's backup key went with the wipe: the passphrase's key authenticates the archive.
        #expect(restored.authentication == .passphrase)
        #expect(try await Self.dump(host.path(Paths.database)) == expectedDB)
        let etc = try host.tree(Paths.etc)
        #expect(etc == expectedEtc, "differs: \(Set(etc.keys).symmetricDifference(expectedEtc.keys)) \(etc.filter { expectedEtc[$0.key] != $0.value }.map { "\($0.key): \($0.value) vs \(expectedEtc[$0.key].map(\.description) ?? "-")" })")
        #expect(try host.tree(Paths.data + "/attachments") == expectedAttachments)
        // Nothing left behind: no temporary or set-aside copies.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: host.path("/etc")) + FileManager.default.contentsOfDirectory(atPath: host.path(Paths.data))
        #expect(leftovers.filter { $0.hasPrefix(".") }.isEmpty, "left behind: \(leftovers)")
    }

    @Test func aTamperedMemberIsRefusedByNameAndNothingChanges() async throws {
        let host = try await Self.populatedHost("tamper")
        defer { host.remove() }
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config()))
        let attachment = try #require(result.manifest.entries.first { $0.path.hasPrefix("attachments/") && $0.kind == .file && $0.size > 100_000 }).path
        for member in ["etc/warbler/warbler.yaml", attachment, "database/warbler.db"] {
            let tampered = host.root + "/tampered-\(UUID().uuidString.prefix(6)).tar.gz"
            try Fixture.tamper(result.file, member: member, into: tampered)
            let e = await expectBackupError(.checksumMismatch) { _ = try RestoreEngine().verify(file: tampered, layout: host.layout) }
            #expect(e?.message.contains(member) == true, "the error does not name \(member): \(e?.message ?? "")")
        }
        // A restore of a tampered archive over a live install changes nothing at all.
        let tampered = host.root + "/tampered.tar.gz"
        try Fixture.tamper(result.file, member: attachment, into: tampered)
        let etcBefore = try host.tree(Paths.etc), dataBefore = try host.tree(Paths.data)
        await expectBackupError(.checksumMismatch) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: tampered, force: true))
        }
        #expect(try host.tree(Paths.etc) == etcBefore)
        #expect(try host.tree(Paths.data) == dataBefore)
        // A byte flipped in the compressed file itself: refused as damaged.
        var raw = try Data(contentsOf: URL(fileURLWithPath: result.file))
        raw[raw.count / 2] ^= 0x40
        let flipped = host.root + "/flipped.tar.gz"
        try raw.write(to: URL(fileURLWithPath: flipped))
        // Where the byte lands in deflate's output decides which check sees it first: inflate (or the tar headers)
        // fails, or a member's checksum does (gzip stores random data uncompressed). Either way it is refused.
        do {
            _ = try RestoreEngine().verify(file: flipped, layout: host.layout)
            Issue.record("a backup with a flipped byte was accepted")
        } catch let e as BackupError {
            #expect(e.code == .invalidArchive || e.code == .checksumMismatch, "\(e)")
        }
    }

    @Test func aBackupFromANewerSchemaIsRefusedNamingBothVersions() async throws {
        let host = try await Self.populatedHost("newer", messages: 5)
        defer { host.remove() }
        let driver = try await SQLiteDriver.open(path: host.path(Paths.database))
        let future = Migrations.latest + 7
        try await driver.write { db in try await db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', 0)", [.int(Int64(future))]) }
        try await driver.close()
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config()))
        #expect(result.manifest.schemaVersion == future)
        let e = await expectBackupError(.newerSchema) { _ = try RestoreEngine().verify(file: result.file, layout: host.layout) }
        #expect(e?.message.contains("schema version \(future)") == true)
        #expect(e?.message.contains("up to version \(Migrations.latest)") == true)
    }

    @Test func anOlderBackupIsMigratedForwardOnRestore() async throws {
        let host = try StagedHost("older")
        defer { host.remove() }
        try host.writeEtc()
        // A database at schema 0: only the migrations table, as a build before the first migration would leave.
        let driver = try await SQLiteDriver.open(path: host.path(Paths.database))
        try await Migrations.apply(driver, now: 1, migrations: [])
        try await driver.close()
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config()))
        #expect(result.manifest.schemaVersion == 0)
        let restored = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file))
        #expect(restored.migrationsApplied == Migrations.all.map(\.version))
        let after = try await SQLiteDriver.open(path: host.path(Paths.database))
        let version = try await Migrations.currentVersion(after)
        try await after.close()
        #expect(version == Migrations.latest)
    }

    @Test func encryptedSecretsAreUnreadableInTheArchiveAndNeedTheRightPassphrase() async throws {
        let host = try await Self.populatedHost("crypt", messages: 5)
        defer { host.remove() }
        let jwt = try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.jwtKey)))
        let caKey = try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.caKey)))
        let cert = try Data(contentsOf: URL(fileURLWithPath: host.path(Paths.serverCert)))
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), passphrase: "s3cret pass"))
        let everything = try Fixture.members(of: result.file).reduce(into: Data()) { $0.append($1.data) }
        #expect(everything.range(of: jwt) == nil, "the JWT key is readable in the archive")
        #expect(everything.range(of: caKey) == nil, "the CA key is readable in the archive")
        #expect(everything.range(of: Data("ca-key-".utf8)) == nil)
        #expect(try Fixture.member("etc/warbler/tls/server.crt", of: result.file) == cert, "a certificate is not a secret")
        // The manifest describes each member as it is on disk.
        let m = result.manifest
        #expect(m.format == 1 && m.warblerVersion == WarblerVersion.version && !m.hostname.isEmpty && m.backend == .sqlite)
        let certEntry = try #require(m.entry("etc/warbler/tls/server.crt"))
        #expect(certEntry.sha256 == SHA256.hash(data: cert).map { String(format: "%02x", $0) }.joined())
        #expect(certEntry.size == UInt64(cert.count) && certEntry.mode == 0o644 && !certEntry.encrypted)
        #expect(certEntry.owner == (getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? ""))
        let keyEntry = try #require(m.entry("etc/warbler/tls/ca.key"))
        #expect(keyEntry.encrypted && keyEntry.mode == 0o600 && keyEntry.size == UInt64(caKey.count) + 28)
        #expect(m.encryption?.kdf == "scrypt" && m.encryption?.cipher == "AES-256-GCM" && m.encryption?.rounds == 1 << 15)

        let e = await expectBackupError(.passphrase) { _ = try RestoreEngine().verify(file: result.file, passphrase: "wrong pass") }
        #expect(e?.message.contains("passphrase") == true)
        await expectBackupError(.passphrase) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, passphrase: "wrong pass", force: true))
        }
        await expectBackupError(.passphrase) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, force: true))
        }
        #expect(try RestoreEngine().verify(file: result.file, passphrase: "s3cret pass").authentication == .passphrase)
        #expect(try RestoreEngine().verify(file: result.file, layout: host.layout).authentication == .installKey)
        // Without a passphrase the backup keeps secrets as they are on disk.
        let plain = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config(), output: host.root + "/plain.tar.gz"))
        #expect(try Fixture.member("etc/warbler/secrets/jwt.key", of: plain.file) == jwt)
    }

    @Test func retentionKeepsTheNewestN() async throws {
        let host = try await Self.populatedHost("keep", messages: 3, extra: "backup:\n  keep: 3\n")
        defer { host.remove() }
        let config = try host.config()
        #expect(config.backup.keep == 3)
        var files: [String] = []
        for i in 0..<5 {
            let r = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, hostname: "h", now: Date(timeIntervalSince1970: 1_800_000_000 + Double(i) * 86_400)))
            files.append(r.file)
            #expect(r.removed == (i >= 3 ? [files[i - 3]] : []))
        }
        let dir = host.path(config.backup.directory)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tar.gz") }.sorted()
        #expect(left == files.suffix(3).map { ($0 as NSString).lastPathComponent })
        // --keep overrides the config.
        let r = try await BackupEngine().create(BackupRequest(layout: host.layout, config: config, keep: 1, hostname: "h"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".tar.gz") } == [(r.file as NSString).lastPathComponent])
    }

    @Test func aRunningServerIsRefusedWithHowToStopIt() async throws {
        let listener = try Listener()
        let host = try await Self.populatedHost("running", messages: 3, serverPort: listener.port)
        defer { host.remove() }
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: try host.config()))
        let e = await expectBackupError(.serverRunning) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, force: true))
        }
        #expect(e?.message.contains("systemctl stop warbler-server") == true)
        #expect(e?.message.contains("127.0.0.1:\(listener.port)") == true)
        // The supervisor's PID file of a live process counts too.
        let other = try StagedHost("pidfile")
        defer { other.remove() }
        try other.write(Paths.serverPID, "\(getpid())\n")
        #expect(LiveServerActivity(layout: other.layout, ports: []).runningEvidence()?.contains("process \(getpid())") == true)
        try other.write(Paths.serverPID, "999999999\n")
        #expect(LiveServerActivity(layout: other.layout, ports: []).runningEvidence() == nil)
    }

    @Test func aDatabaseWithMessagesIsReplacedOnlyWithForce() async throws {
        let source = try await Self.populatedHost("source", messages: 20)
        defer { source.remove() }
        let result = try await BackupEngine().create(BackupRequest(layout: source.layout, config: try source.config()))
        let expected = try await Self.dump(source.path(Paths.database))
        // Another install with its own history; the source's backup key copied over, as docs/operations.md says
        // to do when moving a backup to another host.
        let target = try await Self.populatedHost("target", messages: 4)
        defer { target.remove() }
        try target.write(BackupKey.path, try Data(contentsOf: URL(fileURLWithPath: source.path(BackupKey.path))), mode: 0o600)
        let before = try await Self.dump(target.path(Paths.database))
        let e = await expectBackupError(.targetHasData) {
            _ = try await RestoreEngine().restore(RestoreRequest(layout: target.layout, file: result.file))
        }
        #expect(e?.message.contains("--force") == true)
        #expect(try await Self.dump(target.path(Paths.database)) == before)
        // The target's search index (its own file, schema 14) indexes the target's messages.
        let index = SQLiteDriver.searchIndexPath(target.path(Paths.database))
        #expect(FileManager.default.fileExists(atPath: index))
        let restored = try await RestoreEngine().restore(RestoreRequest(layout: target.layout, file: result.file, force: true))
        #expect(restored.replaced.contains(target.path(Paths.database)))
        // It went aside with the old database; the first search builds one of the restored messages.
        #expect(!FileManager.default.fileExists(atPath: index))
        #expect(try await Self.dump(target.path(Paths.database)) == expected)
        let driver = try await SQLiteDriver.open(path: target.path(Paths.database))
        let store = SQLStore(driver: driver)
        let everyone = try await store.search(MessageSearch(user: nil, terms: ["hello"], limit: 100))
        let sent = try await driver.read { db in
            try await db.first("SELECT count(*) AS n FROM messages WHERE kind = 'text' AND text LIKE 'hello %'")?.int("n") ?? -1
        }
        #expect(sent > 0 && everyone.count == Int(sent))
        try await driver.close()
    }
}

extension SQLiteBackupTests {
    /// An empty, migrated database in the staged data directory.
    static func emptyDatabase(_ host: StagedHost) async throws {
        try FileManager.default.createDirectory(atPath: host.path(Paths.data), withIntermediateDirectories: true)
        let driver = try await SQLiteDriver.open(path: host.path(Paths.database))
        try await Migrations.apply(driver, now: 1)
        try await driver.close()
    }

    @Test func aBackupWithoutEtcWarblerLeavesTheLiveOneAlone() async throws {
        let host = try StagedHost("noetc")
        defer { host.remove() }
        try await Self.emptyDatabase(host)
        // A bare `warbler server` with its defaults: no /etc/warbler at all.
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: ServerConfig()))
        #expect(!result.manifest.entries.contains { $0.path.hasPrefix("etc/") })
        try host.write(Paths.config, "# installed later\n", mode: 0o640)
        let before = try host.tree(Paths.etc)
        // No /etc/warbler, so no install backup key to tag it with: restoring it takes trusting it.
        await expectBackupError(.unauthenticated) { _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file)) }
        _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, trustUnauthenticated: true))
        #expect(try host.tree(Paths.etc) == before)
    }

    /// Restored as root from a backup with no attachments, the new attachments directory still belongs to whoever
    /// owns the data directory (the server), or the server cannot store an upload (an e2e upgrade found this).
    @Test func anEmptyAttachmentsDirectoryIsRestoredWritableForTheServer() async throws {
        let host = try StagedHost("noatt")
        defer { host.remove() }
        try await Self.emptyDatabase(host)
        let result = try await BackupEngine().create(BackupRequest(layout: host.layout, config: ServerConfig()))
        #expect(!result.manifest.entries.contains { $0.path.hasPrefix("attachments/") })
        guard geteuid() == 0, let pw = getpwnam("nobody") else { return }
        let (uid, gid) = (pw.pointee.pw_uid, pw.pointee.pw_gid)   // getpwnam's buffer is reused by later calls
        #expect(chown(host.path(Paths.data), uid, gid) == 0)
        _ = try await RestoreEngine().restore(RestoreRequest(layout: host.layout, file: result.file, force: true, trustUnauthenticated: true))
        var st = stat()
        #expect(stat(host.path(Paths.data) + "/attachments", &st) == 0)
        #expect(st.st_uid == uid, "the attachments directory belongs to \(st.st_uid), not the data directory's owner")
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
    func add(_ k: Int) { lock.lock(); n += k; lock.unlock() }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let withFractions: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}

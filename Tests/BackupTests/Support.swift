import Backup
import Foundation
import Glibc
import IMCore
import IMServer
import IMStorage
import IMStorageSQLite
import Installer
import Payload
import Testing

/// An install staged under a temporary root: /etc/warbler with config, secrets and TLS files, and a data directory.
struct StagedHost {
    let root: String
    let layout: Layout

    init(_ tag: String = "host") throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-backup-\(tag)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        layout = Layout(root: root)
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    func path(_ hostPath: String) -> String { layout.path(hostPath) }

    func write(_ hostPath: String, _ data: Data, mode: mode_t = 0o644) throws {
        let path = layout.path(hostPath)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
        #expect(chmod(path, mode) == 0)
    }

    func write(_ hostPath: String, _ text: String, mode: mode_t = 0o644) throws {
        try write(hostPath, Data(text.utf8), mode: mode)
    }

    /// /etc/warbler as an install leaves it: the config (with `storage` lines given), secrets and TLS files.
    func writeEtc(storage: String = "  driver: sqlite\n  path: /var/lib/warbler/warbler.db\n", serverPort: Int = 8443,
                  extra: String = "") throws {
        try FileManager.default.createDirectory(atPath: path(Paths.etc), withIntermediateDirectories: true)
        #expect(chmod(path(Paths.etc), 0o755) == 0)
        try write(Paths.config, """
            server:
              host: 127.0.0.1
              port: \(serverPort)
            storage:
            \(storage)data_dir: /var/lib/warbler
            \(extra)
            """, mode: 0o640)
        try write(Paths.jwtKey, "jwt-secret-\(UUID().uuidString)\n", mode: 0o600)
        try write(Paths.adminPassword, "admin-password-\(UUID().uuidString)\n", mode: 0o600)
        #expect(chmod(path(Paths.secrets), 0o700) == 0)
        try write(Paths.caCert, "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n", mode: 0o644)
        try write(Paths.caKey, "-----BEGIN PRIVATE KEY-----\nca-key-\(UUID().uuidString)\n-----END PRIVATE KEY-----\n", mode: 0o600)
        try write(Paths.serverCert, "-----BEGIN CERTIFICATE-----\nserver\n-----END CERTIFICATE-----\n", mode: 0o644)
        try write(Paths.serverKey, "-----BEGIN PRIVATE KEY-----\nserver-key-\(UUID().uuidString)\n-----END PRIVATE KEY-----\n", mode: 0o600)
        #expect(chmod(path(Paths.tls), 0o750) == 0)
        try FileManager.default.createDirectory(atPath: path(Paths.data), withIntermediateDirectories: true)
        #expect(chmod(path(Paths.data), 0o700) == 0)
    }

    func config() throws -> ServerConfig {
        try ServerConfig.load(path: path(Paths.config), environment: [:])
    }

    /// Writes an attachment's bytes where the server keeps them and returns its reference.
    func addAttachment(id: String, bytes: Data) throws -> AttachmentRef {
        let hostPath = "\(Paths.data)/attachments/\(id.prefix(2))/\(id)"
        try write(hostPath, bytes, mode: 0o600)
        return AttachmentRef(id: id, name: "file-\(id.prefix(4)).bin", contentType: "application/octet-stream", size: Int64(bytes.count))
    }

    /// Every file, directory and symlink under `hostPath`: relative path → (kind, mode, owner, bytes).
    func tree(_ hostPath: String) throws -> [String: FileState] {
        let base = path(hostPath)
        var out: [String: FileState] = [:]
        guard FileManager.default.fileExists(atPath: base) else { return out }
        out["."] = FileState.of(base)
        let enumerator = FileManager.default.enumerator(atPath: base)
        while let relative = enumerator?.nextObject() as? String {
            out[relative] = FileState.of(base + "/" + relative)
        }
        return out
    }
}

struct FileState: Equatable, CustomStringConvertible {
    var mode: mode_t
    var uid: uid_t
    var gid: gid_t
    var bytes: Data?

    static func of(_ path: String) -> FileState {
        var st = stat()
        lstat(path, &st)
        let isFile = st.st_mode & S_IFMT == S_IFREG
        return FileState(mode: st.st_mode, uid: st.st_uid, gid: st.st_gid, bytes: isFile ? FileManager.default.contents(atPath: path) : nil)
    }

    var description: String { "mode \(String(mode, radix: 8)) owner \(uid):\(gid) \(bytes.map { "\($0.count) bytes" } ?? "")" }
}

enum Fixture {
    static func randomBytes(_ n: Int) -> Data { Data((0..<n).map { _ in UInt8.random(in: 0...255) }) }

    static func randomID() -> String { (0..<12).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() }

    /// Two users, a direct conversation and a group, text, unicode, custom JSON and attachment messages, a receipt.
    static func populate(_ store: SQLStore, host: StagedHost, messages: Int = 60) async throws {
        let alice = try await store.createUser(username: "alice", passwordHash: "$2b$12$alice", displayName: "Alice Ä", admin: true, now: 1_000)
        let bob = try await store.createUser(username: "bob", passwordHash: "$2b$12$bob", displayName: "Bob 🐦", admin: false, now: 1_001)
        let direct = try await store.directConversation(between: alice.id, and: bob.id)
        let group = try await store.createGroup(name: "Team ✓", owner: alice.id, members: [bob.id])
        var batch: [NewMessage] = []
        for i in 0..<messages {
            let conv = i % 3 == 0 ? group.id : direct.id
            let sender = i % 2 == 0 ? alice.id : bob.id
            switch i % 5 {
            case 1:
                batch.append(NewMessage(conversation: conv, sender: sender, cid: "c\(i)", kind: .custom,
                                        data: .object(["n": .number(Double(i)), "s": .string("x\"y\n\(i)")])))
            case 3:
                let ref = try host.addAttachment(id: randomID(), bytes: randomBytes(i == 3 ? 200_000 : 1_000 + i))
                try await store.insertAttachment(AttachmentRecord(ref: ref, conversation: conv, uploader: sender, createdAt: 2_000 + Int64(i)))
                batch.append(NewMessage(conversation: conv, sender: sender, cid: "c\(i)", kind: .attachment, text: "caption \(i)", attachment: ref))
            default:
                batch.append(NewMessage(conversation: conv, sender: sender, cid: "c\(i)", kind: .text, text: "hello \(i) — ünïcödé 🐦"))
            }
        }
        for chunk in stride(from: 0, to: batch.count, by: 7) {
            for r in try await store.append(Array(batch[chunk..<min(chunk + 7, batch.count)])) { _ = try r.get() }
        }
        _ = try await store.advanceCursor(conversation: direct.id, user: bob.id, kind: .read, seq: 3)
    }

    static let tables = ["users", "refresh_tokens", "contacts", "conversations", "members", "messages", "attachments", "schema_migrations"]

    /// Every row of every table, in a stable order.
    static func dump(_ driver: any SQLDriver) async throws -> [String: [[String: SQLValue]]] {
        var out: [String: [[String: SQLValue]]] = [:]
        for table in tables {
            let order = table == "contacts" ? "1, 2" : table == "messages" || table == "members" ? "1, 2" : "1"
            out[table] = try await driver.read { db in try await db.query("SELECT * FROM \(table) ORDER BY \(order)").map(\.values) }
        }
        return out
    }

    /// Extracts one member of an archive (its stored bytes).
    static func member(_ path: String, of archive: String) throws -> Data? {
        let reader = try ArchiveReader(path: archive, range: nil)
        while let header = try reader.next() {
            var data = Data()
            try reader.readData { data.append(contentsOf: $0) }
            if header.path == path { return data }
        }
        return nil
    }

    /// Every member's stored bytes.
    static func members(of archive: String) throws -> [(path: String, data: Data)] {
        let reader = try ArchiveReader(path: archive, range: nil)
        var out: [(String, Data)] = []
        while let header = try reader.next() {
            var data = Data()
            try reader.readData { data.append(contentsOf: $0) }
            out.append((header.path, data))
        }
        return out
    }

    /// Rewrites an archive with one byte of `member` flipped: a well-formed archive whose content was altered.
    static func tamper(_ archive: String, member target: String, into output: String) throws {
        let reader = try ArchiveReader(path: archive, range: nil)
        let writer = try ArchiveWriter(path: output)
        var found = false
        while let header = try reader.next() {
            var data = Data()
            try reader.readData { data.append(contentsOf: $0) }
            switch header.fileType {
            case S_IFDIR:
                try writer.writeHeader(path: header.path, kind: .directory, permissions: UInt16(header.mode))
            case S_IFLNK:
                try writer.writeHeader(path: header.path, kind: .symlink, permissions: UInt16(header.mode), target: header.symlink)
            default:
                if header.path == target {
                    data[data.count / 2] ^= 0x01
                    found = true
                }
                try writer.writeHeader(path: header.path, kind: .file, permissions: UInt16(header.mode), size: UInt64(data.count))
                try data.withUnsafeBytes { try writer.writeData($0) }
            }
        }
        try writer.finish()
        #expect(found, "no member \(target) in \(archive)")
    }
}

/// Expects `body` to throw a `BackupError` with `code`, and returns it.
@discardableResult
func expectBackupError(_ code: BackupError.Code, sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () async throws -> Void) async -> BackupError? {
    do {
        try await body()
        Issue.record("expected BackupError \(code), but nothing was thrown", sourceLocation: sourceLocation)
    } catch let e as BackupError {
        #expect(e.code == code, "expected \(code), got \(e.code): \(e)", sourceLocation: sourceLocation)
        return e
    } catch {
        Issue.record("expected BackupError \(code), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// A server stand-in for the running check: a socket listening on a free loopback port.
final class Listener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        try #require(bound == 0)
        try #require(listen(fd, 8) == 0)
        _ = withUnsafeMutablePointer(to: &addr) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }
}

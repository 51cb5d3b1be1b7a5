import Crypto
import Foundation
import Glibc
import Installer

/// `manifest.mac`, the archive's last member: HMAC-SHA256 tags over the exact bytes of `manifest.json`. The
/// manifest holds every member's SHA-256, kind and mode, and a restore refuses any member it does not list, so a tag
/// over it authenticates the whole archive. The checksums alone prove nothing: whoever alters a member rewrites them.
struct ManifestMAC: Codable, Sendable, Equatable {
    static let memberName = "manifest.mac"
    static let algorithm = "HMAC-SHA256"

    struct Tag: Codable, Sendable, Equatable {
        /// Which key made it: `install` (this install's root-only key) or `passphrase` (derived from the sealing passphrase).
        var key: String
        /// The first 16 hex digits of the key's SHA-256, so "another install's key" is told apart from "altered".
        var keyID: String?
        /// Hex of the tag.
        var value: String
    }

    var algorithm: String
    var tags: [Tag]

    static func tag(_ manifest: Data, key: SymmetricKey) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: manifest, using: key)).hex
    }

    static func keyID(_ key: SymmetricKey) -> String {
        String(key.withUnsafeBytes { SHA256Hex.of(Data($0)) }.prefix(16))
    }

    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }
}

/// How a verified backup was authenticated.
public enum BackupAuthentication: String, Sendable, Equatable {
    /// Its manifest carries a tag under this install's key (`/etc/warbler/secrets/backup-hmac.key`, root 0600).
    case installKey = "this install's backup key"
    /// Its manifest carries a tag under the key derived from the passphrase its secrets are sealed with.
    case passphrase = "the backup passphrase"
    /// Neither; accepted only because the operator said `--trust-unauthenticated`.
    case trustedOnRequest = "nothing (trusted on request with --trust-unauthenticated)"
}

/// The install's backup key: 32 random bytes, base64, in a root-only file under /etc/warbler/secrets. A root-run
/// backup creates it when it is missing; the service user can neither read it nor make a tag with it.
public enum BackupKey {
    /// Where the key lives on the host. Never put into a backup: an archive that carries its own key proves nothing.
    public static let path = Paths.secrets + "/backup-hmac.key"

    /// The key, or nil when there is none or this user may not read it (the service user's timer run).
    /// A key file that is a link, not a regular file, or that others could write is refused, not used.
    static func load(layout: Layout) throws -> SymmetricKey? {
        let file = layout.path(path)
        let fd = Glibc.open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT || errno == EACCES || errno == EPERM { return nil }
            if errno == ELOOP { throw BackupError(.unauthenticated, "\(file) is a symlink; the backup key must be a regular file owned by root (mode 0600): remove it, and a root-run `warbler backup` makes a new one") }
            throw BackupError.io("cannot open the backup key", path: file)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw BackupError.io("cannot stat the backup key", path: file) }
        guard st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() || st.st_uid == 0, st.st_mode & 0o077 == 0 else {
            throw BackupError(.unauthenticated, "\(file) is not a regular file owned by root with mode 0600, so it may not be secret; remove it, and a root-run `warbler backup` makes a new one (older backups then need --trust-unauthenticated or their passphrase)")
        }
        var bytes = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &bytes, bytes.count)
        guard n > 0, let raw = Data(base64Encoded: String(decoding: bytes[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
              raw.count >= 32 else {
            throw BackupError(.unauthenticated, "\(file) does not hold a base64 key of 32 bytes; remove it, and a root-run `warbler backup` makes a new one")
        }
        return SymmetricKey(data: raw)
    }

    /// The key, made first when missing (root 0600, created exclusively, never through a link). nil when there is
    /// no /etc/warbler/secrets to hold it (a bare `warbler server` without an install).
    static func loadOrCreate(layout: Layout) throws -> SymmetricKey? {
        if let key = try load(layout: layout) { return key }
        let dir = layout.path(Paths.secrets)
        guard Files.lstat(dir)?.kind == .directory else { return nil }
        let file = layout.path(path)
        let key = SymmetricKey(size: .bits256)
        let text = Data((key.withUnsafeBytes { Data($0) }.base64EncodedString() + "\n").utf8)
        let fd = Glibc.open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if fd < 0 {
            if errno == EEXIST, let raced = try load(layout: layout) { return raced }
            throw BackupError.io("cannot create the backup key", path: file)
        }
        do {
            try text.withUnsafeBytes { try Files.writeAll(fd: fd, path: file, $0) }
            guard fchmod(fd, 0o600) == 0, Glibc.fsync(fd) == 0 else { throw BackupError.io("cannot write the backup key", path: file) }
        } catch {
            close(fd)
            unlink(file)
            throw error
        }
        close(fd)
        try? Files.fsync(dir)
        return key
    }
}

extension SecretSealer {
    /// The key that authenticates a sealed backup's manifest: derived from the passphrase's key, never the same bytes.
    var macKey: SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data("warbler backup manifest mac".utf8), outputByteCount: 32)
    }
}

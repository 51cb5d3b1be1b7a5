import Foundation
import Installer

/// The last member of every backup archive (`manifest.json`): what made it, and every member's path, size, SHA-256,
/// mode and owner, so a restore can check each byte before it changes anything.
public struct BackupManifest: Codable, Sendable, Equatable {
    /// The archive member holding this manifest.
    public static let memberName = "manifest.json"
    /// Bumped when the archive's layout changes; a restore refuses a format it does not know.
    public static let currentFormat = 1
    /// A cluster member's backup (it has `cluster`). Its own number, so that a build from before cluster backups
    /// refuses it instead of restoring it as a single host's.
    public static let clusterFormat = 2

    /// Which cluster a backup was taken in, and its members then.
    public struct Cluster: Codable, Sendable, Equatable {
        /// etcd's cluster id (decimal); nil when the backup could not ask etcd (see `note`).
        public var id: String?
        /// The member the backup was taken on.
        public var node: String
        /// The members registered in etcd at the time (empty when etcd was not asked).
        public var members: [ClusterMember]
        /// The site's PostgreSQL (`--database-url`, no password) when the cluster runs none of its own.
        public var database: String?
        /// Why `id` or `members` are missing, when they are.
        public var note: String?

        public init(id: String?, node: String, members: [ClusterMember], database: String? = nil, note: String? = nil) {
            self.id = id; self.node = node; self.members = members; self.database = database; self.note = note
        }
    }

    public enum Backend: String, Codable, Sendable {
        case sqlite, postgres
    }

    public struct Entry: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable { case file, directory, symlink }
        /// The member's path in the archive (`etc/warbler/warbler.yaml`, `attachments/ab/abc…`, `database/warbler.db`).
        public var path: String
        public var kind: Kind
        /// Bytes stored in the archive (for an encrypted secret: nonce, ciphertext and tag).
        public var size: UInt64
        /// SHA-256 (hex) of the bytes stored in the archive; empty for directories and symlinks.
        public var sha256: String
        /// Permission bits, restored as they were.
        public var mode: UInt16
        /// Owner and group by name (ids differ between hosts); restored when this host knows the names.
        public var owner: String
        public var group: String
        /// Whether the stored bytes are sealed with the passphrase's key (AES-256-GCM).
        public var encrypted: Bool
        /// Where a symlink points.
        public var target: String?
    }

    /// How secrets were sealed: AES-256-GCM under a key derived from the passphrase with scrypt.
    public struct Encryption: Codable, Sendable, Equatable {
        public var cipher: String
        public var kdf: String
        /// Base64 of the random salt.
        public var salt: String
        /// scrypt's N (rounds), r (block size) and p (parallelism).
        public var rounds: Int
        public var blockSize: Int
        public var parallelism: Int
        /// Base64 of a known text sealed with the key, so a wrong passphrase is told apart from a damaged secret.
        public var check: String
    }

    public var format: Int
    public var warblerVersion: String
    /// The database's schema version (`schema_migrations`) when the snapshot was taken.
    public var schemaVersion: Int
    public var backend: Backend
    /// ISO 8601, UTC.
    public var createdAt: String
    public var hostname: String
    /// The host paths the members came from, so a restore knows where `attachments/` and `database/` went.
    public var dataDir: String
    public var databasePath: String
    public var encryption: Encryption?
    public var entries: [Entry]
    /// Set on a cluster member's backup (format `clusterFormat`); nil on a single host's.
    public var cluster: Cluster? = nil

    public func entry(_ path: String) -> Entry? { entries.first { $0.path == path } }

    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    static func decode(_ data: Data, file: String) throws -> BackupManifest {
        do {
            return try JSONDecoder().decode(BackupManifest.self, from: data)
        } catch {
            throw BackupError(.invalidArchive, "\(file) has an unreadable manifest (\(error)); it is not a Warbler backup or it is damaged")
        }
    }
}

/// Where the members of a backup archive live, by role.
enum Member {
    static let etc = "etc/warbler"
    static let attachments = "attachments"
    static let database = "database"
    static let sqliteDatabase = "database/warbler.db"
    static let postgresDump = "database/warbler.pgdump"

    static let cluster = "etc/warbler/cluster"

    /// Secrets: everything under /etc/warbler/secrets and the TLS private keys; on a cluster member also root's
    /// cluster secrets (PostgreSQL's passwords, root's copies of the token key and the database password), every
    /// component's private key and HAProxy's certificate-and-key file, and Patroni's config (it holds PostgreSQL's
    /// passwords). Sealed when a passphrase is given.
    static func isSecret(_ path: String) -> Bool {
        path.hasPrefix(etc + "/secrets/") || (path.hasPrefix(etc + "/tls/") && path.hasSuffix(".key"))
            || path.hasPrefix(cluster + "/secrets/")
            || (path.hasPrefix(cluster + "/tls/") && (path.hasSuffix(".key") || path.hasSuffix(".pem")))
            || path == cluster + "/patroni.yml"
    }
}

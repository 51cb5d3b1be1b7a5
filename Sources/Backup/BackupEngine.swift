import Crypto
import DurableFiles
import Foundation
import Glibc
import WarblerConfig
import IMStorage
import Installer
import Logging
import Payload

/// What `warbler backup` is asked to do. Paths in `config` are host paths; `layout` places them (a staging root
/// in tests, the host itself in production).
public struct BackupRequest: Sendable {
    public var layout: Layout
    public var config: ServerConfig
    /// The archive to write, as this process sees it; nil: `<backup.directory>/warbler-<host>-<UTC time>.tar.gz`.
    public var output: String?
    /// Seals the secrets (AES-256-GCM, scrypt key) when set.
    public var passphrase: String?
    /// Backups to keep in the backup directory; nil: `backup.keep` from the config; 0 keeps every one.
    public var keep: Int?
    public var hostname: String
    public var now: Date
    /// A timer-run backup by the service user: it leaves out the internal CA key (which must never sit in an
    /// archive the service user can read) and cannot tag the archive with the install's root-only backup key.
    /// nil: unattended when this process is not root.
    public var unattended: Bool?
    /// On a cluster member (it has /etc/warbler/cluster/member.json): how to ask etcd for the cluster's id and
    /// members; nil: `LiveClusterView`.
    public var clusterView: (any ClusterView)?

    public init(layout: Layout, config: ServerConfig, output: String? = nil, passphrase: String? = nil, keep: Int? = nil,
                hostname: String = BackupEngine.hostname(), now: Date = Date(), unattended: Bool? = nil,
                clusterView: (any ClusterView)? = nil) {
        self.layout = layout; self.config = config; self.output = output; self.passphrase = passphrase; self.keep = keep
        self.hostname = hostname; self.now = now; self.unattended = unattended; self.clusterView = clusterView
    }

    var isUnattended: Bool { unattended ?? (geteuid() != 0) }
}

/// A finished backup.
public struct BackupResult: Sendable {
    /// The archive, as this process sees it.
    public var file: String
    public var bytes: UInt64
    public var manifest: BackupManifest
    /// Older backups deleted by retention.
    public var removed: [String]
}

/// `last-success.json` in the backup directory, rewritten atomically after every good backup; the exporter
/// turns `finishedAt` into `warbler_backup_age_seconds`.
public struct LastSuccess: Codable, Sendable, Equatable {
    public static let fileName = "last-success.json"
    /// ISO 8601, UTC.
    public var finishedAt: String
    public var file: String
    public var bytes: UInt64
}

/// Takes an online backup: a consistent database snapshot, /etc/warbler (config, secrets, TLS) and the attachments,
/// in one tar.gz with a manifest of SHA-256 checksums and `manifest.mac` (HMAC-SHA256 of the manifest under the
/// install's root-only key and/or the passphrase's key), written to a temporary file, synced, then renamed.
public struct BackupEngine: Sendable {
    public var logger: Logger

    public init(logger: Logger = Logger(label: "warbler.backup")) {
        self.logger = logger
    }

    public static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func timestamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: date)
    }

    static func iso8601(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// The default archive name: `warbler-<host>-<yyyyMMddTHHmmssZ>.tar.gz`.
    public static func defaultName(hostname: String, at date: Date) -> String {
        let host = String(hostname.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "." ? Character($0) : "_" })
        return "warbler-\(host.isEmpty ? "host" : host)-\(timestamp(date)).tar.gz"
    }

    public func create(_ request: BackupRequest) async throws -> BackupResult {
        let layout = request.layout
        let config = request.config
        let backupDir = layout.path(config.backup.directory)
        let output = request.output ?? backupDir + "/" + Self.defaultName(hostname: request.hostname, at: request.now)
        if request.output == nil { try Files.makeDirectories(backupDir, mode: 0o700) }
        guard FileManager.default.fileExists(atPath: Files.parent(output)) else {
            throw BackupError(.usage, "the directory of \(output) does not exist; create it or choose another --output")
        }
        // The archive's directory is often one the service user can write (the backup directory, where `warbler
        // upgrade` puts its pre-upgrade backup too), and root writes there: everything in it is done through one
        // descriptor of it, opened without following links (`inDir`, a /proc path through that descriptor for the
        // tools that take paths), so a link or a rename there cannot steer root's writes elsewhere.
        let outputDir = try Files.openBackupDirectory(Files.parent(output))
        defer { close(outputDir) }
        let outputName = (output as NSString).lastPathComponent
        let inDir = Files.descriptorPath(outputDir) + "/"
        guard !Files.exists(inDir + outputName) else {
            throw BackupError(.usage, "\(output) already exists; choose another --output")
        }
        let sealer = try request.passphrase.map { try SecretSealer(passphrase: $0) }
        let unattended = request.isUnattended
        // The install's key tags the manifest; a service-user run has none (the key is root's), so its archive is
        // authenticated only by a passphrase, or not at all.
        let installKey = try unattended ? nil : BackupKey.loadOrCreate(layout: layout)
        // A cluster member: the manifest says so (format 2, the cluster's id and members), root reads the database
        // password from its own copy, and the service user's run leaves out /etc/warbler/cluster (root's and the
        // components' files, which it cannot read and a restore never needs).
        let isCluster = Files.lstat(layout.path(ClusterPaths.memberFile)) != nil

        // Scratch space for the snapshot, used only through its descriptor. Root's is in its own state directory
        // (root 0700), not beside the archive: SQLite resolves the path it is given, links included, by name, so a
        // scratch directory the service user could rename things around is no place for root's VACUUM INTO.
        let scratch: String
        if geteuid() == 0 {
            let state = layout.path(Paths.installState)
            try Files.makeDirectories(state, mode: 0o700)
            do { close(try RootFile.openDirectory(state, owners: [0])) } catch {
                throw BackupError(.io, "root's state directory, where a root-run backup makes its snapshot: \(error)")
            }
            scratch = state + "/backup"
        } else {
            scratch = inDir + outputName
        }
        let stage = try Stage(besides: scratch, tag: "work")
        defer { stage.destroy() }
        let work = stage.descriptorPath
        // The archive is written through the descriptor mkstemp returned (O_EXCL: never through a link), never
        // reopened by its name.
        let (archiveFD, temporary) = try Files.temporaryFile(besides: inDir + outputName)
        defer { close(archiveFD) }
        var finished = false
        defer { if !finished { unlink(temporary) } }

        // 1. The database snapshot, first: it is the part that must be consistent.
        let backend: BackupManifest.Backend = config.storage.driver == "postgres" ? .postgres : .sqlite
        let snapshot: String
        let snapshotMember: String
        let snapshotOwner: Files.Stat?
        let schemaVersion: Int
        switch backend {
        case .sqlite:
            let live = layout.path(config.storage.path)
            snapshot = work + "/warbler.db"
            snapshotMember = Member.sqliteDatabase
            try await Database.snapshotSQLite(source: live, destination: snapshot, logger: logger)
            snapshotOwner = Files.lstat(live)
            schemaVersion = try await Database.sqliteSchemaVersion(snapshot, logger: logger)
        case .postgres:
            let pg = try Database.Postgres(config: config, layout: layout, rootCopy: isCluster && !unattended)
            snapshot = work + "/warbler.pgdump"
            snapshotMember = Member.postgresDump
            // The version first: pg_dump's snapshot is then at least as new, and migrations only ever move forward.
            schemaVersion = try await Database.postgresSchemaVersion(pg, logger: logger)
            try Database.dumpPostgres(pg, destination: snapshot)
            snapshotOwner = nil
        }

        // 2. The archive: config and secrets, the snapshot, the attachments, and the manifest last.
        var entries: [BackupManifest.Entry] = []
        let writer = try wrap { try ArchiveWriter(path: Files.descriptorPath(archiveFD)) }
        fchmod(archiveFD, 0o600)

        func add(member: String, source: String, stat st: Files.Stat, ownerFrom: Files.Stat? = nil,
                 beneath: (root: String, relative: String)? = nil) throws {
            let ownerStat = ownerFrom ?? st
            var entry = BackupManifest.Entry(path: member, kind: st.kind ?? .file, size: 0, sha256: "", mode: st.mode,
                                             owner: Files.userName(ownerStat.uid), group: Files.groupName(ownerStat.gid),
                                             encrypted: false, target: nil)
            switch st.kind {
            case .directory:
                try wrap { try writer.writeHeader(path: member, kind: .directory, permissions: st.mode) }
            case .symlink:
                // A restore refuses links (root must never write through one), so a backup never holds one.
                logger.warning("skipping \(source): a symlink; a backup holds only files and directories")
                return
            case .file:
                let content = source
                if let sealer, Member.isSecret(member) {
                    // /etc/warbler/secrets is the service user's: read through the tree's descriptors, no link followed.
                    guard let plain = try? Files.read(content, beneath: beneath) else {
                        throw BackupError(.io, "cannot read \(content); run the backup as root (or from the warbler-backup unit)")
                    }
                    let sealed = try sealer.seal(plain, path: member)
                    entry.encrypted = true
                    entry.size = UInt64(sealed.count)
                    entry.sha256 = SHA256Hex.of(sealed)
                    try wrap {
                        try writer.writeHeader(path: member, kind: .file, permissions: st.mode, size: entry.size)
                        try sealed.withUnsafeBytes { try writer.writeData($0) }
                    }
                } else {
                    let size = st.size
                    entry.size = size
                    try wrap { try writer.writeHeader(path: member, kind: .file, permissions: st.mode, size: size) }
                    entry.sha256 = try Files.stream(content, size: size, beneath: beneath) { chunk in try wrap { try writer.writeData(chunk) } }
                }
            case nil:
                logger.warning("skipping \(source): not a file, directory or symlink")
                return
            }
            entries.append(entry)
        }

        // Never in a backup: the key that authenticates backups. Not in an unattended one: the CA key, which would
        // let whoever runs as the service user mint certificates every client trusts.
        let excluded: Set<String> = unattended ? [BackupKey.path, Paths.caKey] : [BackupKey.path]

        func addTree(root: String, hostRoot: String, member: String) throws {
            guard let st = Files.lstat(root), st.kind == .directory else { return }
            try add(member: member, source: root, stat: st)
            for relative in try Files.walk(root) {
                let source = root + "/" + relative
                // Leftovers of an interrupted write (Attachments writes `.part` then renames) are not data.
                if relative.hasSuffix(".part") { continue }
                if excluded.contains(hostRoot + "/" + relative) { continue }
                if unattended && isCluster && (hostRoot + "/" + relative + "/").hasPrefix(ClusterPaths.dir + "/") { continue }
                guard let child = Files.lstat(source) else { continue }  // gone meanwhile
                try add(member: member + "/" + relative, source: source, stat: child, beneath: (root, relative))
            }
        }

        do {
            try addTree(root: layout.path(Paths.etc), hostRoot: Paths.etc, member: Member.etc)
            guard let snapStat = Files.lstat(snapshot) else { throw BackupError(.database, "the database snapshot \(snapshot) is missing") }
            var snapEntryStat = snapStat
            snapEntryStat.mode = snapshotOwner?.mode ?? 0o600
            try add(member: snapshotMember, source: snapshot, stat: snapEntryStat, ownerFrom: snapshotOwner)
            try addTree(root: layout.path(config.dataDir) + "/attachments", hostRoot: config.dataDir + "/attachments", member: Member.attachments)

            let manifest = BackupManifest(
                format: isCluster ? BackupManifest.clusterFormat : BackupManifest.currentFormat, warblerVersion: WarblerVersion.version, schemaVersion: schemaVersion,
                backend: backend, createdAt: Self.iso8601(request.now), hostname: request.hostname, dataDir: config.dataDir,
                databasePath: backend == .sqlite ? config.storage.path : "", encryption: sealer?.encryption, entries: entries,
                cluster: isCluster ? BackupManifest.Cluster.current(layout: layout, view: request.clusterView ?? LiveClusterView(layout: layout), unattended: unattended) : nil)
            let manifestData = try manifest.encoded()
            var tags: [ManifestMAC.Tag] = []
            if let installKey {
                tags.append(.init(key: "install", keyID: ManifestMAC.keyID(installKey), value: ManifestMAC.tag(manifestData, key: installKey)))
            }
            if let sealer {
                tags.append(.init(key: "passphrase", keyID: nil, value: ManifestMAC.tag(manifestData, key: sealer.macKey)))
            }
            if tags.isEmpty {
                logger.notice("this backup is not authenticated (no install backup key readable, no passphrase); restoring it will need --trust-unauthenticated")
            }
            let macData = try ManifestMAC(algorithm: ManifestMAC.algorithm, tags: tags).encoded()
            try wrap {
                try writer.writeHeader(path: BackupManifest.memberName, kind: .file, permissions: 0o600, size: UInt64(manifestData.count))
                try manifestData.withUnsafeBytes { try writer.writeData($0) }
                try writer.writeHeader(path: ManifestMAC.memberName, kind: .file, permissions: 0o600, size: UInt64(macData.count))
                try macData.withUnsafeBytes { try writer.writeData($0) }
                try writer.finish()
            }
            guard Glibc.fsync(archiveFD) == 0 else { throw BackupError.io("cannot sync", path: output) }
            var st = stat()
            guard fstat(archiveFD, &st) == 0 else { throw BackupError.io("cannot stat", path: output) }
            let bytes = UInt64(st.st_size)
            guard renameat(outputDir, (temporary as NSString).lastPathComponent, outputDir, outputName) == 0 else {
                throw BackupError.io("cannot rename the finished archive to", path: output)
            }
            finished = true
            guard Glibc.fsync(outputDir) == 0 else { throw BackupError.io("cannot sync the directory", path: Files.parent(output)) }

            let finishedAt = Date()
            try Files.makeDirectories(backupDir, mode: 0o700)
            let last = LastSuccess(finishedAt: Self.iso8601(finishedAt), file: output, bytes: bytes)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let markerDir = try Files.openBackupDirectory(backupDir)
            defer { close(markerDir) }
            do {
                try AtomicFile.write(try encoder.encode(last), named: LastSuccess.fileName, in: markerDir,
                                     path: backupDir + "/" + LastSuccess.fileName, mode: 0o644)
            } catch let error as AtomicFileError {
                throw BackupError.io(error.operation, path: error.path, errno: error.code)
            }

            let removed = try Retention.apply(directory: backupDir, keep: request.keep ?? config.backup.keep, protecting: output)
            logger.info("backup written", metadata: ["backup.file": "\(output)", "backup.bytes": "\(bytes)", "backup.entries": "\(entries.count)"])
            return BackupResult(file: output, bytes: bytes, manifest: manifest, removed: removed)
        }
    }

    private func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as PayloadError {
            throw BackupError(.io, "cannot write the backup archive: \(e.message)")
        }
    }
}

enum SHA256Hex {
    static func of(_ data: Data) -> String {
        var hasher = Crypto.SHA256()
        hasher.update(data: data)
        return hasher.finalize().hex
    }
}

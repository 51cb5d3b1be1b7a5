import Crypto
import Foundation
import Glibc
import IMServer
import IMStorage
import Installer
import Logging
import Payload

/// A backup whose every member matched its manifest.
public struct VerifiedBackup: Sendable {
    public var file: String
    public var manifest: BackupManifest
    /// The server config inside the backup (defaults when it had none): where a restore puts things.
    public var config: ServerConfig
}

/// What `warbler restore` is asked to do.
public struct RestoreRequest: Sendable {
    public var layout: Layout
    /// The backup archive, as this process sees it.
    public var file: String
    public var passphrase: String?
    /// Replace a database that already holds messages (without it, only an empty or missing one is replaced).
    public var force: Bool
    /// How to tell whether the server is running; nil: `LiveServerActivity` on the configured ports.
    public var activity: (any ServerActivityProbe)?
    /// `WARBLER_*` overrides applied to the backup's config, as the server would apply them.
    public var environment: [String: String]

    public init(layout: Layout, file: String, passphrase: String? = nil, force: Bool = false,
                activity: (any ServerActivityProbe)? = nil, environment: [String: String] = [:]) {
        self.layout = layout; self.file = file; self.passphrase = passphrase; self.force = force
        self.activity = activity; self.environment = environment
    }
}

public struct RestoreResult: Sendable {
    public var manifest: BackupManifest
    /// Schema migrations run over the restored database (the backup was older than this build).
    public var migrationsApplied: [Int]
    /// The live paths that were replaced, as this process sees them.
    public var replaced: [String]
}

/// Verifies a backup (every checksum, the schema version, the passphrase) before anything changes, then restores
/// it: everything is unpacked into temporary paths beside its destination first, then renamed into place, so a
/// failure at any point leaves the old state.
public struct RestoreEngine: Sendable {
    public var logger: Logger

    public init(logger: Logger = Logger(label: "warbler.restore")) {
        self.logger = logger
    }

    // MARK: Verify

    /// Reads the whole archive and checks every member against the manifest, the format and schema versions, and
    /// (when given) the passphrase and every encrypted secret. Changes nothing.
    public func verify(file: String, passphrase: String? = nil, environment: [String: String] = [:]) throws -> VerifiedBackup {
        var seen: [String: (kind: BackupManifest.Entry.Kind, size: UInt64, sha256: String, target: String?)] = [:]
        var order: [String] = []
        var manifestData: Data?
        var configText: Data?
        var sealed: [String: Data] = [:]

        try readArchive(file) { header, reader in
            let path = try Self.checkMemberPath(header.path, file: file)
            guard manifestData == nil else {
                throw BackupError(.invalidArchive, "\(file) has a member (\(path)) after its manifest; it is not a Warbler backup or it was altered")
            }
            guard seen[path] == nil else { throw BackupError(.invalidArchive, "\(file) holds \(path) twice; it was altered") }
            switch header.fileType {
            case S_IFREG:
                var hasher = SHA256()
                var size: UInt64 = 0
                let keep = path == BackupManifest.memberName || path == Member.etc + "/warbler.yaml" || Member.isSecret(path)
                var bytes = Data()
                try reader.readData { chunk in
                    hasher.update(bufferPointer: chunk)
                    size += UInt64(chunk.count)
                    if keep {
                        guard bytes.count + chunk.count <= 16 << 20 else {
                            throw BackupError(.invalidArchive, "\(path) in \(file) is larger than a config or secret can be; the archive was altered")
                        }
                        bytes.append(contentsOf: chunk)
                    }
                }
                if path == BackupManifest.memberName { manifestData = bytes; return }
                if path == Member.etc + "/warbler.yaml" { configText = bytes }
                if Member.isSecret(path) { sealed[path] = bytes }
                seen[path] = (.file, size, hasher.finalize().hex, nil)
            case S_IFDIR:
                seen[path] = (.directory, 0, "", nil)
            case S_IFLNK:
                seen[path] = (.symlink, 0, "", header.symlink)
            default:
                throw BackupError(.invalidArchive, "\(file) holds \(path), which is neither a file, a directory nor a symlink; it was altered")
            }
            order.append(path)
        }
        guard let manifestData else {
            throw BackupError(.invalidArchive, "\(file) has no \(BackupManifest.memberName): it is not a Warbler backup, or it was cut short (copy it again)")
        }
        let manifest = try BackupManifest.decode(manifestData, file: file)
        guard manifest.format == BackupManifest.currentFormat else {
            throw BackupError(.invalidArchive, "\(file) is in backup format \(manifest.format); this build reads format \(BackupManifest.currentFormat): restore it with Warbler \(manifest.warblerVersion)")
        }

        // Every member must be what the manifest says, and the manifest must list nothing that is missing.
        for entry in manifest.entries {
            guard let got = seen.removeValue(forKey: entry.path) else {
                throw BackupError(.checksumMismatch, "\(entry.path) is listed in the manifest of \(file) but missing from the archive; use another backup")
            }
            guard got.kind == entry.kind else {
                throw BackupError(.checksumMismatch, "\(entry.path) in \(file) is a \(got.kind.rawValue), but the manifest says \(entry.kind.rawValue); use another backup")
            }
            if entry.kind == .file && (got.size != entry.size || got.sha256 != entry.sha256) {
                throw BackupError(.checksumMismatch, "checksum mismatch for \(entry.path) in \(file) (SHA-256 \(got.sha256), the manifest says \(entry.sha256)): the backup is damaged or was altered; use another backup")
            }
            if entry.kind == .symlink && got.target != entry.target {
                throw BackupError(.checksumMismatch, "the symlink \(entry.path) in \(file) does not point where the manifest says; use another backup")
            }
        }
        if let extra = order.first(where: { seen[$0] != nil }) {
            throw BackupError(.checksumMismatch, "\(extra) in \(file) is not in its manifest: the backup was altered; use another backup")
        }
        let database = manifest.backend == .sqlite ? Member.sqliteDatabase : Member.postgresDump
        guard manifest.entry(database)?.kind == .file else {
            throw BackupError(.invalidArchive, "\(file) holds no database (\(database)); it is not a complete Warbler backup")
        }

        guard manifest.schemaVersion <= Migrations.latest else {
            throw BackupError(.newerSchema, "\(file) holds a database at schema version \(manifest.schemaVersion), newer than this build's migrations (up to version \(Migrations.latest)); restore it with Warbler \(manifest.warblerVersion) or newer")
        }

        if manifest.entries.contains(where: \.encrypted) {
            guard let encryption = manifest.encryption else {
                throw BackupError(.invalidArchive, "\(file) has encrypted members but no encryption parameters; it was altered")
            }
            if let passphrase {
                let sealer = try SecretSealer(passphrase: passphrase, encryption: encryption, file: file)
                for entry in manifest.entries where entry.encrypted {
                    _ = try sealer.open(sealed[entry.path] ?? Data(), path: entry.path)
                }
            }
        }

        var config = ServerConfig()
        if let configText {
            let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-restore-\(UUID().uuidString).yaml").path
            guard FileManager.default.createFile(atPath: temporary, contents: configText, attributes: [.posixPermissions: 0o600]) else {
                throw BackupError.io("cannot write", path: temporary)
            }
            defer { unlink(temporary) }
            do { config = try ServerConfig.load(path: temporary, environment: environment) } catch {
                throw BackupError(.invalidArchive, "the config inside \(file) does not load: \(error)")
            }
        }
        guard (config.storage.driver == "postgres") == (manifest.backend == .postgres) else {
            throw BackupError(.invalidArchive, "\(file) holds a \(manifest.backend.rawValue) database but its config says storage.driver \(config.storage.driver); it was altered")
        }
        return VerifiedBackup(file: file, manifest: manifest, config: config)
    }

    // MARK: Restore

    public func restore(_ request: RestoreRequest) async throws -> RestoreResult {
        let layout = request.layout
        let verified = try verify(file: request.file, passphrase: request.passphrase, environment: request.environment)
        let manifest = verified.manifest
        let config = verified.config
        if manifest.entries.contains(where: \.encrypted) && request.passphrase == nil {
            throw BackupError(.passphrase, "the secrets in \(request.file) are encrypted; pass --passphrase-file with the passphrase the backup was made with")
        }
        let sealer = try request.passphrase.flatMap { p in try manifest.encryption.map { try SecretSealer(passphrase: p, encryption: $0, file: request.file) } }

        // The server must be stopped: it holds the database open and would write over what we put back.
        var ports = [config.server.port]
        let liveConfigPath = layout.path(Paths.config)
        if Files.exists(liveConfigPath), let live = try? ServerConfig.load(path: liveConfigPath, environment: request.environment) {
            ports.append(live.server.port)
        }
        let activity = request.activity ?? LiveServerActivity(layout: layout, ports: Array(Set(ports)).sorted())
        if let evidence = activity.runningEvidence() {
            throw BackupError(.serverRunning, "the Warbler server is running (\(evidence)); stop it with systemctl stop warbler-server (or stop `warbler supervise`), then restore again")
        }

        // Unpack everything into temporary paths beside where it goes. Nothing live changes yet.
        let etcLive = layout.path(Paths.etc)
        let dataDir = layout.path(config.dataDir)
        let attachmentsLive = dataDir + "/attachments"
        let dbLive = layout.path(config.storage.path)
        try Files.makeDirectories(Files.parent(etcLive), mode: 0o755)
        try Files.makeDirectories(dataDir, mode: 0o700)
        var stages: [String] = []
        defer { for s in stages { Files.removeTree(s) } }
        let etcStage = try Files.temporaryDirectory(besides: etcLive, tag: "restore")
        stages.append(etcStage)
        let dataStage = try Files.temporaryDirectory(besides: attachmentsLive, tag: "restore")
        stages.append(dataStage)
        var dbStage: String?
        if manifest.backend == .sqlite {
            try Files.makeDirectories(Files.parent(dbLive), mode: 0o700)
            dbStage = try Files.temporaryDirectory(besides: dbLive, tag: "restore")
            stages.append(dbStage!)
        }
        let attachmentsStage = dataStage + "/attachments"
        let dumpStage = dataStage + "/warbler.pgdump"
        let dbFileStage = (dbStage ?? dataStage) + "/warbler.db"

        func stagedPath(_ member: String) -> String? {
            if member == Member.etc { return etcStage }
            if member.hasPrefix(Member.etc + "/") { return etcStage + "/" + member.dropFirst(Member.etc.count + 1) }
            if member == Member.attachments { return attachmentsStage }
            if member.hasPrefix(Member.attachments + "/") { return attachmentsStage + "/" + member.dropFirst(Member.attachments.count + 1) }
            if member == Member.sqliteDatabase { return dbFileStage }
            if member == Member.postgresDump { return dumpStage }
            return nil
        }

        let entries = Dictionary(manifest.entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        try readArchive(request.file) { header, reader in
            let member = try Self.checkMemberPath(header.path, file: request.file)
            if member == BackupManifest.memberName { return }
            guard let entry = entries[member], let target = stagedPath(member) else {
                throw BackupError(.checksumMismatch, "\(member) in \(request.file) is not in its manifest; the file changed while it was being restored")
            }
            switch entry.kind {
            case .directory:
                // etc/warbler's stage exists already (mkdtemp); every other directory is new.
                if !Files.exists(target) {
                    guard mkdir(target, 0o700) == 0 else { throw BackupError.io("cannot create", path: target) }
                }
            case .symlink:
                guard symlink(entry.target ?? "", target) == 0 else { throw BackupError.io("cannot create the symlink", path: target) }
            case .file:
                let fd = try Files.open(target, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
                defer { close(fd) }
                var hasher = SHA256()
                var stored = Data()
                try reader.readData { chunk in
                    hasher.update(bufferPointer: chunk)
                    if entry.encrypted { stored.append(contentsOf: chunk) } else { try Files.writeAll(fd: fd, path: target, chunk) }
                }
                guard hasher.finalize().hex == entry.sha256 else {
                    throw BackupError(.checksumMismatch, "checksum mismatch for \(member) in \(request.file): the file changed while it was being restored; nothing was replaced")
                }
                if entry.encrypted {
                    guard let sealer else { throw BackupError(.passphrase, "\(member) is encrypted; pass --passphrase-file") }
                    let plain = try sealer.open(stored, path: member)
                    try plain.withUnsafeBytes { try Files.writeAll(fd: fd, path: target, $0) }
                }
                guard fsync(fd) == 0 else { throw BackupError.io("cannot sync", path: target) }
            }
        }
        if !Files.exists(attachmentsStage) {
            // The backup had no attachments: the restored state has none either, in a directory the server can
            // write (owned like the data directory it lives in, not by root, who runs the restore).
            guard mkdir(attachmentsStage, 0o700) == 0 else { throw BackupError.io("cannot create", path: attachmentsStage) }
            var st = stat()
            if geteuid() == 0, stat(dataDir, &st) == 0, lchown(attachmentsStage, st.st_uid, st.st_gid) != 0 {
                throw BackupError.io("cannot set the owner of", path: attachmentsStage)
            }
        }
        // Modes and owners, deepest first (a directory's mode may forbid writing into it).
        for entry in manifest.entries.reversed() {
            guard entry.path != Member.postgresDump, let target = stagedPath(entry.path) else { continue }
            try Files.restoreAttributes(target, kind: entry.kind, mode: entry.mode, owner: entry.owner, group: entry.group)
        }
        if geteuid() == 0 {
            let unknown = Set(manifest.entries.flatMap { [($0.owner, getpwnam($0.owner) == nil), ($0.group, getgrnam($0.group) == nil)] }
                .filter(\.1).map(\.0))
            if !unknown.isEmpty {
                logger.warning("this host has no user or group \(unknown.sorted().joined(separator: ", ")): those files keep root as owner; run warbler install first, then restore again")
            }
        }

        // The restored config's PostgreSQL password may be a secret in the backup itself: read it from the stage.
        let pg: Database.Postgres? = manifest.backend == .postgres
            ? try Database.Postgres(config: config, layout: layout, passwordFileRoot: { path in
                path.hasPrefix(Paths.etc + "/") ? etcStage + "/" + path.dropFirst(Paths.etc.count + 1) : layout.path(path)
            })
            : nil

        // Never replace someone's history by accident.
        if !request.force {
            let hasMessages: Bool
            if let pg {
                hasMessages = try await Database.postgresHasMessages(pg, logger: logger)
            } else {
                hasMessages = try await Database.sqliteHasMessages(dbLive, logger: logger)
            }
            if hasMessages {
                let target = pg?.endpoint ?? dbLive
                throw BackupError(.targetHasData, "the database \(target) already holds messages; restoring replaces them with the backup's. Take a backup of it first if you need it, then run restore again with --force")
            }
        }

        var migrations: [Int] = []
        if manifest.backend == .sqlite {
            // Forward to this build's schema before it goes live: a failure here leaves the old state untouched.
            migrations = try await Database.migrateSQLite(dbFileStage, logger: logger)
            if let entry = manifest.entry(Member.sqliteDatabase) {
                try Files.restoreAttributes(dbFileStage, kind: .file, mode: entry.mode, owner: entry.owner, group: entry.group)
            }
        }

        // Swap in: each live path is set aside, then the staged one renamed over it. On failure, undo in reverse.
        var swaps = Swaps()
        do {
            // A backup of a host without /etc/warbler (a bare `warbler server`) leaves the live one alone.
            if manifest.entry(Member.etc) != nil {
                try swaps.replace(live: etcLive, with: etcStage, aside: etcStage + ".old")
                stages.append(etcStage + ".old")
            }
            try swaps.replace(live: attachmentsLive, with: attachmentsStage, aside: dataStage + "/attachments.old")
            if let dbStage {
                // The old database's WAL would be replayed into the new file: it goes aside with it.
                try Files.makeDirectories(dbStage + "/old", mode: 0o700)
                for suffix in ["-wal", "-shm"] where Files.exists(dbLive + suffix) {
                    try swaps.replace(live: dbLive + suffix, with: nil, aside: dbStage + "/old/db" + suffix)
                }
                try swaps.replace(live: dbLive, with: dbFileStage, aside: dbStage + "/old/db")
            }
            if let pg {
                try Database.restorePostgres(pg, dump: dumpStage)
            }
        } catch {
            swaps.undo(logger: logger)
            throw error
        }
        for path in [Files.parent(etcLive), dataDir, Files.parent(dbLive)] { try? Files.fsync(path) }
        if let pg {
            migrations = try await Database.migratePostgres(pg, logger: logger)
        }
        logger.info("restore done", metadata: ["backup.file": "\(request.file)", "backup.schema": "\(manifest.schemaVersion)"])
        return RestoreResult(manifest: manifest, migrationsApplied: migrations, replaced: swaps.done.map(\.live))
    }

    // MARK: Reading

    private func readArchive(_ file: String, _ body: (ArchiveReader.Header, ArchiveReader) throws -> Void) throws {
        guard Files.lstat(file)?.kind == .file else {
            throw BackupError(.usage, "\(file) is not a file; name a backup archive (warbler-<host>-<time>.tar.gz)")
        }
        do {
            let reader = try ArchiveReader(path: file, range: nil)
            while let header = try reader.next() { try body(header, reader) }
        } catch let e as PayloadError {
            throw BackupError(.invalidArchive, "\(file) cannot be read as a backup archive: it is damaged or not a Warbler backup (\(e.code)); use another backup")
        }
    }

    /// Members may only be the manifest or lie under etc/warbler, attachments or database, with no `..`.
    static func checkMemberPath(_ raw: String, file: String) throws -> String {
        var path = Substring(raw)
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        while path.hasSuffix("/") { path = path.dropLast() }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let allowedRoots = [BackupManifest.memberName, "etc", Member.attachments, Member.database]
        guard !path.isEmpty, !raw.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
              allowedRoots.contains(String(parts[0])),
              parts[0] != "etc" || path == Member.etc || path.hasPrefix(Member.etc + "/") else {
            throw BackupError(.invalidArchive, "\(file) holds a member that a backup never has (\(raw.debugDescription)); refusing it")
        }
        return String(path)
    }
}

/// Renames done so far, so they can be undone in reverse order.
struct Swaps {
    struct Step { var live: String; var staged: String?; var aside: String; var setAside: Bool; var movedIn: Bool }
    private(set) var done: [Step] = []

    mutating func replace(live: String, with staged: String?, aside: String) throws {
        var step = Step(live: live, staged: staged, aside: aside, setAside: false, movedIn: false)
        if Files.exists(live) {
            try Files.rename(live, to: aside)
            step.setAside = true
        }
        done.append(step)
        if let staged {
            try Files.rename(staged, to: live)
            done[done.count - 1].movedIn = true
        }
    }

    func undo(logger: Logger) {
        for step in done.reversed() {
            if step.movedIn, let staged = step.staged, Glibc.rename(step.live, staged) != 0 {
                logger.error("cannot move \(step.live) back to \(staged): \(String(cString: strerror(errno)))")
            }
            if step.setAside, Glibc.rename(step.aside, step.live) != 0 {
                logger.error("cannot put \(step.aside) back at \(step.live): \(String(cString: strerror(errno))); move it back by hand")
            }
        }
    }
}

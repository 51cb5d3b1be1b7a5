import Crypto
import Foundation
import Glibc
import WarblerConfig
import IMStorage
import Installer
import Logging
import Payload

/// A backup whose every member matched its manifest, and whose manifest is authenticated (or trusted on request).
public struct VerifiedBackup: Sendable {
    public var file: String
    public var manifest: BackupManifest
    /// The server config inside the backup (defaults when it had none). Never used for where things go: only the
    /// live install decides that.
    public var config: ServerConfig
    public var authentication: BackupAuthentication
}

/// What `warbler restore` is asked to do.
public struct RestoreRequest: Sendable {
    public var layout: Layout
    /// The backup archive, as this process sees it.
    public var file: String
    public var passphrase: String?
    /// Replace a database that already holds messages (without it, only an empty or missing one is replaced).
    public var force: Bool
    /// Restore an archive that carries no valid tag under this install's key or the passphrase.
    public var trustUnauthenticated: Bool
    /// Bring the restored SQLite database forward to this build's schema (off when a rollback restores the backup
    /// for an older release, which must find its own schema).
    public var migrate: Bool
    /// The one account besides root that restored files may belong to (the service user and its group).
    public var serviceUser: String
    /// How to tell whether the server is running; nil: `LiveServerActivity` on the configured ports.
    public var activity: (any ServerActivityProbe)?
    /// On a cluster member: how to ask etcd for the members (a restore needs this member to be the only one); nil:
    /// `LiveClusterView`.
    public var clusterView: (any ClusterView)?
    /// `WARBLER_*` overrides applied to the live config, as the server would apply them.
    public var environment: [String: String]

    public init(layout: Layout, file: String, passphrase: String? = nil, force: Bool = false, trustUnauthenticated: Bool = false,
                migrate: Bool = true, serviceUser: String = Blueprint.user,
                activity: (any ServerActivityProbe)? = nil, environment: [String: String] = [:], clusterView: (any ClusterView)? = nil) {
        self.layout = layout; self.file = file; self.passphrase = passphrase; self.force = force
        self.trustUnauthenticated = trustUnauthenticated; self.migrate = migrate; self.serviceUser = serviceUser
        self.activity = activity; self.environment = environment; self.clusterView = clusterView
    }
}

public struct RestoreResult: Sendable {
    public var manifest: BackupManifest
    public var authentication: BackupAuthentication
    /// Schema migrations run over the restored database (the backup was older than this build).
    public var migrationsApplied: [Int]
    /// The live paths that were replaced, as this process sees them.
    public var replaced: [String]
    /// What the operator must do next about the internal CA (the backup held no CA key), or nil.
    public var caNote: String?
    /// Further things the operator should know (a cluster restore: what it kept, what it deleted).
    public var notes: [String] = []
}

/// Verifies a backup (authentication, every checksum, the schema version, the passphrase) before anything changes,
/// then restores it: everything is unpacked into directories the restore made beside its destination, through
/// descriptors and never through a link, then renamed into place, so a failure at any point leaves the old state.
/// Every destination comes from the live install (its layout and config), never from the archive; modes lose
/// setuid, setgid and sticky bits; owners are root or the service user.
public struct RestoreEngine: Sendable {
    public var logger: Logger

    public init(logger: Logger = Logger(label: "warbler.restore")) {
        self.logger = logger
    }

    // MARK: Verify

    /// Reads the whole archive and checks it: only members a backup makes (files and directories, no links), each
    /// matching the manifest, the manifest authenticated by a tag under this install's key (`layout`'s
    /// /etc/warbler/secrets/backup-hmac.key) or the passphrase's key, the format and schema versions, and (when
    /// given) the passphrase and every encrypted secret. Changes nothing.
    public func verify(file: String, passphrase: String? = nil, layout: Layout = Layout(), trustUnauthenticated: Bool = false,
                       environment: [String: String] = [:]) throws -> VerifiedBackup {
        var seen: [String: (kind: BackupManifest.Entry.Kind, size: UInt64, sha256: String)] = [:]
        var order: [String] = []
        var manifestData: Data?
        var macData: Data?
        var configText: Data?
        var sealed: [String: Data] = [:]

        try readArchive(file) { header, reader in
            let path = try Self.checkMemberPath(header.path, file: file)
            guard macData == nil else {
                throw BackupError(.invalidArchive, "\(file) has a member (\(path)) after its \(ManifestMAC.memberName); it is not a Warbler backup or it was altered")
            }
            guard manifestData == nil || path == ManifestMAC.memberName else {
                throw BackupError(.invalidArchive, "\(file) has a member (\(path)) after its manifest; it is not a Warbler backup or it was altered")
            }
            guard seen[path] == nil else { throw BackupError(.invalidArchive, "\(file) holds \(path) twice; it was altered") }
            if let link = header.hardlink, !link.isEmpty {
                throw BackupError(.invalidArchive, "\(file) holds \(path) as a hard link (to \(link)); a backup never does: refusing it")
            }
            switch header.fileType {
            case S_IFREG:
                var hasher = SHA256()
                var size: UInt64 = 0
                let keep = path == BackupManifest.memberName || path == ManifestMAC.memberName || path == Member.etc + "/warbler.yaml" || Member.isSecret(path)
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
                if path == ManifestMAC.memberName {
                    guard manifestData != nil else { throw BackupError(.invalidArchive, "\(file) has its \(ManifestMAC.memberName) before its manifest; it was altered") }
                    macData = bytes
                    return
                }
                if path == Member.etc + "/warbler.yaml" { configText = bytes }
                if Member.isSecret(path) { sealed[path] = bytes }
                seen[path] = (.file, size, hasher.finalize().hex)
            case S_IFDIR:
                seen[path] = (.directory, 0, "")
            case S_IFLNK:
                throw BackupError(.invalidArchive, "\(file) holds \(path) as a symlink (to \(header.symlink ?? "?")); a backup never does, and a restore never writes through a link: refusing it")
            default:
                throw BackupError(.invalidArchive, "\(file) holds \(path), which is neither a file nor a directory; it was altered")
            }
            try Self.checkRole(path, kind: header.fileType == S_IFDIR ? .directory : .file, file: file)
            order.append(path)
        }
        guard let manifestData else {
            throw BackupError(.invalidArchive, "\(file) has no \(BackupManifest.memberName): it is not a Warbler backup, or it was cut short (copy it again)")
        }
        let manifest = try BackupManifest.decode(manifestData, file: file)
        guard manifest.format == BackupManifest.currentFormat || manifest.format == BackupManifest.clusterFormat else {
            throw BackupError(.invalidArchive, "\(file) is in backup format \(manifest.format); this build reads formats \(BackupManifest.currentFormat) and \(BackupManifest.clusterFormat): restore it with Warbler \(manifest.warblerVersion)")
        }
        guard (manifest.format == BackupManifest.clusterFormat) == (manifest.cluster != nil),
              manifest.cluster == nil || manifest.backend == .postgres else {
            throw BackupError(.invalidArchive, "\(file) has a manifest that is neither a single host's nor a cluster's (format \(manifest.format), cluster \(manifest.cluster == nil ? "absent" : "present"), \(manifest.backend.rawValue)); it was altered")
        }

        // Who made it: a tag under this install's key, or under the passphrase's key. Checked before the members,
        // so an altered archive is named as such even when the forger rewrote the checksums to match.
        let authentication = try authenticate(manifestData, macData: macData, manifest: manifest, file: file, passphrase: passphrase,
                                              layout: layout, trustUnauthenticated: trustUnauthenticated)

        // Every member must be what the manifest says, and the manifest must list nothing that is missing.
        for entry in manifest.entries {
            guard entry.kind != .symlink else {
                throw BackupError(.invalidArchive, "the manifest of \(file) lists \(entry.path) as a symlink; a backup never holds one: refusing it")
            }
            guard let got = seen.removeValue(forKey: entry.path) else {
                throw BackupError(.checksumMismatch, "\(entry.path) is listed in the manifest of \(file) but missing from the archive; use another backup")
            }
            guard got.kind == entry.kind else {
                throw BackupError(.checksumMismatch, "\(entry.path) in \(file) is a \(got.kind.rawValue), but the manifest says \(entry.kind.rawValue); use another backup")
            }
            if entry.kind == .file && (got.size != entry.size || got.sha256 != entry.sha256) {
                throw BackupError(.checksumMismatch, "checksum mismatch for \(entry.path) in \(file) (SHA-256 \(got.sha256), the manifest says \(entry.sha256)): the backup is damaged or was altered; use another backup")
            }
        }
        if let extra = order.first(where: { seen[$0] != nil }) {
            throw BackupError(.checksumMismatch, "\(extra) in \(file) is not in its manifest: the backup was altered; use another backup")
        }
        let database = manifest.backend == .sqlite ? Member.sqliteDatabase : Member.postgresDump
        guard manifest.entry(database)?.kind == .file else {
            throw BackupError(.invalidArchive, "\(file) holds no database (\(database)); it is not a complete Warbler backup")
        }
        if let other = manifest.entries.first(where: { $0.path.hasPrefix(Member.database + "/") && $0.path != database }) {
            throw BackupError(.invalidArchive, "\(file) is a \(manifest.backend.rawValue) backup but holds \(other.path); it was altered")
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
        return VerifiedBackup(file: file, manifest: manifest, config: config, authentication: authentication)
    }

    private func authenticate(_ manifestData: Data, macData: Data?, manifest: BackupManifest, file: String, passphrase: String?,
                              layout: Layout, trustUnauthenticated: Bool) throws -> BackupAuthentication {
        var tags: [ManifestMAC.Tag] = []
        if let macData {
            guard let mac = try? JSONDecoder().decode(ManifestMAC.self, from: macData), mac.algorithm == ManifestMAC.algorithm else {
                throw BackupError(.invalidArchive, "\(file) has an unreadable \(ManifestMAC.memberName); it is not a Warbler backup or it was altered")
            }
            tags = mac.tags
        }
        let keyPath = layout.path(BackupKey.path)
        var problems: [String] = []
        if let tag = tags.first(where: { $0.key == "install" }) {
            if let key = try BackupKey.load(layout: layout) {
                if Self.constantTimeEqual(tag.value, ManifestMAC.tag(manifestData, key: key)) { return .installKey }
                problems.append(tag.keyID != nil && tag.keyID != ManifestMAC.keyID(key)
                    ? "it was made under another install's backup key, not this one's (\(keyPath))"
                    : "its tag does not match under this install's backup key (\(keyPath)): it was altered")
            } else {
                problems.append("it is tagged with an install's backup key, but \(keyPath) is missing or unreadable here (restore runs as root; on a new host, copy the old host's key there first)")
            }
        }
        if let tag = tags.first(where: { $0.key == "passphrase" }) {
            if let passphrase, let encryption = manifest.encryption {
                let sealer = try SecretSealer(passphrase: passphrase, encryption: encryption, file: file)
                if Self.constantTimeEqual(tag.value, ManifestMAC.tag(manifestData, key: sealer.macKey)) { return .passphrase }
                problems.append("its tag does not match under the passphrase's key: it was altered")
            } else if passphrase == nil {
                problems.append("it is authenticated by its passphrase; pass --passphrase-file")
            }
        }
        if tags.isEmpty {
            problems.append("it carries no authentication tag (made by the service user's backup timer, which cannot read the install's key, by a build before backups were authenticated, or altered)")
        }
        if trustUnauthenticated {
            logger.warning("restoring \(file) although it is not authenticated (\(problems.joined(separator: "; "))), because of --trust-unauthenticated")
            return .trustedOnRequest
        }
        throw BackupError(.unauthenticated, "\(file) is not authenticated: \(problems.joined(separator: "; ")). A restore runs as root and must not act on a file that whoever can write the backup directory could have crafted. If you know where this file came from and that nobody altered it, run the restore again with --trust-unauthenticated")
    }

    private func id(_ c: BackupManifest.Cluster) -> String { "cluster \(c.id ?? "?"), \(c.node)" }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    // MARK: Restore

    /// Where things go: the live install's layout and config, never the archive's.
    struct Targets {
        var etc: String
        var dataDir: String
        var attachments: String
        var database: String
        var config: ServerConfig?
        var backend: BackupManifest.Backend
        /// Set when the live config does not load as a server config and its destinations were read leniently.
        var note: String?

        init(layout: Layout, environment: [String: String]) throws {
            let configPath = layout.path(Paths.config)
            if Files.lstat(configPath) != nil {
                do { config = try ServerConfig.load(path: configPath, environment: environment) } catch {
                    // A release that failed its upgrade may have written a config it alone understood (the rollback
                    // restores the one before it): where things are is still read from it, leniently. The file is
                    // root's (0640 root:warbler), so this is still the live install, not the archive.
                    guard let lenient = try? ServerConfig.load(path: configPath, environment: environment, lenient: true) else {
                        throw BackupError(.usage, "the live config \(configPath) does not load (\(error)); the restore takes every destination from it: fix it, or run `warbler install` first")
                    }
                    config = lenient
                    note = "the live config \(configPath) does not load (\(error)); took data_dir and storage from it as written"
                }
            }
            etc = layout.path(Paths.etc)
            dataDir = layout.path(config?.dataDir ?? Paths.data)
            attachments = dataDir + "/attachments"
            database = layout.path(config?.storage.path ?? Paths.database)
            backend = config?.storage.driver == "postgres" ? .postgres : .sqlite
        }
    }

    public func restore(_ request: RestoreRequest) async throws -> RestoreResult {
        let layout = request.layout
        let verified = try verify(file: request.file, passphrase: request.passphrase, layout: layout,
                                  trustUnauthenticated: request.trustUnauthenticated, environment: request.environment)
        let manifest = verified.manifest
        if manifest.entries.contains(where: \.encrypted) && request.passphrase == nil {
            throw BackupError(.passphrase, "the secrets in \(request.file) are encrypted; pass --passphrase-file with the passphrase the backup was made with")
        }
        let sealer = try request.passphrase.flatMap { p in try manifest.encryption.map { try SecretSealer(passphrase: p, encryption: $0, file: request.file) } }
        // A cluster's backup restores onto a cluster member, a single host's onto a single host: the two restore
        // different things to different places.
        let liveCluster = Files.lstat(layout.path(ClusterPaths.memberFile)) != nil
        // A member's backup made by a build from before cluster backups has format 1 but holds the member file.
        let backupOfMember = manifest.cluster != nil || manifest.entry(Member.cluster + "/member.json") != nil
        if backupOfMember && !liveCluster {
            throw BackupError(.wrongKind, "\(request.file) is a cluster's backup (\(manifest.cluster.map { "cluster \($0.id ?? "?"), " } ?? "")taken on \(manifest.cluster?.node ?? manifest.hostname)); this host is not a cluster member. Found a new cluster with `warbler install --cluster-init …` on this host, then restore it there")
        }
        if !backupOfMember && liveCluster {
            throw BackupError(.wrongKind, "\(request.file) is a single host's backup (taken on \(manifest.hostname)); this host is a cluster member (\(layout.path(ClusterPaths.memberFile))). Restore it onto a single-node install (`warbler install` without --cluster-init)")
        }
        if let cluster = manifest.cluster, liveCluster {
            // This member's own backup in this same cluster (a rollback's pre-upgrade backup) puts the member back as
            // it was, like a host's restore; any other goes onto a freshly founded cluster.
            let view = request.clusterView ?? LiveClusterView(layout: layout)
            var own = false
            if let id = cluster.id, cluster.node == (try? view.node()) {
                do { own = try view.state().id == id } catch {
                    throw BackupError(.otherMembers, "\(request.file) is this member's backup; cannot ask etcd whether it is from this same cluster (\(error)). Check `warbler cluster status`, then restore again")
                }
            }
            if !own { return try await restoreCluster(request, verified: verified, sealer: sealer) }
            logger.notice("\(request.file) is this member's own backup in this cluster (\(id(cluster))): restoring it as the member's state")
        }
        let live = try Targets(layout: layout, environment: request.environment)
        if let note = live.note { logger.warning("\(note)") }
        guard live.backend == manifest.backend else {
            throw BackupError(.usage, "\(request.file) holds a \(manifest.backend.rawValue) database, but this install uses \(live.backend.rawValue) (storage.driver in \(layout.path(Paths.config))); install with the backup's storage driver first, then restore")
        }
        if verified.config.storage.path != (live.config?.storage.path ?? Paths.database) || verified.config.dataDir != (live.config?.dataDir ?? Paths.data) {
            logger.warning("the backup's config places the data elsewhere (data_dir \(verified.config.dataDir), storage.path \(verified.config.storage.path)); the restore puts it where this install keeps it (\(live.dataDir), \(live.database))")
        }

        // The server must be stopped: it holds the database open and would write over what we put back.
        var ports = [verified.config.server.port]
        if let port = live.config?.server.port { ports.append(port) }
        let activity = request.activity ?? LiveServerActivity(layout: layout, ports: Array(Set(ports)).sorted())
        if let evidence = activity.runningEvidence() {
            throw BackupError(.serverRunning, "the Warbler server is running (\(evidence)); stop it with systemctl stop warbler-server (or stop `warbler supervise`), then restore again")
        }

        // PostgreSQL is reached as the live config says, with the live password file.
        // (A cluster member's root reads its own copy of the password.)
        let pg: Database.Postgres? = manifest.backend == .postgres
            ? try Database.Postgres(config: live.config ?? ServerConfig(), layout: layout, rootCopy: liveCluster && geteuid() == 0) : nil

        // Never replace someone's history by accident; asked before anything is unpacked.
        if !request.force {
            let hasMessages: Bool
            if let pg {
                hasMessages = try await Database.postgresHasMessages(pg, logger: logger)
            } else {
                hasMessages = try await Database.sqliteHasMessages(live.database, logger: logger)
            }
            if hasMessages {
                let target = pg?.endpoint ?? live.database
                throw BackupError(.targetHasData, "the database \(target) already holds messages; restoring replaces them with the backup's. Take a backup of it first if you need it, then run restore again with --force")
            }
        }

        // Owners: root or the service user, by name; anything else stays root's.
        let isRoot = geteuid() == 0
        let allowedUsers: Set<String> = ["root", request.serviceUser]
        var allowedGroups: Set<String> = ["root", request.serviceUser]
        if let pw = getpwnam(request.serviceUser) { allowedGroups.insert(Files.groupName(pw.pointee.pw_gid)) }
        func owner(_ entry: BackupManifest.Entry) -> (uid: uid_t, gid: gid_t)? {
            guard isRoot else { return nil }
            let user = allowedUsers.contains(entry.owner) ? entry.owner : "root"
            let group = allowedGroups.contains(entry.group) ? entry.group : "root"
            guard let pw = getpwnam(user) else { return (0, 0) }
            let uid = pw.pointee.pw_uid
            guard let gr = getgrnam(group) else { return (uid, 0) }
            return (uid, gr.pointee.gr_gid)
        }
        if isRoot {
            let strangers = Set(manifest.entries.map(\.owner)).subtracting(allowedUsers).union(Set(manifest.entries.map(\.group)).subtracting(allowedGroups))
            if !strangers.isEmpty {
                logger.warning("the backup names owners other than root and \(request.serviceUser) (\(strangers.sorted().joined(separator: ", "))): those files belong to root")
            }
            if getpwnam(request.serviceUser) == nil {
                logger.warning("this host has no user \(request.serviceUser): its files keep root as owner; run warbler install first, then restore again")
            }
        }

        // Unpack everything into directories made beside where it goes. Nothing live changes yet.
        try Files.makeDirectories(Files.parent(live.etc), mode: 0o755)
        try Files.makeDirectories(live.dataDir, mode: 0o700)
        var stages: [Stage] = []
        defer { for s in stages { s.destroy() } }
        let etcStage = try Stage(besides: live.etc, tag: "restore")
        stages.append(etcStage)
        let dataStage = try Stage(besides: live.attachments, tag: "restore")
        stages.append(dataStage)
        var dbStage: Stage?
        if manifest.backend == .sqlite {
            try Files.makeDirectories(Files.parent(live.database), mode: 0o700)
            dbStage = try Stage(besides: live.database, tag: "restore")
            stages.append(dbStage!)
        }

        /// The stage and the path in it a member goes to; nil for a member a backup never has.
        func staged(_ member: String) -> (Stage, String)? {
            if member == Member.etc { return (etcStage, "warbler") }
            if member.hasPrefix(Member.etc + "/") { return (etcStage, "warbler/" + member.dropFirst(Member.etc.count + 1)) }
            if member == Member.attachments || member.hasPrefix(Member.attachments + "/") { return (dataStage, member) }
            if member == Member.sqliteDatabase, let dbStage { return (dbStage, "warbler.db") }
            if member == Member.postgresDump { return (dataStage, "warbler.pgdump") }
            return nil
        }

        let entries = Dictionary(manifest.entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var unpacked = Set<String>()
        try readArchive(request.file) { header, reader in
            let member = try Self.checkMemberPath(header.path, file: request.file)
            if member == BackupManifest.memberName || member == ManifestMAC.memberName { return }
            guard let entry = entries[member], let place = staged(member) else {
                throw BackupError(.checksumMismatch, "\(member) in \(request.file) is not in its manifest; the file changed while it was being restored")
            }
            let (stage, relative) = place
            guard unpacked.insert(member).inserted else {
                throw BackupError(.checksumMismatch, "\(member) appears twice in \(request.file); the file changed while it was being restored")
            }
            let isDirectory = header.fileType == S_IFDIR
            guard header.hardlink == nil || header.hardlink?.isEmpty == true, isDirectory || header.fileType == S_IFREG,
                  isDirectory == (entry.kind == .directory) else {
                throw BackupError(.checksumMismatch, "\(member) in \(request.file) is not the kind its manifest says; the file changed while it was being restored")
            }
            switch entry.kind {
            case .directory:
                try stage.makeDirectory(relative)
            case .symlink:
                throw BackupError(.invalidArchive, "\(member) in \(request.file) is a symlink; refusing it")
            case .file:
                let fd = try stage.createFile(relative)
                defer { close(fd) }
                let target = stage.path + "/" + relative
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
        guard unpacked.count == manifest.entries.count else {
            throw BackupError(.checksumMismatch, "\(request.file) lost members while it was being restored (it changed since it was verified); nothing was replaced")
        }
        if !dataStage.contains(Member.attachments) {
            // The backup had no attachments: the restored state has none either, in a directory the server can
            // write (owned like the data directory it lives in, not by root, who runs the restore).
            try dataStage.makeDirectory(Member.attachments)
            var st = stat()
            let dataOwner: (uid_t, gid_t)? = isRoot && lstat(live.dataDir, &st) == 0 ? (st.st_uid, st.st_gid) : nil
            try dataStage.setAttributes(Member.attachments, mode: 0o700, owner: dataOwner)
        }

        // The install's own keys stay the install's: the backup key never travels in a backup, and a backup
        // without the CA key (an unattended one) keeps the live CA, or drops the lone certificate so that
        // `warbler install` makes a new CA.
        var caNote: String?
        if manifest.entry(Member.etc) != nil {
            try carry(BackupKey.path, from: layout, into: etcStage, creatingParent: true)
            if manifest.entry(Member.etc + "/tls/ca.crt") != nil && manifest.entry(Member.etc + "/tls/ca.key") == nil {
                if Files.lstat(layout.path(Paths.caKey))?.kind == .file && Files.lstat(layout.path(Paths.caCert))?.kind == .file {
                    try etcStage.remove("warbler/tls/ca.crt")
                    try carry(Paths.caCert, from: layout, into: etcStage, creatingParent: false)
                    try carry(Paths.caKey, from: layout, into: etcStage, creatingParent: false)
                    caNote = "the backup holds no CA key (an unattended backup): this install's internal CA was kept; run `warbler install --yes` to issue a server certificate from it if the backup's is from another CA"
                } else {
                    try etcStage.remove("warbler/tls/ca.crt")
                    caNote = "the backup holds no CA key (an unattended backup) and this host has no internal CA: run `warbler install --yes` to make a new internal CA and server certificate; clients must then trust the new CA (its fingerprint is printed)"
                }
                logger.warning("\(caNote!)")
            }
        }

        // Modes (never setuid, setgid or sticky) and owners (root or the service user), through descriptors.
        for entry in manifest.entries.reversed() {
            // (A CA certificate left out above has no attributes to set.)
            guard entry.path != Member.postgresDump, let place = staged(entry.path), place.0.contains(place.1) else { continue }
            if entry.path == Member.sqliteDatabase && request.migrate { continue }  // after its migration, below
            try place.0.setAttributes(place.1, mode: mode_t(entry.mode) & 0o777, owner: owner(entry))
        }

        var migrations: [Int] = []
        if let dbStage, manifest.backend == .sqlite, request.migrate {
            // Forward to this build's schema before it goes live: a failure here leaves the old state untouched.
            migrations = try await Database.migrateSQLite(in: dbStage, name: "warbler.db", logger: logger)
            if let entry = manifest.entry(Member.sqliteDatabase) {
                try dbStage.setAttributes("warbler.db", mode: mode_t(entry.mode) & 0o777, owner: owner(entry))
            }
        }

        // Swap in: each live path is set aside, then the staged one renamed over it. On failure, undo in reverse.
        var swaps = Swaps()
        do {
            for stage in stages { try stage.requireInPlace() }
            // A backup of a host without /etc/warbler (a bare `warbler server`) leaves the live one alone.
            if manifest.entry(Member.etc) != nil {
                try swaps.replace(live: live.etc, with: etcStage.path + "/warbler", aside: etcStage.path + "/old")
            }
            try swaps.replace(live: live.attachments, with: dataStage.path + "/" + Member.attachments, aside: dataStage.path + "/old")
            if let dbStage {
                // The old database's WAL would be replayed into the new file: it goes aside with it. So does the
                // search index's file (migration 14), which indexes the old database: the server builds a new one.
                try dbStage.makeDirectory("old")
                for suffix in ["-wal", "-shm", "-search", "-search-wal", "-search-shm"] where Files.exists(live.database + suffix) {
                    try swaps.replace(live: live.database + suffix, with: nil, aside: dbStage.path + "/old/db" + suffix)
                }
                try swaps.replace(live: live.database, with: dbStage.path + "/warbler.db", aside: dbStage.path + "/old/db")
            }
            if let pg {
                try dataStage.requireInPlace()
                try Database.restorePostgres(pg, dump: dataStage.path + "/warbler.pgdump")
            }
        } catch {
            swaps.undo(logger: logger)
            throw error
        }
        for path in [Files.parent(live.etc), live.dataDir, Files.parent(live.database)] { try? Files.fsync(path) }
        if let pg, request.migrate {
            migrations = try await Database.migratePostgres(pg, logger: logger)
        }
        logger.info("restore done", metadata: ["backup.file": "\(request.file)", "backup.schema": "\(manifest.schemaVersion)",
                                               "backup.authentication": "\(verified.authentication.rawValue)"])
        return RestoreResult(manifest: manifest, authentication: verified.authentication, migrationsApplied: migrations,
                             replaced: swaps.done.map(\.live), caNote: caNote)
    }

    /// Copies a live file of the install (root's, under /etc/warbler) into the etc stage, keeping its mode and owner.
    private func carry(_ hostPath: String, from layout: Layout, into stage: Stage, creatingParent: Bool) throws {
        let source = layout.path(hostPath)
        guard hostPath.hasPrefix(Paths.etc + "/"), let st = Files.lstat(source), st.kind == .file else { return }
        let relative = "warbler/" + hostPath.dropFirst(Paths.etc.count + 1)
        let parent = (relative as NSString).deletingLastPathComponent
        if !stage.contains(parent) {
            guard creatingParent else { return }
            try stage.makeDirectory(parent)
        }
        let input = try Files.open(source, O_RDONLY | O_NOFOLLOW)
        defer { close(input) }
        let output = try stage.createFile(relative)
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(input, &buffer, buffer.count)
            if n < 0 { if errno == EINTR { continue }; throw BackupError.io("cannot read", path: source) }
            if n == 0 { break }
            try buffer.withUnsafeBytes { try Files.writeAll(fd: output, path: stage.path + "/" + relative, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        guard fsync(output) == 0 else { throw BackupError.io("cannot sync", path: stage.path + "/" + relative) }
        try stage.setAttributes(relative, mode: mode_t(st.mode) & 0o777, owner: geteuid() == 0 ? (st.uid, st.gid) : nil)
    }

    // MARK: Reading

    func readArchive(_ file: String, _ body: (ArchiveReader.Header, ArchiveReader) throws -> Void) throws {
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

    /// Members may only be the manifest, its tag, or lie under etc/warbler, attachments or database, with no `..`,
    /// no empty or `.` component, not absolute.
    static func checkMemberPath(_ raw: String, file: String) throws -> String {
        var path = Substring(raw)
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        while path.hasSuffix("/") { path = path.dropLast() }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let allowedRoots = [BackupManifest.memberName, ManifestMAC.memberName, "etc", Member.attachments, Member.database]
        guard !path.isEmpty, !raw.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
              !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "\\" }),
              allowedRoots.contains(String(parts[0])),
              parts[0] != "etc" || path == Member.etc || path.hasPrefix(Member.etc + "/") else {
            throw BackupError(.invalidArchive, "\(file) holds a member that a backup never has (\(raw.debugDescription)); refusing it")
        }
        return String(path)
    }

    /// Only the paths a backup makes, each of the kind it makes: the etc/warbler tree (never the backup key), the
    /// attachments tree, and one database file.
    static func checkRole(_ path: String, kind: BackupManifest.Entry.Kind, file: String) throws {
        let ok: Bool
        switch path {
        case Member.etc, Member.attachments: ok = kind == .directory
        case Member.sqliteDatabase, Member.postgresDump: ok = kind == .file
        case Member.etc + "/" + String(BackupKey.path.dropFirst(Paths.etc.count + 1)): ok = false
        default: ok = path.hasPrefix(Member.etc + "/") || path.hasPrefix(Member.attachments + "/")
        }
        guard ok else {
            throw BackupError(.invalidArchive, "\(file) holds \(path) as a \(kind.rawValue), which a backup never has; refusing it")
        }
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

import Crypto
import DurableFiles
import Foundation
import Glibc
import Installer
import WarblerConfig

extension RestoreEngine {
    /// A cluster's backup onto a freshly founded cluster (`install --cluster-init` on a new host), run on that host
    /// while it is the cluster's only member and its IM server is stopped. It puts back what the data needs and
    /// keeps what belongs to the new cluster's running components:
    /// - the database: `pg_restore --clean --if-exists --single-transaction --no-owner` into the primary, through
    ///   the local primary listener as the IM server's role (one transaction: all or nothing), then the migrations
    ///   forward, then the old cluster's join tokens deleted (they name the old CA and carry its secrets);
    /// - the token signing key (the service's file and root's copy, which the join bundle carries), so every
    ///   token the old cluster issued stays valid, here and on every host that joins afterwards.
    /// The new cluster's CA, member certificates, etcd, PostgreSQL and Patroni passwords and configs stay: they are
    /// what its etcd, Patroni and HAProxy run with now. The backup's copies are in the archive for a person to read.
    func restoreCluster(_ request: RestoreRequest, verified: VerifiedBackup, sealer: SecretSealer?) async throws -> RestoreResult {
        let layout = request.layout
        let manifest = verified.manifest
        let configPath = layout.path(Paths.config)
        let config: ServerConfig
        do { config = try ServerConfig.load(path: configPath, environment: request.environment) } catch {
            throw BackupError(.usage, "the live config \(configPath) does not load (\(error)); run `warbler install` again, then restore")
        }
        guard config.storage.driver == "postgres" else {
            throw BackupError(.usage, "this cluster member's config \(configPath) does not use PostgreSQL (storage.driver \(config.storage.driver)); run `warbler install` again")
        }

        // Alone in the cluster: the restored key must reach every member, and the only way it does is the join
        // bundle of hosts that join afterwards. Members already there would keep the new cluster's key.
        let view = request.clusterView ?? LiveClusterView(layout: layout)
        let me = try view.node()
        let members: [ClusterMember]
        do { members = try view.state().members } catch {
            throw BackupError(.otherMembers, "cannot ask etcd for the cluster's members (\(error)); a restore needs to know this host is the only one. Check `warbler cluster status`, then restore again")
        }
        let others = members.filter { $0.name != me }
        guard others.isEmpty else {
            throw BackupError(.otherMembers, "this cluster has other members (\(others.map(\.name).joined(separator: ", "))): restore onto a freshly founded cluster before any other host joins, so that every host gets the restored token key when it joins. Uninstall those hosts (`warbler uninstall` on each), restore here, then join them again")
        }

        // The IM server must be stopped: it would write between the restore's transaction and its key change, and
        // it keeps the old key in memory.
        let activity = request.activity ?? LiveServerActivity(layout: layout, ports: [config.server.port])
        if let evidence = activity.runningEvidence() {
            throw BackupError(.serverRunning, "the IM server on this member is running (\(evidence)); stop it with `systemctl stop warbler-server`, then restore again")
        }

        let pg = try Database.Postgres(config: config, layout: layout, rootCopy: true)
        if !request.force, try await Database.postgresHasMessages(pg, logger: logger) {
            throw BackupError(.targetHasData, "the cluster's database \(pg.endpoint) already holds messages; restoring replaces them with the backup's. Take a backup of it first if you need it, then run restore again with --force")
        }

        // Unpack the dump and the token key into a directory only root reaches; nothing live changes yet.
        let stateDir = layout.path(Paths.installState)
        try Files.makeDirectories(stateDir, mode: 0o700)
        let stage = try Stage(besides: stateDir + "/cluster-restore", tag: "restore")
        defer { stage.destroy() }
        let jwtMember = Member.etc + "/" + Paths.jwtKey.dropFirst(Paths.etc.count + 1)
        var jwtKey: Data?
        let entries = Dictionary(manifest.entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        try readArchive(request.file) { header, reader in
            let member = try Self.checkMemberPath(header.path, file: request.file)
            guard member == Member.postgresDump || member == jwtMember else { return }
            guard let entry = entries[member], header.fileType == S_IFREG else {
                throw BackupError(.checksumMismatch, "\(member) in \(request.file) is not in its manifest; the file changed while it was being restored")
            }
            var hasher = SHA256()
            if member == Member.postgresDump {
                let fd = try stage.createFile("warbler.pgdump")
                defer { close(fd) }
                try reader.readData { chunk in
                    hasher.update(bufferPointer: chunk)
                    try Files.writeAll(fd: fd, path: stage.path + "/warbler.pgdump", chunk)
                }
                guard fsync(fd) == 0 else { throw BackupError.io("cannot sync", path: stage.path + "/warbler.pgdump") }
            } else {
                var stored = Data()
                try reader.readData { chunk in
                    hasher.update(bufferPointer: chunk)
                    stored.append(contentsOf: chunk)
                }
                if entry.encrypted {
                    guard let sealer else { throw BackupError(.passphrase, "\(member) is encrypted; pass --passphrase-file") }
                    stored = try sealer.open(stored, path: member)
                }
                jwtKey = stored
            }
            guard hasher.finalize().hex == entry.sha256 else {
                throw BackupError(.checksumMismatch, "checksum mismatch for \(member) in \(request.file): the file changed while it was being restored; nothing was changed")
            }
        }
        guard stage.contains("warbler.pgdump") else {
            throw BackupError(.invalidArchive, "\(request.file) holds no database dump; nothing was changed")
        }
        guard let jwtKey, !jwtKey.isEmpty else {
            throw BackupError(.invalidArchive, "\(request.file) holds no token signing key (\(jwtMember)); without it every token the old cluster issued would be refused. Use a backup that has it; nothing was changed")
        }

        // The database, in one transaction: a failure leaves it as it was (and the keys untouched).
        try stage.requireInPlace()
        try Database.restorePostgres(pg, dump: stage.path + "/warbler.pgdump")
        let migrations = request.migrate ? try await Database.migratePostgres(pg, logger: logger) : []
        var notes: [String] = []
        do {
            let driver = try await pg.connect(logger: logger)
            let dropped = try? await driver.write { db -> Int in
                guard try await db.first("SELECT to_regclass('cluster_join_tokens') IS NOT NULL AS present")?.bool("present") == true else { return 0 }
                return Int(try await db.first("WITH d AS (DELETE FROM cluster_join_tokens RETURNING 1) SELECT COUNT(*) AS n FROM d")?.int("n") ?? 0)
            }
            try? await driver.close()
            if let dropped, dropped > 0 { notes.append("deleted the old cluster's \(dropped) join token(s): make new ones with `warbler cluster token`") }
        } catch {
            notes.append("could not delete the old cluster's join tokens (\(error)); they cannot join this cluster (they name the old CA), revoke them with `warbler cluster token --revoke ID`")
        }

        // The token signing key: the server's file (the service user's, as the installer made it) and root's copy.
        var replaced: [String] = []
        let serviceKey = layout.path(config.auth.jwtKeyFile.isEmpty ? Paths.jwtKey : config.auth.jwtKeyFile)
        let rootKey = layout.path(ClusterPaths.jwtKeyRootCopy)
        do {
            for (path, fallbackOwner) in [(serviceKey, request.serviceUser), (rootKey, "root")] {
                // Keep the owner the installer gave the live file; a missing one gets the usual owner.
                var st = stat()
                let owner: (uid: uid_t, gid: gid_t)?
                if geteuid() != 0 {
                    owner = nil
                } else if Glibc.lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG {
                    owner = (st.st_uid, st.st_gid)
                } else if let pw = getpwnam(fallbackOwner) {
                    owner = (pw.pointee.pw_uid, pw.pointee.pw_gid)
                } else {
                    owner = (0, 0)
                }
                try AtomicFile.write(jwtKey, to: path, mode: 0o600, owner: owner)
                replaced.append(path)
            }
        } catch {
            throw BackupError(.io, "the database was restored, but the token signing key could not be written (\(error)): old tokens are refused until it is; run the restore again with --force")
        }
        notes.append("kept this cluster's own CA, member certificates and etcd, PostgreSQL and Patroni secrets (its components run with them); the backup's copies stay in the archive")
        logger.info("cluster restore done", metadata: ["backup.file": "\(request.file)", "backup.schema": "\(manifest.schemaVersion)",
                                                       "backup.cluster": "\(manifest.cluster?.id ?? "?")"])
        return RestoreResult(manifest: manifest, authentication: verified.authentication, migrationsApplied: migrations,
                             replaced: replaced, caNote: nil, notes: notes)
    }
}

import DurableFiles
import Foundation
import Glibc
import WarblerConfig
import IMStorage
import IMStoragePostgres
import IMStorageSQLite
import Installer
import Logging
import SQLiteNIO

/// The database side of backup and restore: a consistent snapshot, its schema version, and putting it back.
enum Database {
    // MARK: SQLite

    /// Writes a consistent copy of the live SQLite database at `source` to `destination` while the server keeps
    /// writing, with `VACUUM INTO`: it reads the whole database inside one read transaction, so the copy is the
    /// database as of one commit (WAL readers never block the writer, nor it them). The copy is then checked with
    /// `PRAGMA integrity_check`.
    static func snapshotSQLite(source: String, destination: String, logger: Logger) async throws {
        // The destination is the backup's scratch directory reached through its descriptor's /proc path, a link the
        // no-link connection refuses: it gets the directory's own path (realpath). That directory is the running
        // user's own: in root's 0700 state directory for root, in the service user's backup directory for its
        // unattended run (whose /proc link is that user's, so root's rule for links would refuse it).
        let parent = Files.parent(destination)
        guard let resolved = realpath(parent, nil) else { throw BackupError.io("cannot resolve the snapshot's directory", path: parent) }
        let into = String(cString: resolved) + "/" + (destination as NSString).lastPathComponent
        free(resolved)
        let connection = try await openLiveSQLite(source)
        do {
            _ = try await connection.query("PRAGMA busy_timeout=10000")
            _ = try await connection.query("VACUUM INTO ?1", [.text(into)])
            await connection.close()
        } catch {
            await connection.close()
            throw BackupError(.database, "cannot snapshot the SQLite database \(source): \(error)")
        }
        let check = try await integrityCheck(destination, logger: logger)
        guard check == "ok" else {
            throw BackupError(.database, "the snapshot of \(source) fails PRAGMA integrity_check (\(check)); the live database may be damaged")
        }
    }

    /// Opens the live database at `path` (in the service user's directory) for root, acting on nothing that user
    /// could have pointed elsewhere:
    /// - `SQLiteNoFollowConnection` refuses a link anywhere in the path, and SQLite opens the database, its -wal and
    ///   its -shm with `O_NOFOLLOW`, so a link swapped in after the checks below is refused too;
    /// - the database, and the -wal and -shm that exist, must be regular files of one owner with one link each: a
    ///   hard link planted as the -shm would have root truncate and write another file (where the kernel lets
    ///   anyone link another's file: `fs.protected_hardlinks` off).
    /// A -wal or -shm that root's open creates (the server stopped), SQLite gives to the database's owner.
    static func openLiveSQLite(_ shown: String) async throws -> SQLiteNoFollowConnection {
        guard Files.exists(shown) else {
            throw BackupError(.database, "there is no SQLite database at \(shown); check storage.path in the config (is Warbler installed?)")
        }
        // The directories above it as they really are: a link of root's (/var on another disk) is resolved here by
        // the rules root follows links by, so that SQLite, which refuses every link, sees none.
        let path = try Files.linkFreeDirectory(Files.parent(shown)) + "/" + (shown as NSString).lastPathComponent
        guard let owner = Files.lstat(path), owner.kind == .file else {
            throw BackupError(.database, "there is no SQLite database at \(path); check storage.path in the config (is Warbler installed?)")
        }
        guard owner.links == 1 else {
            throw BackupError(.database, "the SQLite database \(path) has \(owner.links) hard links, where Warbler's has one; the other names are someone else's: find them with `find / -xdev -samefile \(path)`, remove them, then try again")
        }
        for sidecar in ["-wal", "-shm"].map({ path + $0 }) {
            guard let st = Files.lstat(sidecar) else { continue }
            guard st.kind == .file, st.links == 1, st.uid == owner.uid else {
                throw BackupError(.database, "\(sidecar) is not the database's own file (a link, a file with other names, or another owner than the database's); stop the server, remove \(sidecar) (SQLite makes it again), then try again")
            }
        }
        do {
            return try await SQLiteNoFollowConnection.open(path: path)
        } catch {
            throw BackupError(.database, "cannot open the SQLite database \(path): \(error); it must be a regular file reached through no link")
        }
    }

    static func integrityCheck(_ path: String, logger: Logger) async throws -> String {
        let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        do {
            let rows = try await connection.query("PRAGMA integrity_check", [])
            try await connection.close()
            return rows.compactMap { $0.column("integrity_check")?.string }.joined(separator: "; ")
        } catch {
            try? await connection.close()
            throw BackupError(.database, "cannot check \(path): \(error)")
        }
    }

    /// The schema version recorded in a SQLite database file (0 when it has no `schema_migrations`).
    static func sqliteSchemaVersion(_ path: String, logger: Logger) async throws -> Int {
        let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        do {
            let tables = try await connection.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'", [])
            var version = 0
            if !tables.isEmpty {
                let rows = try await connection.query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations", [])
                version = Int(rows.first?.column("v")?.integer ?? 0)
            }
            try await connection.close()
            return version
        } catch {
            try? await connection.close()
            throw BackupError(.database, "cannot read the schema version of \(path): \(error)")
        }
    }

    /// Brings a restored SQLite file forward to this build's schema, then closes it and removes its WAL files.
    static func migrateSQLite(in stage: Stage, name: String, logger: Logger) async throws -> [Int] {
        // The stage is root's directory inside the service user's, which that user can rename things in: SQLite opens
        // it by its real path now, through no link, and its -wal and -shm are removed through the stage's descriptor.
        try stage.requireInPlace()
        let driver = try await SQLiteDriver.open(path: try stage.realPath() + "/" + name, readers: 1, logger: logger, noFollow: true)
        let applied: [Int]
        do {
            applied = try await Migrations.apply(driver, now: Int64(Date().timeIntervalSince1970 * 1000))
        } catch {
            try? await driver.close()
            throw BackupError(.database, "cannot bring the restored database forward to schema version \(Migrations.latest): \(error)")
        }
        try await driver.close()
        for suffix in ["-wal", "-shm"] { try stage.remove(name + suffix) }
        return applied
    }

    /// Whether the SQLite database at `path` holds any message.
    static func sqliteHasMessages(_ path: String, logger: Logger) async throws -> Bool {
        guard Files.lstat(path)?.kind == .file else { return false }
        let connection = try await openLiveSQLite(path)
        do {
            let tables = try await connection.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
            var found = false
            if !tables.isEmpty { found = !(try await connection.query("SELECT 1 FROM messages LIMIT 1")).isEmpty }
            await connection.close()
            return found
        } catch {
            await connection.close()
            throw BackupError(.database, "cannot read \(path): \(error)")
        }
    }

    // MARK: PostgreSQL

    /// How to reach the configured PostgreSQL, password included (read from its file under the layout).
    struct Postgres: Sendable {
        var host: String
        var port: Int
        var user: String
        var password: String
        var database: String
        var tls: Bool
        /// The CA the server's certificate must chain to (storage.postgres_ca_file, under the layout); empty: the
        /// system's roots.
        var caFile: String

        /// `rootCopy`: a cluster member's root reads root's copy of the IM server's password
        /// (/etc/warbler/cluster/secrets/postgres-app), never the service user's file, which that user could rewrite.
        init(config: ServerConfig, layout: Layout, passwordFileRoot: ((String) -> String)? = nil, rootCopy: Bool = false) throws {
            let s = config.storage
            host = s.postgresHost; port = s.postgresPort; user = s.postgresUser; database = s.postgresDatabase; tls = s.postgresTls
            caFile = s.postgresCaFile.isEmpty ? "" : layout.path(s.postgresCaFile)
            if !caFile.isEmpty && geteuid() == 0 { try Self.checkRootCA(caFile) }
            password = s.postgresPassword
            if rootCopy {
                let file = layout.path(ClusterPaths.appPasswordRootCopy)
                do { password = try RootFile.readText(file) } catch {
                    throw BackupError(.database, "cannot read root's copy of the database password \(file) (\(error)); run `warbler install` again to rewrite it")
                }
            } else if !s.postgresPasswordFile.isEmpty {
                let file = passwordFileRoot?(s.postgresPasswordFile) ?? layout.path(s.postgresPasswordFile)
                // Root (a root-run backup or restore) reads a file the service user may keep: never through a link,
                // which would have root hand another file's contents to the database server as a password.
                do { password = try RootFile.readText(file, owners: Files.trustedOwners) } catch {
                    throw BackupError(.database, "cannot read storage.postgres_password_file \(file): \(error)")
                }
            }
        }

        /// pg_dump, pg_restore and our own connection read the CA by path, following links: root hands them only
        /// a CA that nobody but root can change or swap (root's file, writable by no one else, read here without
        /// following a link, in a directory only root can write), never one the service user could point elsewhere.
        static func checkRootCA(_ file: String) throws {
            do {
                _ = try RootFile.read(file)
                let dir = try RootFile.openDirectory((file as NSString).deletingLastPathComponent, owners: [0])
                close(dir)
            } catch {
                throw BackupError(.database, "storage.postgres_ca_file: \(error); root hands pg_dump only a CA certificate that root owns in a directory only root can write: put it under /etc/warbler (chown root, chmod 644) or run `warbler install` again, which writes the cluster's there")
            }
        }

        /// libpq's connection settings for pg_dump and pg_restore. The password goes in the environment, never argv
        /// (which every user on the host can read in /proc).
        var environment: [String: String] {
            var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }
            env["PGHOST"] = host
            env["PGPORT"] = String(port)
            env["PGUSER"] = user
            env["PGDATABASE"] = database
            // With a CA (a cluster's, or the site's --database-ca-file) the server is verified as the IM server
            // verifies it: chain and name.
            if tls && !caFile.isEmpty {
                env["PGSSLMODE"] = "verify-full"
                env["PGSSLROOTCERT"] = caFile
            } else {
                env["PGSSLMODE"] = tls ? "require" : "prefer"
            }
            env["PGCONNECT_TIMEOUT"] = "10"
            if !password.isEmpty { env["PGPASSWORD"] = password }
            return env
        }

        var endpoint: String { "\(user)@\(host):\(port)/\(database)" }

        func connect(logger: Logger) async throws -> PostgresDriver {
            do {
                return try await PostgresDriver.connect(host: host, port: port, username: user, password: password.isEmpty ? nil : password,
                                                        database: database, tls: tls, caFile: caFile.isEmpty ? nil : caFile,
                                                        maxConnections: 2, logger: logger)
            } catch {
                throw BackupError(.database, "\(error)")
            }
        }
    }

    /// `pg_dump --format=custom` of the configured database into `destination`. pg_dump's snapshot is consistent
    /// (one repeatable-read transaction) while the servers keep writing.
    static func dumpPostgres(_ pg: Postgres, destination: String) throws {
        let result = try run(tool: "pg_dump", ["--format=custom", "--no-password", "--file", destination], environment: pg.environment)
        guard result.status == 0 else {
            throw BackupError(.database, "pg_dump of \(pg.endpoint) failed (status \(result.status)): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// `pg_restore --clean --if-exists --single-transaction`: the dump replaces what is there in one transaction,
    /// so a failure leaves the database as it was.
    static func restorePostgres(_ pg: Postgres, dump: String) throws {
        let result = try run(tool: "pg_restore", ["--clean", "--if-exists", "--single-transaction", "--exit-on-error", "--no-owner",
                                                  "--no-password", "--dbname", pg.database, dump], environment: pg.environment)
        guard result.status == 0 else {
            throw BackupError(.database, "pg_restore into \(pg.endpoint) failed (status \(result.status)), nothing was changed in the database: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    static func postgresSchemaVersion(_ pg: Postgres, logger: Logger) async throws -> Int {
        let driver = try await pg.connect(logger: logger)
        do {
            let version = try await driver.read { db -> Int in
                guard try await db.first("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")?.bool("present") == true else { return 0 }
                return Int(try await db.first("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")?.int("v") ?? 0)
            }
            try await driver.close()
            return version
        } catch {
            try? await driver.close()
            throw BackupError(.database, "cannot read the schema version of \(pg.endpoint): \(error)")
        }
    }

    static func postgresHasMessages(_ pg: Postgres, logger: Logger) async throws -> Bool {
        let driver = try await pg.connect(logger: logger)
        do {
            let found = try await driver.read { db -> Bool in
                guard try await db.first("SELECT to_regclass('messages') IS NOT NULL AS present")?.bool("present") == true else { return false }
                return try await db.first("SELECT 1 AS one FROM messages LIMIT 1") != nil
            }
            try await driver.close()
            return found
        } catch {
            try? await driver.close()
            throw BackupError(.database, "cannot read \(pg.endpoint): \(error)")
        }
    }

    static func migratePostgres(_ pg: Postgres, logger: Logger) async throws -> [Int] {
        let driver = try await pg.connect(logger: logger)
        do {
            let applied = try await Migrations.apply(driver, now: Int64(Date().timeIntervalSince1970 * 1000))
            try await driver.close()
            return applied
        } catch {
            try? await driver.close()
            throw BackupError(.database, "the database was restored but cannot be brought forward to schema version \(Migrations.latest): \(error)")
        }
    }

    // MARK: Tools

    /// Finds a PostgreSQL client tool: `$WARBLER_PG_BIN`, then the release's embedded PostgreSQL 15 (a cluster
    /// member's), then the newest /usr/lib/postgresql/N/bin (a newer
    /// pg_dump reads older servers, never the reverse), then PATH.
    static func findTool(_ name: String) throws -> String {
        var candidates: [String] = []
        if let dir = ProcessInfo.processInfo.environment["WARBLER_PG_BIN"], !dir.isEmpty { candidates.append(dir + "/" + name) }
        // A cluster member's release carries PostgreSQL 15's client tools (the cluster's server version).
        candidates.append(ClusterPaths.postgresBin + "/" + name)
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
        candidates += versions.map { "/usr/lib/postgresql/\($0)/bin/\(name)" }
        candidates += (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map { "\($0)/\(name)" }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BackupError(.database, "\(name) is not installed; install the PostgreSQL client (apt-get install postgresql-client-15) or set WARBLER_PG_BIN")
        }
        return found
    }

    static func run(tool: String, _ arguments: [String], environment: [String: String]) throws -> (status: Int32, output: String) {
        let r: Subprocess.Result
        do { r = try Subprocess.run([try findTool(tool)] + arguments, environment: environment) } catch let e as BackupError {
            throw e
        } catch {
            throw BackupError(.database, "cannot run \(tool): \(error)")
        }
        return (r.status, String(decoding: r.output.suffix(4000), as: UTF8.self))
    }
}

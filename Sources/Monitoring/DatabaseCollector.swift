import Foundation
import WarblerConfig
import IMStorage
import IMStoragePostgres
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The embedded SQLite database, from the file system alone: the exporter never opens the database, so it takes no
/// lock and works while the server is down.
public struct SQLiteCollector: Collector {
    public let name = "database"
    let path: String
    let files: HostFiles

    public init(path: String, files: HostFiles = HostFiles()) { self.path = path; self.files = files }

    public func collect() async throws -> MetricSet {
        let full = files.path(path)
        var st = stat()
        guard stat(full, &st) == 0 else {
            throw MonitoringError("cannot stat the database \(full): \(String(cString: strerror(errno))) (has the server created it yet?)")
        }
        var set = MetricSet()
        let l = ["path": path]
        set.add(Catalog.sqliteBytes, l, Double(st.st_size))
        set.add(Catalog.sqliteCheckpoint, l, Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
        var wal = stat()
        if stat(full + "-wal", &wal) == 0 {
            set.add(Catalog.sqliteWALBytes, l, Double(wal.st_size))
            if let seq = Self.walCheckpointSequence(full + "-wal") { set.add(Catalog.sqliteWALResets, l, Double(seq)) }
        } else {
            set.add(Catalog.sqliteWALBytes, l, 0)
        }
        return set
    }

    /// The checkpoint sequence number from a WAL file's 32-byte header (big-endian; magic 0x377f0682 or 0x377f0683),
    /// or nil when the file is empty or not a WAL.
    public static func walCheckpointSequence(_ path: String) -> UInt32? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 32)
        let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 32, 0) }
        guard n == 32 else { return nil }
        func be(_ at: Int) -> UInt32 { header[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) } }
        guard be(0) == 0x377f_0682 || be(0) == 0x377f_0683 else { return nil }
        return be(12)
    }
}

/// PostgreSQL: size, connections by state, and replication lag on a primary or a replica. One pooled connection
/// (`IMStoragePostgres`' driver) is opened on first use and kept; after a failure the next scrape reconnects.
public actor PostgresCollector: Collector {
    public nonisolated let name = "database"
    let settings: ServerConfig.StorageSettings
    let logger: Logger
    private var driver: PostgresDriver?

    public init(settings: ServerConfig.StorageSettings, logger: Logger) {
        self.settings = settings; self.logger = logger
    }

    static let knownStates = ["active", "idle", "idle in transaction", "idle in transaction (aborted)", "fastpath function call", "disabled"]

    public func collect() async throws -> MetricSet {
        let db = try await connect()
        do {
            return try await Self.query(db)
        } catch {
            driver = nil
            try? await db.close()
            throw error
        }
    }

    public func shutdown() async {
        if let driver { try? await driver.close() }
        driver = nil
    }

    func connect() async throws -> PostgresDriver {
        if let driver { return driver }
        var password = settings.postgresPassword
        if !settings.postgresPasswordFile.isEmpty {
            guard let p = try? String(contentsOfFile: settings.postgresPasswordFile, encoding: .utf8) else {
                throw MonitoringError("cannot read storage.postgres_password_file \(settings.postgresPasswordFile)")
            }
            password = p.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let d = try await PostgresDriver.connect(host: settings.postgresHost, port: settings.postgresPort, username: settings.postgresUser,
                                                 password: password.isEmpty ? nil : password, database: settings.postgresDatabase,
                                                 tls: settings.postgresTls, caFile: settings.postgresCaFile, maxConnections: 1, logger: logger)
        driver = d
        return d
    }

    static func number(_ v: SQLValue) -> Double? {
        switch v {
        case .int(let i): Double(i)
        case .double(let d): d
        case .text(let s): Double(s)
        case .null, .bytes: nil
        }
    }

    /// The queries, on any driver (the tests run them against a real server).
    public static func query(_ driver: PostgresDriver) async throws -> MetricSet {
        try await driver.read { db in
            var set = MetricSet()
            guard let head = try await db.first("""
                SELECT pg_is_in_recovery() AS recovery, current_database() AS db, pg_database_size(current_database()) AS size,
                       current_setting('max_connections')::int8 AS max_conn
                """) else { throw MonitoringError("PostgreSQL answered no row to the status query") }
            set.add(Catalog.pgUp, 1)
            let recovery = head.bool("recovery")
            set.add(Catalog.pgInRecovery, recovery ? 1 : 0)
            set.add(Catalog.pgSize, ["database": head.optText("db") ?? ""], number(head["size"]) ?? 0)
            set.add(Catalog.pgMaxConnections, number(head["max_conn"]) ?? 0)

            var byState = Dictionary(uniqueKeysWithValues: knownStates.map { ($0, 0.0) })
            for row in try await db.query("""
                SELECT coalesce(state, 'unknown') AS state, count(*) AS n FROM pg_stat_activity
                WHERE backend_type = 'client backend' GROUP BY 1
                """) {
                byState[row.optText("state") ?? "unknown", default: 0] += number(row["n"]) ?? 0
            }
            for (state, n) in byState { set.add(Catalog.pgConnections, ["state": state], n) }

            if recovery {
                let row = try await db.first("""
                    SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
                                ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, 0::float8) END AS lag
                    """)
                set.add(Catalog.pgReplayDelay, row.flatMap { number($0["lag"]) } ?? 0)
            } else {
                let replicas = try await db.query("""
                    SELECT coalesce(nullif(application_name, ''), client_addr::text, pid::text) AS replica,
                           coalesce(extract(epoch FROM replay_lag)::float8, 0::float8) AS lag,
                           coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, 0::float8) AS bytes
                    FROM pg_stat_replication
                    """)
                set.add(Catalog.pgReplicas, Double(replicas.count))
                for r in replicas {
                    let name = r.optText("replica") ?? "unknown"
                    set.add(Catalog.pgReplicationLag, ["replica": name], number(r["lag"]) ?? 0)
                    set.add(Catalog.pgReplicationLagBytes, ["replica": name], number(r["bytes"]) ?? 0)
                }
            }
            return set
        }
    }
}

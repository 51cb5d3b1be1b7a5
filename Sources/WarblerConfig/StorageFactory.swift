import Foundation
import IMStorage
import IMStoragePostgres
import IMStorageSQLite
import Logging

/// Opens the database a config names: the server, backup, upgrade's schema check, the exporter and the cluster
/// tools all open it this one way.
public enum StorageFactory {
    /// Opens storage, applying migrations (one runner at a time on a shared database). A single node applies every
    /// pending migration. A cluster node applies only the expand ones (`Migrations.Selection.clusterOpen`): a
    /// contract migration removes what the previous release still uses, and while a rolling upgrade runs, nodes on
    /// that release share this database; the upgrade's separate last step (`warbler upgrade --contract`) runs it.
    /// `migrations`: this build's, except in tests.
    ///
    /// A cluster node waits up to `clusterWait` for a database that is briefly not writable: its local HAProxy,
    /// restarted beside it (an upgrade's or rollback's `warbler install`), counts every member as up until its first
    /// health checks, so the first connection may reach a standby (read-only, SQLSTATE 25006) or a PostgreSQL that
    /// is shutting down or starting (57P01–57P03, class 08). Exiting on that failed the start job, and with it the
    /// cluster rollback in CI; systemd's restart 2 s later found the primary. Other errors fail at once. The wait
    /// stays under the unit's WatchdogSec (30 s), which may count from the start; HAProxy settles within seconds.
    public static func openStorage(config: ServerConfig, logger: Logger, migrations: [Migration] = Migrations.all,
                                   clusterWait: Duration = .seconds(25)) async throws -> SQLStore {
        let deadline = ContinuousClock.now + (config.cluster.enabled ? clusterWait : .zero)
        while true {
            do {
                return try await openStorageOnce(config: config, logger: logger, migrations: migrations)
            } catch where isTransient(error) && ContinuousClock.now + .seconds(1) < deadline {
                logger.notice("the cluster's database is not writable yet (\(error)); trying again in 1 s")
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// A database that will be writable again in moments: a standby reached through a proxy, a server shutting
    /// down or starting, a connection that failed or was cut.
    static func isTransient(_ error: any Error) -> Bool {
        if let e = error as? PostgresServerError {
            return e.sqlState == "25006" || e.sqlState.hasPrefix("57P") || e.sqlState.hasPrefix("08")
        }
        if case .unavailable = error as? StorageError { return true }
        return false
    }

    private static func openStorageOnce(config: ServerConfig, logger: Logger, migrations: [Migration]) async throws -> SQLStore {
        let driver = try await openDriver(config: config, logger: logger)
        do {
            return try await migrate(driver, config: config, logger: logger, migrations: migrations)
        } catch {
            try? await driver.close()
            throw error
        }
    }

    private static func migrate(_ driver: any SQLDriver, config: ServerConfig, logger: Logger, migrations: [Migration]) async throws -> SQLStore {
        let applied = try await Migrations.apply(driver, now: Int64(Date().timeIntervalSince1970 * 1000), migrations: migrations,
                                                 selection: config.cluster.enabled ? .clusterOpen : .all)
        if !applied.isEmpty { logger.info("applied schema migrations \(applied)") }
        let version = try await Migrations.currentVersion(driver)
        let latest = migrations.last?.version ?? 0
        if version > latest {
            logger.notice("the database is at schema version \(version), one additive migration ahead of this build's \(latest) (a newer node migrated it); running on it until this node is upgraded")
        } else if version < latest {
            logger.notice("the database is at schema version \(version); this build's migrations \(version + 1)...\(latest) start with a contract (destructive) one, which a cluster node does not run at start: `warbler upgrade --contract` runs them once every node runs this release")
        }
        return SQLStore(driver: driver, maxBatch: config.storage.maxBatch,
                        commitsInFlight: driver.dialect == .postgres ? config.storage.postgresCommitsInFlight : 1)
    }

    /// Connects to the configured database without migrating it (tools that only read, like the schema check).
    public static func openDriver(config: ServerConfig, logger: Logger) async throws -> any SQLDriver {
        switch config.storage.driver {
        case "postgres":
            var password = config.storage.postgresPassword
            if !config.storage.postgresPasswordFile.isEmpty {
                guard let p = try? String(contentsOfFile: config.storage.postgresPasswordFile, encoding: .utf8) else {
                    throw ConfigError("cannot read storage.postgres_password_file \(config.storage.postgresPasswordFile)")
                }
                password = p.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            return try await PostgresDriver.connect(host: config.storage.postgresHost, port: config.storage.postgresPort,
                                                    username: config.storage.postgresUser, password: password,
                                                    database: config.storage.postgresDatabase, tls: config.storage.postgresTls,
                                                    caFile: config.storage.postgresCaFile,
                                                    operationDeadline: config.storage.postgresTimeoutSeconds > 0 ? config.storage.postgresTimeoutSeconds : nil,
                                                    logger: logger)
        default:
            return try await SQLiteDriver.open(path: config.storage.path, logger: logger)
        }
    }
}

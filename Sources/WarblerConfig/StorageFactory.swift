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
    public static func openStorage(config: ServerConfig, logger: Logger, migrations: [Migration] = Migrations.all) async throws -> SQLStore {
        let driver = try await openDriver(config: config, logger: logger)
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

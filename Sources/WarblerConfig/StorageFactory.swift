import Foundation
import IMStorage
import IMStoragePostgres
import IMStorageSQLite
import Logging

/// Opens the database a config names: the server, backup, upgrade's schema check, the exporter and the cluster
/// tools all open it this one way.
public enum StorageFactory {
    /// Opens storage, applying migrations (one runner at a time on a shared database).
    public static func openStorage(config: ServerConfig, logger: Logger) async throws -> SQLStore {
        let driver = try await openDriver(config: config, logger: logger)
        let applied = try await Migrations.apply(driver, now: Int64(Date().timeIntervalSince1970 * 1000))
        if !applied.isEmpty { logger.info("applied schema migrations \(applied)") }
        let version = try await Migrations.currentVersion(driver)
        if version > Migrations.latest {
            logger.notice("the database is at schema version \(version), one additive migration ahead of this build's \(Migrations.latest) (a newer node migrated it); running on it until this node is upgraded")
        }
        return SQLStore(driver: driver, maxBatch: config.storage.maxBatch)
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

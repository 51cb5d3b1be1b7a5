import Foundation
import IMStorage
import Installer
import Logging
import WarblerConfig

/// The database's schema version, as `warbler upgrade` needs it before and after an upgrade.
///
/// Root does not open the database itself: on SQLite that is the service user's file in the service user's
/// directory (opening it as root follows a link planted there, and may leave root-owned -wal/-shm files the server
/// then cannot open), and on PostgreSQL the password is in the service user's file, which that user can rewrite to
/// point root anywhere. Root has no copy of a single host's database to read instead (unlike a cluster member's root
/// copy of the password), so the service user reads it: root runs this build's `warbler schema-version` as the
/// service user, which prints one JSON line, and believes nothing else (`parse`).
public enum SchemaProbe {
    /// What `warbler schema-version` prints.
    public struct Report: Codable, Sendable, Equatable {
        public var schema: Int
        public init(schema: Int) { self.schema = schema }
    }

    /// Reads the version in this process (`warbler schema-version`, run as the service user), from the install's
    /// config under `layout`.
    public static func read(layout: Layout, logger: Logger) async throws -> Int {
        var config = try ServerConfig.load(path: layout.path(Paths.config))
        config.storage.path = layout.path(config.storage.path)
        if !config.storage.postgresPasswordFile.isEmpty { config.storage.postgresPasswordFile = layout.path(config.storage.postgresPasswordFile) }
        if !config.storage.postgresCaFile.isEmpty { config.storage.postgresCaFile = layout.path(config.storage.postgresCaFile) }
        if config.storage.driver != "postgres" {
            var st = stat()
            // Opening a missing SQLite file would create an empty database; one through a link is not the install's.
            guard lstat(config.storage.path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                throw SystemError("\(config.storage.path) is not a regular file (missing, or a link, which is never followed); the database must be a plain file there: check storage.path in \(layout.path(Paths.config))")
            }
        }
        let driver = try await StorageFactory.openDriver(config: config, logger: logger)
        do {
            let version = try await Migrations.currentVersion(driver)
            try await driver.close()
            return version
        } catch {
            try? await driver.close()
            throw error
        }
    }

    /// The line `warbler schema-version` prints.
    public static func line(_ version: Int) -> String { "{\"schema\":\(version)}" }

    /// The version in what `warbler schema-version` printed: exactly one line `{"schema":N}` and nothing else.
    public static func parse(_ output: String) throws -> Int {
        let lines = output.split(whereSeparator: \.isNewline).filter { !$0.allSatisfy(\.isWhitespace) }
        guard lines.count == 1, let line = lines.first, line.hasPrefix("{\"schema\":"), line.hasSuffix("}") else {
            throw SystemError("`warbler schema-version` printed something other than one line {\"schema\":N}: \(output.prefix(200))")
        }
        let digits = line.dropFirst("{\"schema\":".count).dropLast()
        guard (1...9).contains(digits.count), digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              digits == "0" || !digits.hasPrefix("0"), let version = Int(digits) else {
            throw SystemError("`warbler schema-version` printed a schema version that is not a number: \(line.prefix(200))")
        }
        return version
    }
}

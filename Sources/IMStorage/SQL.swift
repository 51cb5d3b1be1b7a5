/// A value bound to or read from a SQL statement.
public enum SQLValue: Sendable, Hashable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    /// Raw bytes (a BLOB in SQLite, `bytea` in PostgreSQL): attachment chunks.
    case bytes([UInt8])

    public var int: Int64? {
        switch self {
        case .int(let v): v
        case .double(let d): Int64(d)
        case .text(let s): Int64(s)
        case .null, .bytes: nil
        }
    }
    public var text: String? {
        switch self {
        case .text(let s): s
        case .bytes(let b): String(decoding: b, as: UTF8.self)
        default: nil
        }
    }
    public var bytes: [UInt8]? {
        switch self {
        case .bytes(let b): b
        case .text(let s): Array(s.utf8)
        default: nil
        }
    }
}

extension SQLValue: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(stringLiteral value: String) { self = .text(value) }
    public init(_ v: Int64) { self = .int(v) }
    public init(_ v: String?) { self = v.map { .text($0) } ?? .null }
    public init(_ v: Int64?) { self = v.map { .int($0) } ?? .null }
    public init(_ v: Bool) { self = .int(v ? 1 : 0) }
}

/// One result row, with columns by name.
///
/// The names are one array shared by every row of a result, the values an array beside them: a row costs one
/// allocation, not a dictionary's (the SQLite writer builds rows on the commit path). A result's few columns are
/// found by a scan from the end, so a name that occurs twice reads as its last column, as a dictionary built
/// column by column did.
public struct SQLRow: Sendable {
    public let names: [String]
    public let columns: [SQLValue]
    public init(names: [String], columns: [SQLValue]) {
        precondition(names.count == columns.count, "a row needs one name per column")
        self.names = names; self.columns = columns
    }
    public init(_ values: [String: SQLValue]) { self.names = Array(values.keys); self.columns = Array(values.values) }

    public var values: [String: SQLValue] { Dictionary(zip(names, columns), uniquingKeysWith: { _, last in last }) }

    public subscript(_ name: String) -> SQLValue {
        var i = names.count
        while i > 0 {
            i -= 1
            if names[i] == name { return columns[i] }
        }
        return .null
    }
    public func int(_ name: String) throws -> Int64 {
        guard let v = self[name].int else { throw StorageError.corrupt("column \(name) is not an integer") }
        return v
    }
    public func optInt(_ name: String) -> Int64? { self[name].int }
    public func text(_ name: String) throws -> String {
        guard let v = self[name].text else { throw StorageError.corrupt("column \(name) is not text") }
        return v
    }
    public func optText(_ name: String) -> String? { self[name].text }
    public func bytes(_ name: String) throws -> [UInt8] {
        guard let v = self[name].bytes else { throw StorageError.corrupt("column \(name) is not bytes") }
        return v
    }
    public func bool(_ name: String) -> Bool { (self[name].int ?? 0) != 0 }
}

/// Runs statements on one connection, inside a transaction when given by `SQLDriver.write`.
/// Statements use `$1`, `$2`, … placeholders on every backend.
public protocol SQLExecutor: Sendable {
    @discardableResult
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow]
}

extension SQLExecutor {
    @discardableResult
    public func query(_ sql: String) async throws -> [SQLRow] { try await query(sql, []) }
    public func first(_ sql: String, _ binds: [SQLValue] = []) async throws -> SQLRow? {
        try await query(sql, binds).first
    }
}

public enum SQLDialect: String, Sendable {
    case sqlite, postgres
}

/// A database backend: reads on any connection, writes inside one transaction.
public protocol SQLDriver: Sendable {
    var dialect: SQLDialect { get }
    /// Runs `body` on a connection for reads (no transaction guarantees across statements).
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T
    /// Runs `body` in one transaction; commits when it returns (durably: the commit is on disk), rolls back when it throws.
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T
    /// Runs `body` while this process holds the database-wide lock `key`, so that of several processes (nodes)
    /// sharing the database one runs it at a time; `body` gets a driver to use meanwhile (on PostgreSQL, the one
    /// connection that holds the advisory lock). SQLite has one writer at a time already: there `body` runs at
    /// once, and must order itself by re-reading inside its write transactions.
    func withExclusiveLock<T: Sendable>(_ key: Int64, _ body: @Sendable (any SQLDriver) async throws -> T) async throws -> T
    /// The executor `write` runs its transactions on, when it has one of its own (SQLite's writer thread): the
    /// group committer runs its loop there too, so a commit starts and ends without a hand-off between threads.
    var writeExecutor: (any TaskExecutor)? { get }
    /// Database size in bytes, for status and metrics.
    func sizeInBytes() async throws -> Int64
    func close() async throws
    /// Called with "read" or "write" whenever one was abandoned at the driver's deadline (PostgreSQL's
    /// `storage.postgres_timeout_seconds`; SQLite has none).
    func observeDeadlinesPassed(_ observer: @escaping @Sendable (String) -> Void)
    /// SQLite: the search index's database file (`<database>-search`), written on a connection of its own, so that
    /// indexing never holds the live database's writer (migration 14, `SearchIndexQueue`). nil: PostgreSQL, or a
    /// driver opened without it (root's restore migrating a staged file).
    var searchIndexFile: (any SQLSideDatabase)? { get }
}

/// A second database file beside the live one, with a writer connection of its own. That connection has the live
/// database attached read-only as `live`, and every reader connection of the driver has this file
/// attached as `search`.
public protocol SQLSideDatabase: Sendable {
    /// Runs `body` in one transaction on the side file's connection, committed durably when it returns. It holds
    /// the side file's write lock; reading `live` takes a snapshot of it, never its write lock.
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T
}

extension SQLDriver {
    public var writeExecutor: (any TaskExecutor)? { nil }
    public func observeDeadlinesPassed(_ observer: @escaping @Sendable (String) -> Void) {}
    public var searchIndexFile: (any SQLSideDatabase)? { nil }
}

/// Storage faults (as opposed to domain errors, which are `IMError`).
public enum StorageError: Error, Sendable, CustomStringConvertible {
    case corrupt(String)
    case migration(String)
    case unavailable(String)

    public var description: String {
        switch self {
        case .corrupt(let s): "storage: unexpected data: \(s)"
        case .migration(let s): "storage: migration failed: \(s)"
        case .unavailable(let s): "storage unavailable: \(s)"
        }
    }
}

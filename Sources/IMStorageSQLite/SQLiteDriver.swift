import Foundation
import IMStorage
import Logging
import NIOCore
import NIOPosix
import SQLiteNIO

/// SQLite in WAL mode with `synchronous=FULL`: one writer connection (transactions serialised by a lock)
/// and a few reader connections that never wait for the writer.
public final class SQLiteDriver: SQLDriver {
    public let path: String
    public var dialect: SQLDialect { .sqlite }

    private let writer: SQLiteConnection
    private let readers: [SQLiteConnection]
    private let writeLock = AsyncLock()
    private let next = ReaderIndex()

    private init(path: String, writer: SQLiteConnection, readers: [SQLiteConnection]) {
        self.path = path; self.writer = writer; self.readers = readers
    }

    /// Opens (creating if needed) the database at `path`; `":memory:"` is not supported since readers need the file.
    public static func open(path: String, readers: Int = 2, logger: Logger = Logger(label: "warbler.sqlite")) async throws -> SQLiteDriver {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty, !FileManager.default.fileExists(atPath: dir) {
            throw StorageError.unavailable("the database directory \(dir) does not exist; create it or set storage.path")
        }
        let writer: SQLiteConnection
        do {
            writer = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        } catch {
            throw StorageError.unavailable("cannot open SQLite database \(path): \(error); check that the path is writable by this user")
        }
        // FULL: an acknowledged commit survives a power cut (NORMAL lost commits in a simulated one). WAL keeps
        // readers off the writer's back; group commit pays for the fsyncs.
        for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000",
                       "PRAGMA foreign_keys=OFF", "PRAGMA wal_autocheckpoint=4000"] {
            _ = try await writer.query(pragma, [])
        }
        var rs: [SQLiteConnection] = []
        for _ in 0..<max(1, readers) {
            let r = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
            _ = try await r.query("PRAGMA busy_timeout=10000", [])
            _ = try await r.query("PRAGMA query_only=ON", [])
            rs.append(r)
        }
        return SQLiteDriver(path: path, writer: writer, readers: rs)
    }

    public func read<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let i = next.take() % readers.count
        return try await body(SQLiteExecutor(connection: readers[i]))
    }

    @discardableResult
    public func write<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await writeLock.withLock {
            let ex = SQLiteExecutor(connection: writer)
            _ = try await writer.query("BEGIN IMMEDIATE", [])
            do {
                let result = try await body(ex)
                _ = try await writer.query("COMMIT", [])
                return result
            } catch {
                _ = try? await writer.query("ROLLBACK", [])
                throw error
            }
        }
    }

    /// SQLite's writer is the lock: `BEGIN IMMEDIATE` orders writers across processes, so `body` runs at once.
    public func withExclusiveLock<T: Sendable>(_ key: Int64, _ body: @Sendable (any SQLDriver) async throws -> T) async throws -> T {
        try await body(self)
    }

    public func sizeInBytes() async throws -> Int64 {
        var total: Int64 = 0
        for suffix in ["", "-wal"] {
            if let attrs = try? FileManager.default.attributesOfItem(atPath: path + suffix), let n = attrs[.size] as? NSNumber {
                total += n.int64Value
            }
        }
        return total
    }

    /// Writes a consistent copy of the live database to `destination` (VACUUM INTO).
    public func backup(to destination: String) async throws {
        try await writeLock.withLock {
            _ = try await writer.query("VACUUM INTO ?1", [.text(destination)])
        }
    }

    public func close() async throws {
        try await writeLock.withLock {
            _ = try? await writer.query("PRAGMA wal_checkpoint(TRUNCATE)", [])
            try await writer.close()
        }
        for r in readers { try await r.close() }
    }
}

final class ReaderIndex: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func take() -> Int { lock.lock(); defer { lock.unlock() }; n &+= 1; return n & Int.max }
}

struct SQLiteExecutor: SQLExecutor {
    let connection: SQLiteConnection

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        let rows = try await connection.query(Self.placeholders(sql), binds.map(Self.data))
        return rows.map { row in
            var values: [String: SQLValue] = [:]
            for c in row.columns {
                switch c.data {
                case .integer(let i): values[c.name] = .int(Int64(i))
                case .float(let d): values[c.name] = .double(d)
                case .text(let s): values[c.name] = .text(s)
                case .blob(let b): values[c.name] = .bytes(Array(b.readableBytesView))
                case .null: values[c.name] = .null
                }
            }
            return SQLRow(values)
        }
    }

    static func data(_ v: SQLValue) -> SQLiteData {
        switch v {
        case .null: .null
        case .int(let i): .integer(SQLiteInt64(i))
        case .double(let d): .float(d)
        case .text(let s): .text(s)
        case .bytes(let b): .blob(ByteBuffer(bytes: b))
        }
    }

    /// `$1` → `?1`: SQLite's numbered parameters, so one SQL text serves both backends.
    static func placeholders(_ sql: String) -> String {
        var out = ""
        out.reserveCapacity(sql.utf8.count)
        var prev: Character = " "
        for ch in sql {
            if prev == "$" && ch.isNumber { out.removeLast(); out.append("?") }
            out.append(ch)
            prev = ch
        }
        return out
    }
}

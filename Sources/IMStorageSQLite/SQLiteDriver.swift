import Foundation
import IMStorage
import Logging

/// SQLite in WAL mode with `synchronous=FULL`: one writer connection (transactions serialised by a lock)
/// and a few reader connections that never wait for the writer. Each connection has a thread of its own
/// (`SQLiteThreadConnection`); a read's or a write transaction's body runs on that thread, so a group commit's
/// statements cost one hand-off between threads in all, not two per statement.
public final class SQLiteDriver: SQLDriver {
    public let path: String
    public var dialect: SQLDialect { .sqlite }

    private let writer: SQLiteThreadConnection
    private let readers: [SQLiteThreadConnection]
    private let checkpointer: WALCheckpointer
    private let writeLock = AsyncLock()
    private let next = ReaderIndex()

    private init(path: String, writer: SQLiteThreadConnection, readers: [SQLiteThreadConnection], checkpointer: WALCheckpointer) {
        self.path = path; self.writer = writer; self.readers = readers; self.checkpointer = checkpointer
    }

    /// Opens (creating if needed) the database at `path`; `":memory:"` is not supported since readers need the file.
    /// `noFollow`: only an existing file, through no link anywhere in the path (`SQLITE_OPEN_NOFOLLOW`; root's restore
    /// migrating a file in the service user's directory).
    public static func open(path: String, readers: Int = 2, logger: Logger = Logger(label: "warbler.sqlite"),
                            noFollow: Bool = false) async throws -> SQLiteDriver {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty, !FileManager.default.fileExists(atPath: dir) {
            throw StorageError.unavailable("the database directory \(dir) does not exist; create it or set storage.path")
        }
        let writer: SQLiteThreadConnection
        do {
            writer = try await SQLiteThreadConnection.open(path: path, name: "sqlite-writer", noFollow: noFollow)
        } catch {
            throw StorageError.unavailable("cannot open SQLite database \(path): \(error); check that the path is writable by this user")
        }
        var rs: [SQLiteThreadConnection] = []
        var checkpointing: SQLiteThreadConnection?
        do {
            // FULL: an acknowledged commit survives a power cut (NORMAL lost commits in a simulated one). WAL keeps
            // readers off the writer's back; group commit pays for the fsyncs.
            try await writer.run { c in
                for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000",
                               "PRAGMA foreign_keys=OFF"] {
                    _ = try c.query(pragma, [])
                }
            }
            for i in 0..<max(1, readers) {
                let r = try await SQLiteThreadConnection.open(path: path, name: "sqlite-reader\(i)", noFollow: noFollow)
                rs.append(r)
                try await r.run { c in
                    _ = try c.query("PRAGMA busy_timeout=10000", [])
                    _ = try c.query("PRAGMA query_only=ON", [])
                }
            }
            // Checkpoints run on a connection of their own, off the commit path (`WALCheckpointer`).
            let c = try await SQLiteThreadConnection.open(path: path, name: "sqlite-checkpoint", noFollow: noFollow)
            checkpointing = c
            let checkpointer = WALCheckpointer(connection: c)
            try await writer.run { $0.setCheckpointer(checkpointer) }
            logger.debug("opened SQLite database", metadata: ["im.db.path": "\(path)"])
            return SQLiteDriver(path: path, writer: writer, readers: rs, checkpointer: checkpointer)
        } catch {
            await writer.close()
            for r in rs { await r.close() }
            await checkpointing?.close()
            throw error
        }
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let reader = readers[next.take() % readers.count]
        return try await reader.enter { try await body(SQLiteExecutor(connection: reader)) }
    }

    @discardableResult
    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let writer = self.writer
        // The lock and the transaction's statements run on the writer's thread: one hop there, one back.
        return try await writer.enter {
            try await writeLock.withLock {
                _ = try await writer.run { try $0.query("BEGIN IMMEDIATE", []) }
                do {
                    let result = try await body(SQLiteExecutor(connection: writer))
                    _ = try await writer.run { try $0.query("COMMIT", []) }
                    return result
                } catch {
                    _ = try? await writer.run { try $0.query("ROLLBACK", []) }
                    throw error
                }
            }
        }
    }

    public var writeExecutor: (any TaskExecutor)? { writer.executor }

    /// How many times work was handed to the writer's thread (a test's window on the hops a commit costs).
    var writerHops: Int { writer.hops.load(ordering: .relaxed) }
    /// How many checkpoints the background connection ran (a test's window on `WALCheckpointer`).
    var backgroundCheckpoints: Int { checkpointer.rounds.load(ordering: .relaxed) }

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
        let writer = self.writer
        try await writeLock.withLock {
            _ = try await writer.run { try $0.query("VACUUM INTO ?1", [.text(destination)]) }
        }
    }

    public func close() async throws {
        // The background checkpoint first, so that the writer's last checkpoint finds nobody else checkpointing.
        await checkpointer.connection.close()
        let writer = self.writer
        await writeLock.withLock {
            _ = try? await writer.run { try $0.query("PRAGMA wal_checkpoint(TRUNCATE)", []) }
            await writer.close()
        }
        for r in readers { await r.close() }
    }
}

final class ReaderIndex: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func take() -> Int { lock.lock(); defer { lock.unlock() }; n &+= 1; return n & Int.max }
}

struct SQLiteExecutor: SQLExecutor {
    let connection: SQLiteThreadConnection

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await connection.run { try $0.query(sql, binds) }
    }
}

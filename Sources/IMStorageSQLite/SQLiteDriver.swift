import Foundation
import IMStorage
import Logging
import VaporCSQLite

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
    private let index: SQLiteSideDatabase?

    private init(path: String, writer: SQLiteThreadConnection, readers: [SQLiteThreadConnection], checkpointer: WALCheckpointer,
                 index: SQLiteSideDatabase?) {
        self.path = path; self.writer = writer; self.readers = readers; self.checkpointer = checkpointer; self.index = index
    }

    /// The search index's file beside the database at `path` (migration 14).
    public static func searchIndexPath(_ path: String) -> String { path + "-search" }

    /// Opens (creating if needed) the database at `path`; `":memory:"` is not supported since readers need the file.
    /// `noFollow`: only an existing file, through no link anywhere in the path (`SQLITE_OPEN_NOFOLLOW`; root's restore
    /// migrating a file in the service user's directory); such a driver neither creates nor opens the search index's file.
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
        var index: SQLiteSideDatabase?
        do {
            // FULL: an acknowledged commit survives a power cut (NORMAL lost commits in a simulated one). WAL keeps
            // readers off the writer's back; group commit pays for the fsyncs.
            try await writer.run { c in
                for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000",
                               "PRAGMA foreign_keys=OFF"] {
                    _ = try c.query(pragma, [])
                }
            }
            // The search index's file first (created here), since every reader attaches it.
            let indexPath = searchIndexPath(path)
            if !noFollow {
                do {
                    do {
                        index = try await SQLiteSideDatabase.open(path: indexPath, live: path)
                    } catch let failure as SQLiteFailure
                                where [SQLITE_NOTADB, SQLITE_CORRUPT, SQLITE_READONLY, SQLITE_CANTOPEN].contains(failure.code & 0xff) {
                        // Derived data only: an index that is damaged, or that this user cannot write (another user's
                        // file), is removed and built again from the messages.
                        logger.warning("the search index is damaged or not writable; it is removed and rebuilt from the database",
                                       metadata: ["im.db.path": "\(indexPath)", "error": "\(failure)"])
                        for suffix in ["", "-wal", "-shm"] where unlink(indexPath + suffix) != 0 && errno != ENOENT {
                            throw StorageError.unavailable("cannot remove the damaged search index \(indexPath + suffix): \(String(cString: strerror(errno)))")
                        }
                        index = try await SQLiteSideDatabase.open(path: indexPath, live: path)
                    }
                } catch let error as StorageError {
                    throw error
                } catch {
                    throw StorageError.unavailable("cannot open the search index \(indexPath): \(error); it is rebuilt from the database when removed")
                }
            }
            for i in 0..<max(1, readers) {
                let r = try await SQLiteThreadConnection.open(path: path, name: "sqlite-reader\(i)", noFollow: noFollow)
                rs.append(r)
                try await r.run { c in
                    _ = try c.query("PRAGMA busy_timeout=10000", [])
                    if index != nil { _ = try c.query("ATTACH $1 AS search", [.text(indexPath)]) }
                    _ = try c.query("PRAGMA query_only=ON", [])
                }
            }
            // Checkpoints run on a connection of their own, off the commit path (`WALCheckpointer`).
            let c = try await SQLiteThreadConnection.open(path: path, name: "sqlite-checkpoint", noFollow: noFollow)
            checkpointing = c
            let checkpointer = WALCheckpointer(connection: c)
            try await writer.run { $0.setCheckpointer(checkpointer) }
            logger.debug("opened SQLite database", metadata: ["im.db.path": "\(path)"])
            return SQLiteDriver(path: path, writer: writer, readers: rs, checkpointer: checkpointer, index: index)
        } catch {
            await writer.close()
            for r in rs { await r.close() }
            await checkpointing?.close()
            await index?.close()
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
            try await writeLock.withLock { try await writer.transaction(body) }
        }
    }

    public var writeExecutor: (any TaskExecutor)? { writer.executor }

    public var searchIndexFile: (any SQLSideDatabase)? { index }

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
        for suffix in ["", "-wal", "-search", "-search-wal"] {
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
        // The index's connection before the live file's: it has the live file attached read-only, and a read-only
        // connection closing last would leave the live file's -wal and -shm behind.
        await index?.close()
        let writer = self.writer
        await writeLock.withLock {
            _ = try? await writer.run { try $0.query("PRAGMA wal_checkpoint(TRUNCATE)", []) }
            await writer.close()
        }
        for r in readers { await r.close() }
    }
}

/// The search index's file (`SQLDriver.searchIndexFile`): FTS5 in a database of its own, written on a connection of
/// its own. SQLite has one writer per database file, so indexing in the live file held every send's commit up for
/// its transaction (1.7 ms on average, 20 times a second; docs/benchmarks.md); here it only reads the live file.
final class SQLiteSideDatabase: SQLSideDatabase {
    private let connection: SQLiteThreadConnection
    private let lock = AsyncLock()

    private init(connection: SQLiteThreadConnection) { self.connection = connection }

    /// Opens (creating) the index file at `path`, with the live database at `live` attached as `live`.
    static func open(path: String, live: String) async throws -> SQLiteSideDatabase {
        // Root (a tool such as `warbler bots` run as root with --config) never leaves the server a file it cannot
        // write: a missing index file is made here, through no link and never over another file, and handed to the
        // live database's owner (SQLite hands the -wal and -shm it makes as root to the database file's owner).
        if geteuid() == 0 { try createOwned(path, likeFile: live) }
        let c = try await SQLiteThreadConnection.open(path: path, name: "sqlite-search", uri: true)
        do {
            try await c.run { c in
                // FULL, like the live file: the indexing's mark (how far the live file's log is indexed) must be on
                // disk before that part of the log is pruned.
                for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=10000"] {
                    _ = try c.query(pragma, [])
                }
                // A file this user may only read opens read-only without a word: a write lock says so now
                // (SQLITE_READONLY), not at the first indexing.
                _ = try c.query("BEGIN IMMEDIATE", [])
                _ = try c.query("COMMIT", [])
                // Read-only: this connection never writes the live file, and its IMMEDIATE transactions lock the
                // index file alone (SQLite takes no write lock on a read-only attached file).
                _ = try c.query("ATTACH $1 AS live", [.text(Self.readOnlyURI(live))])
                _ = try c.query("CREATE VIRTUAL TABLE IF NOT EXISTS main.message_fts USING fts5(text, content='', contentless_delete=1, tokenize='trigram')", [])
                // One row: the live database's log token and how far its log is indexed (`SearchIndexQueue`).
                _ = try c.query("CREATE TABLE IF NOT EXISTS main.search_mark (one INTEGER PRIMARY KEY CHECK (one = 1), token BLOB, n INTEGER NOT NULL)", [])
            }
        } catch {
            await c.close()
            throw error
        }
        return SQLiteSideDatabase(connection: c)
    }

    /// Makes an empty file at `path` (an empty SQLite database) owned like `likeFile`, unless something is there.
    static func createOwned(_ path: String, likeFile: String) throws {
        var st = stat()
        guard lstat(likeFile, &st) == 0 else { return }  // SQLite reports the live file's own trouble
        let fd = Glibc.open(path, O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            if errno == EEXIST { return }
            throw StorageError.unavailable("cannot create the search index \(path): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        guard fchown(fd, st.st_uid, st.st_gid) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(path)
            throw StorageError.unavailable("cannot hand the search index \(path) to the database's owner: \(why)")
        }
    }

    /// `path` as a read-only URI file name (RFC 3986 escapes for what a URI's path may not hold as is).
    static func readOnlyURI(_ path: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#%")
        return "file:" + (path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path) + "?mode=ro"
    }

    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let c = connection
        return try await c.enter {
            // IMMEDIATE: the index file's write lock first (another process indexing waits for it); the live file,
            // read-only here, is only read, from a snapshot taken at its first read.
            try await lock.withLock { try await c.transaction(body) }
        }
    }

    func close() async {
        let c = connection
        await lock.withLock {
            _ = try? await c.run { try $0.query("PRAGMA main.wal_checkpoint(TRUNCATE)", []) }
            await c.close()
        }
    }
}

final class ReaderIndex: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func take() -> Int { lock.lock(); defer { lock.unlock() }; n &+= 1; return n & Int.max }
}

extension SQLiteThreadConnection {
    /// `body` in one `BEGIN IMMEDIATE` transaction on this connection, committed when it returns, rolled back when it
    /// throws. The caller holds the lock that keeps this connection's transactions one at a time.
    func transaction<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        _ = try await run { try $0.query("BEGIN IMMEDIATE", []) }
        do {
            let result = try await body(SQLiteExecutor(connection: self))
            _ = try await run { try $0.query("COMMIT", []) }
            return result
        } catch {
            _ = try? await run { try $0.query("ROLLBACK", []) }
            throw error
        }
    }
}

struct SQLiteExecutor: SQLExecutor {
    let connection: SQLiteThreadConnection

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await connection.run { try $0.query(sql, binds) }
    }
}

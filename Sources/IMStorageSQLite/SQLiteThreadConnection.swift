import Foundation
import IMStorage
import Synchronization
import VaporCSQLite

/// One SQLite connection that lives on a thread of its own: every statement runs there, synchronously, from
/// prepared statements it keeps. A body run under `withTaskExecutorPreference(executor)` (what `SQLiteDriver`
/// does for a read or a whole write transaction) runs its statements with no hand-off between threads at all;
/// a statement from anywhere else is one hop to the thread and back.
///
/// It uses the SQLite library SQLiteNIO compiles in (`VaporCSQLite`), never a second copy: two SQLite libraries
/// in one process would not see each other's POSIX locks on the same database file.
final class SQLiteThreadConnection: @unchecked Sendable {
    let executor: SerialThreadExecutor
    let path: String
    /// Touched only on `executor`'s thread.
    private var db: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    /// Long statements (a full chunk of a batch's multi-row insert, whose text repeats under load), the most recent few.
    private var longStatements: [(sql: String, stmt: OpaquePointer)] = []
    /// Kept alive for the WAL hook, which holds it unretained.
    private var walTarget: WALCheckpointer?
    /// How many times work came onto the thread from elsewhere (a hand-off and a wake-up each).
    let hops = Atomic<Int>(0)

    /// Statements up to this long are kept in `statements`; longer ones (a batch's multi-row statements, whose text
    /// changes with its size) only among the last `cachedLongStatements`.
    static let cachedStatementLength = 2048
    static let cachedLongStatements = 8
    /// More distinct statements than this and the cache starts over.
    static let cachedStatements = 256

    private init(path: String, executor: SerialThreadExecutor) {
        self.path = path; self.executor = executor
    }

    /// Opens `path` (creating it) on a new thread named `name`. `noFollow`: open an existing file only, and refuse a
    /// link anywhere in its path (`SQLITE_OPEN_NOFOLLOW`). `uri`: file names given to ATTACH may be URIs.
    static func open(path: String, name: String, noFollow: Bool = false, uri: Bool = false) async throws -> SQLiteThreadConnection {
        let c = SQLiteThreadConnection(path: path, executor: SerialThreadExecutor(name: name))
        do {
            try await c.run { c in
                var handle: OpaquePointer?
                let flags = (noFollow ? SQLITE_OPEN_NOFOLLOW : SQLITE_OPEN_CREATE) | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
                    | (uri ? SQLITE_OPEN_URI : 0)
                let rc = sqlite_nio_sqlite3_open_v2(path, &handle, flags, nil)
                guard rc == SQLITE_OK, let handle else {
                    let message = handle.flatMap { sqlite_nio_sqlite3_errmsg($0).map { String(cString: $0) } } ?? "code \(rc)"
                    sqlite_nio_sqlite3_close_v2(handle)
                    throw SQLiteFailure(code: rc, message: message)
                }
                c.db = handle
            }
        } catch {
            c.executor.shutdown()
            throw error
        }
        return c
    }

    /// Hands the WAL's size after each commit of this connection to `checkpointer`, which replaces SQLite's automatic
    /// checkpoint (nil: no checkpoints at all). On the connection's thread only.
    func setCheckpointer(_ checkpointer: WALCheckpointer?) {
        guard let db else { return }
        walTarget = checkpointer
        if let checkpointer {
            _ = sqlite_nio_sqlite3_wal_hook(db, walHook, Unmanaged.passUnretained(checkpointer).toOpaque())
        } else {
            _ = sqlite_nio_sqlite3_wal_hook(db, nil, nil)
        }
    }

    /// Runs `body` on the connection's thread: at once when already there, else after one hop.
    func run<T>(_ body: (SQLiteThreadConnection) throws -> T) async throws -> T {
        if executor.isCurrent { return try body(self) }
        return try await enter {
            // Off the thread only once `close` ended it: nothing may touch the connection then.
            guard executor.isCurrent else { throw StorageError.unavailable("the SQLite database \(path) is closed") }
            return try body(self)
        }
    }

    /// Runs `body` with the connection's thread as its task executor: `body`, and whatever nonisolated code it
    /// awaits (the statements of `run` included), stays on the thread.
    func enter<T>(_ body: () async throws -> T) async throws -> T {
        if !executor.isCurrent { hops.add(1, ordering: .relaxed) }
        return try await withTaskExecutorPreference(executor, operation: body)
    }

    /// Runs one statement with `binds` for `$1`, `$2`, …, and returns its rows. On the connection's thread only.
    func query(_ sql: String, _ binds: [SQLValue]) throws -> [SQLRow] {
        guard let db else { throw StorageError.unavailable("the SQLite database \(path) is closed") }
        let short = sql.utf8.count <= Self.cachedStatementLength
        var stmt: OpaquePointer
        if short, let s = statements[sql] {
            stmt = s
        } else if !short, let i = longStatements.firstIndex(where: { $0.sql == sql }) {
            stmt = longStatements[i].stmt
        } else {
            var s: OpaquePointer?
            let rc = sqlite_nio_sqlite3_prepare_v3(db, Self.placeholders(sql), -1, UInt32(SQLITE_PREPARE_PERSISTENT), &s, nil)
            guard rc == SQLITE_OK, let s else { throw failure(rc) }
            stmt = s
            if short {
                if statements.count >= Self.cachedStatements { finalizeStatements() }
                statements[sql] = s
            } else {
                if longStatements.count >= Self.cachedLongStatements { sqlite_nio_sqlite3_finalize(longStatements.removeFirst().stmt) }
                longStatements.append((sql, s))
            }
        }
        defer {
            sqlite_nio_sqlite3_reset(stmt)
            sqlite_nio_sqlite3_clear_bindings(stmt)
        }
        for (i, v) in binds.enumerated() {
            let n = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite_nio_sqlite3_bind_null(stmt, n)
            case .int(let x): rc = sqlite_nio_sqlite3_bind_int64(stmt, n, x)
            case .double(let x): rc = sqlite_nio_sqlite3_bind_double(stmt, n, x)
            case .text(let s): rc = sqlite_nio_sqlite3_bind_text64(stmt, n, s, UInt64(s.utf8.count), sqliteTransient, UInt8(SQLITE_UTF8))
            case .bytes(let b):
                rc = b.withUnsafeBytes { sqlite_nio_sqlite3_bind_blob64(stmt, n, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64($0.count), sqliteTransient) }
            }
            guard rc == SQLITE_OK else { throw failure(rc) }
        }
        let count = sqlite_nio_sqlite3_column_count(stmt)
        // The names once per result, when it has a row; every row shares them.
        var names: [String] = []
        var rows: [SQLRow] = []
        while true {
            let rc = sqlite_nio_sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw failure(rc) }
            if rows.isEmpty {
                names.reserveCapacity(Int(count))
                for c in 0..<count { names.append(sqlite_nio_sqlite3_column_name(stmt, c).map { String(cString: $0) } ?? "") }
            }
            var values: [SQLValue] = []
            values.reserveCapacity(Int(count))
            for c in 0..<count {
                let value: SQLValue
                switch sqlite_nio_sqlite3_column_type(stmt, c) {
                case SQLITE_INTEGER: value = .int(sqlite_nio_sqlite3_column_int64(stmt, c))
                case SQLITE_FLOAT: value = .double(sqlite_nio_sqlite3_column_double(stmt, c))
                case SQLITE_TEXT:
                    let n = Int(sqlite_nio_sqlite3_column_bytes(stmt, c))
                    if let p = sqlite_nio_sqlite3_column_text(stmt, c) {
                        value = .text(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self))
                    } else {
                        value = .text("")
                    }
                case SQLITE_BLOB:
                    let n = Int(sqlite_nio_sqlite3_column_bytes(stmt, c))
                    if let p = sqlite_nio_sqlite3_column_blob(stmt, c), n > 0 {
                        value = .bytes(Array(UnsafeRawBufferPointer(start: p, count: n)))
                    } else {
                        value = .bytes([])
                    }
                default: value = .null
                }
                values.append(value)
            }
            rows.append(SQLRow(names: names, columns: values))
        }
        return rows
    }

    /// Closes the connection and ends its thread.
    func close() async {
        _ = try? await run { c in
            c.setCheckpointer(nil)
            c.finalizeStatements()
            sqlite_nio_sqlite3_close_v2(c.db)
            c.db = nil
        }
        executor.shutdown()
    }

    private func finalizeStatements() {
        for s in statements.values { sqlite_nio_sqlite3_finalize(s) }
        statements.removeAll()
        for l in longStatements { sqlite_nio_sqlite3_finalize(l.stmt) }
        longStatements.removeAll()
    }

    private func failure(_ rc: Int32) -> SQLiteFailure {
        SQLiteFailure(code: rc, message: db.flatMap { sqlite_nio_sqlite3_errmsg($0).map { String(cString: $0) } } ?? "code \(rc)")
    }

    /// `$1` → `?1`: SQLite's numbered parameters, so one SQL text serves both backends.
    static func placeholders(_ sql: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(sql.utf8.count)
        var prev: UInt8 = 0
        for b in sql.utf8 {
            if prev == UInt8(ascii: "$"), b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") { out[out.count - 1] = UInt8(ascii: "?") }
            out.append(b)
            prev = b
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// An error SQLite returned, with its (extended) result code and message.
struct SQLiteFailure: Error, CustomStringConvertible {
    let code: Int32
    let message: String
    var description: String { "SQLite error \(code): \(message)" }
}

/// Keeps WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside the commit that crosses its
/// threshold: that commit, and every send queued behind it, waits while the checkpoint copies the log's pages into
/// the database file and fsyncs it (milliseconds, once every hundred-odd commits at one message in flight: the tail
/// of the latency). Here a connection on a thread of its own does that copying (a PASSIVE checkpoint, which never
/// blocks the writer); the writer's next commit then checkpoints only what was committed meanwhile, so the whole
/// log is in the database file and the writer's next transaction starts the log over (under steady load a log that
/// only a background checkpoint copies never starts over and grows without end). Should the background one fall far
/// behind, the writer checkpoints itself, as SQLite would. Durability is untouched: a commit is durable in the log
/// (`synchronous=FULL`) before anyone checkpoints it.
final class WALCheckpointer: Sendable {
    /// Log pages after which the background connection starts a checkpoint (what `wal_autocheckpoint` was).
    static let backgroundPages = 4000
    /// Log pages after which the writer checkpoints on its own commit, as SQLite's automatic checkpoint would.
    static let inlinePages = 40000
    /// The background connection checkpoints again while more than this many pages were committed during its last
    /// round, so that what the writer copies itself stays small.
    static let leftForWriter = 64

    private struct State { var running = false, finished = false }
    private let state = Mutex(State())
    let connection: SQLiteThreadConnection
    /// Checkpoints the background connection has run.
    let rounds = Atomic<Int>(0)

    init(connection: SQLiteThreadConnection) { self.connection = connection }

    /// On the writer's thread, right after its commit, with the log's size in pages: whether the writer should
    /// checkpoint now (cheap after a background checkpoint, which left only the commits made meanwhile).
    func committed(walPages: Int) -> Bool {
        let (inline, start) = state.withLock { s -> (Bool, Bool) in
            if s.finished { s.finished = false; return (true, false) }
            if walPages >= Self.inlinePages { return (true, false) }
            if walPages >= Self.backgroundPages, !s.running { s.running = true; return (false, true) }
            return (false, false)
        }
        if start {
            let c = connection
            Task(executorPreference: c.executor) {
                for _ in 0..<4 {
                    // One row: busy, the log's pages, how many of them are now in the database file.
                    guard let r = try? await c.run({ try $0.query("PRAGMA wal_checkpoint(PASSIVE)", []) }).first,
                          let log = r["log"].int, let copied = r["checkpointed"].int else { break }
                    self.rounds.add(1, ordering: .relaxed)
                    if log - copied <= Self.leftForWriter { break }
                }
                self.state.withLock { $0.running = false; $0.finished = true }
            }
        }
        return inline
    }
}

private func walHook(_ context: UnsafeMutableRawPointer?, _ db: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ pages: Int32) -> Int32 {
    guard let context else { return SQLITE_OK }
    if Unmanaged<WALCheckpointer>.fromOpaque(context).takeUnretainedValue().committed(walPages: Int(pages)) {
        _ = sqlite_nio_sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
    }
    return SQLITE_OK
}

private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

import Foundation
import IMCore
import IMStorage
import Logging
import NIOCore
import PostgresNIO

/// PostgreSQL over a pooled `PostgresClient`: reads run on any pooled connection, each write is one
/// `BEGIN … COMMIT` on one leased connection. Concurrent writers (other pooled connections, other servers)
/// are PostgreSQL's business: row locks on `conversations.last_seq` serialise appends per conversation.
public final class PostgresDriver: SQLDriver {
    public var dialect: SQLDialect { .postgres }

    /// `host:port`, for messages.
    public let endpoint: String
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    let logger: Logger
    /// Scrubbed from every error message, just in case a lower layer ever echoes it.
    let secret: String?
    /// For connections of their own, outside the pool (the cluster's listener).
    let connectionConfiguration: PostgresConnection.Configuration
    /// How long one pooled read or write may take, waiting for a connection included; nil: unbounded.
    public let operationDeadline: Double?
    /// Told of every read and write abandoned at `operationDeadline`.
    private let deadlineObserver = LockedBox<(@Sendable (String) -> Void)?>(nil)
    /// Ends a read or write whose connection closes under it at once (`ConnectionCloseWatch`).
    private let closeWatch = ConnectionCloseWatch()

    private init(client: PostgresClient, runner: Task<Void, Never>, endpoint: String, logger: Logger, secret: String?,
                 connectionConfiguration: PostgresConnection.Configuration, operationDeadline: Double?) {
        self.client = client; self.runner = runner; self.endpoint = endpoint; self.logger = logger; self.secret = secret
        self.connectionConfiguration = connectionConfiguration; self.operationDeadline = operationDeadline
    }

    /// Connects to PostgreSQL, starting the connection pool in a background task owned by the driver
    /// (stopped by `close()`), and checks connectivity with `SELECT 1`.
    ///
    /// - Throws: `StorageError.unavailable` with a message naming host, port and user (never the password).
    public static func connect(host: String, port: Int = 5432, username: String, password: String?, database: String,
                               tls: Bool = false, caFile: String? = nil, maxConnections: Int = 20,
                               operationDeadline: Double? = nil,
                               logger: Logger = Logger(label: "warbler.postgres")) async throws -> PostgresDriver {
        let endpoint = "\(host):\(port)"
        let secret = password.flatMap { $0.isEmpty ? nil : $0 }
        func unavailable(_ error: any Error) -> StorageError {
            let why = scrub(describe(error), secret)
            return StorageError.unavailable(
                "cannot reach PostgreSQL at \(endpoint) as \(username): \(why); check \(hint(for: error, database: database))")
        }

        // Probe with a single direct connection first: it fails fast with the real cause (refused, bad password,
        // unknown database), where the pool would keep retrying in the background for a minute.
        var probeConfig = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: .disable)
        // The server's certificate is verified (name included) against the system's roots, or only `caFile`'s.
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        if let caFile, !caFile.isEmpty { tlsConfiguration.trustRoots = .file(caFile) }
        if tls {
            do {
                probeConfig.tls = .require(try NIOSSLContext(configuration: tlsConfiguration))
            } catch {
                throw StorageError.unavailable("cannot set up TLS for PostgreSQL at \(endpoint): \(scrub(describe(error), secret))")
            }
        }
        probeConfig.options.connectTimeout = .seconds(10)
        do {
            let probe = try await PostgresConnection.connect(configuration: probeConfig, id: 0, logger: logger)
            do {
                _ = try await probe.query("SELECT 1", logger: logger).collect()
            } catch {
                try? await probe.close()
                throw error
            }
            try? await probe.close()
        } catch {
            throw unavailable(error)
        }

        var config = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database,
            tls: tls ? .require(tlsConfiguration) : .disable)
        config.options.maximumConnections = max(1, maxConnections)
        config.options.connectTimeout = .seconds(10)
        // The contract: a write returns once its commit is durable, whatever the server's default says.
        config.options.additionalStartupParameters = [("synchronous_commit", "on")]
        let client = PostgresClient(configuration: config, backgroundLogger: logger)
        // Start the pool's run loop and wait until its task is under way, so the first lease finds it running.
        let (started, signal) = AsyncStream<Void>.makeStream()
        let runner = Task {
            signal.finish()
            await client.run()
        }
        for await _ in started {}
        await Task.yield()
        let driver = PostgresDriver(client: client, runner: runner, endpoint: endpoint, logger: logger, secret: secret,
                                    connectionConfiguration: probeConfig, operationDeadline: operationDeadline)
        do {
            _ = try await driver.read { db in try await db.query("SELECT 1 AS one") }
        } catch {
            runner.cancel()
            await runner.value
            throw unavailable(error)
        }
        return driver
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await bounded("read") { [client, logger, secret, closeWatch, endpoint] held, end in
            try await client.withConnection { connection in
                held.withLock { $0 = connection }
                return try await withTaskExecutorPreference(EventLoopTaskExecutor(loop: connection.eventLoop)) {
                    try await closeWatch.run(on: connection, end: { end(Self.closedUnder("read", endpoint)) }) {
                        try await body(PostgresExecutor(connection: connection, logger: logger, secret: secret))
                    }
                }
            }
        }
    }

    @discardableResult
    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await bounded("write") { [client, logger, secret, closeWatch, endpoint] held, end in
            try await client.withConnection { connection in
                held.withLock { $0 = connection }
                return try await withTaskExecutorPreference(EventLoopTaskExecutor(loop: connection.eventLoop)) {
                    try await closeWatch.run(on: connection, end: { end(Self.closedUnder("write", endpoint)) }) {
                        try await Self.transaction(on: PostgresExecutor(connection: connection, logger: logger, secret: secret), body)
                    }
                }
            }
        }
    }

    static func closedUnder(_ what: String, _ endpoint: String) -> StorageError {
        StorageError.unavailable("the connection to PostgreSQL at \(endpoint) closed during a \(what) (a primary changed?); try again")
    }

    public func observeDeadlinesPassed(_ observer: @escaping @Sendable (String) -> Void) {
        deadlineObserver.withLock { $0 = observer }
    }

    /// One read or write, leasing included, within `operationDeadline`. Past it the caller gets `unavailable`
    /// (retryable) and the connection, if one was leased, is closed so that the pool replaces it: after a primary
    /// changed, an await inside PostgresNIO was seen never to resume, and one such await in the cluster service's
    /// single consumer stopped cross-node delivery on its node for good. A write abandoned this way may still
    /// commit; every write the server retries is idempotent (a send by its client id).
    private func bounded<T: Sendable>(_ what: String, _ op: @escaping @Sendable (LockedBox<PostgresConnection?>, RaceEnd) async throws -> T) async throws -> T {
        let held = LockedBox<PostgresConnection?>(nil)
        // Without a deadline the race still runs: a closing connection ends it (`ConnectionCloseWatch`).
        let result = await firstOf(seconds: operationDeadline) { end in try await op(held, end) }
        switch result {
        case .success(let value)?:
            return value
        case .failure(let error as PSQLError)?:
            // Leasing failed (pool closed, server gone).
            throw StorageError.unavailable("PostgreSQL at \(endpoint): \(scrub(Self.describe(error), secret))")
        case .failure(let error)?:
            throw error
        case nil:
            let connection = held.withLock { $0 }
            deadlineObserver.withLock { $0 }?(what)
            let seconds = operationDeadline.map { String(format: "%g", $0) } ?? "?"
            logger.error("PostgreSQL at \(endpoint): a \(what) did not end within \(seconds) s; \(connection == nil ? "no connection was leased yet" : "its connection is closed and the pool opens another")")
            if let connection { Task { try? await connection.close() } }
            throw StorageError.unavailable("PostgreSQL at \(endpoint) did not answer within \(seconds) s; try again")
        }
    }

    /// `body` in one `BEGIN … COMMIT` on `ex`'s connection.
    static func transaction<T: Sendable>(on ex: PostgresExecutor, _ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await ex.query("BEGIN")
        let result: T
        do {
            result = try await body(ex)
        } catch {
            _ = try? await ex.query("ROLLBACK")
            throw error
        }
        // A failed statement aborts the transaction in PostgreSQL, and COMMIT would then quietly roll
        // back: if the body swallowed such an error, report it rather than claim a commit.
        if let failure = ex.failure {
            _ = try? await ex.query("ROLLBACK")
            throw failure
        }
        try await ex.query("COMMIT")
        return result
    }

    /// The `application_name` of the connection that holds the migration lock.
    public static let lockHolderApplicationName = "warbler-exclusive"

    /// Takes the advisory lock `key` (`pg_advisory_lock`) on a connection of its own, outside the pool, and runs
    /// `body` with a driver over that one connection. The lock is session-level: closing the connection releases
    /// it whatever happens, so a crashed or failed holder never leaves it taken (a pooled connection would go back
    /// to the pool still holding it).
    public func withExclusiveLock<T: Sendable>(_ key: Int64, _ body: @Sendable (any SQLDriver) async throws -> T) async throws -> T {
        var configuration = connectionConfiguration
        configuration.options.additionalStartupParameters.append(contentsOf: [
            ("application_name", Self.lockHolderApplicationName), ("synchronous_commit", "on"),
        ])
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 2, logger: logger)
        } catch {
            throw StorageError.unavailable("cannot open a connection to PostgreSQL at \(endpoint) to take lock \(key): \(scrub(Self.describe(error), secret))")
        }
        let session = PostgresSessionDriver(connection: connection, endpoint: endpoint, logger: logger, secret: secret)
        do {
            let taken = try await session.read { db in
                try await db.first("SELECT pg_try_advisory_lock($1) AS taken", [.int(key)])?.bool("taken") ?? false
            }
            if !taken {
                logger.notice("waiting for another node that holds PostgreSQL advisory lock \(key) (running schema migrations)")
                _ = try await session.read { db in try await db.query("SELECT pg_advisory_lock($1)", [.int(key)]) }
            }
            let result = try await body(session)
            _ = try? await session.read { db in try await db.query("SELECT pg_advisory_unlock($1)", [.int(key)]) }
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    public func sizeInBytes() async throws -> Int64 {
        try await read { db in
            try await db.first("SELECT pg_database_size(current_database()) AS size")?.int("size") ?? 0
        }
    }

    /// Stops the pool (closing its connections) and waits for its background task to end.
    public func close() async throws {
        runner.cancel()
        await runner.value
    }

    // MARK: Error text

    /// A readable description of a PostgresNIO error. `PSQLError` hides its details from `description`;
    /// this shows the server's message and SQLSTATE, or the underlying network error, never the query's binds.
    static func describe(_ error: any Error) -> String {
        if let e = error as? PostgresServerError { return e.description }
        if let e = error as? StorageError { return e.description }
        if let e = error as? PSQLError {
            if let info = e.serverInfo {
                return PostgresServerError(info).description
            }
            if let underlying = e.underlying {
                return "\(e.code): \(String(describing: underlying))"
            }
            return "\(e.code)"
        }
        if let e = error as? PostgresDecodingError {
            return "cannot decode column \(e.columnName) of type \(e.postgresType): \(e.code)"
        }
        return String(describing: error)
    }

    static func hint(for error: any Error, database: String) -> String {
        let state = (error as? PSQLError)?.serverInfo?[.sqlState] ?? ""
        switch state {
        case "28P01", "28000":
            return "the user name and password, and that pg_hba.conf allows this client"
        case "3D000":
            return "that the database '\(database)' exists (createdb \(database))"
        case "53300":
            return "the server's max_connections"
        default:
            if let e = error as? PSQLError, e.code == .sslUnsupported {
                return "whether the server has TLS enabled, or set tls: false"
            }
            return "that the server is running and listening on that address (listen_addresses, port), the user and password, and pg_hba.conf"
        }
    }
}

func scrub(_ text: String, _ secret: String?) -> String {
    guard let secret, !secret.isEmpty else { return text }
    return text.replacingOccurrences(of: secret, with: "********")
}

/// An error reported by the PostgreSQL server for a statement.
public struct PostgresServerError: Error, Sendable, CustomStringConvertible {
    /// The SQLSTATE code, e.g. `23505` for a unique violation.
    public var sqlState: String
    public var message: String
    public var detail: String?
    public var hint: String?

    init(_ info: PSQLError.ServerInfo) {
        sqlState = info[.sqlState] ?? "XX000"
        message = info[.message] ?? "server error"
        detail = info[.detail]
        hint = info[.hint]
    }

    init(sqlState: String, message: String) {
        self.sqlState = sqlState; self.message = message
    }

    public var description: String {
        var s = "PostgreSQL error \(sqlState): \(message)"
        if let detail { s += " (\(detail))" }
        if let hint { s += "; hint: \(hint)" }
        return s
    }
}

/// A driver over one connection that is not the pool's (the one holding an advisory lock): reads and writes run on
/// it one at a time. Closing it is its owner's business.
final class PostgresSessionDriver: SQLDriver {
    var dialect: SQLDialect { .postgres }
    let connection: PostgresConnection
    let endpoint: String
    let logger: Logger
    let secret: String?
    private let lock = AsyncLock()

    init(connection: PostgresConnection, endpoint: String, logger: Logger, secret: String?) {
        self.connection = connection; self.endpoint = endpoint; self.logger = logger; self.secret = secret
    }

    private var executor: PostgresExecutor { PostgresExecutor(connection: connection, logger: logger, secret: secret) }

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let ex = executor
        return try await lock.withLock { try await body(ex) }
    }

    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let ex = executor
        return try await lock.withLock { try await PostgresDriver.transaction(on: ex, body) }
    }

    /// Session-level advisory locks stack on one connection: taken again here, released after `body`.
    func withExclusiveLock<T: Sendable>(_ key: Int64, _ body: @Sendable (any SQLDriver) async throws -> T) async throws -> T {
        _ = try await read { db in try await db.query("SELECT pg_advisory_lock($1)", [.int(key)]) }
        do {
            let result = try await body(self)
            _ = try await read { db in try await db.query("SELECT pg_advisory_unlock($1)", [.int(key)]) }
            return result
        } catch {
            _ = try? await read { db in try await db.query("SELECT pg_advisory_unlock($1)", [.int(key)]) }
            throw error
        }
    }

    func sizeInBytes() async throws -> Int64 {
        try await read { db in try await db.first("SELECT pg_database_size(current_database()) AS size")?.int("size") ?? 0 }
    }

    func close() async throws {}
}

/// The first statement failure on an executor.
final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var error: (any Error)?
    func record(_ e: any Error) { lock.lock(); defer { lock.unlock() }; if error == nil { error = e } }
    var value: (any Error)? { lock.lock(); defer { lock.unlock() }; return error }
}

/// Runs statements on one leased connection.
struct PostgresExecutor: SQLExecutor {
    let connection: PostgresConnection
    let logger: Logger
    let secret: String?
    let box = FailureBox()

    var failure: (any Error)? { box.value }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        var bindings = PostgresBindings(capacity: binds.count)
        for b in binds {
            switch b {
            case .null: bindings.appendNull()
            case .int(let i): bindings.append(i)
            case .double(let d): bindings.append(d)
            case .text(let s): bindings.append(s)
            case .bytes(let b): bindings.append(ByteBuffer(bytes: b))
            }
        }
        let rows: [PostgresRow]
        do {
            rows = try await connection.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger).collect()
        } catch {
            let mapped = map(error)
            box.record(mapped)
            throw mapped
        }
        return try rows.map { row in
            var values: [String: SQLValue] = [:]
            for cell in row {
                values[cell.columnName] = try Self.value(cell)
            }
            return SQLRow(values)
        }
    }

    /// Server errors keep their SQLSTATE and message (so callers can recognise, say, a unique violation);
    /// anything else is the connection failing.
    func map(_ error: any Error) -> any Error {
        guard let e = error as? PSQLError else { return error }
        if let info = e.serverInfo {
            var s = PostgresServerError(info)
            s.message = scrub(s.message, secret)
            s.detail = s.detail.map { scrub($0, secret) }
            return s
        }
        return StorageError.unavailable("lost the PostgreSQL connection: \(scrub(PostgresDriver.describe(e), secret))")
    }

    static func value(_ cell: PostgresCell) throws -> SQLValue {
        guard var bytes = cell.bytes else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8, .oid:
            return .int(try cell.decode(Int64.self))
        case .numeric:
            let d = try cell.decode(Decimal.self)
            let text = "\(d)"
            if let i = Int64(text) { return .int(i) }
            return .double(NSDecimalNumber(decimal: d).doubleValue)
        case .float4:
            return .double(Double(try cell.decode(Float.self)))
        case .float8:
            return .double(try cell.decode(Double.self))
        case .bool:
            return .int(try cell.decode(Bool.self) ? 1 : 0)
        case .text, .varchar, .bpchar, .name, .json, .jsonb, .uuid:
            return .text(try cell.decode(String.self))
        case .bytea:
            return .bytes(bytes.readBytes(length: bytes.readableBytes) ?? [])
        case .timestamp, .timestamptz, .date:
            let date = try cell.decode(Date.self)
            return .text(ISO8601DateFormatter().string(from: date))
        default:
            if cell.format == .text {
                return .text(bytes.readString(length: bytes.readableBytes) ?? "")
            }
            // A binary value of a type we don't know: its UTF-8 text when it is that, else PostgreSQL's hex form.
            let raw = bytes.readBytes(length: bytes.readableBytes) ?? []
            if let s = String(validating: raw, as: UTF8.self) { return .text(s) }
            return .text("\\x" + raw.map { String(format: "%02x", $0) }.joined())
        }
    }
}

import IMStorage

/// One connection to a database file that someone else keeps: root's backup reading the service user's live
/// database. It is opened with `SQLITE_OPEN_NOFOLLOW` and never created. A link anywhere in the path is refused, and
/// SQLite opens the file, its -wal and its -shm with `O_NOFOLLOW`, so a link swapped in after the caller's checks is
/// refused too. A -wal or -shm that root's open creates, SQLite hands to the database file's owner (`fchown`), so
/// the server can still open them.
public final class SQLiteNoFollowConnection: Sendable {
    private let connection: SQLiteThreadConnection

    private init(_ connection: SQLiteThreadConnection) { self.connection = connection }

    public static func open(path: String) async throws -> SQLiteNoFollowConnection {
        SQLiteNoFollowConnection(try await SQLiteThreadConnection.open(path: path, name: "sqlite-nofollow", noFollow: true))
    }

    public func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        try await connection.run { try $0.query(sql, binds) }
    }

    public func close() async { await connection.close() }
}

import Foundation
import IMCore

/// SQLite's search index, in a database file of its own (migration 14), filled from the live database's log.
///
/// FTS5 writes a new index segment for every transaction that inserts into it, whatever the number of rows, so the
/// index is not filled in the sends' commits: the `messages` triggers append a message's key to `search_log` (an
/// insert; an edit, recall or delete with `changed` 1), and this indexes the log in transactions of its own, `delay`
/// after a commit (what the commits of that time logged shares one segment). A search calls `indexQueued()` first,
/// so it finds every message committed before it started.
///
/// The index lives in `SQLDriver.searchIndexFile`, with a writer connection of its own that only reads the live
/// database: SQLite has one writer per file, and indexing in the live file held every send's commit up for 1.7 ms
/// 20 times a second (docs/benchmarks.md). How far the log is indexed (`search_mark.n`) is committed with the index
/// itself, so a crash anywhere loses nothing: what is logged past the mark is indexed after the restart. Now and then
/// the live writer prunes the log below the mark, always keeping its last entry, so the log's newest key never goes
/// below the mark. The mark also holds the live database's `search_source` token (new at migration 14): an index of
/// another database (a file copied in) or of a later state of this one (a mark past the log's end: a database put
/// back from a backup) is rebuilt from the messages in one transaction. A restore also sets the index file aside.
public final class SearchIndexQueue: Sendable {
    private struct State {
        var scheduled = false
        /// Whether messages were committed since the last indexing started (then it runs again).
        var committedSince = false
        /// Whether the schema has the log (false only for a store over a schema older than 14: the migration tests'
        /// old data).
        var present: Bool?
        /// Indexed through this log entry (durably: the index's transaction committed), and pruned below which.
        var indexedThrough: Int64 = 0
        var prunedBelow: Int64 = 0
        var prunedAt: ContinuousClock.Instant?
    }
    private let driver: any SQLDriver
    private let index: (any SQLSideDatabase)?
    private let delay: Duration
    private let chunk: Int
    private let state = LockedBox(State())

    /// The table a search matches: the index file's, as the readers attach it (migration 14), or the live file's
    /// (a store over an older schema, whose triggers index in the commit).
    static let indexTable = "search.message_fts"

    /// Log entries one indexing transaction takes at most. Large: a transaction of the index file holds nobody's
    /// commit up, and a chunk that ends before the log does makes the next wait for keys logged past it (and T's
    /// server CPU per message was 4 µs higher with chunks of 1,024; docs/benchmarks.md).
    public static let defaultChunk = 16_384

    init(driver: any SQLDriver, delay: Duration = .milliseconds(50), chunk: Int = defaultChunk) {
        self.driver = driver
        self.index = driver.searchIndexFile
        self.delay = delay
        self.chunk = max(1, chunk)
    }

    /// Indexes what is logged `delay` from now: at start, so that an index to build (after a restore, an upgrade to
    /// schema 14, a removed file) is built then rather than by the first search, which would wait for it.
    func catchUp() { committed(1) }

    /// After a commit of `count` new messages: index them shortly, in one transaction with the others logged by then.
    func committed(_ count: Int) {
        guard count > 0 else { return }
        let start = state.withLock { s -> Bool in
            s.committedSince = true
            if s.scheduled { return false }
            s.scheduled = true
            return true
        }
        if start { Task { await self.run() } }
    }

    private func run() async {
        while true {
            try? await Task.sleep(for: delay)
            state.withLock { $0.committedSince = false }
            do {
                guard try await hasLog() else { state.withLock { $0.scheduled = false }; return }
                try await indexLogged()
                try await pruneIfDue()
            } catch {
                // Nothing is lost (a full disk, say): the log keeps the keys, and the next commit tries again. A
                // search that cannot index them fails with the error rather than miss messages.
                state.withLock { $0.scheduled = false }
                return
            }
            let again = state.withLock { s -> Bool in
                if s.committedSince { return true }
                s.scheduled = false
                return false
            }
            if !again { return }
        }
    }

    /// Indexes everything logged. A search calls it first; it costs one read of each file when nothing is pending.
    /// Throws when the schema has the log but the driver no index file to put it in.
    func indexQueued() async throws {
        guard try await hasLog() else { return }
        try await indexLogged()
    }

    /// Whether searches read the index file (schema 14 on), and so `indexTable`; false: the live file's `message_fts`.
    func usesIndexFile() async throws -> Bool { try await hasLog() }

    private func hasLog() async throws -> Bool {
        if let known = state.withLock({ $0.present }) { return known }
        let present = try await driver.read { db in
            try await db.first("SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = 'search_log'") != nil
        }
        // Only a present log is remembered: a store opened over an older schema may see it migrated later.
        if present {
            guard index != nil else {
                throw StorageError.unavailable("this database keeps its search index in a file of its own, and this connection has none")
            }
            state.withLock { $0.present = true }
        }
        return present
    }

    private func indexLogged() async throws {
        while try await indexChunk() == chunk {}
    }

    /// Indexes the next `chunk` logged entries in one transaction of the index file, or rebuilds the index when it
    /// is not this database's; returns how many entries it took (0: nothing pending).
    private func indexChunk() async throws -> Int {
        guard let index else { return 0 }
        let chunk = self.chunk
        let (taken, through) = try await index.write { db -> (Int, Int64) in
            // One snapshot of the live file for the whole transaction: it is first read here.
            guard let source = try await db.first("SELECT token FROM live.search_source LIMIT 1")?.bytes("token") else {
                throw StorageError.corrupt("the database has a search log but no search_source token")
            }
            let end = try await db.first("SELECT max(n) AS n FROM live.search_log")?.optInt("n") ?? 0
            let mark = try await db.first("SELECT token, n FROM search_mark WHERE one = 1")
            let from = try mark?.int("n") ?? 0
            if mark == nil || mark?["token"].bytes != source || from > end {
                try await Self.rebuild(db, token: source, through: end)
                return (0, end)
            }
            guard let top = try await db.first(
                "SELECT max(n) AS n, count(*) AS k FROM (SELECT n FROM live.search_log WHERE n > $1 ORDER BY n LIMIT $2)",
                [.int(from), .int(Int64(chunk))]), let last = top.optInt("n") else { return (0, from) }
            // Old text out first: an edit, recall or delete (one statement per key, by rowid, as FTS5 deletes best).
            let changed = try await db.query(
                "SELECT DISTINCT id FROM live.search_log WHERE n > $1 AND n <= $2 AND changed = 1", [.int(from), .int(last)])
            for row in changed { try await db.query("DELETE FROM message_fts WHERE rowid = $1", [.int(try row.int("id"))]) }
            // Then each key as its row is now, once; a key logged again past this chunk waits for that entry's chunk.
            try await db.query("""
                INSERT INTO message_fts (rowid, text)
                SELECT q.id, m.text FROM (SELECT DISTINCT id FROM live.search_log WHERE n > $1 AND n <= $2
                                           AND id NOT IN (SELECT id FROM live.search_log WHERE n > $2)) q
                JOIN live.messages m ON m.conv_id = q.id / 4294967296 AND m.seq = q.id % 4294967296
                WHERE m.kind IN ('text', 'attachment') AND m.text IS NOT NULL AND m.recalled = 0
                """, [.int(from), .int(last)])
            // A little merging in each transaction instead of FTS5's own, which merged in bursts of 22–47 ms with
            // 300,000 messages indexed (docs/benchmarks.md; automerge is off from the rebuild on).
            try await db.query("INSERT INTO message_fts (message_fts, rank) VALUES ('merge', 20)")
            try await db.query("UPDATE search_mark SET n = $1 WHERE one = 1", [.int(last)])
            return (Int(try top.int("k")), last)
        }
        state.withLock { $0.indexedThrough = max($0.indexedThrough, through) }
        return taken
    }

    /// Every readable message into an empty index, marked as indexed through log entry `through`.
    private static func rebuild(_ db: any SQLExecutor, token: [UInt8], through: Int64) async throws {
        try await db.query("INSERT INTO message_fts (message_fts) VALUES ('delete-all')")
        try await db.query("INSERT INTO message_fts (message_fts, rank) VALUES ('automerge', 0)")
        try await db.query("""
            INSERT INTO message_fts (rowid, text)
            SELECT conv_id * 4294967296 + seq, text FROM live.messages
            WHERE kind IN ('text', 'attachment') AND text IS NOT NULL AND recalled = 0
            """)
        try await db.query("INSERT INTO message_fts (message_fts) VALUES ('optimize')")
        try await db.query("INSERT OR REPLACE INTO search_mark (one, token, n) VALUES (1, $1, $2)", [.bytes(token), .int(through)])
    }

    /// Prunes the indexed part of the log on the live writer, at most every 2 seconds and once 2,048 entries or
    /// 30 seconds' worth are indexed: a short transaction that rarely holds a send's commit up.
    private func pruneIfDue() async throws {
        let below = state.withLock { s -> Int64? in
            let since = s.prunedAt.map { $0.duration(to: .now) } ?? .seconds(3600)
            let due = s.indexedThrough - s.prunedBelow >= 2_048 || (s.indexedThrough > s.prunedBelow && since > .seconds(30))
            guard due, since > .seconds(2) else { return nil }
            return s.indexedThrough
        }
        guard let below else { return }
        // Below the mark, not through it: the log's last entry stays, so its newest key never goes below the mark.
        try await driver.write { db in try await db.query("DELETE FROM search_log WHERE n < $1", [.int(below)]) }
        state.withLock { s in s.prunedBelow = max(s.prunedBelow, below); s.prunedAt = .now }
    }
}

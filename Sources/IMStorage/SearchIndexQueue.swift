import Foundation
import IMCore

/// SQLite's search index, filled from a queue (migration 13) instead of inside each send's commit.
///
/// FTS5 writes a new index segment for every transaction that inserts into it, whatever the number of rows: with
/// small group commits (one message in flight per sender) that was half of a commit's SQLite CPU. The `messages`
/// triggers now only queue a message's key (`message_fts_queue`); this indexes the queue in transactions of its
/// own of up to `chunk` messages each, `delay` after a commit (what the commits of that time queued share one
/// segment), and a search calls `indexQueued()` first, so it finds every message committed before it started.
///
/// Indexing is a write like any other (`SQLDriver.write`, `synchronous=FULL`), so a crash between a commit and its
/// indexing loses nothing: the queue is in the same database and is indexed after the restart.
final class SearchIndexQueue: Sendable {
    private struct State {
        var scheduled = false
        /// Whether messages were committed since the last indexing started (then it runs again).
        var committedSince = false
        /// Whether the schema has the queue (false only for a store over a schema older than 13: the migration
        /// tests' old data, whose triggers still index in the commit).
        var present: Bool?
        /// FTS5's own merging is off in this database (set once per process; see `indexChunk`).
        var automergeOff = false
    }
    private let driver: any SQLDriver
    private let delay: Duration
    private let chunk: Int
    private let state = LockedBox(State())

    init(driver: any SQLDriver, delay: Duration = .milliseconds(50), chunk: Int = 1024) {
        self.driver = driver
        self.delay = delay
        self.chunk = max(1, chunk)
    }

    /// After a commit of `count` new messages: index them shortly, in one transaction with the others queued by then.
    func committed(_ count: Int) {
        guard count > 0 else { return }
        let start = state.withLock { s -> Bool in
            s.committedSince = true
            if s.scheduled { return false }
            s.scheduled = true
            return true
        }
        if start { Task(executorPreference: driver.writeExecutor) { await self.run() } }
    }

    private func run() async {
        while true {
            try? await Task.sleep(for: delay)
            state.withLock { $0.committedSince = false }
            do {
                guard try await hasQueue() else { state.withLock { $0.scheduled = false }; return }
                while try await indexChunk() == chunk {}
            } catch {
                // Nothing is lost (a full disk, say): the queue keeps the keys, and the next commit tries again. A
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

    /// Indexes everything queued. A search calls it first; it costs one read when the queue is empty.
    func indexQueued() async throws {
        guard try await hasQueue() else { return }
        let queued = try await driver.read { db in try await db.first("SELECT 1 AS one FROM message_fts_queue LIMIT 1") != nil }
        guard queued else { return }
        while try await indexChunk() == chunk {}
    }

    private func hasQueue() async throws -> Bool {
        if let known = state.withLock({ $0.present }) { return known }
        let present = try await driver.read { db in
            try await db.first("SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = 'message_fts_queue'") != nil
        }
        // Only a present queue is remembered: a store opened over an older schema may see it migrated later.
        if present { state.withLock { $0.present = true } }
        return present
    }

    /// Indexes the first `chunk` queued messages (in key order) in one transaction; returns how many were queued.
    private func indexChunk() async throws -> Int {
        let chunk = self.chunk
        let automergeOff = state.withLock { $0.automergeOff }
        let n = try await driver.write { db -> Int in
            guard let top = try await db.first(
                "SELECT max(id) AS id, count(*) AS n FROM (SELECT id FROM message_fts_queue ORDER BY id LIMIT $1)", [.int(Int64(chunk))]),
                  let last = top.optInt("id") else { return 0 }
            // The row as it is now: an edit or recall since the send queued it again or took it out.
            try await db.query("""
                INSERT INTO message_fts (rowid, text)
                SELECT q.id, m.text FROM message_fts_queue q JOIN messages m ON m.conv_id = q.id / 4294967296 AND m.seq = q.id % 4294967296
                WHERE q.id <= $1 AND m.kind IN ('text', 'attachment') AND m.text IS NOT NULL AND m.recalled = 0
                """, [.int(last)])
            try await db.query("DELETE FROM message_fts_queue WHERE id <= $1", [.int(last)])
            // FTS5 merges its index segments by itself now and then, a big merge at once: with 300,000 messages
            // indexed, 1 % of the indexing transactions took 22–47 ms, and every commit waits behind them (this
            // is the writer's connection). A little merging in each transaction instead (20 pages) keeps the
            // segments as few, at 5–8 ms at worst (docs/benchmarks.md). `automerge` is stored in the index: an
            // earlier release (after a rollback) still merges once a level holds `crisismerge` (16) segments.
            if !automergeOff { try await db.query("INSERT INTO message_fts (message_fts, rank) VALUES ('automerge', 0)") }
            try await db.query("INSERT INTO message_fts (message_fts, rank) VALUES ('merge', 20)")
            return Int(try top.int("n"))
        }
        if n > 0 { state.withLock { $0.automergeOff = true } }
        return n
    }
}

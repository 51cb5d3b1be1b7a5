import Foundation
import IMCore
import IMStorage
import IMStorageSQLite
import Testing

/// SQLite's search index in a file of its own, filled from the live database's log (migration 14, `SearchIndexQueue`).
@Suite("SQLite search index file")
struct SearchIndexQueueTests {
    /// Log entries past the index's mark: what a search would index first.
    static func pending(_ driver: any SQLDriver) async throws -> Int64 {
        try await driver.read { db in
            let mark = try await db.first("SELECT n FROM search.search_mark WHERE one = 1")?.int("n") ?? 0
            return try await db.first("SELECT count(*) AS n FROM search_log WHERE n > $1", [.int(mark)])?.int("n") ?? -1
        }
    }

    /// Rows the FTS5 index itself matches, without a search (which would index the log first).
    static func indexed(_ driver: any SQLDriver, _ phrase: String) async throws -> Int64 {
        try await driver.read { db in
            try await db.first("SELECT count(*) AS n FROM search.message_fts WHERE message_fts MATCH $1", [.text("\"\(phrase)\"")])?.int("n") ?? -1
        }
    }

    static func withDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-ftsq-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try await body(dir)
    }

    /// A closed database at `dir`/warbler.db in which alice sent bob `texts`, with its index file beside it as the
    /// sends left it (nothing indexed); returns the path and bob's id.
    static func closedDatabase(in dir: String, texts: [String]) async throws -> (path: String, reader: UserID) {
        let path = dir + "/warbler.db"
        let driver = try await SQLiteDriver.open(path: path)
        try await Migrations.apply(driver, now: 1_000)
        let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
        let a = try await store.user("alice"), b = try await store.user("bob")
        let ab = try await store.directConversation(between: a.id, and: b.id)
        for t in texts { _ = try await store.send(ab.id, from: a.id, t) }
        try await driver.close()
        return (path, b.id)
    }

    @Test func aSendOnlyLogsItsIndexingAndASearchIndexesTheLogFirst() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            for i in 1...3 { _ = try await store.send(ab.id, from: a.id, "quarterly budget \(i)") }
            #expect(try await Self.pending(driver) == 3)
            #expect(try await Self.indexed(driver, "budget") == 0)
            let found = try await store.search(MessageSearch(user: b.id, terms: ["budget"], limit: 10))
            #expect(found.map(\.text) == ["quarterly budget 3", "quarterly budget 2", "quarterly budget 1"])
            #expect(try await Self.pending(driver) == 0)
            #expect(try await Self.indexed(driver, "budget") == 3)
            // The live file holds no index at all any more.
            let inLive = try await driver.read { db in
                try await db.first("SELECT count(*) AS n FROM main.sqlite_master WHERE name LIKE 'message_fts%'")?.int("n")
            }
            #expect(inLive == 0)
        }
    }

    @Test func theLogIsIndexedShortlyAfterTheCommitsInChunksAndPruned() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, searchIndexChunk: 1_024)
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            // More than one chunk, committed in a few group commits.
            let results = try await store.append((1...2_500).map {
                NewMessage(conversation: ab.id, sender: a.id, cid: "c\($0)", kind: .text, text: "needle \($0)")
            })
            #expect(results.allSatisfy { (try? $0.get()) != nil })
            // No search here: only the background indexing can catch up with the log.
            let deadline = ContinuousClock.now + .seconds(30)
            while try await Self.pending(driver) > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await Self.pending(driver) == 0)
            #expect(try await Self.indexed(driver, "needle") == 2_500)
            #expect(try await Self.indexed(driver, "needle 2500") == 1)
            // FTS5's own (bursty) merging is off in the index: each indexing transaction merges a little.
            let automerge = try await driver.read { db in
                try await db.first("SELECT v FROM search.message_fts_config WHERE k = 'automerge'")?.int("v")
            }
            #expect(automerge == 0)
            // The live writer prunes the indexed part of the log (below the index's mark, keeping the last entry).
            func logged() async throws -> SQLRow? {
                try await driver.read { db in
                    try await db.first("""
                        SELECT count(*) AS n, min(n) AS low, max(n) AS top, (SELECT n FROM search.search_mark) AS mark FROM search_log
                        """)
                }
            }
            while try await logged()?.optInt("n") == 2_500, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            let log = try #require(try await logged())
            #expect(try log.int("n") < 2_500 && log.int("top") == 2_500 && log.int("low") <= log.int("mark"), "\(log)")
        }
    }

    /// The whole point of the file of its own: indexing goes on while a transaction holds the live writer.
    @Test func indexingNeverWaitsForTheLiveWriter() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            _ = try await store.send(ab.id, from: a.id, "indexed while the writer is busy")
            let holding = AsyncStream<Void>.makeStream(), release = AsyncStream<Void>.makeStream()
            let held = Task {
                try await driver.write { _ in
                    holding.continuation.yield()
                    for await _ in release.stream { break }
                }
            }
            for await _ in holding.stream { break }
            let found = try await store.search(MessageSearch(user: b.id, terms: ["writer is busy"], limit: 10))
            #expect(found.map(\.text) == ["indexed while the writer is busy"])
            release.continuation.yield()
            try await held.value
        }
    }

    @Test func whatIsLoggedSurvivesARestartAndIsIndexedThen() async throws {
        try await Self.withDirectory { dir in
            let (path, bob) = try await Self.closedDatabase(in: dir, texts: ["sent just before the crash"])
            let second = try await SQLiteDriver.open(path: path)
            #expect(try await Self.pending(second) == 1)
            let reopened = SQLStore(driver: second)
            let found = try await reopened.search(MessageSearch(user: bob, terms: ["crash"], limit: 10))
            #expect(found.map(\.text) == ["sent just before the crash"])
            try await second.close()
        }
    }

    /// Edits, recalls and deletes reach the index through the log, whichever chunk they fall in.
    @Test func editsRecallsAndDeletesTakeTheOldTextOut() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let first = try await store.send(ab.id, from: a.id, "original wording here").message
            let second = try await store.send(ab.id, from: a.id, "recall this sentence").message
            func find(_ q: String) async throws -> [String?] {
                try await store.search(MessageSearch(user: b.id, terms: try Search.terms(q), limit: 10)).map(\.text)
            }
            #expect(try await find("wording") == ["original wording here"])
            // Edited before and after its first indexing: the index holds the newest text once.
            _ = try await store.send(ab.id, from: a.id, "revised phrasing here", kind: .edit, target: first.seq)
            #expect(try await find("wording") == [])
            #expect(try await find("phrasing") == ["revised phrasing here"])
            #expect(try await Self.indexed(driver, "here") == 1)
            _ = try await store.send(ab.id, from: a.id, "", kind: .recall, target: second.seq)
            #expect(try await find("sentence") == [])
            #expect(try await Self.indexed(driver, "sentence") == 0)
            // A delete (retention) takes the row and its index entry.
            try await driver.write { db in try await db.query("DELETE FROM messages WHERE conv_id = $1 AND seq = $2", [.int(ab.id), .int(first.seq)]) }
            #expect(try await find("phrasing") == [])
            #expect(try await Self.indexed(driver, "phrasing") == 0)
        }
    }

    /// A key logged again past a chunk's end waits for that entry's chunk: one entry per transaction here, so an
    /// edit's entry is always in a later chunk than the send's. The index ends with each message once, as it is now.
    @Test func aKeyLoggedAgainInALaterChunkIsIndexedOnceAsItIsNow() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600), searchIndexChunk: 1)
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let first = try await store.send(ab.id, from: a.id, "first draft zebra").message
            let second = try await store.send(ab.id, from: a.id, "second note yak").message
            _ = try await store.send(ab.id, from: a.id, "third note walrus")
            _ = try await store.send(ab.id, from: a.id, "second draft zebra", kind: .edit, target: first.seq)
            _ = try await store.send(ab.id, from: a.id, "final draft zebra", kind: .edit, target: first.seq)
            _ = try await store.send(ab.id, from: a.id, "", kind: .recall, target: second.seq)
            #expect(try await Self.pending(driver) == 6)
            let found = try await store.search(MessageSearch(user: b.id, terms: ["note"], limit: 10)).map(\.text)
            #expect(found == ["third note walrus"])
            #expect(try await Self.pending(driver) == 0)
            #expect(try await Self.indexed(driver, "zebra") == 1)
            #expect(try await Self.indexed(driver, "final draft zebra") == 1)
            #expect(try await Self.indexed(driver, "first") == 0)
            #expect(try await Self.indexed(driver, "yak") == 0)
            #expect(try await Self.indexed(driver, "walrus") == 1)
            // A key used again (a row deleted, another stored under its conv_id and seq): its delete's entry and its
            // insert's fall in different chunks, and the index still holds the new row once. (FTS5 also copes with a
            // rowid inserted twice, newest first; the indexer does not count on it.)
            try await driver.write { db in
                try await db.query("DELETE FROM messages WHERE conv_id = $1 AND seq = $2", [.int(ab.id), .int(first.seq)])
                try await db.query(
                    "INSERT INTO messages (conv_id, seq, sender, cid, kind, text, ts) VALUES ($1, $2, $3, 'again', 'text', 'reused key ibex', 2000)",
                    [.int(ab.id), .int(first.seq), .int(a.id)])
            }
            #expect(try await store.search(MessageSearch(user: b.id, terms: ["ibex"], limit: 10)).map(\.text) == ["reused key ibex"])
            #expect(try await Self.indexed(driver, "ibex") == 1)
            #expect(try await Self.indexed(driver, "zebra") == 0)
            // Deleted for good: nothing of it is left in the index (a second copy would outlive the delete).
            try await driver.write { db in
                try await db.query("DELETE FROM messages WHERE conv_id = $1 AND seq = $2", [.int(ab.id), .int(first.seq)])
            }
            #expect(try await store.search(MessageSearch(user: b.id, terms: ["ibex"], limit: 10)).isEmpty)
            #expect(try await Self.indexed(driver, "ibex") == 0)
        }
    }

    /// The database put back to an earlier state (a backup) under a later index, or another database under this
    /// index: the index is rebuilt from the messages, not trusted.
    @Test func anIndexOfAnotherStateIsRebuilt() async throws {
        try await Self.withDirectory { dir in
            let path = dir + "/warbler.db"
            let driver = try await SQLiteDriver.open(path: path)
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            _ = try await store.send(ab.id, from: a.id, "kept in the backup")
            try await driver.backup(to: dir + "/backup.db")
            _ = try await store.send(ab.id, from: a.id, "sent after the backup")
            #expect(try await store.search(MessageSearch(user: b.id, terms: ["backup"], limit: 10)).count == 2)
            try await driver.close()
            // The earlier file back in place, under the index of the later one (its mark is past the log's end).
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            try FileManager.default.copyItem(atPath: dir + "/backup.db", toPath: path)
            let back = try await SQLiteDriver.open(path: path)
            let restored = SQLStore(driver: back, searchIndexDelay: .seconds(3600))
            #expect(try await restored.search(MessageSearch(user: b.id, terms: ["backup"], limit: 10)).map(\.text) == ["kept in the backup"])
            try await back.close()

            // Another database (its own token) under this index, with a longer log than the index's mark.
            let otherDir = dir + "/other"
            try FileManager.default.createDirectory(atPath: otherDir, withIntermediateDirectories: true)
            let (otherPath, reader) = try await Self.closedDatabase(in: otherDir, texts: (1...5).map { "other install \($0)" })
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            try FileManager.default.copyItem(atPath: otherPath, toPath: path)
            let swapped = try await SQLiteDriver.open(path: path)
            let swappedStore = SQLStore(driver: swapped, searchIndexDelay: .seconds(3600))
            #expect(try await swappedStore.search(MessageSearch(user: reader, terms: ["backup"], limit: 10)).isEmpty)
            #expect(try await swappedStore.search(MessageSearch(user: reader, terms: ["install"], limit: 10)).count == 5)
            #expect(try await Self.indexed(swapped, "backup") == 0)
            try await swapped.close()
        }
    }

    /// The index is derived data: a file that is not a database at all is replaced, and the index built again.
    @Test func aDamagedIndexFileIsReplacedAndRebuilt() async throws {
        try await Self.withDirectory { dir in
            let (path, bob) = try await Self.closedDatabase(in: dir, texts: ["survives a damaged index"])
            try Data(repeating: 0x5a, count: 8_192).write(to: URL(fileURLWithPath: SQLiteDriver.searchIndexPath(path)))

            let second = try await SQLiteDriver.open(path: path)
            let reopened = SQLStore(driver: second, searchIndexDelay: .seconds(3600))
            #expect(try await reopened.search(MessageSearch(user: bob, terms: ["damaged"], limit: 10)).map(\.text) == ["survives a damaged index"])
            try await second.close()
        }
    }

    /// Root opening the service user's database (a tool run as root with --config) makes the index file that
    /// user's, so that the server can write it afterwards; SQLite does the same for the -wal and -shm.
    @Test(.enabled(if: geteuid() == 0)) func anIndexFileRootMakesBelongsToTheDatabasesOwner() async throws {
        try await Self.withDirectory { dir in
            let (path, bob) = try await Self.closedDatabase(in: dir, texts: ["owned by the service user"])
            let index = SQLiteDriver.searchIndexPath(path)
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: index + suffix) }
            let nobody: uid_t = 65534
            #expect(chown(path, nobody, gid_t(nobody)) == 0)

            let driver = try await SQLiteDriver.open(path: path)
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            #expect(try await store.search(MessageSearch(user: bob, terms: ["service user"], limit: 10)).count == 1)
            for suffix in ["", "-wal", "-shm"] {
                var st = stat()
                if lstat(index + suffix, &st) == 0 { #expect(st.st_uid == nobody, "\(suffix)") } else { #expect(suffix != "") }
            }
            try await driver.close()
        }
    }

    /// An index to build (here: its file removed) is built when the store opens, not by the first search.
    @Test func aMissingIndexIsBuiltAtStart() async throws {
        try await Self.withDirectory { dir in
            let (path, _) = try await Self.closedDatabase(in: dir, texts: (1...40).map { "kept before the removal \($0)" })
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: SQLiteDriver.searchIndexPath(path) + suffix) }

            let second = try await SQLiteDriver.open(path: path)
            let reopened = SQLStore(driver: second)
            let deadline = ContinuousClock.now + .seconds(30)
            while try await Self.indexed(second, "removal") < 40, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await Self.indexed(second, "removal") == 40)
            #expect(try await Self.pending(second) == 0)
            _ = reopened
            try await second.close()
        }
    }

    /// A database indexed in the live file by schema 13 (the queue) moves to the index file: what was indexed and
    /// what was still queued are both found, and the live file keeps no index.
    @Test func migratingFromSchema13BuildsTheIndexFileFromTheMessages() async throws {
        try await Backend.sqlite.withDriver { driver in
            let through13 = Array(Migrations.all.prefix { $0.version <= 13 })
            try await Migrations.apply(driver, now: 1_000, migrations: through13)
            // Schema 13's triggers queue the key; its index is in the live file.
            let old = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            let a = try await old.user("alice"), b = try await old.user("bob")
            let ab = try await old.directConversation(between: a.id, and: b.id)
            _ = try await old.send(ab.id, from: a.id, "agenda from schema thirteen")
            try await driver.write { db in
                try await db.query("""
                    INSERT INTO message_fts (rowid, text) SELECT id, 'agenda from schema thirteen' FROM message_fts_queue
                    """)
                try await db.query("DELETE FROM message_fts_queue")
            }
            _ = try await old.send(ab.id, from: b.id, "agenda still queued")

            #expect(try await Migrations.apply(driver, now: 2_000) == [14])
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            _ = try await store.send(ab.id, from: a.id, "agenda for schema fourteen")
            let found = try await store.search(MessageSearch(user: a.id, terms: ["agenda"], limit: 10)).map(\.text)
            #expect(found == ["agenda for schema fourteen", "agenda still queued", "agenda from schema thirteen"])
            let inLive = try await driver.read { db in
                try await db.first("SELECT count(*) AS n FROM main.sqlite_master WHERE name LIKE 'message_fts%'")?.int("n")
            }
            #expect(inLive == 0)
        }
    }
}

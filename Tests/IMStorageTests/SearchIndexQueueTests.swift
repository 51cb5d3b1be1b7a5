import Foundation
import IMCore
import IMStorage
import IMStorageSQLite
import Testing

/// SQLite's search indexing outside the send's commit (migration 13, `SearchIndexQueue`).
@Suite("SQLite search indexing queue")
struct SearchIndexQueueTests {
    static func queued(_ driver: any SQLDriver) async throws -> Int64 {
        try await driver.read { db in try await db.first("SELECT count(*) AS n FROM message_fts_queue")?.int("n") ?? -1 }
    }

    /// Rows the FTS5 index itself matches, without a search (which would index the queue first).
    static func indexed(_ driver: any SQLDriver, _ phrase: String) async throws -> Int64 {
        try await driver.read { db in
            try await db.first("SELECT count(*) AS n FROM message_fts WHERE message_fts MATCH $1", [.text("\"\(phrase)\"")])?.int("n") ?? -1
        }
    }

    @Test func aSendOnlyQueuesItsIndexingAndASearchIndexesTheQueueFirst() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            for i in 1...3 { _ = try await store.send(ab.id, from: a.id, "quarterly budget \(i)") }
            #expect(try await Self.queued(driver) == 3)
            #expect(try await Self.indexed(driver, "budget") == 0)
            let found = try await store.search(MessageSearch(user: b.id, terms: ["budget"], limit: 10))
            #expect(found.map(\.text) == ["quarterly budget 3", "quarterly budget 2", "quarterly budget 1"])
            #expect(try await Self.queued(driver) == 0)
            #expect(try await Self.indexed(driver, "budget") == 3)
        }
    }

    @Test func theQueueIsIndexedShortlyAfterTheCommitsInChunks() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver)
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            // More than one chunk (1,024), committed in a few group commits.
            let results = try await store.append((1...2_500).map {
                NewMessage(conversation: ab.id, sender: a.id, cid: "c\($0)", kind: .text, text: "needle \($0)")
            })
            #expect(results.allSatisfy { (try? $0.get()) != nil })
            // No search here: only the background indexing can empty the queue.
            let deadline = ContinuousClock.now + .seconds(30)
            while try await Self.queued(driver) > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(try await Self.queued(driver) == 0)
            #expect(try await Self.indexed(driver, "needle") == 2_500)
            #expect(try await Self.indexed(driver, "needle 2500") == 1)
            // The indexing merges a little in each transaction and has FTS5's own (bursty) merging off.
            let automerge = try await driver.read { db in
                try await db.first("SELECT v FROM message_fts_config WHERE k = 'automerge'")?.int("v")
            }
            #expect(automerge == 0)
        }
    }

    @Test func whatIsQueuedSurvivesARestartAndIsIndexedThen() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-ftsq-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try await SQLiteDriver.open(path: dir + "/warbler.db")
        try await Migrations.apply(first, now: 1_000)
        let store = SQLStore(driver: first, searchIndexDelay: .seconds(3600))
        let a = try await store.user("alice"), b = try await store.user("bob")
        let ab = try await store.directConversation(between: a.id, and: b.id)
        _ = try await store.send(ab.id, from: a.id, "sent just before the crash")
        try await first.close()

        let second = try await SQLiteDriver.open(path: dir + "/warbler.db")
        #expect(try await Self.queued(second) == 1)
        let reopened = SQLStore(driver: second)
        let found = try await reopened.search(MessageSearch(user: b.id, terms: ["crash"], limit: 10))
        #expect(found.map(\.text) == ["sent just before the crash"])
        try await second.close()
    }

    /// A database indexed by schema 12's triggers keeps its index; messages sent after the migration are queued, and
    /// an edit of an older message takes its old text out of the index.
    @Test func migratingFromSchema12KeepsTheIndexAndQueuesWhatFollows() async throws {
        try await Backend.sqlite.withDriver { driver in
            let through12 = Array(Migrations.all.prefix { $0.version <= 12 })
            try await Migrations.apply(driver, now: 1_000, migrations: through12)
            let old = SQLStore(driver: driver)
            let a = try await old.user("alice"), b = try await old.user("bob")
            let ab = try await old.directConversation(between: a.id, and: b.id)
            let before = try await old.send(ab.id, from: a.id, "draft agenda from schema twelve").message
            #expect(try await Self.indexed(driver, "agenda") == 1)

            #expect(try await Migrations.apply(driver, now: 2_000) == [13])
            let store = SQLStore(driver: driver, searchIndexDelay: .seconds(3600))
            _ = try await store.send(ab.id, from: b.id, "agenda for schema thirteen")
            #expect(try await Self.queued(driver) == 1)
            func find(_ q: String) async throws -> [String?] {
                try await store.search(MessageSearch(user: a.id, terms: try Search.terms(q), limit: 10)).map(\.text)
            }
            #expect(try await find("agenda") == ["agenda for schema thirteen", "draft agenda from schema twelve"])
            _ = try await store.send(ab.id, from: a.id, "final plan from schema twelve", kind: .edit, target: before.seq)
            #expect(try await Self.indexed(driver, "draft") == 0)
            #expect(try await find("agenda") == ["agenda for schema thirteen"])
            #expect(try await find("final plan") == ["final plan from schema twelve"])
        }
    }
}

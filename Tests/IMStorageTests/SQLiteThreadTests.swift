import Foundation
import IMCore
@testable import IMStorage
@testable import IMStorageSQLite
import Testing

/// SQLite's connections each run on a thread of their own: a transaction's statements are one hand-off to the
/// writer's thread in all, and statements kept prepared give the same answers with each call's own binds.
@Suite("SQLite connection threads")
struct SQLiteThreadTests {
    func withDriver<T>(_ body: (SQLiteDriver) async throws -> T) async throws -> T {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-sqlite-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let driver = try await SQLiteDriver.open(path: dir + "/warbler.db")
        do {
            let r = try await body(driver)
            try await driver.close()
            return r
        } catch {
            try? await driver.close()
            throw error
        }
    }

    @Test func aGroupCommitIsOneHandOffToTheWriterThread() async throws {
        try await withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver)
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let g = try await store.createGroup(name: "team", owner: c.id, members: [a.id, b.id])
            func m(_ conv: ConversationID, _ sender: UserID, _ cid: String) -> NewMessage {
                NewMessage(conversation: conv, sender: sender, cid: cid, kind: .text, text: cid)
            }
            let before = driver.writerHops
            let results = try await SQLStore.appendBatch(driver, [
                m(ab.id, a.id, "1"), m(g.id, c.id, "2"), m(ab.id, b.id, "3"), m(g.id, a.id, "4"), m(ab.id, a.id, "1"),
            ], now: 2_000)
            // BEGIN, the dedupe lookup, the seq reservation, the insert, the cursor update, the webhook lookup and
            // COMMIT: seven statements, one hop.
            #expect(driver.writerHops - before == 1)
            #expect(results.map { (try? $0.get())?.duplicate } == [false, false, false, false, true])
            #expect(try await store.messages(conversation: ab.id, after: 0, limit: 10).map(\.cid) == ["1", "3"])
        }
    }

    @Test func keptStatementsAnswerWithEachCallsOwnBinds() async throws {
        try await withDriver { driver in
            try await driver.write { db in
                try await db.query("CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT, d REAL, b BLOB)")
                for (k, s) in [(1, "一"), (2, "two"), (3, "")] {
                    try await db.query("INSERT INTO t (k, s, d, b) VALUES ($1, $2, $3, $4)",
                                       [.int(Int64(k)), .text(s), .double(Double(k) / 2), .bytes(Array(s.utf8))])
                }
                try await db.query("INSERT INTO t (k, s, d, b) VALUES ($1, $2, $3, $4)", [.int(4), .null, .null, .bytes([])])
            }
            for k in [1, 2, 3, 4, 2] {
                let row = try await driver.read { db in try await db.first("SELECT k, s, d, b FROM t WHERE k = $1", [.int(Int64(k))]) }
                let r = try #require(row)
                let expected: String? = [1: "一", 2: "two", 3: ""][k]
                #expect(r.optText("s") == expected)
                #expect(r["d"] == (k == 4 ? .null : .double(Double(k) / 2)))
                #expect(r["b"] == .bytes(Array((expected ?? "").utf8)))
            }
            // A unique violation reads as one, so a batch that hits a concurrent duplicate is retried message by message.
            do {
                try await driver.write { db in try await db.query("INSERT INTO t (k, s) VALUES ($1, $2)", [.int(1), .text("again")]) }
                Issue.record("a duplicate primary key was inserted")
            } catch {
                #expect(SQLStore.isConstraintRace(error), "\(error)")
            }
            // The failed transaction was rolled back and the kept statement still works.
            let n = try await driver.read { db in try await db.first("SELECT COUNT(*) AS n FROM t")?.int("n") }
            #expect(n == 4)
        }
    }

    @Test func codeUnderTheThreadsPreferenceStaysOnItAcrossAwaits() async throws {
        let executor = SerialThreadExecutor(name: "test-thread")
        defer { executor.shutdown() }
        #expect(!executor.isCurrent)
        let stayed = await withTaskExecutorPreference(executor) { () async -> [Bool] in
            var seen = [executor.isCurrent]
            for _ in 0..<3 {
                await Task.yield()
                seen.append(executor.isCurrent)
            }
            async let child = executor.isCurrent
            seen.append(await child)
            return seen
        }
        #expect(stayed == [true, true, true, true, true])
    }

    /// The log is copied into the database file by the checkpoint connection, and still starts over under steady
    /// commits (which it would not if only a background checkpoint copied it: the writer adds to it meanwhile).
    @Test func checkpointsRunOffTheWriterAndTheLogStillStartsOver() async throws {
        try await withDriver { driver in
            try await driver.write { db in try await db.query("CREATE TABLE t (k INTEGER PRIMARY KEY, b BLOB)") }
            let blob = [UInt8](repeating: 7, count: 64 * 1024)   // 17 pages a commit
            func sequence() -> UInt32? {
                // The WAL header's checkpoint sequence, big-endian at offset 12: it grows each time the log starts over.
                guard let f = FileHandle(forReadingAtPath: driver.path + "-wal") else { return nil }
                defer { try? f.close() }
                guard let h = try? f.read(upToCount: 16), h.count == 16 else { return nil }
                return h.suffix(4).reduce(0) { $0 << 8 | UInt32($1) }
            }
            try await driver.write { db in try await db.query("INSERT INTO t (k, b) VALUES ($1, $2)", [.int(0), .bytes(blob)]) }
            let first = try #require(sequence())
            var k: Int64 = 1
            // 4,000 pages (about 240 commits) start the background checkpoint; the writer's own fallback would start
            // only at 40,000 pages, after the loop's last commit.
            while sequence() == first && k < 1_500 {
                let key = k
                try await driver.write { db in try await db.query("INSERT INTO t (k, b) VALUES ($1, $2)", [.int(key), .bytes(blob)]) }
                k += 1
            }
            #expect(sequence() != first, "the log never started over in \(k) commits")
            #expect(driver.backgroundCheckpoints >= 1)
            let n = try await driver.read { db in try await db.first("SELECT COUNT(*) AS n FROM t")?.int("n") }
            #expect(n == k)
        }
    }

    @Test func placeholdersBecomeSQLiteNumberedParameters() {
        #expect(SQLiteThreadConnection.placeholders("SELECT $1, $12 FROM t WHERE a = '$x' AND b = $2") == "SELECT ?1, ?12 FROM t WHERE a = '$x' AND b = ?2")
    }
}

extension SQLiteThreadTests {
    @Test func aClosedDriverRefusesStatementsAndClosesAgainHarmlessly() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-sqlite-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let driver = try await SQLiteDriver.open(path: dir + "/warbler.db")
        try await driver.close()
        try await driver.close()
        await #expect(throws: StorageError.self) { try await driver.write { db in try await db.query("SELECT 1") } }
        await #expect(throws: StorageError.self) { try await driver.read { db in try await db.query("SELECT 1") } }
    }
}

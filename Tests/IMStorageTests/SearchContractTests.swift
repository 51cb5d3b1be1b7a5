import Foundation
import IMCore
import IMStorage
import Testing

@Suite("Storage contract: search")
struct SearchContractTests {
    @Test(arguments: Backend.allCases)
    func searchFindsOnlyReadableMessagesInChineseAndEnglishAndFollowsEditsAndRecalls(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in try await Self.findsOnlyReadableMessages(store) }
    }

    /// The same on SQLite with its search indexing held back (migration 13's queue): every search indexes what the
    /// sends, the edit and the recall queued before it reads.
    @Test func sqliteWithItsSearchIndexingHeldBackFindsTheSame() async throws {
        try await Backend.sqlite.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            try await Self.findsOnlyReadableMessages(SQLStore(driver: driver, searchIndexDelay: .seconds(3600)))
        }
    }

    static func findsOnlyReadableMessages(_ store: SQLStore) async throws {
        let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
        let ab = try await store.directConversation(between: a.id, and: b.id)
        let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
        let bc = try await store.directConversation(between: b.id, and: c.id)   // alice is not in it
        func find(_ q: String, as user: UserID = a.id, conv: ConversationID? = nil, sender: UserID? = nil,
                  from: Int64? = nil, to: Int64? = nil) async throws -> [String?] {
            try await store.search(MessageSearch(user: user, terms: try Search.terms(q), conversation: conv, sender: sender,
                                                 from: from, to: to, limit: 50)).map(\.text)
        }

        _ = try await store.send(ab.id, from: a.id, "明天下午三点开会讨论预算")
        _ = try await store.send(ab.id, from: b.id, "The Quarterly BUDGET review")
        _ = try await store.send(g.id, from: b.id, "预算已经批准了")
        _ = try await store.send(g.id, from: a.id, "100% done_now")
        _ = try await store.send(bc.id, from: c.id, "secret 预算 for bob only")
        let edited = try await store.send(g.id, from: b.id, "draft wording").message
        let recalled = try await store.send(ab.id, from: b.id, "预算 leak").message

        // Two-character Chinese words (shorter than a trigram) and longer phrases, newest first, never another's chat.
        #expect(try await find("预算") == ["预算 leak", "预算已经批准了", "明天下午三点开会讨论预算"])
        #expect(try await find("开会讨论") == ["明天下午三点开会讨论预算"])
        #expect(try await find("预算", as: c.id) == ["secret 预算 for bob only"])
        // Case-insensitive, every word must occur, LIKE wildcards are literal.
        #expect(try await find("budget QUARTERLY") == ["The Quarterly BUDGET review"])
        #expect(try await find("budget missing") == [])
        #expect(try await find("0%") == ["100% done_now"])
        #expect(try await find("e_n") == ["100% done_now"])
        #expect(try await find("x_y") == [])
        // Filters.
        #expect(try await find("预算", conv: g.id) == ["预算已经批准了"])
        #expect(try await find("预算", sender: a.id) == ["明天下午三点开会讨论预算"])

        // An edit replaces what is found; a recall removes it.
        _ = try await store.send(g.id, from: b.id, "final wording", kind: .edit, target: edited.seq)
        #expect(try await find("draft") == [])
        #expect(try await find("final wording") == ["final wording"])
        _ = try await store.send(ab.id, from: b.id, "", kind: .recall, target: recalled.seq)
        #expect(try await find("leak") == [])
        #expect(try await find("预算") == ["预算已经批准了", "明天下午三点开会讨论预算"])
        // A dissolved group's messages are gone from search too.
        try await store.dissolve(conversation: g.id)
        #expect(try await find("预算") == ["明天下午三点开会讨论预算"])
    }

    @Test(arguments: Backend.allCases)
    func searchPagesNewestFirstByCursorAndFiltersByDate(_ backend: Backend) async throws {
        try await backend.withStore { store, driver in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            for i in 1...25 { _ = try await store.send(ab.id, from: i % 2 == 0 ? a.id : b.id, "report \(i)") }
            // Spread the times: message i was sent at i seconds.
            try await driver.write { db in
                try await db.query("UPDATE messages SET ts = seq * 1000 WHERE conv_id = $1", [.int(ab.id)])
                return ()
            }
            var seen: [Int64] = []
            var cursor: Search.Cursor?
            repeat {
                let page = try await store.search(MessageSearch(user: a.id, terms: ["REPORT"], before: cursor, limit: 10))
                seen += page.map(\.seq)
                cursor = page.count == 10 ? page.last.map(Search.Cursor.init(after:)) : nil
            } while cursor != nil
            #expect(seen == Array((1...25).reversed()))
            let window = try await store.search(MessageSearch(user: a.id, terms: ["report"], from: 5_000, to: 8_000, limit: 50))
            #expect(window.map(\.seq) == [7, 6, 5])
        }
    }
}

import IMCore
@testable import IMStorage
import Testing

/// One group-commit batch spanning several conversations: seqs are reserved per conversation in batch order and
/// every sender's read cursor moves to its newest message, with one statement for each (not one per conversation).
@Suite("Group commit batch")
struct GroupCommitBatchTests {
    @Test(arguments: Backend.allCases)
    func oneBatchAcrossConversationsNumbersEachInOrderAndMovesEverySendersCursor(_ backend: Backend) async throws {
        try await backend.withStore { store, driver in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let ac = try await store.directConversation(between: a.id, and: c.id)
            let g = try await store.createGroup(name: "team", owner: c.id, members: [a.id, b.id])
            _ = try await store.send(ab.id, from: b.id, "before")
            let abStart = try #require(try await store.conversation(id: ab.id)).lastSeq
            let gStart = try #require(try await store.conversation(id: g.id)).lastSeq
            let acStart = try #require(try await store.conversation(id: ac.id)).lastSeq

            func m(_ conv: ConversationID, _ sender: UserID, _ cid: String) -> NewMessage {
                NewMessage(conversation: conv, sender: sender, cid: cid, kind: .text, text: cid)
            }
            let results = try await SQLStore.appendBatch(driver, [
                m(ab.id, a.id, "ab1"), m(ac.id, a.id, "ac1"), m(ab.id, b.id, "ab2"), m(g.id, c.id, "g1"),
                m(999_999, a.id, "nowhere"), m(ab.id, a.id, "ab3"), m(g.id, a.id, "g2"),
            ], now: 2_000)

            #expect(results.map { try? $0.get().message.seq } == [abStart + 1, acStart + 1, abStart + 2, gStart + 1, nil, abStart + 3, gStart + 2])
            if case .failure(let e) = results[4] { #expect(e.code == .notFound) } else { Issue.record("a send to no conversation succeeded") }
            #expect(try #require(try await store.conversation(id: ab.id)).lastSeq == abStart + 3)
            #expect(try #require(try await store.conversation(id: ac.id)).lastSeq == acStart + 1)
            #expect(try #require(try await store.conversation(id: g.id)).lastSeq == gStart + 2)
            #expect(try await store.messages(conversation: ab.id, after: abStart, limit: 10).map(\.cid) == ["ab1", "ab2", "ab3"])

            // Each sender has read up to its newest message of the batch, in each conversation it sent to.
            func readSeq(_ conv: ConversationID, _ user: UserID) async throws -> Int64? {
                try await store.conversation(id: conv)?.members.first { $0.user == user }?.readSeq
            }
            #expect(try await readSeq(ab.id, a.id) == abStart + 3)
            #expect(try await readSeq(ab.id, b.id) == abStart + 2)
            #expect(try await readSeq(ac.id, a.id) == acStart + 1)
            #expect(try await readSeq(ac.id, c.id) == 0)
            #expect(try await readSeq(g.id, c.id) == gStart + 1)
            #expect(try await readSeq(g.id, a.id) == gStart + 2)
        }
    }

    @Test func completionCallbacksRunOnceWithTheOutcomeEvenWhenRegisteredLate() async throws {
        let ticket = AppendTicket()
        let seen = LockedBox<[String]>([])
        ticket.onCompletion { r in seen.withLock { $0.append(((try? r.get()) == nil) ? "failed" : "early") } }
        ticket.complete(.failure(StorageError.unavailable("down")))
        ticket.complete(.failure(StorageError.unavailable("twice")))   // a second completion changes nothing
        ticket.onCompletion { r in seen.withLock { $0.append(((try? r.get()) == nil) ? "late" : "?") } }
        #expect(seen.withLock { $0 } == ["failed", "late"])
        await #expect(throws: StorageError.self) { _ = try await ticket.result() }
    }
}

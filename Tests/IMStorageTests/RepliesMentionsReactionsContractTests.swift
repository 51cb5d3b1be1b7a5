import Foundation
import IMCore
import IMStorage
import Testing

extension SQLStore {
    /// Appends one message and returns its result (success or domain failure) without failing the test.
    func tryAppend(_ m: NewMessage) async throws -> Result<AppendResult, IMError> {
        let results = try await append([m])
        try #require(results.count == 1)
        return results[0]
    }

    func react(_ conv: ConversationID, by user: UserID, _ emoji: String, on seq: Int64, remove: Bool = false) async throws -> Result<AppendResult, IMError> {
        try await tryAppend(NewMessage(conversation: conv, sender: user, cid: UUID().uuidString, kind: .reaction, text: emoji,
                                       data: .object(["op": .string(remove ? "remove" : "add")]), target: seq))
    }
}

@Suite("Storage contract: replies, mentions, reactions")
struct RepliesMentionsReactionsContractTests {
    @Test(arguments: Backend.allCases)
    func repliesAndMentionsAreStoredAndReadBack(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id, c.id])
            let first = try await store.send(g.id, from: b.id, "lunch?")
            let reply = try await store.tryAppend(NewMessage(conversation: g.id, sender: a.id, cid: "r1", kind: .text, text: "@bob @carol yes",
                                                            replyTo: first.message.seq, mentions: [b.id, c.id])).get()
            #expect(reply.message.replyTo == first.message.seq)
            #expect(reply.message.mentions == [b.id, c.id])
            #expect(reply.message.mentionAll == nil)
            let all = try await store.tryAppend(NewMessage(conversation: g.id, sender: a.id, cid: "r2", kind: .text, text: "@all meeting",
                                                          mentionAll: true)).get()
            #expect(all.message.mentionAll == true)

            let stored = try await store.messages(conversation: g.id, after: 0, limit: 10).filter { $0.kind == .text }
            #expect(stored.map(\.replyTo) == [nil, first.message.seq, nil])
            #expect(stored.map(\.mentions) == [nil, [b.id, c.id], nil])
            #expect(stored.map(\.mentionAll) == [nil, nil, true])
            // A repeat of a send answers with the stored original, mentions included.
            let again = try await store.tryAppend(NewMessage(conversation: g.id, sender: a.id, cid: "r1", kind: .text, text: "@bob @carol yes",
                                                            replyTo: first.message.seq, mentions: [b.id, c.id])).get()
            #expect(again.duplicate && again.message.mentions == [b.id, c.id] && again.message.replyTo == first.message.seq)
        }
    }

    @Test(arguments: Backend.allCases)
    func unreadMentionsCountPerMemberAndDropWithReadsAndRecalls(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id, c.id])
            func mentions(_ u: UserID) async throws -> Int64? { try await store.summaries(for: u).first { $0.id == g.id }?.unreadMentions }

            _ = try await store.send(g.id, from: a.id, "plain")                                                       // 1
            _ = try await store.tryAppend(NewMessage(conversation: g.id, sender: a.id, cid: "m2", kind: .text, text: "@bob",
                                                     mentions: [b.id])).get()                                        // 2
            _ = try await store.tryAppend(NewMessage(conversation: g.id, sender: a.id, cid: "m3", kind: .text, text: "@all @bob",
                                                     mentions: [b.id], mentionAll: true)).get()                      // 3
            _ = try await store.tryAppend(NewMessage(conversation: g.id, sender: b.id, cid: "m4", kind: .text, text: "@alice @bob",
                                                     mentions: [a.id, b.id])).get()                                  // 4: bob's own
            #expect(try await mentions(c.id) == 1, "carol: only @all")
            #expect(try await mentions(a.id) == 1, "alice: bob mentioned her at 4; her own @all does not count")
            #expect(try await mentions(b.id) == 0, "bob has read up to his own send")

            _ = try await store.tryAppend(NewMessage(conversation: g.id, sender: c.id, cid: "m5", kind: .text, text: "@bob",
                                                     mentions: [b.id])).get()                                        // 5
            _ = try await store.tryAppend(NewMessage(conversation: g.id, sender: c.id, cid: "m6", kind: .text, text: "@bob again",
                                                     mentions: [b.id])).get()                                        // 6
            #expect(try await mentions(b.id) == 2)
            #expect(try await store.summaries(for: b.id).first { $0.id == g.id }?.unread == 2)
            // A recalled mention no longer counts, and is no longer a mention when read back.
            _ = try await store.send(g.id, from: c.id, "", kind: .recall, target: 6)                                  // 7
            #expect(try await mentions(b.id) == 1)
            let recalled = try #require(try await store.message(conversation: g.id, seq: 6))
            #expect(recalled.mentions == nil && recalled.recalled == true)
            // Reading past it clears it.
            _ = try await store.advanceCursor(conversation: g.id, user: b.id, kind: .read, seq: 5)
            #expect(try await mentions(b.id) == 0)
            _ = try await store.advanceCursor(conversation: g.id, user: c.id, kind: .read, seq: 7)
            #expect(try await mentions(c.id) == 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func reactionsAddRemoveAndReadBackWithTheirMessage(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id, c.id])
            let m = try await store.send(g.id, from: a.id, "ship it?").message
            let other = try await store.send(g.id, from: a.id, "second").message

            let r1 = try await store.react(g.id, by: b.id, "👍", on: m.seq).get()
            #expect(r1.message.kind == .reaction && r1.message.target == m.seq && r1.message.text == "👍" && r1.message.seq == 3)
            _ = try await store.react(g.id, by: c.id, "👍", on: m.seq).get()
            _ = try await store.react(g.id, by: b.id, "👍", on: m.seq).get()      // again: state unchanged
            _ = try await store.react(g.id, by: c.id, "🎉", on: m.seq).get()
            _ = try await store.react(g.id, by: c.id, "😀", on: other.seq).get()
            var read = try #require(try await store.message(conversation: g.id, seq: m.seq))
            #expect(read.reactions == [Reaction(emoji: "🎉", users: [c.id]), Reaction(emoji: "👍", users: [b.id, c.id])])
            let page = try await store.messages(conversation: g.id, before: Int64.max, limit: 50)
            #expect(page.first { $0.seq == other.seq }?.reactions == [Reaction(emoji: "😀", users: [c.id])])
            #expect(page.first { $0.seq == m.seq }?.reactions == read.reactions)

            _ = try await store.react(g.id, by: b.id, "👍", on: m.seq, remove: true).get()
            _ = try await store.react(g.id, by: a.id, "👍", on: m.seq, remove: true).get()   // never added: nothing
            read = try #require(try await store.message(conversation: g.id, seq: m.seq))
            #expect(read.reactions == [Reaction(emoji: "🎉", users: [c.id]), Reaction(emoji: "👍", users: [c.id])])

            // Replaying the stream's reaction events over the message as first stored gives the same state.
            let events = try await store.messages(conversation: g.id, after: 0, limit: 100).filter { $0.kind == .reaction }
            let replayed = events.reduce(m) { $0.applyingReaction($1) }
            #expect(replayed.reactions == read.reactions)

            // Users list in the order they reacted: taken back and given again goes last.
            _ = try await store.react(g.id, by: b.id, "👍", on: m.seq).get()
            #expect(try await store.message(conversation: g.id, seq: m.seq)?.reactions?.last == Reaction(emoji: "👍", users: [c.id, b.id]))

            // Reactions are not unread messages and not the conversation's last message.
            let summary = try #require(try await store.summaries(for: a.id).first { $0.id == g.id })
            #expect(summary.lastMessage?.seq == other.seq)
            #expect(summary.unread == 0, "others' reactions are not unread messages")

            // Reacting to a missing or recalled message fails just that reaction; a recall drops its reactions.
            await #expect(throws: IMError.self) { try await store.react(g.id, by: b.id, "👍", on: 99).get() }
            _ = try await store.send(g.id, from: a.id, "", kind: .recall, target: m.seq)
            #expect(try await store.message(conversation: g.id, seq: m.seq)?.reactions == nil)
            await #expect(throws: IMError.self) { try await store.react(g.id, by: b.id, "👍", on: m.seq).get() }
        }
    }

    /// A reaction checked before a recall in the same commit batch leaves no reaction on the recalled message.
    @Test(arguments: Backend.allCases)
    func aReactionBatchedBeforeARecallLeavesNothingBehind(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let m = try await store.send(ab.id, from: a.id, "oops").message
            let results = try await store.append([
                NewMessage(conversation: ab.id, sender: b.id, cid: "react", kind: .reaction, text: "😂", data: .object(["op": .string("add")]), target: m.seq),
                NewMessage(conversation: ab.id, sender: a.id, cid: "recall", kind: .recall, target: m.seq),
            ])
            #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
            let stored = try #require(try await store.message(conversation: ab.id, seq: m.seq))
            #expect(stored.recalled == true && stored.reactions == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func dissolvingAGroupRemovesItsMentionsAndReactions(_ backend: Backend) async throws {
        try await backend.withStore { store, driver in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            let m = try await store.tryAppend(NewMessage(conversation: g.id, sender: a.id, cid: "x", kind: .text, text: "@bob",
                                                        mentions: [b.id])).get().message
            _ = try await store.react(g.id, by: b.id, "👍", on: m.seq).get()
            try await store.dissolve(conversation: g.id)
            let left = try await driver.read { db in
                (try await db.first("SELECT COUNT(*) AS n FROM reactions")?.int("n") ?? -1,
                 try await db.first("SELECT COUNT(*) AS n FROM message_mentions")?.int("n") ?? -1)
            }
            #expect(left.0 == 0 && left.1 == 0)
        }
    }
}

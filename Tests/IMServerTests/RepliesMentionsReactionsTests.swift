import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct RepliesMentionsReactionsTests {
    @Test(arguments: Backend.allCases) func repliesAndMentionsTravelAsStructuredDataAndCountAsUnreadMentions(backend: Backend) async throws {
        try await withServer(backend) { server in
            let owner = try await server.user("owner"), bob = try await server.user("bob"), carol = try await server.user("carol")
            let outsider = try await server.user("outsider")
            let g = try await owner.client.createGroup(name: "team", members: [bob.id, carol.id]).id
            let o = try await EventLog.connect(owner), b = try await EventLog.connect(bob), c = try await EventLog.connect(carol)

            let question = try await b.connection.send(conversation: g, text: "lunch?")
            let reply = try await o.connection.send(conversation: g, text: "@carol yes", replyTo: question.seq, mentions: [carol.id, carol.id])
            let all = try await o.connection.send(conversation: g, text: "@all meeting at 3", mentionAll: true)
            #expect(await c.waitForMessages(3, in: g))
            let got = c.userMessages(in: g)
            #expect(got.map(\.replyTo) == [nil, question.seq, nil])
            #expect(got.map(\.mentions) == [nil, [carol.id], nil], "repeats are dropped")
            #expect(got.map(\.mentionAll) == [nil, nil, true])
            #expect(got.map { $0.isMentioning(carol.id) } == [false, true, true])

            // Carol has two unread mentions (by name and @all); bob only the @all (his own message came before).
            let carolList = try await carol.client.conversations()
            #expect(carolList.first { $0.id == g }?.unreadMentions == 2)
            #expect(carolList.first { $0.id == g }?.unread == 3)
            #expect(try await bob.client.conversations().first { $0.id == g }?.unreadMentions == 1)
            await c.connection.markRead(conversation: g, seq: all.seq)
            #expect(await waitUntil { try await carol.client.conversations().first { $0.id == g }?.unreadMentions == 0 })

            // History carries the same fields, so a client can show the quote and jump to it.
            let history = try await carol.client.history(g)
            #expect(history.messages.first { $0.seq == reply.seq }?.replyTo == question.seq)

            // The rules: @all is for the owner and admins; only members can be mentioned; a reply needs its original.
            await expectIMError(.forbidden) { _ = try await c.connection.send(conversation: g, text: "@all hi", mentionAll: true) }
            await expectIMError(.invalid) { _ = try await c.connection.send(conversation: g, text: "@outsider", mentions: [outsider.id]) }
            await expectIMError(.notFound) { _ = try await c.connection.send(conversation: g, text: "re", replyTo: 999) }
            let direct = try await bob.client.createDirectConversation(with: carol.id).id
            await expectIMError(.invalid) { _ = try await b.connection.send(conversation: direct, text: "@all", mentionAll: true) }
            // A recalled original cannot be replied to; a reply that came before the recall keeps pointing at it.
            _ = try await b.connection.recall(conversation: g, seq: question.seq)
            await expectIMError(.notFound) { _ = try await c.connection.send(conversation: g, text: "late reply", replyTo: question.seq) }
            #expect(try await carol.client.history(g).messages.first { $0.seq == question.seq }?.recalled == true)
            await o.close(); await b.close(); await c.close()
        }
    }

    @Test(arguments: Backend.allCases) func reactionsReachEveryMemberAndOfflineDevicesCatchUpExactlyOnce(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let cursors = InMemoryCursorStore()
            let a = try await EventLog.connect(alice)
            let b1 = try await EventLog.connect(bob, cursorStore: cursors)
            let m = try await a.connection.send(conversation: conv, text: "ship it?")
            #expect(await b1.waitForMessages(1, in: conv))
            _ = try await b1.connection.react(conversation: conv, seq: m.seq, emoji: "👍")
            #expect(await a.wait { events in events.contains { if case .message(let x) = $0 { x.kind == .reaction } else { false } } })
            await b1.close()

            // While bob's device is away: alice reacts twice, bob (from another device) takes his back.
            let bobPhone = try await server.device("bob")
            let p = try await EventLog.connect(bobPhone)
            _ = try await a.connection.react(conversation: conv, seq: m.seq, emoji: "🎉")
            _ = try await a.connection.react(conversation: conv, seq: m.seq, emoji: "👍")
            _ = try await p.connection.react(conversation: conv, seq: m.seq, emoji: "👍", remove: true)

            let b2 = try await EventLog.connect(bob, cursorStore: cursors)
            #expect(await b2.waitForMessages(3, in: conv))
            try await Task.sleep(for: .milliseconds(200))
            let events = b2.userMessages(in: conv)
            #expect(events.count == 3, "exactly the three reactions he missed, once each")
            #expect(events.allSatisfy { $0.kind == .reaction && $0.target == m.seq })
            #expect(events.map(\.removesReaction) == [false, false, true])

            // The stored state, and the same state replayed from the stream over the first snapshot.
            let stored = try #require(try await bob.client.history(conv).messages.first { $0.seq == m.seq })
            #expect(stored.reactions == [Reaction(emoji: "🎉", users: [alice.id]), Reaction(emoji: "👍", users: [alice.id])])
            let original = try #require(b1.userMessages(in: conv).first { $0.seq == m.seq })
            let all = b1.userMessages(in: conv).filter { $0.kind == .reaction } + events
            #expect(all.reduce(original) { $0.applyingReaction($1) }.reactions == stored.reactions)
            // Reactions are not unread messages.
            #expect(try await alice.client.conversations().first { $0.id == conv }?.unread == 0)

            await expectIMError(.invalid) { _ = try await a.connection.react(conversation: conv, seq: m.seq, emoji: "not an emoji") }
            await expectIMError(.notFound) { _ = try await a.connection.react(conversation: conv, seq: 999, emoji: "👍") }
            await a.close(); await b2.close(); await p.close()
        }
    }
}

/// Polls `condition` until it holds (false after `timeout`).
func waitUntil(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return false
}

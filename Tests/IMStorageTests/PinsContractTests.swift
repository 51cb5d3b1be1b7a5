import Foundation
import IMCore
import IMStorage
import Testing

@Suite("Storage contract: pins")
struct PinsContractTests {
    @Test(arguments: Backend.allCases)
    func pinnedConversationsComeFirstForTheirOwnerOnly(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let ac = try await store.directConversation(between: a.id, and: c.id)
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            _ = try await store.send(ab.id, from: a.id, "1")
            _ = try await store.send(ac.id, from: a.id, "2")
            _ = try await store.send(g.id, from: a.id, "3")
            #expect(try await store.summaries(for: a.id).map(\.id) == [g.id, ac.id, ab.id])
            try await store.setConversationPinned(user: a.id, conversation: ab.id, pinnedAt: 10)
            try await store.setConversationPinned(user: a.id, conversation: ac.id, pinnedAt: 20)
            let list = try await store.summaries(for: a.id)
            #expect(list.map(\.id) == [ac.id, ab.id, g.id], "pinned first, latest pin first")
            #expect(list.map(\.pinnedAt) == [20, 10, nil])
            #expect(try await store.summaries(for: b.id).allSatisfy { $0.pinnedAt == nil }, "pins are per user")
            try await store.setConversationPinned(user: a.id, conversation: ac.id, pinnedAt: nil)
            #expect(try await store.summaries(for: a.id).map(\.id) == [ab.id, g.id, ac.id])
            // Leaving takes the pin with it.
            try await store.setConversationPinned(user: b.id, conversation: g.id, pinnedAt: 5)
            try await store.removeMember(conversation: g.id, user: b.id)
            try await store.addMembers(conversation: g.id, users: [b.id], limit: 10)
            #expect(try await store.summaries(for: b.id).first { $0.id == g.id }?.pinnedAt == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func pinnedMessagesAreListedLatestFirstAndARecallUnpins(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            let m1 = try await store.send(g.id, from: b.id, "rules").message
            let m2 = try await store.send(g.id, from: a.id, "agenda").message
            #expect(try await store.setMessagePinned(conversation: g.id, seq: m1.seq, by: a.id, pinnedAt: 100))
            #expect(try await store.setMessagePinned(conversation: g.id, seq: m2.seq, by: a.id, pinnedAt: 200))
            #expect(!(try await store.setMessagePinned(conversation: g.id, seq: m2.seq, by: a.id, pinnedAt: 300)), "already pinned")
            var pins = try await store.pinnedMessages(conversation: g.id)
            #expect(pins.map(\.message.text) == ["agenda", "rules"])
            #expect(pins.map(\.pinnedBy) == [a.id, a.id] && pins.map(\.pinnedAt) == [200, 100])
            await expectIMError(.notFound) { _ = try await store.setMessagePinned(conversation: g.id, seq: 99, by: a.id, pinnedAt: 1) }
            _ = try await store.send(g.id, from: b.id, "", kind: .recall, target: m1.seq)
            pins = try await store.pinnedMessages(conversation: g.id)
            #expect(pins.map(\.message.seq) == [m2.seq])
            #expect(try await store.setMessagePinned(conversation: g.id, seq: m2.seq, by: a.id, pinnedAt: nil))
            #expect(!(try await store.setMessagePinned(conversation: g.id, seq: m2.seq, by: a.id, pinnedAt: nil)))
            #expect(try await store.pinnedMessages(conversation: g.id).isEmpty)
        }
    }
}

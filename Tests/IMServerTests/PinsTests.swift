import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct PinsTests {
    @Test(arguments: Backend.allCases) func conversationPinsArePersonalAndMessagePinsAreForGroupAdmins(backend: Backend) async throws {
        try await withServer(backend) { server in
            let owner = try await server.user("owner"), bob = try await server.user("bob"), eve = try await server.user("eve")
            let g = try await owner.client.createGroup(name: "team", members: [bob.id]).id
            let direct = try await bob.client.createDirectConversation(with: owner.id).id
            let o = try await EventLog.connect(owner), b = try await EventLog.connect(bob)
            _ = try await o.connection.send(conversation: g, text: "in the group")
            _ = try await b.connection.send(conversation: direct, text: "newer, direct")
            #expect(try await bob.client.conversations().map(\.id) == [direct, g])
            try await bob.client.pinConversation(g)
            let list = try await bob.client.conversations()
            #expect(list.map(\.id) == [g, direct] && list.first?.pinnedAt != nil)
            #expect(try await owner.client.conversations().allSatisfy { $0.pinnedAt == nil })
            await expectIMError(.notFound) { try await eve.client.pinConversation(g) }
            try await bob.client.pinConversation(g, pinned: false)
            #expect(try await bob.client.conversations().map(\.id) == [direct, g])

            // Pinned messages: owner and admins only; members see them and learn of each change from the stream.
            let rules = try await b.connection.send(conversation: g, text: "house rules")
            await expectIMError(.forbidden) { try await bob.client.pinMessage(rules.seq, in: g) }
            await expectIMError(.invalid) { try await bob.client.pinMessage(1, in: direct) }
            try await owner.client.pinMessage(rules.seq, in: g)
            #expect(await b.wait { events in events.contains { e in
                if case .message(let m) = e, m.kind == .system, case .object(let d)? = m.data, d["event"] == .string("message_pinned") {
                    return d["seq"] == .number(Double(rules.seq))
                }
                return false
            } })
            let pins = try await bob.client.pinnedMessages(g)
            #expect(pins.map(\.message.text) == ["house rules"] && pins.first?.pinnedBy == owner.id)
            await expectIMError(.notFound) { _ = try await eve.client.pinnedMessages(g) }
            await expectIMError(.notFound) { try await owner.client.pinMessage(999, in: g) }
            try await owner.client.pinMessage(rules.seq, in: g, pinned: false)
            #expect(try await bob.client.pinnedMessages(g).isEmpty)
            await o.close(); await b.close()
        }
    }
}

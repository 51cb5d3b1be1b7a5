import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct DraftTests {
    @Test(arguments: Backend.allCases) func aDraftSavedOnOneDeviceIsSeenOnAnother(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob"), eve = try await server.user("eve")
            let phone = try await server.device("alice")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let m = try await a.connection.send(conversation: conv, text: "question?")
            let saved = try await alice.client.saveDraft("半句话 and half", replyTo: m.seq, in: conv)
            #expect(saved?.text == "半句话 and half" && saved?.replyTo == m.seq)
            #expect(try await phone.client.drafts().map(\.text) == ["半句话 and half"])
            let summary = try await phone.client.conversations().first { $0.id == conv }
            #expect(summary?.draft?.text == "半句话 and half" && summary?.draft?.replyTo == m.seq)
            #expect(try await bob.client.conversations().first { $0.id == conv }?.draft == nil, "drafts are private")
            await expectIMError(.notFound) { _ = try await eve.client.saveDraft("x", in: conv) }
            await expectIMError(.tooLarge) { _ = try await alice.client.saveDraft(String(repeating: "x", count: 17_000), in: conv) }
            try await phone.client.saveDraft("", in: conv)
            #expect(try await alice.client.drafts().isEmpty)
            #expect(try await alice.client.conversations().first { $0.id == conv }?.draft == nil)
            await a.close()
        }
    }
}

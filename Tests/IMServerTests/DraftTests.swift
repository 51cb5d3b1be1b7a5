import Foundation
import IMClient
import IMCore
@testable import IMServer
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

    static func drafts(_ events: [IMEvent], in conv: ConversationID) -> [String] {
        events.compactMap { e in
            if case .draft(let d) = e, d.conversation == conv { return d.text }
            return nil
        }
    }

    @Test(arguments: Backend.allCases) func aSavedDraftReachesTheUsersConnectedDevicesAtOnceAndNoOneElse(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let phone = try await server.device("alice")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let desk = try await EventLog.connect(alice), pocket = try await EventLog.connect(phone), other = try await EventLog.connect(bob)
            try await alice.client.saveDraft("写到一半的话", replyTo: nil, in: conv)
            #expect(await pocket.wait { Self.drafts($0, in: conv) == ["写到一半的话"] })
            #expect(await desk.wait { Self.drafts($0, in: conv) == ["写到一半的话"] }, "the saving device hears it too (it may ignore it)")
            // Deleting it (an empty text, or DELETE) is pushed as an empty text.
            try await phone.client.saveDraft("", in: conv)
            #expect(await desk.wait { Self.drafts($0, in: conv) == ["写到一半的话", ""] })
            // Drafts are private: bob's socket never hears of alice's.
            _ = try await other.connection.send(conversation: conv, text: "ping")
            #expect(await desk.waitForMessages(1, in: conv))
            #expect(Self.drafts(other.events, in: conv).isEmpty)
            await desk.close(); await pocket.close(); await other.close()
        }
    }

    @Test func aDraftSavedOnOneNodeReachesTheUsersDeviceOnTheOther() async throws {
        try await ClusterDeliveryTests().withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await a.user("bob")
            let onB = try await EventLog.connect(try await b.device("alice"))
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let long = String(repeating: "长", count: 5_000)   // over a notice's 7,900 bytes: node B reads it from storage
            try await alice.client.saveDraft(long, in: conv)
            #expect(await onB.wait { Self.drafts($0, in: conv) == [long] })
            await onB.close()
        }
    }

    @Test func theDraftNoticeRoundTrips() {
        let payloads = ClusterNotice.draft(user: 7, conv: 12).payloads(from: "node-a")
        #expect(payloads == ["d node-a 7 12"])
        #expect(ClusterNotice.decode(payloads[0])?.notice == .draft(user: 7, conv: 12))
        #expect(ClusterNotice.decode("d node-a 7") == nil && ClusterNotice.decode("d node-a x 12") == nil)
    }
}

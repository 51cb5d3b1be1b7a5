import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct SearchTests {
    @Test(arguments: Backend.allCases) func searchIsScopedToTheCallersConversationsHighlightedAndPaged(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob"), eve = try await server.user("eve")
            let ab = try await alice.client.createDirectConversation(with: bob.id).id
            let be = try await bob.client.createDirectConversation(with: eve.id).id
            let a = try await EventLog.connect(alice), b = try await EventLog.connect(bob)
            _ = try await a.connection.send(conversation: ab, text: "周五发布新版本")
            let typo = try await b.connection.send(conversation: ab, text: "发布说明写好了吗 relase notes")
            for i in 1...4 { _ = try await a.connection.send(conversation: ab, text: "发布 checklist \(i)") }
            _ = try await b.connection.send(conversation: be, text: "eve: 发布 is secret")

            let page1 = try await alice.client.search("发布", limit: 4)
            #expect(page1.results.count == 4)
            #expect(page1.results.first?.message.text == "发布 checklist 4")
            #expect(page1.results.first?.highlight == [API.Segment(text: "发布", match: true), API.Segment(text: " checklist 4", match: false)])
            let next = try #require(page1.next)
            let page2 = try await alice.client.search("发布", before: next, limit: 4)
            #expect(page2.results.map(\.message.text) == ["发布说明写好了吗 relase notes", "周五发布新版本"])
            #expect(page2.next == nil)
            #expect(!(page1.results + page2.results).contains { $0.message.conversation == be }, "never another's conversation")

            // Filters: by sender, and a conversation the caller is not in is answered as missing.
            #expect(try await alice.client.search("发布", sender: bob.id).results.map(\.message.seq) == [typo.seq])
            await expectIMError(.notFound) { _ = try await alice.client.search("发布", conversation: be) }
            await expectIMError(.invalid) { _ = try await alice.client.search("  ") }

            // Edits and recalls keep search in step.
            _ = try await b.connection.edit(conversation: ab, seq: typo.seq, text: "发布说明写好了吗 release notes")
            #expect(try await alice.client.search("relase").results.isEmpty)
            #expect(try await alice.client.search("RELEASE notes").results.first?.highlight.filter(\.match).map(\.text) == ["release", "notes"])
            _ = try await b.connection.recall(conversation: ab, seq: typo.seq)
            #expect(try await alice.client.search("release").results.isEmpty)
            await a.close(); await b.close()
        }
    }
}

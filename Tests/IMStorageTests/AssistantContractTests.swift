import Foundation
import IMCore
import IMStorage
import Testing

/// The AI assistant's storage on both backends: the per-conversation switch, and an edit that carries `data` (the
/// assistant's streaming state) replacing the target's data while a plain edit keeps it.
@Suite("Storage contract: assistant")
struct AssistantContractTests {
    @Test(arguments: Backend.allCases)
    func anAdminTurnsTheAssistantOffAndOnPerConversation(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            #expect(try await store.assistantEnabled(conversation: ab.id))
            #expect(try await store.assistantSettings().isEmpty)
            try await store.setAssistantEnabled(conversation: g.id, enabled: false, by: a.id, now: 500)
            #expect(try await !store.assistantEnabled(conversation: g.id))
            #expect(try await store.assistantEnabled(conversation: ab.id))
            try await store.setAssistantEnabled(conversation: g.id, enabled: true, by: b.id, now: 600)
            try await store.setAssistantEnabled(conversation: ab.id, enabled: false, by: a.id, now: 700)
            #expect(try await store.assistantEnabled(conversation: g.id))
            #expect(try await store.assistantSettings() == [
                AssistantConversationSetting(conversation: min(ab.id, g.id), enabled: ab.id < g.id ? false : true,
                                             changedBy: ab.id < g.id ? a.id : b.id, changedAt: ab.id < g.id ? 700 : 600),
                AssistantConversationSetting(conversation: max(ab.id, g.id), enabled: ab.id < g.id ? true : false,
                                             changedBy: ab.id < g.id ? b.id : a.id, changedAt: ab.id < g.id ? 600 : 700),
            ])
            await expectIMError(.notFound) { try await store.setAssistantEnabled(conversation: 999_999, enabled: false, by: a.id, now: 800) }
        }
    }

    @Test(arguments: Backend.allCases)
    func anEditWithDataReplacesTheTargetsDataAndAPlainEditKeepsIt(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let streaming: JSONValue = .object(["assistant": .string("streaming")])
            let complete: JSONValue = .object(["assistant": .string("complete")])
            let first = try await store.append([NewMessage(conversation: ab.id, sender: a.id, cid: "m1", kind: .text, text: "Hel", data: streaming)])
            guard case .success(let m) = first[0] else { Issue.record("\(first)"); return }
            _ = try await store.append([NewMessage(conversation: ab.id, sender: a.id, cid: "e1", kind: .edit, text: "Hello", target: m.message.seq)])
            var stored = try await store.message(conversation: ab.id, seq: m.message.seq)
            #expect(stored?.text == "Hello" && stored?.data == streaming)
            _ = try await store.append([NewMessage(conversation: ab.id, sender: a.id, cid: "e2", kind: .edit, text: "Hello there",
                                                   data: complete, target: m.message.seq)])
            stored = try await store.message(conversation: ab.id, seq: m.message.seq)
            #expect(stored?.text == "Hello there" && stored?.data == complete && stored?.editedAt != nil)
        }
    }
}

import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct ModerationTests {
    static func wordsFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-words-\(UUID().uuidString).txt").path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(arguments: Backend.allCases) func blockedWordsAreRefusedLoggedAndReloadedWithoutRestart(backend: Backend) async throws {
        let path = try Self.wordsFile("# the list\n违禁词\nforbidden\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withServer(backend, { $0.moderation.wordsFile = path; $0.moderation.reloadSeconds = 3600 }) { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            await expectIMError(.blocked) { _ = try await a.connection.send(conversation: conv, text: "这是违禁词吗") }
            await expectIMError(.blocked) { _ = try await a.connection.send(conversation: conv, text: "A FORBIDDEN thing") }
            let ok = try await a.connection.send(conversation: conv, text: "fine words")
            await expectIMError(.blocked) { _ = try await a.connection.edit(conversation: conv, seq: ok.seq, text: "now forbidden") }
            #expect(try await bob.client.history(conv).messages.map(\.text) == ["fine words"], "nothing blocked was stored")
            let blocks = try await root.client.moderationBlocks()
            #expect(blocks.map(\.word).sorted() == ["forbidden", "forbidden", "违禁词"] && blocks.allSatisfy { $0.user == alice.id && $0.conversation == conv })
            await expectIMError(.forbidden) { _ = try await alice.client.moderationBlocks() }

            // A new list takes effect on reload, with no restart.
            try Data("newword\n".utf8).write(to: URL(fileURLWithPath: path))
            let status = try await root.client.reloadModeration()
            #expect(status.enabled && status.words == 1 && status.action == "block")
            _ = try await a.connection.send(conversation: conv, text: "forbidden is fine now")
            await expectIMError(.blocked) { _ = try await a.connection.send(conversation: conv, text: "a newword") }
            await a.close()
        }
    }

    @Test func maskModeStoresTheTextWithTheWordsStarredAndPicksUpFileChanges() async throws {
        let path = try Self.wordsFile("spam\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withServer(.sqlite, { $0.moderation.wordsFile = path; $0.moderation.action = .mask; $0.moderation.reloadSeconds = 0.01 }) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: conv, text: "no SPAM please")
            try Data("please\n".utf8).write(to: URL(fileURLWithPath: path))
            // The file's modification time moves on; the next check reloads it.
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(5)], ofItemAtPath: path)
            try await Task.sleep(for: .milliseconds(50))
            _ = try await a.connection.send(conversation: conv, text: "no spam please")
            #expect(try await bob.client.history(conv).messages.map(\.text) == ["no spam ******", "no **** please"])
            await a.close()
        }
    }
}

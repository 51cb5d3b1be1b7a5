import Foundation
import IMCore
@testable import IMServer
import IMStorage
import NIOWebSocket
import Testing

/// A live message whose predecessor storage does not have: the connection is not allowed to skip it, so the
/// server asks the client to reconnect and resync (docs/protocol.md, guarantee 5).
@Suite(.timeLimit(.minutes(1))) struct GapResyncTests {
    @Test func aGapStorageCannotFillEndsTheConnectionWithReconnectInsteadOfSkipping() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let socket = try await authed(server, bob)
            socket.send(.sync(.init(cursors: [:])))
            #expect(await socket.next { if case .synced = $0 { return true }; return nil } == true)

            // A seq is taken with no message stored for it (as a broken store would): the next message skips ahead.
            let store = try #require(server.runtime.storage as? SQLStore)
            try await store.driver.write { db in
                try await db.query("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1", [.int(conv)])
                return ()
            }
            let sender = try await authed(server, alice)
            sender.send(.send(.init(cid: "after-the-hole", conv: conv, kind: .text, text: "after the hole")))

            var frames: [ServerFrame] = []
            while let f = await socket.next(timeout: .seconds(5)) {
                frames.append(f)
                if case .reconnect = f { break }
            }
            #expect(frames.contains { if case .reconnect = $0 { true } else { false } }, "no reconnect: \(frames)")
            #expect(!frames.contains { if case .msg = $0 { true } else { false } }, "the message past the hole went out: \(frames)")
            #expect(await socket.closeCode() == .goingAway)
            sender.close()
        }
    }
}

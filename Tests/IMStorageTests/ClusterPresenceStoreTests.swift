import IMCore
import IMStorage
import Testing

/// The store's side of cluster presence and receipt catch-up, on both backends.
@Suite struct ClusterPresenceStoreTests {
    @Test(arguments: Backend.allCases)
    func aUserIsOnlineWhileALiveNodeHoldsASocketOfTheirs(_ backend: Backend) async throws {
        try await backend.withStore { (store: SQLStore, _: any SQLDriver) async throws -> Void in
            try await store.nodeAlive("a", now: 1_000)
            try await store.nodeAlive("b", now: 5_000)
            try await store.setPresent(node: "a", user: 1, present: true)
            try await store.setPresent(node: "a", user: 1, present: true)   // twice is once
            try await store.setPresent(node: "a", user: 2, present: true)
            try await store.setPresent(node: "b", user: 1, present: true)
            #expect(try await store.onlineElsewhere([1, 2, 3], except: "c", heardSince: 0) == [1, 2])
            #expect(try await store.onlineElsewhere([1, 2, 3], except: "b", heardSince: 0) == [1, 2])
            #expect(try await store.onlineElsewhere([1, 2, 3], except: "a", heardSince: 0) == [1])
            // Node a has been silent since 1 000: its sockets no longer count.
            #expect(try await store.onlineElsewhere([1, 2], except: "c", heardSince: 2_000) == [1])

            #expect(try await store.expireNodes(silentSince: 2_000) == [1, 2])
            #expect(try await store.expireNodes(silentSince: 2_000) == [], "retired once")
            #expect(try await store.onlineElsewhere([1, 2], except: "c", heardSince: 0) == [1])

            try await store.setPresent(node: "b", user: 2, present: true)
            try await store.setPresent(node: "b", user: 2, present: false)
            #expect(try await store.clearPresence(node: "b") == [1])
            #expect(try await store.onlineElsewhere([1, 2], except: "c", heardSince: 0).isEmpty)
            try await store.forgetNode("b")
            #expect(try await store.expireNodes(silentSince: .max) == [])
        }
    }

    @Test(arguments: Backend.allCases)
    func memberCursorsListEveryAdvancedCursorOfTheUsersConversations(_ backend: Backend) async throws {
        try await backend.withStore { (store: SQLStore, _: any SQLDriver) async throws -> Void in
            let alice = try await store.createUser(username: "alice", passwordHash: "h", displayName: "Alice", admin: false, now: 1)
            let bob = try await store.createUser(username: "bob", passwordHash: "h", displayName: "Bob", admin: false, now: 1)
            let carol = try await store.createUser(username: "carol", passwordHash: "h", displayName: "Carol", admin: false, now: 1)
            let direct = try await store.directConversation(between: alice.id, and: bob.id)
            let other = try await store.directConversation(between: bob.id, and: carol.id)
            _ = try await store.append((0..<3).map { NewMessage(conversation: direct.id, sender: alice.id, cid: "m\($0)", kind: .text, text: "hi") })
            _ = try await store.append([NewMessage(conversation: other.id, sender: carol.id, cid: "c0", kind: .text, text: "hi")])
            _ = try await store.advanceCursor(conversation: direct.id, user: bob.id, kind: .delivered, seq: 3)
            _ = try await store.advanceCursor(conversation: direct.id, user: bob.id, kind: .read, seq: 2)
            _ = try await store.advanceCursor(conversation: other.id, user: bob.id, kind: .read, seq: 1)
            let seen = try await store.memberCursors(ofConversationsOf: [alice.id])
            #expect(seen.filter { $0.user == bob.id } == [MemberCursor(conversation: direct.id, user: bob.id, read: 2, delivered: 3)], "\(seen)")
            #expect(Set(seen.map(\.conversation)) == [direct.id], "only alice's conversations: \(seen)")
            let carols = try await store.memberCursors(ofConversationsOf: [carol.id])
            #expect(carols.filter { $0.user == bob.id } == [MemberCursor(conversation: other.id, user: bob.id, read: 1, delivered: 1)], "\(carols)")
            #expect(Set(carols.map(\.conversation)) == [other.id], "only carol's conversations: \(carols)")
            #expect(try await store.memberCursors(ofConversationsOf: []).isEmpty)
        }
    }
}

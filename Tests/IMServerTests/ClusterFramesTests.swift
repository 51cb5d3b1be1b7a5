import Foundation
import IMCore
@testable import IMServer
import Testing

/// Receipts, typing and presence reach users connected to the other node of two on one PostgreSQL
/// (docs/architecture.md, "Cross-node delivery").
extension ClusterDeliveryTests {
    @Test func aReceiptOnOneNodeReachesTheMembersOnTheOther() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let aliceSocket = try await connect(a, try await login(a, "alice").accessToken)
            let bobSocket = try await connect(b, try await login(b, "bob").accessToken)
            await aliceSocket.sendTexts(3, conv: conv, prefix: "hi")
            #expect(await bobSocket.wait(timeout: .seconds(5)) { $0.messages(conv).count == 3 })

            bobSocket.socket.send(.receipt(.init(conv: conv, kind: .read, seq: 3)))
            let read = ServerFrame.Receipt(conv: conv, user: bob.id, kind: .read, seq: 3)
            #expect(await aliceSocket.wait(timeout: .seconds(5)) { $0.receipts.contains(read) }, "alice on node A never heard bob read")
            #expect(await bobSocket.wait(timeout: .seconds(5)) { $0.receipts.contains(read) }, "bob's own sockets hear it too")
            aliceSocket.close(); bobSocket.close()
        }
    }

    @Test func typingOnOneNodeReachesTheOtherMembersOnTheOther() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let aliceSocket = try await connect(a, try await login(a, "alice").accessToken)
            let bobSocket = try await connect(b, try await login(b, "bob").accessToken)

            bobSocket.socket.send(.typing(.init(conv: conv, active: true)))
            #expect(await aliceSocket.wait(timeout: .seconds(5)) { $0.typing.contains(.init(conv: conv, user: bob.id, active: true)) })
            bobSocket.socket.send(.typing(.init(conv: conv, active: false)))
            #expect(await aliceSocket.wait(timeout: .seconds(5)) { $0.typing.contains(.init(conv: conv, user: bob.id, active: false)) })
            #expect(bobSocket.state.typing.isEmpty, "the typist hears nothing of it")
            aliceSocket.close(); bobSocket.close()
        }
    }

    /// A user is online while any node has a socket of theirs: closing the last one on one node says nothing while
    /// another node has one, and closing the very last says "offline" everywhere; `GET /v1/presence` agrees on
    /// every node.
    @Test func presenceIsOnlineWhileAnyNodeHasASocket() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            _ = try await alice.client.createDirectConversation(with: bob.id)
            let aliceToken = try await login(a, "alice").accessToken
            let aliceSocket = try await connect(a, aliceToken)
            func bobs(_ status: PresenceStatus) -> (Receiver.State) -> Bool {
                { st in st.presence.contains { $0.user == bob.id && $0.status == status } }
            }
            func asked(_ server: TestServer) async throws -> PresenceStatus? {
                let r = try await rawRequest(.GET, server.baseURL + "/v1/presence?users=\(bob.id)", bearer: aliceToken)
                #expect(r.status == 200, "\(r.body)")
                return try decode([ServerFrame.Presence].self, r.body).first?.status
            }
            #expect(try await asked(a) == .offline)

            let bobToken = try await login(b, "bob").accessToken
            let bobOnB = try await connect(b, bobToken)
            #expect(await aliceSocket.wait(timeout: .seconds(5), bobs(.online)), "alice on node A never saw bob come online on node B")
            #expect(try await asked(a) == .online, "node A's answer ignores bob's socket on node B")

            // Alice watches from node B too: that node's own decision is what she hears there.
            let aliceOnB = try await connect(b, aliceToken)
            let bobOnA = try await connect(a, bobToken)
            // Node A has recorded bob's socket once it has told alice (it records first).
            #expect(await aliceSocket.wait(timeout: .seconds(5)) { $0.presence.filter { $0.user == bob.id && $0.status == .online }.count >= 2 })
            bobOnB.close()
            try await Task.sleep(for: .seconds(1))
            #expect(!bobs(.offline)(aliceSocket.state), "bob was announced offline while his socket on node A was open")
            #expect(!bobs(.offline)(aliceOnB.state), "node B announced bob offline while his socket on node A was open")
            #expect(try await asked(b) == .online, "node B's answer ignores bob's socket on node A")

            bobOnA.close()
            #expect(await aliceSocket.wait(timeout: .seconds(5), bobs(.offline)), "bob's last socket closed and nobody said so")
            #expect(await aliceOnB.wait(timeout: .seconds(5), bobs(.offline)), "node B never heard bob went offline on node A")
            #expect(aliceSocket.state.presence.last { $0.user == bob.id }?.lastSeen != nil)
            #expect(try await asked(a) == .offline)
            #expect(try await asked(b) == .offline)
            aliceSocket.close(); aliceOnB.close()
        }
    }
}

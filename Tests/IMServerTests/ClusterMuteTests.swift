import Foundation
import IMClient
import IMCore
@testable import IMServer
import Testing

/// A mute made on one node holds on the other, whose membership cache held the group from before.
@Suite(.timeLimit(.minutes(3))) struct ClusterMuteTests {
    @Test func aMuteMadeOnOneNodeRefusesSendsOnTheOther() async throws {
        try await ClusterDeliveryTests().withCluster { a, b in
            let alice = try await a.user("alice")
            _ = try await a.user("bob")
            let bob = try await b.device("bob")
            let g = try await alice.client.createGroup(name: "club", members: [bob.id]).id
            let onB = try await EventLog.connect(bob)
            // Node B caches the group (no mutes) while bob sends there.
            _ = try await onB.connection.send(conversation: g, text: "before")

            try await alice.client.muteMember(bob.id, in: g)
            #expect(await onB.wait { $0.contains { MuteTests.isEvent($0, "member_muted", user: bob.id) } })
            await expectIMError(.muted) { _ = try await onB.connection.send(conversation: g, text: "after the mute") }

            try await alice.client.muteMember(bob.id, in: g, muted: false)
            try await alice.client.muteGroup(g)
            #expect(await onB.wait { $0.contains { MuteTests.isEvent($0, "group_muted") } })
            await expectIMError(.muted) { _ = try await onB.connection.send(conversation: g, text: "group muted") }
            try await alice.client.muteGroup(g, muted: false)
            #expect(await onB.wait { $0.contains { MuteTests.isEvent($0, "group_unmuted") } })
            _ = try await onB.connection.send(conversation: g, text: "free again")
            await onB.close()
        }
    }
}

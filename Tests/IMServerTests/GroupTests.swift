import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct GroupTests {
    @Test(arguments: Backend.allCases) func rolesInviteRemoveLeaveTransferDissolve(backend: Backend) async throws {
        try await withServer(backend) { server in
            let owner = try await server.user("owner")
            let admin = try await server.user("admin1")
            let member = try await server.user("member1")
            let newcomer = try await server.user("newcomer")
            let g = try await owner.client.createGroup(name: "ops", members: [admin.id, member.id])

            // Members cannot invite; the owner promotes an admin who can.
            await expectIMError(.forbidden) { _ = try await member.client.addMembers([newcomer.id], to: g.id) }
            try await owner.client.setRole(.admin, for: admin.id, in: g.id)
            let after = try await admin.client.addMembers([newcomer.id], to: g.id)
            #expect(Set(after.members.map(\.user)) == [owner.id, admin.id, member.id, newcomer.id])

            // Admins remove members, not the owner or other admins.
            await expectIMError(.forbidden) { try await admin.client.removeMember(owner.id, from: g.id) }
            try await admin.client.removeMember(newcomer.id, from: g.id)
            await expectIMError(.notFound) { _ = try await newcomer.client.history(g.id) }

            // The owner can't leave before handing over.
            await expectIMError(.forbidden) { try await owner.client.leaveConversation(g.id) }
            try await owner.client.transferOwnership(of: g.id, to: admin.id)
            let roles = Dictionary(uniqueKeysWithValues: try await admin.client.conversation(g.id).members.map { ($0.user, $0.role) })
            #expect(roles[admin.id] == .owner && roles[owner.id] == .admin)
            try await member.client.leaveConversation(g.id)
            await expectIMError(.notFound) { _ = try await member.client.conversation(g.id) }

            // The membership story is in the conversation's own stream.
            let events = try await admin.client.history(g.id, limit: 50).messages.reversed().compactMap { m -> String? in
                if case .object(let o)? = m.data, case .string(let e)? = o["event"] { return e }
                return nil
            }
            #expect(events == ["created", "role_changed", "members_added", "member_removed", "owner_changed", "member_left"])

            await expectIMError(.forbidden) { try await owner.client.dissolveConversation(g.id) }
            try await admin.client.dissolveConversation(g.id)
            await expectIMError(.notFound) { _ = try await owner.client.conversation(g.id) }
        }
    }

    @Test func groupSizeLimitIsEnforced() async throws {
        try await withServer(.sqlite, { $0.limits.groupSize = 3 }) { server in
            let users = try await [server.user("user1"), server.user("user2"), server.user("user3"), server.user("user4")]
            await expectIMError(.groupFull) { _ = try await users[0].client.createGroup(name: "big", members: users.dropFirst().map(\.id)) }
            let g = try await users[0].client.createGroup(name: "small", members: [users[1].id, users[2].id])
            await expectIMError(.groupFull) { _ = try await users[0].client.addMembers([users[3].id], to: g.id) }
        }
    }

    @Test func invitedMemberGetsLiveMessagesFromTheInviteOn() async throws {
        try await withServer { server in
            let owner = try await server.user("owner")
            let late = try await server.user("late")
            let g = try await owner.client.createGroup(name: "g", members: [])
            let o = try await EventLog.connect(owner)
            for i in 1...3 { _ = try await o.connection.send(conversation: g.id, text: "old\(i)") }
            let l = try await EventLog.connect(late)
            _ = try await owner.client.addMembers([late.id], to: g.id)
            _ = try await o.connection.send(conversation: g.id, text: "welcome")
            #expect(await l.waitForMessages(1, in: g.id))
            #expect(l.userMessages(in: g.id).map(\.text) == ["welcome"])
            #expect(l.messages(in: g.id).first?.kind == .system)
            // The newcomer joined at the end: nothing old counts as unread.
            #expect(try await late.client.conversations().first { $0.id == g.id }?.unread == 1)
            await o.close(); await l.close()
        }
    }
}

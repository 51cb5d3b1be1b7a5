import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct InviteTests {
    static func event(_ e: IMEvent, _ name: String, user: UserID) -> Bool {
        guard case .message(let m) = e, m.kind == .system, case .object(let d)? = m.data, d["event"] == .string(name) else { return false }
        return d["user"] == .number(Double(user))
    }

    @Test(arguments: Backend.allCases) func invitesJoinWithinTheirLimitsAndApprovalLinksMakeRequests(backend: Backend) async throws {
        try await withServer(backend) { server in
            let owner = try await server.user("owner"), bob = try await server.user("bob"), carol = try await server.user("carol")
            let dave = try await server.user("dave")
            let g = try await owner.client.createGroup(name: "team", members: []).id
            let o = try await EventLog.connect(owner)
            await expectIMError(.notFound) { _ = try await bob.client.createInvite(to: g) }
            await expectIMError(.invalid) { _ = try await owner.client.createInvite(to: g, expiresInSeconds: 5) }
            await expectIMError(.invalid) { _ = try await owner.client.createInvite(to: g, maxUses: 0) }
            let once = try await owner.client.createInvite(to: g, expiresInSeconds: 3600, maxUses: 1)
            #expect(once.expiresAt != nil && once.maxUses == 1 && !once.approval)
            let preview = try await bob.client.previewInvite(once.code)
            #expect(preview.name == "team" && preview.members == 1 && !preview.approval)
            #expect(try await bob.client.joinInvite(once.code) == API.JoinResult(outcome: .joined, conversation: g))
            #expect(await o.wait { $0.contains { Self.event($0, "member_joined", user: bob.id) } })
            #expect(try await bob.client.conversation(g).members.count == 2)
            await expectIMError(.forbidden) { _ = try await carol.client.joinInvite(once.code) }
            await expectIMError(.forbidden) { _ = try await carol.client.previewInvite(once.code) }
            await expectIMError(.notFound) { _ = try await carol.client.joinInvite("no-such-code") }
            // Members who are not admins cannot see, make or revoke links.
            await expectIMError(.forbidden) { _ = try await bob.client.invites(of: g) }

            // A link that needs approval.
            let ask = try await owner.client.createInvite(to: g, approval: true)
            #expect(try await carol.client.joinInvite(ask.code).outcome == .requested)
            #expect(try await dave.client.joinInvite(ask.code).outcome == .requested)
            #expect(await o.wait { $0.contains { Self.event($0, "join_requested", user: carol.id) } })
            await expectIMError(.notFound) { _ = try await carol.client.conversation(g) }
            await expectIMError(.forbidden) { _ = try await bob.client.joinRequests(of: g) }
            #expect(try await owner.client.joinRequests(of: g).map(\.user) == [carol.id, dave.id])
            try await owner.client.resolveJoinRequest(from: carol.id, in: g, accept: true)
            try await owner.client.resolveJoinRequest(from: dave.id, in: g, accept: false)
            await expectIMError(.notFound) { try await owner.client.resolveJoinRequest(from: dave.id, in: g, accept: true) }
            #expect(try await carol.client.conversation(g).members.count == 3)
            #expect(try await dave.client.myJoinRequests().map(\.state) == [.declined])
            await expectIMError(.notFound) { _ = try await dave.client.conversation(g) }

            // Revoking stops a link.
            try await owner.client.revokeInvite(ask.code, in: g)
            await expectIMError(.forbidden) { _ = try await dave.client.joinInvite(ask.code) }
            #expect(try await owner.client.invites(of: g).map(\.code) == [ask.code, once.code])
            await o.close()
        }
    }
}

import Foundation
import IMClient
import IMCore
import NIOHTTP1
import Testing

@Suite(.timeLimit(.minutes(2))) struct MuteTests {
    static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func isEvent(_ e: IMEvent, _ name: String, user: UserID? = nil) -> Bool {
        guard case .message(let m) = e, m.kind == .system, case .object(let d)? = m.data, d["event"] == .string(name) else { return false }
        return user == nil || d["user"] == .number(Double(user!))
    }

    @Test(arguments: Backend.allCases) func adminsMuteMembersAndTheGroupAndRefusedSendsSayWhy(backend: Backend) async throws {
        try await withServer(backend) { server in
            let owner = try await server.user("owner"), admin = try await server.user("admin"), bob = try await server.user("bob")
            let carol = try await server.user("carol"), eve = try await server.user("eve")
            let g = try await owner.client.createGroup(name: "team", members: [admin.id, bob.id, carol.id]).id
            try await owner.client.setRole(.admin, for: admin.id, in: g)
            let o = try await EventLog.connect(owner), b = try await EventLog.connect(bob), c = try await EventLog.connect(carol)
            let a = try await EventLog.connect(admin)
            let first = try await b.connection.send(conversation: g, text: "before")

            // Members cannot mute; admins mute those below them only; strangers hear not_found.
            await expectIMError(.forbidden) { try await carol.client.muteMember(bob.id, in: g) }
            await expectIMError(.forbidden) { try await admin.client.muteMember(owner.id, in: g) }
            await expectIMError(.notFound) { try await eve.client.muteMember(bob.id, in: g) }
            await expectIMError(.invalid) { try await admin.client.muteMember(bob.id, in: g, until: Self.now - 1000) }

            let until = Self.now + 3_600_000
            try await admin.client.muteMember(bob.id, in: g, until: until)
            #expect(await b.wait { $0.contains { Self.isEvent($0, "member_muted", user: bob.id) } }, "members learn of it from the stream")
            let member = try await bob.client.conversation(g).members.first { $0.user == bob.id }
            #expect(member?.muted == true && member?.mutedUntil == until)
            await expectIMError(.muted) { _ = try await b.connection.send(conversation: g, text: "let me speak") }
            await expectIMError(.muted) { _ = try await b.connection.react(conversation: g, seq: first.seq, emoji: "👍") }
            await expectIMError(.muted) { _ = try await b.connection.edit(conversation: g, seq: first.seq, text: "edited") }
            _ = try await c.connection.send(conversation: g, text: "carol may still send")
            try await admin.client.muteMember(bob.id, in: g, muted: false)
            _ = try await b.connection.send(conversation: g, text: "bob is back")

            // 全员禁言: everyone below admin is refused; owner and admins still send.
            await expectIMError(.forbidden) { try await bob.client.muteGroup(g) }
            try await admin.client.muteGroup(g)
            #expect(await c.wait { $0.contains { Self.isEvent($0, "group_muted") } })
            #expect(try await carol.client.conversation(g).allMuted == true)
            await expectIMError(.muted) { _ = try await c.connection.send(conversation: g, text: "nope") }
            _ = try await o.connection.send(conversation: g, text: "owner speaks")
            _ = try await a.connection.send(conversation: g, text: "admin speaks")
            try await owner.client.muteGroup(g, muted: false)
            #expect(await c.wait { $0.contains { Self.isEvent($0, "group_unmuted") } })
            _ = try await c.connection.send(conversation: g, text: "carol again")

            // A direct chat cannot be muted by an "admin".
            let direct = try await bob.client.createDirectConversation(with: carol.id).id
            await expectIMError(.invalid) { try await bob.client.muteMember(carol.id, in: direct) }
            for l in [o, b, c, a] { await l.close() }
        }
    }

    @Test func theMuteBodyIsOptionalAndABadOneIsNamed() async throws {
        try await withServer { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let g = try await alice.client.createGroup(name: "g", members: [bob.id]).id
            let token = try #require(await alice.client.session?.accessToken)
            let url = server.baseURL + "/v1/conversations/\(g)/mute"
            #expect(try await rawRequest(.PUT, url, bearer: token).status == 204, "no body: muted until unmuted")
            #expect(try await alice.client.conversations().first?.muted == true)
            let bad = try await rawRequest(.PUT, url, json: #"{"until":"soon"}"#, bearer: token)
            #expect(bad.status == 400 && bad.body.contains("until"), "\(bad.body)")
            let past = try await rawRequest(.PUT, url, json: #"{"until":1}"#, bearer: token)
            #expect(past.status == 400 && past.body.contains("in the future"), "\(past.body)")
            #expect(try await rawRequest(.DELETE, url, bearer: token).status == 204)
            #expect(try await alice.client.conversations().first?.muted == nil)
            // A muted member's send is refused with the code `muted`.
            try await alice.client.muteMember(bob.id, in: g)
            let b = try await EventLog.connect(bob)
            await expectIMError(.muted) { _ = try await b.connection.send(conversation: g, text: "hi") }
            await b.close()
        }
    }

    @Test(arguments: Backend.allCases) func aMutedConversationStillCountsUnreadAndMentions(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob"), eve = try await server.user("eve")
            let g = try await alice.client.createGroup(name: "team", members: [bob.id]).id
            try await bob.client.muteConversation(g)
            await expectIMError(.notFound) { try await eve.client.muteConversation(g) }
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: g, text: "plain")
            _ = try await a.connection.send(conversation: g, text: "@bob look", mentions: [bob.id])
            var s = try #require(try await bob.client.conversations().first { $0.id == g })
            #expect(s.muted == true && s.mutedUntil == nil)
            #expect(s.unread == 2 && s.unreadMentions == 1)
            #expect(try await alice.client.conversations().first { $0.id == g }?.muted == nil)
            let until = Self.now + 60_000
            try await bob.client.muteConversation(g, until: until)
            s = try #require(try await bob.client.conversations().first { $0.id == g })
            #expect(s.mutedUntil == until)
            try await bob.client.muteConversation(g, muted: false)
            #expect(try await bob.client.conversations().first { $0.id == g }?.muted == nil)
            await a.close()
        }
    }
}

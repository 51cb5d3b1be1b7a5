import Foundation
import IMCore
import IMStorage
import Testing

@Suite("Storage contract: mutes")
struct MutesContractTests {
    static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    @Test(arguments: Backend.allCases)
    func notificationMuteIsPersonalAndKeepsUnreadAndMentionCounts(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            #expect(try await store.setNotificationMute(user: b.id, conversation: g.id, until: Mute.indefinite))
            let stranger = try await store.user("eve")
            #expect(!(try await store.setNotificationMute(user: stranger.id, conversation: g.id, until: Mute.indefinite)), "not a member")
            _ = try await store.append([NewMessage(conversation: g.id, sender: a.id, cid: "m1", kind: .text, text: "@bob", mentions: [b.id])])
            var s = try #require(try await store.summaries(for: b.id).first)
            #expect(s.muted == true && s.mutedUntil == nil, "indefinite: muted without an end")
            #expect(s.unread == 1 && s.unreadMentions == 1, "a muted conversation still counts unread messages and mentions")
            #expect(try await store.summaries(for: a.id).first?.muted == nil, "mutes are per user")
            let until = Self.now + 60_000
            try await store.setNotificationMute(user: b.id, conversation: g.id, until: until)
            s = try #require(try await store.summaries(for: b.id).first)
            #expect(s.muted == true && s.mutedUntil == until)
            try await store.setNotificationMute(user: b.id, conversation: g.id, until: Self.now - 1)
            #expect(try await store.summaries(for: b.id).first?.muted == nil, "a mute whose end has passed is over")
            try await store.setNotificationMute(user: b.id, conversation: g.id, until: nil)
            #expect(try await store.summaries(for: b.id).first?.mutedUntil == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func memberAndGroupMutesShowOnTheConversation(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id, c.id])
            let until = Self.now + 600_000
            #expect(try await store.setMemberMute(conversation: g.id, user: b.id, until: until))
            #expect(try await store.setMemberMute(conversation: g.id, user: c.id, until: Self.now - 5), "stored, but already over")
            #expect(!(try await store.setMemberMute(conversation: g.id, user: 999, until: until)))
            var conv = try #require(try await store.conversation(id: g.id))
            #expect(conv.members.first { $0.user == b.id }?.muted == true)
            #expect(conv.members.first { $0.user == b.id }?.mutedUntil == until)
            #expect(conv.members.first { $0.user == c.id }?.muted == nil)
            #expect(conv.allMuted == nil)
            try await store.setGroupMute(conversation: g.id, until: Mute.indefinite)
            conv = try #require(try await store.conversation(id: g.id))
            #expect(conv.allMuted == true && conv.allMutedUntil == nil)
            let r = SendRestrictions(conv)
            #expect(r.refusal(user: b.id, role: .member, now: Self.now)?.code == .muted)
            #expect(r.refusal(user: c.id, role: .member, now: Self.now)?.code == .muted, "the whole group is muted")
            #expect(r.refusal(user: a.id, role: .owner, now: Self.now) == nil, "owners and admins may send in a muted group")
            try await store.setGroupMute(conversation: g.id, until: nil)
            try await store.setMemberMute(conversation: g.id, user: b.id, until: nil)
            conv = try #require(try await store.conversation(id: g.id))
            #expect(conv.allMuted == nil && conv.members.allSatisfy { $0.muted == nil })
            #expect(SendRestrictions(conv).isEmpty)
            // Leaving and being added again starts without the old mute.
            try await store.setMemberMute(conversation: g.id, user: c.id, until: until)
            try await store.removeMember(conversation: g.id, user: c.id)
            try await store.addMembers(conversation: g.id, users: [c.id], limit: 10)
            #expect(try await store.conversation(id: g.id)?.members.first { $0.user == c.id }?.muted == nil)
        }
    }
}

@Suite("Storage contract: forwarding")
struct ForwardContractTests {
    @Test(arguments: Backend.allCases)
    func aForwardedCopyKeepsItsOriginAndARecallClearsIt(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            let origin = ForwardedFrom(sender: b.id, ts: 1_234)
            let r = try await store.append([NewMessage(conversation: g.id, sender: a.id, cid: "f1", kind: .text, text: "copied", forwardedFrom: origin)])
            let stored = try r[0].get().message
            #expect(stored.forwardedFrom == origin)
            #expect(try await store.message(conversation: g.id, seq: stored.seq)?.forwardedFrom == origin)
            #expect(try await store.messages(conversation: g.id, after: 0, limit: 10).last?.forwardedFrom == origin)
            _ = try await store.send(g.id, from: a.id, "", kind: .recall, target: stored.seq)
            #expect(try await store.message(conversation: g.id, seq: stored.seq)?.forwardedFrom == nil)
        }
    }
}

@Suite("Storage contract: announcements")
struct AnnouncementContractTests {
    @Test(arguments: Backend.allCases)
    func anAnnouncementIsSetReplacedAndCleared(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            #expect(try await store.conversation(id: g.id)?.announcement == nil)
            try await store.setAnnouncement(conversation: g.id, Announcement(text: "first", by: a.id, at: 10))
            try await store.setAnnouncement(conversation: g.id, Announcement(text: "第二条公告", by: b.id, at: 20))
            #expect(try await store.conversation(id: g.id)?.announcement == Announcement(text: "第二条公告", by: b.id, at: 20))
            try await store.setAnnouncement(conversation: g.id, nil)
            #expect(try await store.conversation(id: g.id)?.announcement == nil)
        }
    }
}

@Suite("Storage contract: invite links and join requests")
struct InviteContractTests {
    @Test(arguments: Backend.allCases)
    func anInviteAdmitsUntilItsUsesRunOutAndCountsNoRepeat(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol"), d = try await store.user("dave")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [])
            try await store.createInvite(GroupInvite(code: "two", conversation: g.id, createdBy: a.id, createdAt: 1, expiresAt: nil, maxUses: 2))
            #expect(try await store.redeemInvite(code: "two", user: b.id, now: 10, groupLimit: 100) == .joined(alreadyMember: false))
            #expect(try await store.redeemInvite(code: "two", user: b.id, now: 11, groupLimit: 100) == .joined(alreadyMember: true))
            #expect(try await store.invite(code: "two")?.uses == 1, "a member using the link again does not count")
            await expectIMError(.groupFull) { _ = try await store.redeemInvite(code: "two", user: c.id, now: 12, groupLimit: 2) }
            #expect(try await store.redeemInvite(code: "two", user: c.id, now: 12, groupLimit: 100) == .joined(alreadyMember: false))
            await expectIMError(.forbidden) { _ = try await store.redeemInvite(code: "two", user: d.id, now: 13, groupLimit: 100) }
            await expectIMError(.notFound) { _ = try await store.redeemInvite(code: "nope", user: d.id, now: 13, groupLimit: 100) }
            let joined = try #require(try await store.conversation(id: g.id))
            #expect(Set(joined.members.map(\.user)) == [a.id, b.id, c.id])
            // Expiry and revocation.
            try await store.createInvite(GroupInvite(code: "old", conversation: g.id, createdBy: a.id, createdAt: 1, expiresAt: 20, maxUses: nil))
            await expectIMError(.forbidden) { _ = try await store.redeemInvite(code: "old", user: d.id, now: 20, groupLimit: 100) }
            try await store.createInvite(GroupInvite(code: "open", conversation: g.id, createdBy: a.id, createdAt: 2, expiresAt: nil, maxUses: nil))
            #expect(try await store.revokeInvite(conversation: g.id, code: "open"))
            #expect(!(try await store.revokeInvite(conversation: 999, code: "old")))
            await expectIMError(.forbidden) { _ = try await store.redeemInvite(code: "open", user: d.id, now: 21, groupLimit: 100) }
            #expect(try await store.invites(conversation: g.id).map(\.code) == ["open", "old", "two"])
        }
    }

    @Test(arguments: Backend.allCases)
    func anApprovalLinkFilesRequestsThatAdminsAcceptOrDecline(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [])
            try await store.createInvite(GroupInvite(code: "ask", conversation: g.id, createdBy: a.id, createdAt: 1, expiresAt: nil, maxUses: nil, approval: true))
            #expect(try await store.redeemInvite(code: "ask", user: b.id, now: 10, groupLimit: 100) == .requested(again: false))
            #expect(try await store.redeemInvite(code: "ask", user: b.id, now: 11, groupLimit: 100) == .requested(again: true))
            #expect(try await store.redeemInvite(code: "ask", user: c.id, now: 12, groupLimit: 100) == .requested(again: false))
            #expect(try await store.conversation(id: g.id)?.members.count == 1, "nobody joins before an admin accepts")
            #expect(try await store.joinRequests(conversation: g.id).map(\.user) == [b.id, c.id])
            #expect(try await store.resolveJoinRequest(conversation: g.id, user: b.id, accept: true, groupLimit: 100))
            #expect(try await store.resolveJoinRequest(conversation: g.id, user: c.id, accept: false, groupLimit: 100))
            #expect(!(try await store.resolveJoinRequest(conversation: g.id, user: c.id, accept: true, groupLimit: 100)), "declined is final")
            #expect(Set(try await store.conversation(id: g.id)?.members.map(\.user) ?? []) == [a.id, b.id])
            #expect(try await store.joinRequests(conversation: g.id).isEmpty)
            #expect(try await store.joinRequests(user: c.id).map(\.state) == [.declined])
            #expect(try await store.joinRequests(user: b.id).isEmpty, "an accepted request is done")
            try await store.dissolve(conversation: g.id)
            #expect(try await store.invite(code: "ask") == nil)
            #expect(try await store.joinRequests(user: c.id).isEmpty)
        }
    }
}

@Suite("Storage contract: drafts")
struct DraftContractTests {
    @Test(arguments: Backend.allCases)
    func draftsArePerUserAndConversationAndGoWithTheMembership(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            let d = try await store.directConversation(between: a.id, and: b.id)
            try await store.saveDraft(user: b.id, conversation: g.id, Draft(conversation: g.id, text: "first", updatedAt: 10))
            try await store.saveDraft(user: b.id, conversation: g.id, Draft(conversation: g.id, text: "second", replyTo: 3, updatedAt: 20))
            try await store.saveDraft(user: b.id, conversation: d.id, Draft(conversation: d.id, text: "hi", updatedAt: 30))
            #expect(try await store.drafts(user: b.id) == [Draft(conversation: d.id, text: "hi", updatedAt: 30),
                                                             Draft(conversation: g.id, text: "second", replyTo: 3, updatedAt: 20)])
            #expect(try await store.summaries(for: b.id).first { $0.id == g.id }?.draft?.text == "second")
            #expect(try await store.drafts(user: a.id).isEmpty)
            #expect(try await store.summaries(for: a.id).allSatisfy { $0.draft == nil })
            try await store.saveDraft(user: b.id, conversation: d.id, nil)
            try await store.removeMember(conversation: g.id, user: b.id)
            #expect(try await store.drafts(user: b.id).isEmpty, "leaving takes the draft with it")
        }
    }
}

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

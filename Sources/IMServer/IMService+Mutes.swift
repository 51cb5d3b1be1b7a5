import IMCore
import IMStorage

/// Mutes (docs/protocol.md, "Mutes"): a member's own notification mute, and an owner's or admin's mute of a member
/// or of the whole group (全员禁言), which refuses their sends with `muted`.
extension IMService {
    /// Refuses a send, edit or reaction from a muted member, or from a member below admin in a muted group. The
    /// restrictions come from the hub's membership cache: no storage read on the send path.
    func checkNotMuted(_ user: UserID, _ conv: ConversationID, role: MemberRole) async throws {
        let restrictions = try await hub.sendRestrictions(conv)
        guard !restrictions.isEmpty else { return }
        if let refusal = restrictions.refusal(user: user, role: role, now: nowMillis()) { throw refusal }
    }

    /// Mutes (until `until`, ms; nil for indefinitely) or unmutes the conversation's notifications for `user` alone.
    func muteNotifications(_ user: UserID, _ conv: ConversationID, muted: Bool, until: Int64?) async throws {
        _ = try await requireMember(user, conv)
        var end: Int64?
        if muted { end = try Mute.end(until, now: nowMillis()) }
        try await storage.setNotificationMute(user: user, conversation: conv, until: end)
    }

    /// An owner or admin mutes (or unmutes) a member below their role; announced as `member_muted` /
    /// `member_unmuted` so every member's devices learn of it live and on sync.
    func muteMember(_ user: UserID, _ conv: ConversationID, _ target: UserID, muted: Bool, until: Int64?) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard let targetRole = try await hub.members(of: conv)[target] else { throw IMError.notFound("not a member") }
        guard target != user else { throw IMError.invalid("you cannot mute yourself in a group; mute its notifications instead") }
        guard role >= .admin, role > targetRole else { throw IMError.forbidden("you may mute only members below your role") }
        var end: Int64?
        if muted { end = try Mute.end(until, now: nowMillis()) }
        try await storage.setMemberMute(conversation: conv, user: target, until: end)
        hub.invalidate(conv)
        var fields: [String: JSONValue] = ["user": .number(Double(target))]
        if let end, end != Mute.indefinite { fields["until"] = .number(Double(end)) }
        try await systemEvent(conv, by: user, muted ? "member_muted" : "member_unmuted", fields)
    }

    /// An owner or admin mutes (or unmutes) the whole group: only owners and admins may send while it lasts.
    func muteGroup(_ user: UserID, _ conv: ConversationID, muted: Bool, until: Int64?) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role >= .admin else { throw IMError.forbidden("only the group's owner and admins can mute the group") }
        var end: Int64?
        if muted { end = try Mute.end(until, now: nowMillis()) }
        try await storage.setGroupMute(conversation: conv, until: end)
        hub.invalidate(conv)
        var fields: [String: JSONValue] = [:]
        if let end, end != Mute.indefinite { fields["until"] = .number(Double(end)) }
        try await systemEvent(conv, by: user, muted ? "group_muted" : "group_unmuted", fields)
    }
}

import IMCore
import IMStorage

/// Invite links and join requests (docs/protocol.md, "Invite links and join requests").
extension IMService {
    func requireGroupAdmin(_ user: UserID, _ conv: ConversationID, _ what: String) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role >= .admin else { throw IMError.forbidden("only the group's owner and admins can \(what)") }
    }

    func createInvite(_ user: UserID, _ conv: ConversationID, _ body: API.NewInvite) async throws -> GroupInvite {
        try await requireGroupAdmin(user, conv, "make invite links")
        if let s = body.expiresInSeconds, !(60...31_536_000).contains(s) {
            throw IMError.invalid("'expiresInSeconds' must be 60 (a minute) to 31536000 (a year); leave it out for a link that does not expire")
        }
        if let m = body.maxUses, !(1...10_000).contains(m) {
            throw IMError.invalid("'maxUses' must be 1 to 10000; leave it out for any number")
        }
        let now = nowMillis()
        let invite = GroupInvite(code: TokenService.randomToken(bytes: 12), conversation: conv, createdBy: user, createdAt: now,
                                 expiresAt: body.expiresInSeconds.map { now + $0 * 1000 }, maxUses: body.maxUses,
                                 approval: body.approval ?? false)
        try await storage.createInvite(invite)
        return invite
    }

    func invites(_ user: UserID, _ conv: ConversationID) async throws -> [GroupInvite] {
        try await requireGroupAdmin(user, conv, "see invite links")
        return try await storage.invites(conversation: conv)
    }

    func revokeInvite(_ user: UserID, _ conv: ConversationID, code: String) async throws {
        try await requireGroupAdmin(user, conv, "revoke invite links")
        guard try await storage.revokeInvite(conversation: conv, code: code) else { throw IMError.notFound("no such invite link in this group") }
    }

    /// What a link leads to, for anyone holding it while it works.
    func previewInvite(_ code: String) async throws -> API.InvitePreview {
        guard let invite = try await storage.invite(code: code), let c = try await storage.conversation(id: invite.conversation) else {
            throw IMError.notFound("no such invite link; check it, or ask the group for a new one")
        }
        if let why = invite.refusal(now: nowMillis()) { throw IMError.forbidden(why) }
        return API.InvitePreview(conversation: c.id, name: c.name, members: c.members.count, approval: invite.approval, expiresAt: invite.expiresAt)
    }

    /// Joins through a link, or asks to (announced in the group as `join_requested`, for its owner and admins).
    func join(_ user: UserID, code: String) async throws -> API.JoinResult {
        guard let invite = try await storage.invite(code: code) else {
            throw IMError.notFound("no such invite link; check it, or ask the group for a new one")
        }
        let conv = invite.conversation
        switch try await storage.redeemInvite(code: code, user: user, now: nowMillis(), groupLimit: config.limits.groupSize) {
        case .joined(let already):
            if !already {
                hub.invalidate(conv)
                try await systemEvent(conv, by: user, "member_joined", ["user": .number(Double(user)), "via": .string("invite")])
            }
            return API.JoinResult(outcome: .joined, conversation: conv)
        case .requested(let again):
            if !again { try await systemEvent(conv, by: user, "join_requested", ["user": .number(Double(user))]) }
            return API.JoinResult(outcome: .requested, conversation: conv)
        }
    }

    func joinRequests(_ user: UserID, _ conv: ConversationID) async throws -> [JoinRequest] {
        try await requireGroupAdmin(user, conv, "see join requests")
        return try await storage.joinRequests(conversation: conv)
    }

    /// Accepts (the requester joins: `member_joined`) or declines a pending join request; owner and admins.
    func resolveJoinRequest(_ user: UserID, _ conv: ConversationID, requester: UserID, accept: Bool) async throws {
        try await requireGroupAdmin(user, conv, "accept or decline join requests")
        guard try await storage.resolveJoinRequest(conversation: conv, user: requester, accept: accept, groupLimit: config.limits.groupSize) else {
            throw IMError.notFound("no pending join request from this user")
        }
        if accept {
            hub.invalidate(conv)
            try await systemEvent(conv, by: user, "member_joined", ["user": .number(Double(requester)), "via": .string("request")])
        }
    }
}

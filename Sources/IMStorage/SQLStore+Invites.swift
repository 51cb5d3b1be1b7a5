import IMCore

/// What redeeming an invite link did.
public enum InviteRedemption: Sendable, Hashable {
    /// The user is now a member (`alreadyMember`: they were one, and no use was counted).
    case joined(alreadyMember: Bool)
    /// A join request is waiting for an owner or admin (`again`: it was waiting already, and no use was counted).
    case requested(again: Bool)
}

/// Invite links and join requests (docs/protocol.md, "Invite links and join requests").
extension SQLStore {
    static let inviteColumns = "code, conv_id, created_by, created_at, expires_at, max_uses, uses, approval, revoked"

    static func invite(_ r: SQLRow) throws -> GroupInvite {
        GroupInvite(code: try r.text("code"), conversation: try r.int("conv_id"), createdBy: try r.int("created_by"),
                    createdAt: try r.int("created_at"), expiresAt: r.optInt("expires_at"), maxUses: r.optInt("max_uses"),
                    uses: try r.int("uses"), approval: r.bool("approval"), revoked: r.bool("revoked"))
    }

    static func joinRequest(_ r: SQLRow) throws -> JoinRequest {
        JoinRequest(conversation: try r.int("conv_id"), user: try r.int("user_id"), createdAt: try r.int("created_at"),
                    state: JoinRequest.State(rawValue: try r.text("state")) ?? .pending)
    }

    public func createInvite(_ i: GroupInvite) async throws {
        try await driver.write { db in
            try await db.query("INSERT INTO group_invites (\(Self.inviteColumns)) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                               [.text(i.code), .int(i.conversation), .int(i.createdBy), .int(i.createdAt), SQLValue(i.expiresAt),
                                SQLValue(i.maxUses), .int(i.uses), SQLValue(i.approval), SQLValue(i.revoked)])
        }
    }

    public func invites(conversation: ConversationID) async throws -> [GroupInvite] {
        try await driver.read { db in
            try await db.query("SELECT \(Self.inviteColumns) FROM group_invites WHERE conv_id = $1 ORDER BY created_at DESC, code",
                               [.int(conversation)]).map(Self.invite)
        }
    }

    public func invite(code: String) async throws -> GroupInvite? {
        try await driver.read { db in
            try await db.first("SELECT \(Self.inviteColumns) FROM group_invites WHERE code = $1", [.text(code)]).map(Self.invite)
        }
    }

    public func revokeInvite(conversation: ConversationID, code: String) async throws -> Bool {
        try await driver.write { db in
            !(try await db.query("UPDATE group_invites SET revoked = 1 WHERE conv_id = $1 AND code = $2 RETURNING code",
                                 [.int(conversation), .text(code)])).isEmpty
        }
    }

    /// Checks the link and counts its use in one transaction, so two people racing for its last use cannot both
    /// have it: joins the user (cursors at the current end, within `groupLimit`) or files their join request.
    public func redeemInvite(code: String, user: UserID, now: Int64, groupLimit: Int) async throws -> InviteRedemption {
        try await driver.write { db in
            guard let row = try await db.first("SELECT \(Self.inviteColumns) FROM group_invites WHERE code = $1"
                                               + (self.driver.dialect == .postgres ? " FOR UPDATE" : ""), [.text(code)]) else {
                throw IMError.notFound("no such invite link; check it, or ask the group for a new one")
            }
            let invite = try Self.invite(row)
            let conv = invite.conversation
            if try await db.first("SELECT 1 AS one FROM members WHERE conv_id = $1 AND user_id = $2", [.int(conv), .int(user)]) != nil {
                return .joined(alreadyMember: true)
            }
            if let why = invite.refusal(now: now) { throw IMError.forbidden(why) }
            if invite.approval {
                let existing = try await db.first("SELECT state FROM join_requests WHERE conv_id = $1 AND user_id = $2", [.int(conv), .int(user)])
                if existing?.optText("state") == JoinRequest.State.pending.rawValue { return .requested(again: true) }
                try await db.query("DELETE FROM join_requests WHERE conv_id = $1 AND user_id = $2", [.int(conv), .int(user)])
                try await db.query("INSERT INTO join_requests (conv_id, user_id, created_at, state) VALUES ($1, $2, $3, 'pending')",
                                   [.int(conv), .int(user), .int(now)])
            } else {
                try await Self.join(db, conv, user, limit: groupLimit)
            }
            try await db.query("UPDATE group_invites SET uses = uses + 1 WHERE code = $1", [.text(code)])
            return invite.approval ? .requested(again: false) : .joined(alreadyMember: false)
        }
    }

    /// Adds `user` as a member with cursors at the current end, refusing past `limit` members.
    static func join(_ db: any SQLExecutor, _ conv: ConversationID, _ user: UserID, limit: Int) async throws {
        let count = try await db.first("SELECT COUNT(*) AS n FROM members WHERE conv_id = $1", [.int(conv)])?.int("n") ?? 0
        guard count < limit else { throw IMError(.groupFull, "the group has \(count) members; the limit is \(limit)") }
        let last = try await db.first("SELECT last_seq FROM conversations WHERE id = $1", [.int(conv)])?.int("last_seq") ?? 0
        try await db.query("INSERT INTO members (conv_id, user_id, role, read_seq, delivered_seq) VALUES ($1, $2, 'member', $3, $3)",
                           [.int(conv), .int(user), .int(last)])
        try await db.query("DELETE FROM join_requests WHERE conv_id = $1 AND user_id = $2", [.int(conv), .int(user)])
    }

    /// A group's pending join requests, oldest first.
    public func joinRequests(conversation: ConversationID) async throws -> [JoinRequest] {
        try await driver.read { db in
            try await db.query("SELECT conv_id, user_id, created_at, state FROM join_requests WHERE conv_id = $1 AND state = 'pending' ORDER BY created_at, user_id",
                               [.int(conversation)]).map(Self.joinRequest)
        }
    }

    /// A user's own join requests (pending and declined), newest first.
    public func joinRequests(user: UserID) async throws -> [JoinRequest] {
        try await driver.read { db in
            try await db.query("SELECT conv_id, user_id, created_at, state FROM join_requests WHERE user_id = $1 ORDER BY created_at DESC, conv_id",
                               [.int(user)]).map(Self.joinRequest)
        }
    }

    /// Accepts (the user joins, within `groupLimit`) or declines a pending request; false when none is pending.
    public func resolveJoinRequest(conversation: ConversationID, user: UserID, accept: Bool, groupLimit: Int) async throws -> Bool {
        try await driver.write { db in
            guard try await db.first("SELECT 1 AS one FROM join_requests WHERE conv_id = $1 AND user_id = $2 AND state = 'pending'",
                                     [.int(conversation), .int(user)]) != nil else { return false }
            if accept {
                try await Self.join(db, conversation, user, limit: groupLimit)
            } else {
                try await db.query("UPDATE join_requests SET state = 'declined' WHERE conv_id = $1 AND user_id = $2", [.int(conversation), .int(user)])
            }
            return true
        }
    }
}

/// An invite link to a group (docs/protocol.md, "Invite links and join requests"): whoever holds the code joins, or
/// asks to join when `approval` is set, until it expires, is used up or is revoked.
public struct GroupInvite: Sendable, Codable, Hashable {
    public var code: String
    public var conversation: ConversationID
    public var createdBy: UserID
    public var createdAt: Int64
    /// When it stops working (ms since 1970); nil: never.
    public var expiresAt: Int64?
    /// How many joins (or requests) it admits; nil: any number.
    public var maxUses: Int64?
    public var uses: Int64
    /// Joining through it makes a join request an owner or admin accepts or declines.
    public var approval: Bool
    public var revoked: Bool
    public init(code: String, conversation: ConversationID, createdBy: UserID, createdAt: Int64, expiresAt: Int64?, maxUses: Int64?,
                uses: Int64 = 0, approval: Bool = false, revoked: Bool = false) {
        self.code = code; self.conversation = conversation; self.createdBy = createdBy; self.createdAt = createdAt
        self.expiresAt = expiresAt; self.maxUses = maxUses; self.uses = uses; self.approval = approval; self.revoked = revoked
    }

    /// Why the link no longer admits anyone at `now`, or nil while it does.
    public func refusal(now: Int64) -> String? {
        if revoked { return "this invite link was revoked; ask the group for a new one" }
        if let e = expiresAt, e <= now { return "this invite link has expired; ask the group for a new one" }
        if let m = maxUses, uses >= m { return "this invite link has been used up; ask the group for a new one" }
        return nil
    }
}

/// A request to join a group, made through an invite link that needs approval.
public struct JoinRequest: Sendable, Codable, Hashable {
    public enum State: String, Sendable, Codable, Hashable { case pending, declined }
    public var conversation: ConversationID
    public var user: UserID
    public var createdAt: Int64
    public var state: State
    public init(conversation: ConversationID, user: UserID, createdAt: Int64, state: State) {
        self.conversation = conversation; self.user = user; self.createdAt = createdAt; self.state = state
    }
}

extension API {
    /// `POST /v1/conversations/{id}/invites`.
    public struct NewInvite: Sendable, Codable, Hashable {
        /// Seconds until the link expires (1 minute to 1 year); nil: never.
        public var expiresInSeconds: Int64?
        /// Joins the link admits (1–10,000); nil: any number.
        public var maxUses: Int64?
        public var approval: Bool?
        public init(expiresInSeconds: Int64? = nil, maxUses: Int64? = nil, approval: Bool? = nil) {
            self.expiresInSeconds = expiresInSeconds; self.maxUses = maxUses; self.approval = approval
        }
    }
    /// `GET /v1/invites/{code}`: what a link leads to, shown before joining.
    public struct InvitePreview: Sendable, Codable, Hashable {
        public var conversation: ConversationID
        public var name: String?
        public var members: Int
        public var approval: Bool
        public var expiresAt: Int64?
        public init(conversation: ConversationID, name: String?, members: Int, approval: Bool, expiresAt: Int64?) {
            self.conversation = conversation; self.name = name; self.members = members; self.approval = approval; self.expiresAt = expiresAt
        }
    }
    /// `POST /v1/invites/{code}/join`: `joined` with the conversation, or `requested` (an admin decides).
    public struct JoinResult: Sendable, Codable, Hashable {
        public enum Outcome: String, Sendable, Codable, Hashable { case joined, requested }
        public var outcome: Outcome
        public var conversation: ConversationID
        public init(outcome: Outcome, conversation: ConversationID) { self.outcome = outcome; self.conversation = conversation }
    }
}

import IMCore

/// A user account as stored, with its credentials.
public struct UserRecord: Sendable, Hashable {
    public var profile: UserProfile
    public var passwordHash: String
    public var disabled: Bool
    public var createdAt: Int64
    /// Raised by `revokeAllTokens`; access tokens carry the generation they were issued under (`gen`).
    public var tokenGeneration: Int64
    public var id: UserID { profile.id }
    public init(profile: UserProfile, passwordHash: String, disabled: Bool, createdAt: Int64, tokenGeneration: Int64 = 0) {
        self.profile = profile; self.passwordHash = passwordHash; self.disabled = disabled; self.createdAt = createdAt
        self.tokenGeneration = tokenGeneration
    }
}

/// A refresh token as stored: only its SHA-256 hash is kept.
public struct RefreshTokenRecord: Sendable, Hashable {
    public var hash: String
    public var user: UserID
    /// All tokens rotated from one login share a family; reuse of a spent token revokes the family.
    public var family: String
    public var device: String
    public var expiresAt: Int64
    /// Set once the token has been exchanged for a new one.
    public var usedAt: Int64?
    public var revoked: Bool
    public init(hash: String, user: UserID, family: String, device: String, expiresAt: Int64, usedAt: Int64? = nil, revoked: Bool = false) {
        self.hash = hash; self.user = user; self.family = family; self.device = device
        self.expiresAt = expiresAt; self.usedAt = usedAt; self.revoked = revoked
    }
}

/// A bot token as stored: only its SHA-256 hash is kept (the token is shown once, when made).
public struct BotTokenRecord: Sendable, Hashable {
    /// Public id, part of the token (`wbot_ID.SECRET`) and shown in lists; the session id of its connections is `bot:ID`.
    public var id: String
    public var bot: UserID
    public var hash: String
    public var scopes: [BotScope]
    public var createdAt: Int64
    public var revokedAt: Int64?
    public init(id: String, bot: UserID, hash: String, scopes: [BotScope], createdAt: Int64, revokedAt: Int64? = nil) {
        self.id = id; self.bot = bot; self.hash = hash; self.scopes = scopes; self.createdAt = createdAt; self.revokedAt = revokedAt
    }
}

/// A bot account with its description and its live token (nil once every token is revoked).
public struct BotRecord: Sendable, Hashable {
    public var user: UserRecord
    public var description: String
    public var token: BotTokenRecord?
    public init(user: UserRecord, description: String, token: BotTokenRecord?) {
        self.user = user; self.description = description; self.token = token
    }
}

/// A message to store. The store assigns `seq` and `ts`.
public struct NewMessage: Sendable, Hashable {
    public var conversation: ConversationID
    public var sender: UserID
    public var cid: String
    public var kind: MessageKind
    public var text: String?
    public var data: JSONValue?
    public var attachment: AttachmentRef?
    public var target: Int64?
    public var replyTo: Int64?
    /// Mentioned users, already checked to be members (stored sorted, without repeats).
    public var mentions: [UserID]?
    public var mentionAll: Bool?
    /// For a forwarded copy: the original's sender and time.
    public var forwardedFrom: ForwardedFrom?
    public init(conversation: ConversationID, sender: UserID, cid: String, kind: MessageKind, text: String? = nil,
                data: JSONValue? = nil, attachment: AttachmentRef? = nil, target: Int64? = nil,
                replyTo: Int64? = nil, mentions: [UserID]? = nil, mentionAll: Bool? = nil, forwardedFrom: ForwardedFrom? = nil) {
        self.conversation = conversation; self.sender = sender; self.cid = cid; self.kind = kind
        self.text = text; self.data = data; self.attachment = attachment; self.target = target
        self.replyTo = replyTo; self.mentions = mentions; self.mentionAll = mentionAll; self.forwardedFrom = forwardedFrom
    }
}

/// A full-text search of the messages `user` can read (those of the conversations they are a member of), or with
/// no `user` of every conversation (the admins' compliance search).
public struct MessageSearch: Sendable, Hashable {
    /// Whose conversations to search; nil: all of them (compliance search, admins only, audited by the caller).
    public var user: UserID?
    /// Every term must occur in the text (substring, ignoring case); see `Search.terms`.
    public var terms: [String]
    public var conversation: ConversationID?
    public var sender: UserID?
    /// Messages sent at or after this time (ms since 1970).
    public var from: Int64?
    /// Messages sent before this time (ms since 1970).
    public var to: Int64?
    /// Results strictly older than this one (the previous page's last).
    public var before: Search.Cursor?
    public var limit: Int
    public init(user: UserID?, terms: [String], conversation: ConversationID? = nil, sender: UserID? = nil, from: Int64? = nil,
                to: Int64? = nil, before: Search.Cursor? = nil, limit: Int = 20) {
        self.user = user; self.terms = terms; self.conversation = conversation; self.sender = sender; self.from = from; self.to = to
        self.before = before; self.limit = limit
    }
}

/// The outcome of an append: the stored message, and whether it had been stored before under the same sender and cid.
public struct AppendResult: Sendable, Hashable {
    public var message: Message
    public var duplicate: Bool
    public init(message: Message, duplicate: Bool) { self.message = message; self.duplicate = duplicate }
}

/// A token bucket's state: `tokens` left as of `at` (seconds since 1970).
public struct RateBucket: Sendable, Equatable {
    public var tokens: Double
    public var at: Double
    public init(tokens: Double, at: Double) { self.tokens = tokens; self.at = at }
}

/// A stored attachment's metadata (its bytes live in the attachment directory).
public struct AttachmentRecord: Sendable, Hashable {
    public var ref: AttachmentRef
    public var conversation: ConversationID
    public var uploader: UserID
    public var createdAt: Int64
    public init(ref: AttachmentRef, conversation: ConversationID, uploader: UserID, createdAt: Int64) {
        self.ref = ref; self.conversation = conversation; self.uploader = uploader; self.createdAt = createdAt
    }
}

/// The storage contract. Every backend passes the same contract tests.
public protocol Storage: Sendable {
    // Users
    func createUser(username: String, passwordHash: String, displayName: String, admin: Bool, now: Int64) async throws -> UserProfile
    func user(id: UserID) async throws -> UserRecord?
    func user(username: String) async throws -> UserRecord?
    func users(ids: [UserID]) async throws -> [UserProfile]
    func listUsers(offset: Int, limit: Int) async throws -> [UserRecord]
    func updateProfile(id: UserID, displayName: String?, avatar: String?) async throws -> UserProfile
    func setPasswordHash(id: UserID, hash: String) async throws
    func setDisabled(id: UserID, disabled: Bool) async throws
    func setAdmin(id: UserID, admin: Bool) async throws
    func userCount() async throws -> Int64

    // Bots (a bot is a user of kind `bot` with a row in `bots`; it has at most one live token)
    /// Creates the bot's account and its first token in one transaction.
    func createBot(username: String, displayName: String, description: String, token: BotTokenRecord, now: Int64) async throws -> BotRecord
    func bots() async throws -> [BotRecord]
    func bot(id: UserID) async throws -> BotRecord?
    /// The token stored under `hash`, revoked or not.
    func botToken(hash: String) async throws -> BotTokenRecord?
    /// Whether token `id` exists and is not revoked.
    func isBotTokenLive(id: String) async throws -> Bool
    /// Revokes the bot's live tokens and stores `token` in their place, in one transaction; returns the revoked ids.
    func replaceBotToken(_ token: BotTokenRecord, now: Int64) async throws -> [String]
    /// Revokes every live token of the bot; returns their ids.
    func revokeBotTokens(bot: UserID, now: Int64) async throws -> [String]

    // Refresh tokens
    func insertRefreshToken(_ token: RefreshTokenRecord) async throws
    func refreshToken(hash: String) async throws -> RefreshTokenRecord?
    /// Marks the token spent if it was not already; returns false when it had been spent or revoked (reuse).
    func spendRefreshToken(hash: String, now: Int64) async throws -> Bool
    func revokeTokenFamily(_ family: String) async throws
    /// Revokes every refresh token of the user and raises the user's token generation (ending its access tokens).
    func revokeAllTokens(user: UserID) async throws
    /// Deletes refresh tokens whose expiry has passed (spent and revoked ones are kept until then, so that a
    /// replay is still recognised as reuse); returns how many went.
    func purgeExpiredRefreshTokens(now: Int64) async throws -> Int
    /// Whether the login session `family` still has a refresh token that is neither revoked nor expired.
    func isSessionLive(family: String, now: Int64) async throws -> Bool

    // Contacts: `owner`'s view of `other`.
    func contactState(owner: UserID, other: UserID) async throws -> ContactState?
    func setContactState(owner: UserID, other: UserID, state: ContactState?) async throws
    func contacts(owner: UserID) async throws -> [Contact]

    // Conversations
    /// The one direct conversation between `a` and `b`, created on first use.
    func directConversation(between a: UserID, and b: UserID) async throws -> Conversation
    func createGroup(name: String, owner: UserID, members: [UserID]) async throws -> Conversation
    func conversation(id: ConversationID) async throws -> Conversation?
    func addMembers(conversation: ConversationID, users: [UserID], limit: Int) async throws
    func removeMember(conversation: ConversationID, user: UserID) async throws
    func setRole(conversation: ConversationID, user: UserID, role: MemberRole) async throws
    func renameGroup(conversation: ConversationID, name: String) async throws
    /// Deletes the group and its messages.
    /// Deletes a group with its messages, members and attachment rows; returns the attachment ids, whose files
    /// the caller removes.
    @discardableResult
    func dissolve(conversation: ConversationID) async throws -> [String]
    func conversationIDs(for user: UserID) async throws -> [ConversationID]
    /// Pinned conversations come first, latest pin first, then the most recently active.
    func summaries(for user: UserID) async throws -> [ConversationSummary]
    /// Pins (with the time) or unpins `conversation` in `user`'s own list.
    func setConversationPinned(user: UserID, conversation: ConversationID, pinnedAt: Int64?) async throws
    /// Pins message `seq` (a text, custom or attachment message not recalled; `not_found` otherwise) or unpins
    /// it; returns whether anything changed. A recall unpins its target.
    func setMessagePinned(conversation: ConversationID, seq: Int64, by user: UserID, pinnedAt: Int64?) async throws -> Bool
    /// A conversation's pinned messages, latest pin first.
    func pinnedMessages(conversation: ConversationID) async throws -> [PinnedMessage]
    /// Every group with its member count, oldest first (for the admin console).
    func listGroups(offset: Int, limit: Int) async throws -> [API.AdminGroup]

    // Messages
    /// Stores messages, each at most once per (sender, cid), assigning per-conversation seqs.
    /// Returns when the commit is durable. Results are in input order.
    func append(_ messages: [NewMessage]) async throws -> [Result<AppendResult, IMError>]
    /// Queues one message for the next group commit and returns at once; submissions commit in submission order.
    func submit(_ message: NewMessage) async -> AppendTicket
    /// Called with every batch of newly stored messages, in seq order, after the commit and before the acks.
    func observeAppends(_ observer: @escaping @Sendable ([Message]) -> Void) async
    /// Called after each commit with the batch size and its duration.
    func observeCommits(_ observer: @escaping @Sendable (Int, Duration) -> Void) async
    /// Called when a commit did not finish in time and its sends were answered `unavailable` (batch size, time waited).
    func observeStalledCommits(_ observer: @escaping @Sendable (Int, Duration) -> Void) async
    /// Called with "read" or "write" when one was abandoned at the database's deadline (PostgreSQL only).
    func observeDeadlinesPassed(_ observer: @escaping @Sendable (String) -> Void) async
    /// Messages with seq > `after`, oldest first.
    func messages(conversation: ConversationID, after: Int64, limit: Int) async throws -> [Message]
    /// Messages with seq < `before`, newest first.
    func messages(conversation: ConversationID, before: Int64, limit: Int) async throws -> [Message]
    func message(conversation: ConversationID, seq: Int64) async throws -> Message?
    /// Raises the member's cursor to `seq` (never lowers it, never past the last seq); returns the cursor after.
    func advanceCursor(conversation: ConversationID, user: UserID, kind: ReceiptKind, seq: Int64) async throws -> Int64
    func messageCount() async throws -> Int64
    /// Text and attachment messages (by their text or caption) matching `query`, never recalled ones, newest first
    /// (by time, then conversation and seq, descending), at most `query.limit`.
    func search(_ query: MessageSearch) async throws -> [Message]

    // Attachments
    func insertAttachment(_ record: AttachmentRecord) async throws
    func attachment(id: String) async throws -> AttachmentRecord?
    /// Bytes of attachments `user` has uploaded that are still stored (their quota's use).
    func attachmentBytes(uploader: UserID) async throws -> Int64
    /// Attachments created before `createdBefore` that no stored message refers to (never sent, or their message
    /// was recalled or its conversation dissolved), at most `limit` of them.
    func unreferencedAttachments(createdBefore: Int64, limit: Int) async throws -> [String]
    /// Deletes attachment rows and their chunks in the database (files on disk are the caller's to remove).
    func deleteAttachments(ids: [String]) async throws
    /// Attachment bytes kept in the database (a cluster's nodes share no disk): chunk `seq` (0, 1, ...) of an
    /// upload. Chunks are written before their attachment's row, so a row always has all of them.
    func putAttachmentChunk(id: String, seq: Int, data: [UInt8], createdAt: Int64) async throws
    func attachmentChunk(id: String, seq: Int) async throws -> [UInt8]?
    /// How many chunks an attachment has in the database and their total length.
    func attachmentChunkTotals(id: String) async throws -> (count: Int, bytes: Int64)
    /// Deletes chunks older than `createdBefore` that no attachment row owns (an upload that failed or was cut
    /// off before its row was written); returns how many went.
    func deleteOrphanAttachmentChunks(createdBefore: Int64) async throws -> Int
    /// Copies attachment `from`'s chunks as attachment `to`'s (a forwarded attachment); returns what was copied.
    func copyAttachmentChunks(from: String, to: String, createdAt: Int64) async throws -> (count: Int, bytes: Int64)

    // Shared rate limits (a cluster's nodes count failed logins and joins together)
    /// A token bucket's state: tokens left (nil: a bucket never charged) and when it was last updated.
    func rateBucket(key: String) async throws -> RateBucket?
    /// Updates a bucket atomically across every node on the database: `body` gets its state (nil when new).
    func updateRateBucket(key: String, _ body: @escaping @Sendable (RateBucket?) -> RateBucket) async throws
    /// Drops buckets not updated since `before` (seconds since 1970); returns how many.
    func purgeRateBuckets(updatedBefore: Double) async throws -> Int

    // Mutes (SQLStore+GroupSettings.swift); each end is ms since 1970, `Mute.indefinite` for open-ended, nil to lift it.
    /// Mutes (or unmutes) `conversation`'s notifications for `user` alone; false when they are not a member.
    @discardableResult
    func setNotificationMute(user: UserID, conversation: ConversationID, until: Int64?) async throws -> Bool
    /// Stops (or lets again) member `user` from sending in `conversation`; false when they are not a member.
    @discardableResult
    func setMemberMute(conversation: ConversationID, user: UserID, until: Int64?) async throws -> Bool
    /// Stops (or lets again) everyone below admin from sending in `conversation`.
    func setGroupMute(conversation: ConversationID, until: Int64?) async throws

    /// Sets (or with nil clears) a group's announcement.
    func setAnnouncement(conversation: ConversationID, _ announcement: Announcement?) async throws

    // Invite links and join requests (SQLStore+Invites.swift)
    func createInvite(_ invite: GroupInvite) async throws
    /// A group's invite links, newest first (revoked and spent ones included).
    func invites(conversation: ConversationID) async throws -> [GroupInvite]
    func invite(code: String) async throws -> GroupInvite?
    func revokeInvite(conversation: ConversationID, code: String) async throws -> Bool
    /// Joins `user` through link `code`, or files their join request when the link needs approval (`not_found` for an
    /// unknown code, `forbidden` saying why for an expired, used-up or revoked one, `group_full`).
    func redeemInvite(code: String, user: UserID, now: Int64, groupLimit: Int) async throws -> InviteRedemption
    func joinRequests(conversation: ConversationID) async throws -> [JoinRequest]
    func joinRequests(user: UserID) async throws -> [JoinRequest]
    func resolveJoinRequest(conversation: ConversationID, user: UserID, accept: Bool, groupLimit: Int) async throws -> Bool

    // Drafts (SQLStore+GroupSettings.swift), also shown in `summaries`.
    /// Saves `user`'s draft, or with nil deletes it.
    func saveDraft(user: UserID, conversation: ConversationID, _ draft: Draft?) async throws
    /// `user`'s drafts, latest first.
    func drafts(user: UserID) async throws -> [Draft]

    // Compliance (SQLStore+Compliance.swift): exports read every message of a range, and every compliance search
    // and export is recorded in the audit trail.
    /// Messages of `conversation` (only those `sender` sent, when given) with `from` <= ts < `to` and seq > `afterSeq`,
    /// oldest first, at most `limit`, each with its reactions; recalled ones included (their content is gone).
    func complianceMessages(conversation: ConversationID, sender: UserID?, from: Int64, to: Int64, afterSeq: Int64,
                            limit: Int) async throws -> [Message]
    /// The conversations in which `sender` sent anything with `from` <= ts < `to`, in id order.
    func complianceConversations(sender: UserID, from: Int64, to: Int64) async throws -> [ConversationID]
    /// Records an audit entry (its `id` and `adminName` are ignored); returns the id it got.
    @discardableResult
    func recordComplianceAudit(_ entry: API.ComplianceAuditEntry) async throws -> Int64
    /// Audit entries with id < `before` (nil: the newest), newest first, with the admin's username.
    func complianceAudit(before: Int64?, limit: Int) async throws -> [API.ComplianceAuditEntry]

    // Content moderation's log of refused sends (SQLStore+GroupSettings.swift)
    func logModerationBlock(_ block: API.ModerationBlock) async throws
    /// The latest refused sends, newest first.
    func moderationBlocks(limit: Int) async throws -> [API.ModerationBlock]

    // Cluster join tokens (SQLStore+JoinTokens.swift)
    func createJoinToken(id: String, proofHash: String, bundle: String, now: Int64, expiresAt: Int64, singleUse: Bool) async throws
    func redeemJoinToken(id: String, proofHash: String, now: Int64) async throws -> Result<String, JoinRefusal>
    func revokeJoinToken(id: String) async throws -> Bool
    func joinTokens() async throws -> [JoinTokenRecord]

    // Health
    func ping() async throws
    func sizeInBytes() async throws -> Int64
    func close() async throws
}

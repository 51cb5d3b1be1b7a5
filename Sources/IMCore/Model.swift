/// Identifies a user account.
public typealias UserID = Int64
/// Identifies a conversation (1:1 or group).
public typealias ConversationID = Int64

/// What a stored message carries.
public enum MessageKind: String, Sendable, Codable, Hashable, CaseIterable {
    /// Plain text in `text`.
    case text
    /// An application-defined JSON payload in `data`.
    case custom
    /// An uploaded file described by `attachment`, with optional caption in `text`.
    case attachment
    /// A server-written event (member joined, left, …) described by `data`.
    case system
    /// Recalls message `target`; the original is blanked.
    case recall
    /// Replaces the text of message `target` with `text`.
    case edit
    /// Adds or removes the emoji `text` on message `target` for the sender; `data` is `{"op":"add"}` or
    /// `{"op":"remove"}`. Apply with ``Message/applyingReaction(_:)``.
    case reaction

    /// Kinds that carry content a user reads (and that can be replied to, mentioned in and reacted to).
    public static let content: Set<MessageKind> = [.text, .custom, .attachment]
}

/// One emoji on a message and who put it there, in the order they did. A message lists its emoji in a fixed order
/// (by their UTF-8 bytes: ``ordered(_:)``), so that any client replaying `reaction` messages gets the same list.
public struct Reaction: Sendable, Codable, Hashable {
    public var emoji: String
    public var users: [UserID]
    public init(emoji: String, users: [UserID]) { self.emoji = emoji; self.users = users }

    /// `reactions` in the canonical order: by emoji, compared by UTF-8 bytes.
    public static func ordered(_ reactions: [Reaction]) -> [Reaction] {
        reactions.sorted { Array($0.emoji.utf8).lexicographicallyPrecedes(Array($1.emoji.utf8)) }
    }

    /// Whether a `reaction` message's `data` takes the emoji back (`{"op":"remove"}`) rather than adding it.
    public static func isRemoval(_ data: JSONValue?) -> Bool {
        if case .object(let o) = data, case .string("remove")? = o["op"] { return true }
        return false
    }
}

/// A reference to an uploaded attachment.
public struct AttachmentRef: Sendable, Codable, Hashable {
    public var id: String
    public var name: String
    public var contentType: String
    public var size: Int64
    public init(id: String, name: String, contentType: String, size: Int64) {
        self.id = id; self.name = name; self.contentType = contentType; self.size = size
    }
}

/// Where a forwarded message came from: the original's sender and time. Not its conversation, which readers of the
/// copy may not be members of.
public struct ForwardedFrom: Sendable, Codable, Hashable {
    public var sender: UserID
    public var ts: Int64
    public init(sender: UserID, ts: Int64) { self.sender = sender; self.ts = ts }
}

/// A message as stored and delivered: `seq` is strictly increasing within `conversation`.
public struct Message: Sendable, Codable, Hashable {
    public var conversation: ConversationID
    public var seq: Int64
    public var sender: UserID
    /// The sender's client message id (unique per sender).
    public var cid: String
    public var kind: MessageKind
    public var text: String?
    public var data: JSONValue?
    public var attachment: AttachmentRef?
    /// For `recall` and `edit`: the seq of the message acted on.
    public var target: Int64?
    /// Server time of the commit, milliseconds since 1970.
    public var ts: Int64
    /// Set on a message that was later edited (ms since 1970).
    public var editedAt: Int64?
    /// Set on a message that was later recalled.
    public var recalled: Bool?
    /// The seq of the message (in the same conversation) this one replies to.
    public var replyTo: Int64?
    /// Users this message mentions (`@user`), as structured data, never parsed from `text`.
    public var mentions: [UserID]?
    /// The message mentions everyone in the group (`@all`; owners and admins only).
    public var mentionAll: Bool?
    /// Emoji reactions as of when the message was read from storage (newer `reaction` messages apply on top).
    public var reactions: [Reaction]?
    /// Set on a message forwarded from another conversation: who wrote the original, and when.
    public var forwardedFrom: ForwardedFrom?

    enum CodingKeys: String, CodingKey {
        case conversation = "conv"
        case seq, sender, cid, kind, text, data, attachment, target, ts, editedAt, recalled, replyTo, mentions, mentionAll, reactions
        case forwardedFrom
    }

    public init(conversation: ConversationID, seq: Int64, sender: UserID, cid: String, kind: MessageKind,
                text: String? = nil, data: JSONValue? = nil, attachment: AttachmentRef? = nil,
                target: Int64? = nil, ts: Int64, editedAt: Int64? = nil, recalled: Bool? = nil,
                replyTo: Int64? = nil, mentions: [UserID]? = nil, mentionAll: Bool? = nil, reactions: [Reaction]? = nil,
                forwardedFrom: ForwardedFrom? = nil) {
        self.conversation = conversation; self.seq = seq; self.sender = sender; self.cid = cid
        self.kind = kind; self.text = text; self.data = data; self.attachment = attachment
        self.target = target; self.ts = ts; self.editedAt = editedAt; self.recalled = recalled
        self.replyTo = replyTo; self.mentions = mentions; self.mentionAll = mentionAll; self.reactions = reactions
        self.forwardedFrom = forwardedFrom
    }

    /// Whether this message mentions `user`, by name or through `@all` (a sender never mentions themself).
    public func isMentioning(_ user: UserID) -> Bool {
        guard sender != user, recalled != true else { return false }
        return mentionAll == true || (mentions ?? []).contains(user)
    }

    /// For a `reaction` message: whether it removes (rather than adds) its emoji.
    public var removesReaction: Bool { Reaction.isRemoval(data) }

    /// This message with the `reaction` message `event` applied (when it targets this message; otherwise
    /// unchanged). Adding is idempotent and removing what is absent does nothing, so replaying events in seq
    /// order over a snapshot read at any point gives the same result as the server's.
    public func applyingReaction(_ event: Message) -> Message {
        guard event.kind == .reaction, event.conversation == conversation, event.target == seq,
              let emoji = event.text, recalled != true else { return self }
        var list = reactions ?? []
        if event.removesReaction {
            if let i = list.firstIndex(where: { $0.emoji == emoji }) {
                list[i].users.removeAll { $0 == event.sender }
                if list[i].users.isEmpty { list.remove(at: i) }
            }
        } else if let i = list.firstIndex(where: { $0.emoji == emoji }) {
            if !list[i].users.contains(event.sender) { list[i].users.append(event.sender) }
        } else {
            list.append(Reaction(emoji: emoji, users: [event.sender]))
        }
        var out = self
        out.reactions = list.isEmpty ? nil : Reaction.ordered(list)
        return out
    }
}

/// A user as others see it.
/// A person's account, or a bot an admin created (which logs in with a bot token, never a password).
public enum UserKind: String, Sendable, Codable, Hashable {
    case user, bot
}

public struct UserProfile: Sendable, Codable, Hashable {
    public var id: UserID
    public var username: String
    public var displayName: String
    public var avatar: String?
    public var admin: Bool
    /// `bot` for bot accounts (clients show them as bots); `user` otherwise.
    public var kind: UserKind
    public init(id: UserID, username: String, displayName: String, avatar: String? = nil, admin: Bool = false, kind: UserKind = .user) {
        self.id = id; self.username = username; self.displayName = displayName; self.avatar = avatar; self.admin = admin
        self.kind = kind
    }

    enum CodingKeys: String, CodingKey { case id, username, displayName, avatar, admin, kind }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(UserID.self, forKey: .id)
        username = try c.decode(String.self, forKey: .username)
        displayName = try c.decode(String.self, forKey: .displayName)
        avatar = try c.decodeIfPresent(String.self, forKey: .avatar)
        admin = try c.decode(Bool.self, forKey: .admin)
        // Servers before bots did not send `kind`: every account was a person's.
        kind = try c.decodeIfPresent(UserKind.self, forKey: .kind) ?? .user
    }
}

public enum ConversationType: String, Sendable, Codable, Hashable {
    case direct, group
}

public enum MemberRole: String, Sendable, Codable, Hashable, Comparable {
    case member, admin, owner
    var rank: Int { switch self { case .member: 0; case .admin: 1; case .owner: 2 } }
    public static func < (a: MemberRole, b: MemberRole) -> Bool { a.rank < b.rank }
}

public struct Member: Sendable, Codable, Hashable {
    public var user: UserID
    public var role: MemberRole
    /// Highest seq this member has read.
    public var readSeq: Int64
    /// Highest seq delivered to any of this member's devices.
    public var deliveredSeq: Int64
    /// An owner or admin muted this member (禁言): their sends are refused with `muted` until `mutedUntil`.
    public var muted: Bool?
    /// When the member's mute ends (ms since 1970); nil while muted means until an admin unmutes them.
    public var mutedUntil: Int64?
    public init(user: UserID, role: MemberRole, readSeq: Int64 = 0, deliveredSeq: Int64 = 0, muted: Bool? = nil, mutedUntil: Int64? = nil) {
        self.user = user; self.role = role; self.readSeq = readSeq; self.deliveredSeq = deliveredSeq
        self.muted = muted; self.mutedUntil = mutedUntil
    }
}

/// A group's announcement (群公告), set by its owner or an admin.
public struct Announcement: Sendable, Codable, Hashable {
    public var text: String
    /// Who set it, and when (ms since 1970).
    public var by: UserID
    public var at: Int64
    public init(text: String, by: UserID, at: Int64) { self.text = text; self.by = by; self.at = at }
}

/// A conversation with its members.
public struct Conversation: Sendable, Codable, Hashable {
    public var id: ConversationID
    public var type: ConversationType
    public var name: String?
    /// The seq of the newest message (0 when empty).
    public var lastSeq: Int64
    public var members: [Member]
    /// The whole group is muted (全员禁言): only its owner and admins may send, until `allMutedUntil`.
    public var allMuted: Bool?
    /// When the group's mute ends (ms since 1970); nil while muted means until an admin lifts it.
    public var allMutedUntil: Int64?
    /// The group's current announcement, if any.
    public var announcement: Announcement?
    public init(id: ConversationID, type: ConversationType, name: String?, lastSeq: Int64, members: [Member],
                allMuted: Bool? = nil, allMutedUntil: Int64? = nil, announcement: Announcement? = nil) {
        self.id = id; self.type = type; self.name = name; self.lastSeq = lastSeq; self.members = members
        self.allMuted = allMuted; self.allMutedUntil = allMutedUntil; self.announcement = announcement
    }
}

/// One row of a user's conversation list.
public struct ConversationSummary: Sendable, Codable, Hashable {
    public var id: ConversationID
    public var type: ConversationType
    public var name: String?
    public var lastSeq: Int64
    public var readSeq: Int64
    public var unread: Int64
    /// Unread messages (after `readSeq`, not recalled, from others) that mention this user or `@all`.
    public var unreadMentions: Int64
    public var lastMessage: Message?
    /// For a direct conversation: the other participant.
    public var peer: UserID?
    /// When this user pinned the conversation (ms since 1970); pinned conversations come first, latest pin first.
    public var pinnedAt: Int64?
    /// This user muted the conversation's notifications (unread counts and mentions still count).
    public var muted: Bool?
    /// The message this user is writing here, saved by any of their devices.
    public var draft: Draft?
    /// When this user's mute ends (ms since 1970); nil while muted means until they unmute.
    public var mutedUntil: Int64?
    public init(id: ConversationID, type: ConversationType, name: String?, lastSeq: Int64, readSeq: Int64,
                unread: Int64, unreadMentions: Int64 = 0, lastMessage: Message?, peer: UserID?, pinnedAt: Int64? = nil,
                muted: Bool? = nil, mutedUntil: Int64? = nil, draft: Draft? = nil) {
        self.id = id; self.type = type; self.name = name; self.lastSeq = lastSeq; self.readSeq = readSeq
        self.unread = unread; self.unreadMentions = unreadMentions; self.lastMessage = lastMessage; self.peer = peer
        self.pinnedAt = pinnedAt; self.muted = muted; self.mutedUntil = mutedUntil; self.draft = draft
    }
}

/// A message being written, kept per user and conversation so that every device of the user sees it.
public struct Draft: Sendable, Codable, Hashable {
    public var conversation: ConversationID
    public var text: String
    /// The message it replies to, if any.
    public var replyTo: Int64?
    /// When it was last saved (ms since 1970).
    public var updatedAt: Int64
    enum CodingKeys: String, CodingKey { case conversation = "conv", text, replyTo, updatedAt }
    public init(conversation: ConversationID, text: String, replyTo: Int64? = nil, updatedAt: Int64) {
        self.conversation = conversation; self.text = text; self.replyTo = replyTo; self.updatedAt = updatedAt
    }
}

/// A message pinned in a group by its owner or an admin.
public struct PinnedMessage: Sendable, Codable, Hashable {
    public var message: Message
    public var pinnedBy: UserID
    public var pinnedAt: Int64
    public init(message: Message, pinnedBy: UserID, pinnedAt: Int64) { self.message = message; self.pinnedBy = pinnedBy; self.pinnedAt = pinnedAt }
}

public enum ContactState: String, Sendable, Codable, Hashable {
    /// I asked them; waiting for their answer.
    case outgoing
    /// They asked me.
    case incoming
    case accepted
    /// I blocked them.
    case blocked
}

public struct Contact: Sendable, Codable, Hashable {
    public var user: UserProfile
    public var state: ContactState
    public init(user: UserProfile, state: ContactState) { self.user = user; self.state = state }
}

public enum ReceiptKind: String, Sendable, Codable, Hashable {
    case delivered, read
}

public enum PresenceStatus: String, Sendable, Codable, Hashable {
    case online, offline
}

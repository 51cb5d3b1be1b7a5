/// Request and response bodies of the REST API (see docs/protocol.md). Shared by the server and the SDK.
public enum API {
    public struct Register: Sendable, Codable, Hashable {
        public var username: String
        public var password: String
        public var displayName: String?
        public init(username: String, password: String, displayName: String? = nil) {
            self.username = username; self.password = password; self.displayName = displayName
        }
    }
    /// `POST /v1/cluster/join`: a joining host proves it holds a token's secret.
    public struct ClusterJoin: Sendable, Codable, Hashable {
        public var tokenId: String
        public var proof: String
        public init(tokenId: String, proof: String) { self.tokenId = tokenId; self.proof = proof }
        enum CodingKeys: String, CodingKey { case tokenId = "token_id", proof }
    }
    /// `POST /v1/cluster/reconnect` (a cluster operation token): tell this node's clients to reconnect, spread
    /// over `window_seconds` (default 10, at most 300).
    public struct ClusterReconnect: Sendable, Codable, Hashable {
        public var windowSeconds: Double?
        public init(windowSeconds: Double? = nil) { self.windowSeconds = windowSeconds }
        enum CodingKeys: String, CodingKey { case windowSeconds = "window_seconds" }
    }
    /// The answer of `POST /v1/cluster/reconnect` and `GET /v1/cluster/sessions`: the node's open WebSocket sessions
    /// (for reconnect: how many it will close) and the window.
    public struct ClusterSessions: Sendable, Codable, Hashable {
        public var sessions: Int
        public var windowSeconds: Double?
        public init(sessions: Int, windowSeconds: Double? = nil) { self.sessions = sessions; self.windowSeconds = windowSeconds }
        enum CodingKeys: String, CodingKey { case sessions, windowSeconds = "window_seconds" }
    }
    public struct Login: Sendable, Codable, Hashable {
        public var username: String
        public var password: String
        /// A name for this device/session (shown nowhere yet; kept with the refresh token).
        public var device: String?
        public init(username: String, password: String, device: String? = nil) {
            self.username = username; self.password = password; self.device = device
        }
    }
    public struct Refresh: Sendable, Codable, Hashable {
        public var refreshToken: String
        public init(refreshToken: String) { self.refreshToken = refreshToken }
    }
    public struct ChangePassword: Sendable, Codable, Hashable {
        public var oldPassword: String
        public var newPassword: String
        public init(oldPassword: String, newPassword: String) { self.oldPassword = oldPassword; self.newPassword = newPassword }
    }
    public struct AuthResponse: Sendable, Codable, Hashable {
        public var user: UserProfile
        public var accessToken: String
        public var refreshToken: String
        /// Seconds until `accessToken` expires.
        public var expiresIn: Int
        public init(user: UserProfile, accessToken: String, refreshToken: String, expiresIn: Int) {
            self.user = user; self.accessToken = accessToken; self.refreshToken = refreshToken; self.expiresIn = expiresIn
        }
    }
    public struct UpdateProfile: Sendable, Codable, Hashable {
        public var displayName: String?
        public var avatar: String?
        public init(displayName: String? = nil, avatar: String? = nil) { self.displayName = displayName; self.avatar = avatar }
    }
    public struct NewDirect: Sendable, Codable, Hashable {
        public var userId: UserID
        public init(userId: UserID) { self.userId = userId }
    }
    public struct NewGroup: Sendable, Codable, Hashable {
        public var name: String
        public var members: [UserID]
        public init(name: String, members: [UserID]) { self.name = name; self.members = members }
    }
    public struct Rename: Sendable, Codable, Hashable {
        public var name: String
        public init(name: String) { self.name = name }
    }
    public struct AddMembers: Sendable, Codable, Hashable {
        public var users: [UserID]
        public init(users: [UserID]) { self.users = users }
    }
    public struct SetRole: Sendable, Codable, Hashable {
        public var role: MemberRole
        public init(role: MemberRole) { self.role = role }
    }
    public struct TransferOwner: Sendable, Codable, Hashable {
        public var userId: UserID
        public init(userId: UserID) { self.userId = userId }
    }
    public struct History: Sendable, Codable, Hashable {
        /// Newest first.
        public var messages: [Message]
        public var hasMore: Bool
        public init(messages: [Message], hasMore: Bool) { self.messages = messages; self.hasMore = hasMore }
    }
    public struct AdminCreateUser: Sendable, Codable, Hashable {
        public var username: String
        public var password: String
        public var displayName: String?
        public var admin: Bool?
        public init(username: String, password: String, displayName: String? = nil, admin: Bool? = nil) {
            self.username = username; self.password = password; self.displayName = displayName; self.admin = admin
        }
    }
    public struct AdminUser: Sendable, Codable, Hashable {
        public var user: UserProfile
        public var disabled: Bool
        public var createdAt: Int64
        public init(user: UserProfile, disabled: Bool, createdAt: Int64) { self.user = user; self.disabled = disabled; self.createdAt = createdAt }
    }
    public struct SetPassword: Sendable, Codable, Hashable {
        public var password: String
        public init(password: String) { self.password = password }
    }
    public struct SetFlag: Sendable, Codable, Hashable {
        public var value: Bool
        public init(value: Bool) { self.value = value }
    }
    public struct Stats: Sendable, Codable, Hashable {
        public var connections: Int
        public var users: Int64
        public var messages: Int64
        public var messagesLastMinute: Int
        public var databaseBytes: Int64
        public var version: String
        public var uptimeSeconds: Int64
        public init(connections: Int, users: Int64, messages: Int64, messagesLastMinute: Int, databaseBytes: Int64, version: String, uptimeSeconds: Int64) {
            self.connections = connections; self.users = users; self.messages = messages; self.messagesLastMinute = messagesLastMinute
            self.databaseBytes = databaseBytes; self.version = version; self.uptimeSeconds = uptimeSeconds
        }
    }
    /// One group in the admin console's list (`GET /v1/admin/groups`).
    public struct AdminGroup: Sendable, Codable, Hashable {
        public var id: ConversationID
        public var name: String?
        public var members: Int64
        /// The owner's user id (nil only for a group whose owner record is gone).
        public var owner: UserID?
        public var lastSeq: Int64
        public var createdAt: Int64
        public init(id: ConversationID, name: String?, members: Int64, owner: UserID?, lastSeq: Int64, createdAt: Int64) {
            self.id = id; self.name = name; self.members = members; self.owner = owner; self.lastSeq = lastSeq; self.createdAt = createdAt
        }
    }
    /// `PUT …/mute`, `…/members/{user}/mute`, `…/mute-all`: until when (ms since 1970); left out, until unmuted.
    public struct Mute: Sendable, Codable, Hashable {
        public var until: Int64?
        public init(until: Int64? = nil) { self.until = until }
    }
    /// `POST /v1/conversations/{id}/forward`: copies messages `seqs` of conversation `from` into this one, in order.
    public struct Forward: Sendable, Codable, Hashable {
        /// The client's id for the forward: the copies get `cid` (one message) or `cid/1`, `cid/2`, … (several).
        public var cid: String
        public var from: ConversationID
        public var seqs: [Int64]
        public init(cid: String, from: ConversationID, seqs: [Int64]) { self.cid = cid; self.from = from; self.seqs = seqs }
    }
    /// The answer to a forward: one ack per copy, in the order of `seqs`.
    public struct Forwarded: Sendable, Codable, Hashable {
        public var acks: [ServerFrame.Ack]
        public init(acks: [ServerFrame.Ack]) { self.acks = acks }
    }
    /// `PUT /v1/conversations/{id}/announcement`.
    public struct SetAnnouncement: Sendable, Codable, Hashable {
        public var text: String
        public init(text: String) { self.text = text }
    }
    /// `PUT /v1/conversations/{id}/draft`: an empty `text` deletes the draft.
    public struct SaveDraft: Sendable, Codable, Hashable {
        public var text: String
        public var replyTo: Int64?
        public init(text: String, replyTo: Int64? = nil) { self.text = text; self.replyTo = replyTo }
    }
    /// `GET /v1/admin/moderation`: the word list in force.
    public struct ModerationStatus: Sendable, Codable, Hashable {
        public var enabled: Bool
        /// `block` or `mask`.
        public var action: String
        public var words: Int
        public var loadedAt: Int64?
        /// Why the file could not be read at the last try (the previous list stays in force).
        public var error: String?
        /// The external moderation webhook's URL, when one is set.
        public var webhook: String?
        /// `open` or `closed`: what a send does when the webhook fails or is late.
        public var webhookFailure: String?
        /// The webhook's time budget in seconds.
        public var webhookTimeoutSeconds: Double?
        public init(enabled: Bool, action: String, words: Int, loadedAt: Int64?, error: String?, webhook: String? = nil,
                    webhookFailure: String? = nil, webhookTimeoutSeconds: Double? = nil) {
            self.enabled = enabled; self.action = action; self.words = words; self.loadedAt = loadedAt; self.error = error
            self.webhook = webhook; self.webhookFailure = webhookFailure; self.webhookTimeoutSeconds = webhookTimeoutSeconds
        }
    }
    /// One refused send in the moderation log (`GET /v1/admin/moderation/blocks`).
    public struct ModerationBlock: Sendable, Codable, Hashable {
        /// What refused the send.
        public enum Source: String, Sendable, Codable, Hashable {
            /// The operator's word list (`word` is the listed word).
            case words
            /// The external moderation webhook (`word` is the reason it gave).
            case webhook
            /// The webhook failed or was late while moderation fails closed (`word` says how it failed).
            case webhookUnavailable = "webhook-unavailable"
        }
        public var at: Int64
        public var user: UserID
        public var conversation: ConversationID
        public var word: String
        public var source: Source
        enum CodingKeys: String, CodingKey { case at, user, conversation = "conv", word, source }
        public init(at: Int64, user: UserID, conversation: ConversationID, word: String, source: Source = .words) {
            self.at = at; self.user = user; self.conversation = conversation; self.word = word; self.source = source
        }
    }
    /// The body of every REST error response.
    public struct ErrorBody: Sendable, Codable, Hashable {
        public var error: IMError
        public init(error: IMError) { self.error = error }
    }
}

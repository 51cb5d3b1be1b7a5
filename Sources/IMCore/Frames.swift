/// Frames a client sends over the WebSocket. Each is a JSON object with a `type` field.
public enum ClientFrame: Sendable, Hashable {
    case auth(Auth)
    case sync(Sync)
    case send(Send)
    case receipt(ReceiptUpdate)
    case typing(TypingUpdate)
    case recall(Recall)
    case edit(Edit)
    case react(React)
    case ping(Ping)

    public struct Auth: Sendable, Codable, Hashable {
        public var token: String
        public init(token: String) { self.token = token }
    }
    /// Ask for every message after `cursors[conv]` (0 when absent) in every conversation the user belongs to.
    public struct Sync: Sendable, Codable, Hashable {
        /// Conversation id (as a string, JSON keys are strings) to the last seq the client holds.
        public var cursors: [String: Int64]
        /// At most this many messages per conversation in one sync (default 500, max 1000).
        public var limit: Int?
        public init(cursors: [ConversationID: Int64], limit: Int? = nil) {
            self.cursors = Dictionary(uniqueKeysWithValues: cursors.map { (String($0.key), $0.value) })
            self.limit = limit
        }
    }
    public struct Send: Sendable, Codable, Hashable {
        public var cid: String
        public var conv: ConversationID
        public var kind: MessageKind
        public var text: String?
        public var data: JSONValue?
        public var attachment: String?
        /// The seq of a message in `conv` this one replies to.
        public var replyTo: Int64?
        /// Members of `conv` this message mentions.
        public var mentions: [UserID]?
        /// Mention everyone (groups only; owners and admins only).
        public var mentionAll: Bool?
        public init(cid: String, conv: ConversationID, kind: MessageKind = .text, text: String? = nil,
                    data: JSONValue? = nil, attachment: String? = nil, replyTo: Int64? = nil,
                    mentions: [UserID]? = nil, mentionAll: Bool? = nil) {
            self.cid = cid; self.conv = conv; self.kind = kind; self.text = text; self.data = data; self.attachment = attachment
            self.replyTo = replyTo; self.mentions = mentions; self.mentionAll = mentionAll
        }
    }
    public struct ReceiptUpdate: Sendable, Codable, Hashable {
        public var conv: ConversationID
        public var kind: ReceiptKind
        public var seq: Int64
        public init(conv: ConversationID, kind: ReceiptKind, seq: Int64) { self.conv = conv; self.kind = kind; self.seq = seq }
    }
    public struct TypingUpdate: Sendable, Codable, Hashable {
        public var conv: ConversationID
        public var active: Bool
        public init(conv: ConversationID, active: Bool) { self.conv = conv; self.active = active }
    }
    public struct Recall: Sendable, Codable, Hashable {
        public var cid: String
        public var conv: ConversationID
        public var seq: Int64
        public init(cid: String, conv: ConversationID, seq: Int64) { self.cid = cid; self.conv = conv; self.seq = seq }
    }
    public struct Edit: Sendable, Codable, Hashable {
        public var cid: String
        public var conv: ConversationID
        public var seq: Int64
        public var text: String
        public init(cid: String, conv: ConversationID, seq: Int64, text: String) {
            self.cid = cid; self.conv = conv; self.seq = seq; self.text = text
        }
    }
    /// Adds (or with `remove`, takes back) the caller's `emoji` on message `seq`; stored as a `reaction` message.
    public struct React: Sendable, Codable, Hashable {
        public var cid: String
        public var conv: ConversationID
        public var seq: Int64
        public var emoji: String
        public var remove: Bool?
        public init(cid: String, conv: ConversationID, seq: Int64, emoji: String, remove: Bool? = nil) {
            self.cid = cid; self.conv = conv; self.seq = seq; self.emoji = emoji; self.remove = remove
        }
    }
    public struct Ping: Sendable, Codable, Hashable {
        public var ref: String?
        public init(ref: String? = nil) { self.ref = ref }
    }
}

/// Frames the server sends over the WebSocket.
public enum ServerFrame: Sendable, Hashable {
    case ready(Ready)
    case ack(Ack)
    case msg(Message)
    case synced(Synced)
    case receipt(Receipt)
    case typing(Typing)
    case presence(Presence)
    case error(ErrorFrame)
    case reconnect(Reconnect)
    case pong(ClientFrame.Ping)
    /// The user saved (or, with empty `text`, deleted) a draft on one of their devices; sent to all of them.
    case draft(Draft)

    public struct Ready: Sendable, Codable, Hashable {
        public var user: UserID
        public var session: String
        public var serverTime: Int64
        /// When the access token the socket authenticated with expires (seconds since 1970). Send `auth` with a
        /// fresh token before then (answered with another `ready`) or the socket is closed with 4002.
        public var exp: Int64?
        public init(user: UserID, session: String, serverTime: Int64, exp: Int64? = nil) {
            self.user = user; self.session = session; self.serverTime = serverTime; self.exp = exp
        }
    }
    /// Sent once a send (or recall/edit) is durably stored. `duplicate` is true when `cid` was already stored.
    public struct Ack: Sendable, Codable, Hashable {
        public var cid: String
        public var conv: ConversationID
        public var seq: Int64
        public var ts: Int64
        public var duplicate: Bool
        public init(cid: String, conv: ConversationID, seq: Int64, ts: Int64, duplicate: Bool) {
            self.cid = cid; self.conv = conv; self.seq = seq; self.ts = ts; self.duplicate = duplicate
        }
    }
    public struct Synced: Sendable, Codable, Hashable {
        /// Conversation id to the last seq now delivered on this connection.
        public var cursors: [String: Int64]
        /// Conversations that had more than `limit` missed messages: sync again for the rest.
        public var more: [ConversationID]
        public init(cursors: [String: Int64], more: [ConversationID]) { self.cursors = cursors; self.more = more }
    }
    public struct Receipt: Sendable, Codable, Hashable {
        public var conv: ConversationID
        public var user: UserID
        public var kind: ReceiptKind
        public var seq: Int64
        public init(conv: ConversationID, user: UserID, kind: ReceiptKind, seq: Int64) {
            self.conv = conv; self.user = user; self.kind = kind; self.seq = seq
        }
    }
    public struct Typing: Sendable, Codable, Hashable {
        public var conv: ConversationID
        public var user: UserID
        public var active: Bool
        public init(conv: ConversationID, user: UserID, active: Bool) { self.conv = conv; self.user = user; self.active = active }
    }
    public struct Presence: Sendable, Codable, Hashable {
        public var user: UserID
        public var status: PresenceStatus
        /// Last time seen online, ms since 1970.
        public var lastSeen: Int64?
        public init(user: UserID, status: PresenceStatus, lastSeen: Int64?) { self.user = user; self.status = status; self.lastSeen = lastSeen }
    }
    public struct ErrorFrame: Sendable, Codable, Hashable {
        public var code: ErrorCode
        public var message: String
        /// The `cid` of the send this answers, if any.
        public var cid: String?
        /// Seconds to wait before retrying (rate limits).
        public var retryAfter: Double?
        public init(code: ErrorCode, message: String, cid: String? = nil, retryAfter: Double? = nil) {
            self.code = code; self.message = message; self.cid = cid; self.retryAfter = retryAfter
        }
    }
    public struct Reconnect: Sendable, Codable, Hashable {
        public var reason: String
        public init(reason: String) { self.reason = reason }
    }
}

extension API {
    /// `GET /v1/admin/assistant`: the AI assistant's settings (never its key) and use since this node started.
    public struct AdminAssistant: Sendable, Codable, Hashable {
        public var enabled: Bool
        public var username: String
        /// The assistant's account, once the server has made or found it (nil: it could not start; the log says why).
        public var user: UserID?
        /// The endpoint's API base without any user or password in it.
        public var endpoint: String
        public var model: String
        /// Whether a key file is configured (the key itself is never shown).
        public var keyConfigured: Bool
        public var usage: AssistantUsage
        /// Conversations an admin turned it off (or back on) in; all others have it on.
        public var conversations: [AssistantConversation]
        public init(enabled: Bool, username: String, user: UserID?, endpoint: String, model: String, keyConfigured: Bool,
                    usage: AssistantUsage, conversations: [AssistantConversation]) {
            self.enabled = enabled; self.username = username; self.user = user; self.endpoint = endpoint; self.model = model
            self.keyConfigured = keyConfigured; self.usage = usage; self.conversations = conversations
        }
    }

    /// Questions answered, failed answers and tokens used since this node started (all nodes: the metrics).
    public struct AssistantUsage: Sendable, Codable, Hashable {
        public var questions: Int
        public var failures: Int
        public var promptTokens: Int
        public var completionTokens: Int
        public init(questions: Int, failures: Int, promptTokens: Int, completionTokens: Int) {
            self.questions = questions; self.failures = failures; self.promptTokens = promptTokens; self.completionTokens = completionTokens
        }
    }

    public struct AssistantConversation: Sendable, Codable, Hashable {
        public var conv: ConversationID
        public var enabled: Bool
        public var changedBy: UserID
        public var changedAt: Int64
        public init(conv: ConversationID, enabled: Bool, changedBy: UserID, changedAt: Int64) {
            self.conv = conv; self.enabled = enabled; self.changedBy = changedBy; self.changedAt = changedAt
        }
    }

    /// `PUT /v1/admin/assistant/conversations/{id}`.
    public struct AdminSetAssistant: Sendable, Codable, Hashable {
        public var enabled: Bool
        public init(enabled: Bool) { self.enabled = enabled }
    }
}

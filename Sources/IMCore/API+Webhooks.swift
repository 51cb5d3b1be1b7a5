/// The events an outgoing webhook can subscribe to (docs/protocol.md, "Outgoing webhooks").
public enum WebhookEvent: String, Sendable, Codable, Hashable, CaseIterable, Comparable {
    case messageCreated = "message.created"
    case messageEdited = "message.edited"
    case messageRecalled = "message.recalled"
    case memberAdded = "member.added"
    case memberRemoved = "member.removed"
    case conversationCreated = "conversation.created"

    public static func < (a: WebhookEvent, b: WebhookEvent) -> Bool { a.rawValue < b.rawValue }
}

extension API {
    /// `POST /v1/webhooks`.
    public struct NewWebhook: Sendable, Codable, Hashable {
        public var url: String
        /// Default: every event.
        public var events: [WebhookEvent]?
        /// Only this conversation's events (a bot's subscription covers only conversations it is a member of anyway).
        public var conversation: ConversationID?
        public init(url: String, events: [WebhookEvent]? = nil, conversation: ConversationID? = nil) {
            self.url = url; self.events = events; self.conversation = conversation
        }
    }

    /// A subscription as listed; its secret is shown only when it is created.
    public struct Webhook: Sendable, Codable, Hashable {
        public var id: Int64
        public var url: String
        public var events: [WebhookEvent]
        public var conversation: ConversationID?
        /// The bot that owns it; nil for an admin's subscription (every conversation).
        public var ownerBot: UserID?
        public var enabled: Bool
        /// Why the server turned it off (persistent failure), when it did.
        public var disabledReason: String?
        public var createdAt: Int64
        public init(id: Int64, url: String, events: [WebhookEvent], conversation: ConversationID?, ownerBot: UserID?, enabled: Bool,
                    disabledReason: String?, createdAt: Int64) {
            self.id = id; self.url = url; self.events = events; self.conversation = conversation; self.ownerBot = ownerBot
            self.enabled = enabled; self.disabledReason = disabledReason; self.createdAt = createdAt
        }
    }

    /// The answer to creating a subscription: the signing secret, shown only this once.
    public struct WebhookCreated: Sendable, Codable, Hashable {
        public var webhook: Webhook
        public var secret: String
        public init(webhook: Webhook, secret: String) { self.webhook = webhook; self.secret = secret }
    }

    /// One delivery in a subscription's log (`GET /v1/webhooks/{id}/deliveries`).
    public struct WebhookDelivery: Sendable, Codable, Hashable {
        /// Sent as `X-Warbler-Delivery`; the same on every retry and redelivery (de-duplicate on it).
        public var id: String
        public var event: WebhookEvent
        /// `pending` (waiting for its next attempt), `delivered`, or `failed` (retries ran out).
        public var state: String
        public var attempts: Int64
        public var createdAt: Int64
        public var nextAttemptAt: Int64?
        public var deliveredAt: Int64?
        /// The last attempt's HTTP status (nil when no response came), error and latency.
        public var lastStatus: Int64?
        public var lastError: String?
        public var latencyMs: Int64?
        public init(id: String, event: WebhookEvent, state: String, attempts: Int64, createdAt: Int64, nextAttemptAt: Int64?,
                    deliveredAt: Int64?, lastStatus: Int64?, lastError: String?, latencyMs: Int64?) {
            self.id = id; self.event = event; self.state = state; self.attempts = attempts; self.createdAt = createdAt
            self.nextAttemptAt = nextAttemptAt; self.deliveredAt = deliveredAt; self.lastStatus = lastStatus; self.lastError = lastError
            self.latencyMs = latencyMs
        }
    }
}

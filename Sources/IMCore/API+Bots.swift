/// What a bot token allows (docs/protocol.md, "Bots"). A token carries one or more.
public enum BotScope: String, Sendable, Codable, Hashable, CaseIterable, Comparable {
    /// Receive the messages of the bot's conversations (WebSocket, history, conversation list).
    case read
    /// Send, edit and recall in the bot's conversations (WebSocket or `POST /v1/bot/messages`).
    case send
    /// Change the bot's own display name and avatar (`PATCH /v1/me`).
    case profile

    public static func < (a: BotScope, b: BotScope) -> Bool { a.rawValue < b.rawValue }

    /// Parses a comma-separated list (`read,send`), naming what is wrong when it is not one.
    public static func parse(_ text: String) -> Result<[BotScope], IMError> {
        var out: Set<BotScope> = []
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            guard let s = BotScope(rawValue: part) else {
                return .failure(IMError.invalid("unknown bot scope '\(part)'; use read, send and/or profile"))
            }
            out.insert(s)
        }
        guard !out.isEmpty else { return .failure(IMError.invalid("a bot token needs at least one scope: read, send or profile")) }
        return .success(out.sorted())
    }
}

extension API {
    /// `POST /v1/admin/bots`.
    public struct AdminCreateBot: Sendable, Codable, Hashable {
        public var username: String
        public var displayName: String?
        public var description: String?
        /// Default: every scope.
        public var scopes: [BotScope]?
        public init(username: String, displayName: String? = nil, description: String? = nil, scopes: [BotScope]? = nil) {
            self.username = username; self.displayName = displayName; self.description = description; self.scopes = scopes
        }
    }

    /// `POST /v1/admin/bots/{id}/token` (rotation).
    public struct AdminRotateBotToken: Sendable, Codable, Hashable {
        /// Default: the scopes of the token being replaced (every scope when there is none).
        public var scopes: [BotScope]?
        public init(scopes: [BotScope]? = nil) { self.scopes = scopes }
    }

    /// A bot as the admin API lists it. The token itself is never listed, only its id and scopes.
    public struct AdminBot: Sendable, Codable, Hashable {
        public var user: UserProfile
        public var description: String
        public var disabled: Bool
        public var createdAt: Int64
        /// The live token's id (its first characters, shown in lists), nil when every token is revoked.
        public var tokenId: String?
        public var scopes: [BotScope]
        public var tokenCreatedAt: Int64?
        public init(user: UserProfile, description: String, disabled: Bool, createdAt: Int64, tokenId: String?, scopes: [BotScope],
                    tokenCreatedAt: Int64?) {
            self.user = user; self.description = description; self.disabled = disabled; self.createdAt = createdAt
            self.tokenId = tokenId; self.scopes = scopes; self.tokenCreatedAt = tokenCreatedAt
        }
    }

    /// The answer to creating a bot or rotating its token: the only time the token is shown.
    public struct BotCredentials: Sendable, Codable, Hashable {
        public var bot: AdminBot
        public var token: String
        public init(bot: AdminBot, token: String) { self.bot = bot; self.token = token }
    }
}

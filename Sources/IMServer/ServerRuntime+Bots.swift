import IMCore
import IMStorage

/// Bot accounts: made, listed, rotated and revoked by admins (REST and `warbler bots`). docs/bots.md.
extension ServerRuntime {
    /// Creates a bot and its first token; the answer is the only place the token is ever shown.
    public func createBot(username: String, displayName: String?, description: String?, scopes: [BotScope]?) async throws -> API.BotCredentials {
        let name = username.lowercased()
        if let e = Validation.username(name) { throw e }
        if let d = displayName, let e = Validation.displayName(d) { throw e }
        let description = description ?? ""
        guard description.count <= 500 else { throw IMError.invalid("a bot's description may have at most 500 characters") }
        let scopes = try Self.checkedScopes(scopes)
        let now = nowMillis()
        let (token, record) = BotTokens.make(bot: 0, scopes: scopes, now: now)
        let bot = try await storage.createBot(username: name, displayName: displayName ?? name, description: description, token: record, now: now)
        logger.notice("bot created", metadata: ["im.user": "\(bot.user.id)", "im.bot.token": "\(record.id)"])
        return API.BotCredentials(bot: Self.adminBot(bot), token: token)
    }

    public func listBots() async throws -> [API.AdminBot] {
        try await storage.bots().map(Self.adminBot)
    }

    /// Issues a new token and revokes the old one(s) at once; connections made with the old token end.
    public func rotateBotToken(id: UserID, scopes: [BotScope]?) async throws -> API.BotCredentials {
        guard let bot = try await storage.bot(id: id) else { throw IMError.notFound("no such bot") }
        let scopes = try Self.checkedScopes(scopes ?? bot.token?.scopes)
        let (token, record) = BotTokens.make(bot: id, scopes: scopes, now: nowMillis())
        let revoked = try await storage.replaceBotToken(record, now: nowMillis())
        endBotSessions(id, tokens: revoked, reason: "the bot's token was rotated")
        logger.notice("bot token rotated", metadata: ["im.user": "\(id)", "im.bot.token": "\(record.id)"])
        guard let fresh = try await storage.bot(id: id) else { throw IMError.notFound("no such bot") }
        return API.BotCredentials(bot: Self.adminBot(fresh), token: token)
    }

    /// Revokes the bot's token: it can no longer call the API, and its connections end. Rotating gives it a new one.
    public func revokeBotTokens(id: UserID) async throws -> API.AdminBot {
        guard try await storage.bot(id: id) != nil else { throw IMError.notFound("no such bot") }
        let revoked = try await storage.revokeBotTokens(bot: id, now: nowMillis())
        endBotSessions(id, tokens: revoked, reason: "the bot's token was revoked")
        logger.notice("bot token revoked", metadata: ["im.user": "\(id)"])
        guard let bot = try await storage.bot(id: id) else { throw IMError.notFound("no such bot") }
        return Self.adminBot(bot)
    }

    func endBotSessions(_ bot: UserID, tokens: [String], reason: String) {
        for t in tokens { hub.endSessions(of: bot, sid: BotTokens.sessionID(tokenID: t), reason: reason) }
    }

    static func checkedScopes(_ scopes: [BotScope]?) throws -> [BotScope] {
        guard let scopes else { return BotScope.allCases.sorted() }
        guard !scopes.isEmpty else { throw IMError.invalid("a bot token needs at least one scope: read, send or profile") }
        return Array(Set(scopes)).sorted()
    }

    static func adminBot(_ b: BotRecord) -> API.AdminBot {
        API.AdminBot(user: b.user.profile, description: b.description, disabled: b.user.disabled, createdAt: b.user.createdAt,
                     tokenId: b.token?.id, scopes: b.token?.scopes ?? [], tokenCreatedAt: b.token?.createdAt)
    }
}

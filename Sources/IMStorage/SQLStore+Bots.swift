import IMCore

extension SQLStore {
    static let botTokenColumns = "id, bot_id, hash, scopes, created_at, revoked_at"

    static func botToken(_ r: SQLRow) throws -> BotTokenRecord {
        BotTokenRecord(id: try r.text("id"), bot: try r.int("bot_id"), hash: try r.text("hash"),
                       scopes: (try r.text("scopes")).split(separator: ",").compactMap { BotScope(rawValue: String($0)) },
                       createdAt: try r.int("created_at"), revokedAt: r.optInt("revoked_at"))
    }

    static func insertBotToken(_ db: any SQLExecutor, _ t: BotTokenRecord) async throws {
        try await db.query("INSERT INTO bot_tokens (\(botTokenColumns)) VALUES ($1, $2, $3, $4, $5, NULL)",
                           [.text(t.id), .int(t.bot), .text(t.hash), .text(t.scopes.map(\.rawValue).joined(separator: ",")), .int(t.createdAt)])
    }

    static func loadBot(_ db: any SQLExecutor, _ id: UserID) async throws -> BotRecord? {
        guard let u = try await db.first("SELECT \(userColumns) FROM users WHERE id = $1 AND kind = 'bot'", [.int(id)]) else { return nil }
        let description = try await db.first("SELECT description FROM bots WHERE user_id = $1", [.int(id)])?.optText("description") ?? ""
        let token = try await db.first(
            "SELECT \(botTokenColumns) FROM bot_tokens WHERE bot_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
            [.int(id)]).map(botToken)
        return BotRecord(user: try userRecord(u), description: description, token: token)
    }

    public func createBot(username: String, displayName: String, description: String, token: BotTokenRecord, now: Int64) async throws -> BotRecord {
        try await driver.write { db in
            if try await db.first("SELECT id FROM users WHERE username = $1", [.text(username)]) != nil {
                throw IMError(.conflict, "username '\(username)' is taken")
            }
            // A bot has no password: the empty hash matches none, and login refuses bots before checking it.
            guard let row = try await db.first(
                "INSERT INTO users (username, display_name, password_hash, admin, disabled, created_at, kind) VALUES ($1, $2, '', 0, 0, $3, 'bot') RETURNING id",
                [.text(username), .text(displayName), .int(now)]) else {
                throw StorageError.corrupt("insert returned no id")
            }
            let id = try row.int("id")
            try await db.query("INSERT INTO bots (user_id, description, created_at) VALUES ($1, $2, $3)", [.int(id), .text(description), .int(now)])
            var t = token
            t.bot = id
            try await Self.insertBotToken(db, t)
            guard let bot = try await Self.loadBot(db, id) else { throw StorageError.corrupt("bot vanished") }
            return bot
        }
    }

    public func bots() async throws -> [BotRecord] {
        try await driver.read { db in
            var out: [BotRecord] = []
            for r in try await db.query("SELECT id FROM users WHERE kind = 'bot' ORDER BY id") {
                if let b = try await Self.loadBot(db, try r.int("id")) { out.append(b) }
            }
            return out
        }
    }

    public func bot(id: UserID) async throws -> BotRecord? {
        try await driver.read { db in try await Self.loadBot(db, id) }
    }

    public func botToken(hash: String) async throws -> BotTokenRecord? {
        try await driver.read { db in
            try await db.first("SELECT \(Self.botTokenColumns) FROM bot_tokens WHERE hash = $1", [.text(hash)]).map(Self.botToken)
        }
    }

    public func isBotTokenLive(id: String) async throws -> Bool {
        try await driver.read { db in
            try await db.first("SELECT 1 AS live FROM bot_tokens WHERE id = $1 AND revoked_at IS NULL", [.text(id)]) != nil
        }
    }

    public func replaceBotToken(_ token: BotTokenRecord, now: Int64) async throws -> [String] {
        try await driver.write { db in
            let revoked = try await db.query("UPDATE bot_tokens SET revoked_at = $2 WHERE bot_id = $1 AND revoked_at IS NULL RETURNING id",
                                             [.int(token.bot), .int(now)]).map { try $0.text("id") }
            try await Self.insertBotToken(db, token)
            return revoked
        }
    }

    public func revokeBotTokens(bot: UserID, now: Int64) async throws -> [String] {
        try await driver.write { db in
            try await db.query("UPDATE bot_tokens SET revoked_at = $2 WHERE bot_id = $1 AND revoked_at IS NULL RETURNING id",
                               [.int(bot), .int(now)]).map { try $0.text("id") }
        }
    }
}

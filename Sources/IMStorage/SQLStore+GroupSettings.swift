import IMCore

/// Mutes (docs/protocol.md, "Mutes") and announcements. The mutes' ends are read back through `Conversation`,
/// `Member` and `ConversationSummary`, which show only those that have not passed.
extension SQLStore {
    public func saveDraft(user: UserID, conversation: ConversationID, _ draft: Draft?) async throws {
        try await driver.write { db in
            try await db.query("DELETE FROM drafts WHERE user_id = $1 AND conv_id = $2", [.int(user), .int(conversation)])
            if let draft {
                try await db.query("INSERT INTO drafts (user_id, conv_id, text, reply_to, updated_at) VALUES ($1, $2, $3, $4, $5)",
                                   [.int(user), .int(conversation), .text(draft.text), SQLValue(draft.replyTo), .int(draft.updatedAt)])
            }
        }
    }

    public func drafts(user: UserID) async throws -> [Draft] {
        try await driver.read { db in
            try await db.query("SELECT conv_id, text, reply_to, updated_at FROM drafts WHERE user_id = $1 ORDER BY updated_at DESC, conv_id",
                               [.int(user)]).map {
                Draft(conversation: try $0.int("conv_id"), text: try $0.text("text"), replyTo: $0.optInt("reply_to"), updatedAt: try $0.int("updated_at"))
            }
        }
    }

    public func logModerationBlock(_ b: API.ModerationBlock) async throws {
        try await driver.write { db in
            try await db.query("INSERT INTO moderation_blocks (at, user_id, conv_id, word, source) VALUES ($1, $2, $3, $4, $5)",
                               [.int(b.at), .int(b.user), .int(b.conversation), .text(b.word), .text(b.source.rawValue)])
        }
    }

    public func moderationBlocks(limit: Int) async throws -> [API.ModerationBlock] {
        try await driver.read { db in
            try await db.query("SELECT at, user_id, conv_id, word, source FROM moderation_blocks ORDER BY at DESC LIMIT $1", [.int(Int64(limit))]).map {
                API.ModerationBlock(at: try $0.int("at"), user: try $0.int("user_id"), conversation: try $0.int("conv_id"), word: try $0.text("word"),
                                    source: $0.optText("source").flatMap(API.ModerationBlock.Source.init(rawValue:)) ?? .words)
            }
        }
    }

    public func setAnnouncement(conversation: ConversationID, _ a: Announcement?) async throws {
        try await driver.write { db in
            try await db.query("UPDATE conversations SET announcement = $2, announcement_by = $3, announcement_at = $4 WHERE id = $1",
                               [.int(conversation), SQLValue(a?.text), SQLValue(a?.by), SQLValue(a?.at)])
        }
    }

    @discardableResult
    public func setNotificationMute(user: UserID, conversation: ConversationID, until: Int64?) async throws -> Bool {
        try await driver.write { db in
            !(try await db.query("UPDATE members SET muted_until = $3 WHERE conv_id = $1 AND user_id = $2 RETURNING user_id",
                                 [.int(conversation), .int(user), SQLValue(until)])).isEmpty
        }
    }

    @discardableResult
    public func setMemberMute(conversation: ConversationID, user: UserID, until: Int64?) async throws -> Bool {
        try await driver.write { db in
            !(try await db.query("UPDATE members SET send_muted_until = $3 WHERE conv_id = $1 AND user_id = $2 RETURNING user_id",
                                 [.int(conversation), .int(user), SQLValue(until)])).isEmpty
        }
    }

    public func setGroupMute(conversation: ConversationID, until: Int64?) async throws {
        try await driver.write { db in
            try await db.query("UPDATE conversations SET send_muted_until = $2 WHERE id = $1", [.int(conversation), SQLValue(until)])
        }
    }
}

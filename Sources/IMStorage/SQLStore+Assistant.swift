import IMCore

/// An admin's choice for the AI assistant in one conversation (a conversation without one has it on).
public struct AssistantConversationSetting: Sendable, Equatable {
    public var conversation: ConversationID
    public var enabled: Bool
    public var changedBy: UserID
    public var changedAt: Int64
    public init(conversation: ConversationID, enabled: Bool, changedBy: UserID, changedAt: Int64) {
        self.conversation = conversation; self.enabled = enabled; self.changedBy = changedBy; self.changedAt = changedAt
    }
}

extension SQLStore {
    /// Turns the assistant on or off in `conversation` (which must exist); the latest choice wins.
    public func setAssistantEnabled(conversation: ConversationID, enabled: Bool, by admin: UserID, now: Int64) async throws {
        try await driver.write { db in
            guard try await db.first("SELECT id FROM conversations WHERE id = $1", [.int(conversation)]) != nil else {
                throw IMError.notFound("no such conversation")
            }
            try await db.query("""
                INSERT INTO assistant_conversations (conv_id, enabled, changed_by, changed_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (conv_id) DO UPDATE SET enabled = excluded.enabled, changed_by = excluded.changed_by,
                  changed_at = excluded.changed_at
                """, [.int(conversation), SQLValue(enabled), .int(admin), .int(now)])
        }
    }

    /// Whether the assistant may answer in `conversation`: on unless an admin turned it off there.
    public func assistantEnabled(conversation: ConversationID) async throws -> Bool {
        try await driver.read { db in
            try await db.first("SELECT enabled FROM assistant_conversations WHERE conv_id = $1", [.int(conversation)])?.bool("enabled") ?? true
        }
    }

    /// Every conversation an admin chose for, by conversation id.
    public func assistantSettings() async throws -> [AssistantConversationSetting] {
        try await driver.read { db in
            try await db.query("SELECT conv_id, enabled, changed_by, changed_at FROM assistant_conversations ORDER BY conv_id").map {
                AssistantConversationSetting(conversation: try $0.int("conv_id"), enabled: $0.bool("enabled"),
                                             changedBy: try $0.int("changed_by"), changedAt: try $0.int("changed_at"))
            }
        }
    }
}

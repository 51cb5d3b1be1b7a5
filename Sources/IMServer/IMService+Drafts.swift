import IMCore
import IMStorage

/// Drafts (docs/protocol.md, "Drafts"): one per user and conversation, kept on the server so every device of the
/// user picks up where another left off, and pushed to the user's connected devices (a `draft` frame) when saved.
extension IMService {
    func saveDraft(_ user: UserID, _ conv: ConversationID, _ body: API.SaveDraft) async throws -> Draft? {
        _ = try await requireMember(user, conv)
        guard body.text.utf8.count <= config.limits.textBytes else {
            throw IMError(.tooLarge, "a draft is at most \(config.limits.textBytes) bytes, like a message")
        }
        let draft = body.text.isEmpty ? nil : Draft(conversation: conv, text: body.text, replyTo: body.replyTo, updatedAt: nowMillis())
        try await storage.saveDraft(user: user, conversation: conv, draft)
        // The user's other devices (and this one) hear of it at once; an empty text says it was deleted.
        hub.publishDraft(draft ?? Draft(conversation: conv, text: "", updatedAt: nowMillis()), user: user)
        return draft
    }
}

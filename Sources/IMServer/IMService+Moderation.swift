import IMCore
import IMStorage

/// Content moderation (docs/operations.md, "Content moderation"): the word list applied to text before it is stored.
extension IMService {
    /// `text` as it may be stored (masked in `mask` mode), or `blocked` naming the word (the refusal is logged for
    /// the admin console). Nil and unlisted text pass unchanged; with no word list this is one branch.
    func moderated(_ text: String?, from user: UserID, in conv: ConversationID) async throws -> String? {
        guard let text, moderation.enabled else { return text }
        switch moderation.check(text) {
        case .pass(let t), .masked(let t):
            return t
        case .blocked(let word):
            logger.notice("content moderation: a send was blocked", metadata: ["im.user": "\(user)", "im.conv": "\(conv)", "im.word": "\(word)"])
            do {
                try await storage.logModerationBlock(API.ModerationBlock(at: nowMillis(), user: user, conversation: conv, word: word))
            } catch {
                logger.error("content moderation: cannot log a blocked send: \(error)")
            }
            throw IMError(.blocked, "the message contains \"\(word)\", which this server's word list does not allow; remove it and send again")
        }
    }
}

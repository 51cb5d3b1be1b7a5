import IMCore
import IMStorage

/// Content moderation (docs/operations.md, "Content moderation"): the word list, then the external moderation
/// webhook, applied to text before it is stored.
extension IMService {
    /// `text` as it may be stored (masked by the word list in `mask` mode, or by the webhook), or `blocked` saying why
    /// (every refusal is logged for the admin console). Nil and unlisted text pass unchanged; with neither a word list
    /// nor a webhook this is two branches.
    func moderated(_ text: String?, from user: UserID, in conv: ConversationID) async throws -> String? {
        guard var text else { return nil }
        if moderation.enabled {
            switch moderation.check(text) {
            case .pass(let t), .masked(let t):
                text = t
            case .blocked(let word):
                await logBlock(user: user, conv: conv, word: word, source: .words)
                throw IMError(.blocked, "the message contains \"\(word)\", which this server's word list does not allow; remove it and send again")
            }
        }
        guard let hook = moderationHook else { return text }
        switch await hook.check(text, user: user, conversation: conv) {
        case .decided(.allow):
            metrics?.moderationWebhook["allow"]?.increment()
            return text
        case .decided(.mask(let masked)):
            metrics?.moderationWebhook["mask"]?.increment()
            return masked
        case .decided(.block(let reason)):
            metrics?.moderationWebhook["block"]?.increment()
            await logBlock(user: user, conv: conv, word: reason, source: .webhook)
            throw IMError(.blocked, "this server's moderation refused the message (\(reason)); change it and send again")
        case .failed(let why):
            if hook.failOpen {
                metrics?.moderationWebhook["failed_open"]?.increment()
                logger.warning("content moderation: the webhook failed; the send goes through (moderation.webhook_failure: open)",
                               metadata: ["im.user": "\(user)", "im.conv": "\(conv)", "im.why": "\(why)"])
                return text
            }
            metrics?.moderationWebhook["failed_closed"]?.increment()
            await logBlock(user: user, conv: conv, word: why, source: .webhookUnavailable)
            throw IMError(.unavailable, "this server's moderation service is not answering, so messages cannot be sent now; try again in a moment")
        }
    }

    /// Logs a refused send for the admin console; a failure to log is logged, never the send's answer.
    private func logBlock(user: UserID, conv: ConversationID, word: String, source: API.ModerationBlock.Source) async {
        logger.notice("content moderation: a send was blocked",
                      metadata: ["im.user": "\(user)", "im.conv": "\(conv)", "im.word": "\(word)", "im.source": "\(source.rawValue)"])
        do {
            try await storage.logModerationBlock(API.ModerationBlock(at: nowMillis(), user: user, conversation: conv, word: word, source: source))
        } catch {
            logger.error("content moderation: cannot log a blocked send: \(error)")
        }
    }
}

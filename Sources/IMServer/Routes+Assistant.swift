import Foundation
import Hummingbird
import IMCore
import IMStorage

/// The AI assistant's admin endpoints (docs/protocol.md, "The assistant").
extension Routes {
    func addAssistant(to router: Router<AppContext>) {
        let admin = router.group("/v1/admin/assistant")
        admin.get { req, _ -> Response in
            _ = try await requireAdmin(req)
            return json(try await runtime.assistantStatus())
        }
        admin.put("conversations/:id") { req, ctx -> Response in
            let claims = try await requireAdmin(req)
            let body = try await req.decodeJSON(API.AdminSetAssistant.self, limit: limit)
            return json(try await runtime.setAssistant(conversation: try ctx.parameters.id("id"), enabled: body.enabled, by: claims.sub))
        }
    }
}

extension ServerRuntime {
    /// The assistant's settings as an admin may see them (the endpoint without credentials, never the key) and use.
    public func assistantStatus() async throws -> API.AdminAssistant {
        let a = config.assistant
        let use = assistant?.usageSoFar ?? Assistant.Usage()
        return API.AdminAssistant(
            enabled: a.enabled, username: a.username.lowercased(), user: assistant?.bot, endpoint: Self.withoutCredentials(a.endpoint), model: a.model,
            keyConfigured: !a.keyFile.isEmpty,
            usage: .init(questions: use.questions, failures: use.failures, promptTokens: use.promptTokens, completionTokens: use.completionTokens),
            conversations: try await store.assistantSettings().map {
                API.AssistantConversation(conv: $0.conversation, enabled: $0.enabled, changedBy: $0.changedBy, changedAt: $0.changedAt)
            })
    }

    /// Turns the assistant on or off in one conversation (it takes effect at the next question).
    public func setAssistant(conversation: ConversationID, enabled: Bool, by admin: UserID) async throws -> API.AssistantConversation {
        let now = nowMillis()
        try await store.setAssistantEnabled(conversation: conversation, enabled: enabled, by: admin, now: now)
        logger.notice("assistant turned \(enabled ? "on" : "off") in a conversation", metadata: ["im.conv": "\(conversation)", "im.user": "\(admin)"])
        return API.AssistantConversation(conv: conversation, enabled: enabled, changedBy: admin, changedAt: now)
    }

    static func withoutCredentials(_ url: String) -> String {
        guard var c = URLComponents(string: url) else { return "" }
        c.user = nil
        c.password = nil
        c.query = nil
        return c.string ?? ""
    }
}

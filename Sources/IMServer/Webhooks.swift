import Foundation
import IMCore
import IMStorage

/// Outgoing-webhook subscriptions and their delivery logs, for admins (every subscription, any conversation) and
/// bots (their own, for conversations they are members of). docs/protocol.md, "Outgoing webhooks".
struct Webhooks: Sendable {
    let store: SQLStore
    let policy: WebhookTargetPolicy
    /// Most subscriptions one bot may have.
    static let perBot = 20

    /// Who is asking: an admin, or the bot that owns (or will own) the subscription.
    enum Caller { case admin, bot(UserID) }

    func create(_ caller: Caller, _ body: API.NewWebhook, isMember: (UserID, ConversationID) async throws -> Bool) async throws -> API.WebhookCreated {
        if let e = policy.checkURL(body.url) { throw e }
        let events = Array(Set(body.events ?? WebhookEvent.allCases)).sorted()
        guard !events.isEmpty else { throw IMError.invalid("subscribe to at least one event: \(WebhookEvent.allCases.map(\.rawValue).joined(separator: ", "))") }
        var owner: UserID?
        if case .bot(let bot) = caller {
            owner = bot
            if let conv = body.conversation, try await !isMember(bot, conv) { throw IMError.notFound("no such conversation") }
            guard try await store.webhooks(ownerBot: bot).count < Self.perBot else {
                throw IMError(.conflict, "a bot may have at most \(Self.perBot) webhook subscriptions; delete one first")
            }
        } else if let conv = body.conversation, try await store.conversation(id: conv) == nil {
            throw IMError.notFound("no such conversation")
        }
        let secret = WebhookSignature.newSecret()
        let rec = try await store.createWebhook(ownerBot: owner, url: body.url, secret: secret, events: events, conversation: body.conversation,
                                                now: nowMillis())
        return API.WebhookCreated(webhook: Self.api(rec), secret: secret)
    }

    func list(_ caller: Caller) async throws -> [API.Webhook] {
        switch caller {
        case .admin: try await store.webhooks(ownerBot: nil).map(Self.api)
        case .bot(let bot): try await store.webhooks(ownerBot: bot).map(Self.api)
        }
    }

    /// The subscription, if the caller may see it (a bot only its own; anything else reads as missing).
    func owned(_ caller: Caller, _ id: Int64) async throws -> WebhookRecord {
        guard let rec = try await store.webhook(id: id) else { throw IMError.notFound("no such webhook") }
        if case .bot(let bot) = caller, rec.ownerBot != bot { throw IMError.notFound("no such webhook") }
        return rec
    }

    func delete(_ caller: Caller, _ id: Int64) async throws {
        _ = try await owned(caller, id)
        try await store.deleteWebhook(id: id)
    }

    func setEnabled(_ caller: Caller, _ id: Int64, _ enabled: Bool) async throws -> API.Webhook {
        _ = try await owned(caller, id)
        try await store.setWebhookEnabled(id: id, enabled: enabled, reason: enabled ? nil : "turned off by its owner")
        return Self.api(try await owned(caller, id))
    }

    func deliveries(_ caller: Caller, _ id: Int64, limit: Int) async throws -> [API.WebhookDelivery] {
        _ = try await owned(caller, id)
        return try await store.webhookDeliveries(subscription: id, limit: max(1, min(limit, 500))).map(Self.api)
    }

    func redeliver(_ caller: Caller, _ id: Int64, delivery: String) async throws {
        _ = try await owned(caller, id)
        guard try await store.redeliver(subscription: id, delivery: delivery, now: nowMillis()) else {
            throw IMError.notFound("no such delivery")
        }
    }

    static func api(_ r: WebhookRecord) -> API.Webhook {
        API.Webhook(id: r.id, url: r.url, events: r.events, conversation: r.conversation, ownerBot: r.ownerBot, enabled: r.enabled,
                    disabledReason: r.disabledReason, createdAt: r.createdAt)
    }

    static func api(_ d: WebhookDeliveryRecord) -> API.WebhookDelivery {
        API.WebhookDelivery(id: d.id, event: d.event, state: d.state, attempts: d.attempts, createdAt: d.createdAt,
                            nextAttemptAt: d.state == "pending" ? d.nextAt : nil, deliveredAt: d.deliveredAt, lastStatus: d.lastStatus,
                            lastError: d.lastError, latencyMs: d.latencyMs)
    }
}

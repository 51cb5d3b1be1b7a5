import Foundation
import IMCore

/// An outgoing-webhook subscription as stored (the secret signs its deliveries).
public struct WebhookRecord: Sendable, Hashable {
    public var id: Int64
    /// The bot that owns it (its events are limited to the bot's conversations); nil for an admin's.
    public var ownerBot: UserID?
    public var url: String
    public var secret: String
    public var events: [WebhookEvent]
    public var conversation: ConversationID?
    public var enabled: Bool
    public var disabledReason: String?
    public var createdAt: Int64
}

/// One event for one subscription in the outbox: pending until delivered, or failed once its retries ran out.
public struct WebhookDeliveryRecord: Sendable, Hashable {
    public var id: String
    public var subscription: Int64
    public var event: WebhookEvent
    /// The exact JSON body sent (and signed).
    public var payload: String
    public var createdAt: Int64
    public var nextAt: Int64
    public var attempts: Int64
    public var state: String
    public var lastStatus: Int64?
    public var lastError: String?
    public var latencyMs: Int64?
    public var deliveredAt: Int64?
}

/// The durable outbox of outgoing webhooks. `record` runs inside the transaction that stores the messages (the
/// group commit's batch), so a webhook exists exactly when its message committed: a crash loses neither, and never
/// leaves a webhook for a message that was rolled back.
public enum WebhookOutbox {
    /// The webhook event a stored message is, and the `data` it carries; nil for messages no event reports.
    static func event(for m: Message) -> (WebhookEvent, JSONValue)? {
        switch m.kind {
        case .text, .custom, .attachment:
            return (.messageCreated, .object(["message": json(m)]))
        case .edit:
            return (.messageEdited, .object(["message": json(m), "seq": m.target.map { .number(Double($0)) } ?? .null]))
        case .recall:
            return (.messageRecalled, .object(["message": json(m), "seq": m.target.map { .number(Double($0)) } ?? .null]))
        case .system:
            guard case .object(let d)? = m.data, case .string(let name)? = d["event"] else { return nil }
            let by = d["by"] ?? .null
            switch name {
            case "created": return (.conversationCreated, .object(["name": d["name"] ?? .null, "by": by]))
            case "members_added": return (.memberAdded, .object(["users": d["users"] ?? .array([]), "by": by]))
            case "member_removed": return (.memberRemoved, .object(["users": .array([d["user"] ?? .null]), "by": by, "left": .bool(false)]))
            case "member_left": return (.memberRemoved, .object(["users": .array([d["user"] ?? .null]), "by": by, "left": .bool(true)]))
            default: return nil
            }
        case .reaction:
            // Not among the documented events (docs/protocol.md, "Outgoing webhooks").
            return nil
        }
    }

    static func json(_ m: Message) -> JSONValue {
        guard let d = try? JSONEncoder().encode(m), let v = try? JSONDecoder().decode(JSONValue.self, from: d) else { return .null }
        return v
    }

    /// The body of a delivery: `{"id","type","created_at","conversation","data"}`. The id is the event's
    /// (one per message, the same for every subscription); the delivery id is in the `X-Warbler-Delivery` header.
    static func payload(_ event: WebhookEvent, _ m: Message, data: JSONValue) -> String {
        let body: JSONValue = .object([
            "id": .string("evt_\(m.conversation)_\(m.seq)"), "type": .string(event.rawValue), "created_at": .number(Double(m.ts)),
            "conversation": .number(Double(m.conversation)), "data": data,
        ])
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(body)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func newDeliveryID() -> String {
        var g = SystemRandomNumberGenerator()
        return "whd_" + (0..<12).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// Writes an outbox row for every enabled subscription each new message matches, inside the caller's transaction.
    /// Costs one small query per batch when no subscription exists, none when the caller read the enabled
    /// subscriptions (`SELECT id, owner_bot, events, conv_id … WHERE enabled = 1`) in this transaction already.
    static func record(_ db: any SQLExecutor, _ messages: [Message], now: Int64, subscriptions: [SQLRow]? = nil) async throws {
        guard !messages.isEmpty else { return }
        let enabled: [SQLRow]
        if let subscriptions { enabled = subscriptions } else {
            enabled = try await db.query("SELECT id, owner_bot, events, conv_id FROM webhook_subscriptions WHERE enabled = 1")
        }
        let subs = try enabled.map { r in
            (id: try r.int("id"), bot: r.optInt("owner_bot"), conv: r.optInt("conv_id"),
             events: Set((try r.text("events")).split(separator: ",").compactMap { WebhookEvent(rawValue: String($0)) }))
        }
        guard !subs.isEmpty else { return }
        var members: [ConversationID: Set<UserID>] = [:]
        var rows: [(String, Int64, WebhookEvent, String)] = []
        for m in messages {
            guard let (event, data) = event(for: m) else { continue }
            var body: String?
            for s in subs where s.events.contains(event) && (s.conv == nil || s.conv == m.conversation) {
                if let bot = s.bot {
                    // A bot hears only its own conversations, as on its WebSocket.
                    if members[m.conversation] == nil {
                        members[m.conversation] = Set(try await db.query("SELECT user_id FROM members WHERE conv_id = $1",
                                                                         [.int(m.conversation)]).map { try $0.int("user_id") })
                    }
                    guard members[m.conversation]?.contains(bot) == true else { continue }
                }
                if body == nil { body = payload(event, m, data: data) }
                rows.append((newDeliveryID(), s.id, event, body!))
            }
        }
        for chunk in stride(from: 0, to: rows.count, by: 100).map({ Array(rows[$0..<min($0 + 100, rows.count)]) }) {
            var binds: [SQLValue] = []
            var tuples: [String] = []
            for (id, sub, event, body) in chunk {
                let n = binds.count
                tuples.append("($\(n + 1), $\(n + 2), $\(n + 3), $\(n + 4), $\(n + 5), $\(n + 5), 0, 'pending')")
                binds += [.text(id), .int(sub), .text(event.rawValue), .text(body), .int(now)]
            }
            try await db.query("INSERT INTO webhook_outbox (id, sub_id, event, payload, created_at, next_at, attempts, state) VALUES "
                               + tuples.joined(separator: ", "), binds)
        }
    }
}

extension SQLStore {
    static let webhookColumns = "id, owner_bot, url, secret, events, conv_id, enabled, disabled_reason, created_at"
    static let deliveryColumns = "id, sub_id, event, payload, created_at, next_at, attempts, state, last_status, last_error, latency_ms, delivered_at"

    static func webhook(_ r: SQLRow) throws -> WebhookRecord {
        WebhookRecord(id: try r.int("id"), ownerBot: r.optInt("owner_bot"), url: try r.text("url"), secret: try r.text("secret"),
                      events: (try r.text("events")).split(separator: ",").compactMap { WebhookEvent(rawValue: String($0)) },
                      conversation: r.optInt("conv_id"), enabled: r.bool("enabled"), disabledReason: r.optText("disabled_reason"),
                      createdAt: try r.int("created_at"))
    }

    static func delivery(_ r: SQLRow) throws -> WebhookDeliveryRecord {
        WebhookDeliveryRecord(id: try r.text("id"), subscription: try r.int("sub_id"),
                              event: WebhookEvent(rawValue: try r.text("event")) ?? .messageCreated, payload: try r.text("payload"),
                              createdAt: try r.int("created_at"), nextAt: try r.int("next_at"), attempts: try r.int("attempts"),
                              state: try r.text("state"), lastStatus: r.optInt("last_status"), lastError: r.optText("last_error"),
                              latencyMs: r.optInt("latency_ms"), deliveredAt: r.optInt("delivered_at"))
    }

    public func createWebhook(ownerBot: UserID?, url: String, secret: String, events: [WebhookEvent], conversation: ConversationID?,
                              now: Int64) async throws -> WebhookRecord {
        try await driver.write { db in
            guard let r = try await db.first(
                "INSERT INTO webhook_subscriptions (owner_bot, url, secret, events, conv_id, enabled, created_at) VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING \(Self.webhookColumns)",
                [SQLValue(ownerBot), .text(url), .text(secret), .text(events.map(\.rawValue).joined(separator: ",")), SQLValue(conversation), .int(now)])
            else { throw StorageError.corrupt("insert returned no row") }
            return try Self.webhook(r)
        }
    }

    /// Every subscription (`ownerBot` nil), or one bot's.
    public func webhooks(ownerBot: UserID?) async throws -> [WebhookRecord] {
        try await driver.read { db in
            if let ownerBot {
                return try await db.query("SELECT \(Self.webhookColumns) FROM webhook_subscriptions WHERE owner_bot = $1 ORDER BY id",
                                          [.int(ownerBot)]).map(Self.webhook)
            }
            return try await db.query("SELECT \(Self.webhookColumns) FROM webhook_subscriptions ORDER BY id").map(Self.webhook)
        }
    }

    public func webhook(id: Int64) async throws -> WebhookRecord? {
        try await driver.read { db in
            try await db.first("SELECT \(Self.webhookColumns) FROM webhook_subscriptions WHERE id = $1", [.int(id)]).map(Self.webhook)
        }
    }

    /// Deletes the subscription and its outbox (pending deliveries are dropped with it).
    public func deleteWebhook(id: Int64) async throws {
        try await driver.write { db in
            try await db.query("DELETE FROM webhook_outbox WHERE sub_id = $1", [.int(id)])
            try await db.query("DELETE FROM webhook_subscriptions WHERE id = $1", [.int(id)])
        }
    }

    /// Turns a subscription on (clearing the reason it was turned off) or off (with `reason`).
    public func setWebhookEnabled(id: Int64, enabled: Bool, reason: String?) async throws {
        try await driver.write { db in
            try await db.query("UPDATE webhook_subscriptions SET enabled = $2, disabled_reason = $3 WHERE id = $1",
                               [.int(id), SQLValue(enabled), enabled ? .null : SQLValue(reason)])
        }
    }

    /// Takes up to `limit` pending deliveries that are due, for enabled subscriptions, moving their next attempt to
    /// `leaseUntil` so that no other worker (another node) takes them meanwhile; a worker that dies mid-delivery
    /// leaves them to be retried after the lease.
    public func claimDueDeliveries(now: Int64, leaseUntil: Int64, limit: Int) async throws -> [(WebhookDeliveryRecord, WebhookRecord)] {
        let due = try await driver.read { db in
            try await db.query("""
                SELECT o.id FROM webhook_outbox o JOIN webhook_subscriptions s ON s.id = o.sub_id
                WHERE o.state = 'pending' AND o.next_at <= $1 AND s.enabled = 1 ORDER BY o.next_at, o.created_at LIMIT $2
                """, [.int(now), .int(Int64(limit))]).map { try $0.text("id") }
        }
        var out: [(WebhookDeliveryRecord, WebhookRecord)] = []
        for id in due {
            let claimed = try await driver.write { db -> (WebhookDeliveryRecord, WebhookRecord)? in
                guard let r = try await db.first(
                    "UPDATE webhook_outbox SET next_at = $3 WHERE id = $1 AND state = 'pending' AND next_at <= $2 RETURNING \(Self.deliveryColumns)",
                    [.text(id), .int(now), .int(leaseUntil)]) else { return nil }
                let d = try Self.delivery(r)
                guard let s = try await db.first("SELECT \(Self.webhookColumns) FROM webhook_subscriptions WHERE id = $1", [.int(d.subscription)])
                else { return nil }
                return (d, try Self.webhook(s))
            }
            if let claimed { out.append(claimed) }
        }
        return out
    }

    /// Records an attempt: delivered, retried at `retryAt`, or failed for good (`retryAt` nil after a failure).
    public func recordDeliveryAttempt(id: String, delivered: Bool, status: Int64?, error: String?, latencyMs: Int64, retryAt: Int64?,
                                      now: Int64) async throws {
        try await driver.write { db in
            let state = delivered ? "delivered" : (retryAt == nil ? "failed" : "pending")
            try await db.query("""
                UPDATE webhook_outbox SET attempts = attempts + 1, state = $2, last_status = $3, last_error = $4, latency_ms = $5,
                  next_at = $6, delivered_at = $7 WHERE id = $1
                """, [.text(id), .text(state), SQLValue(status), SQLValue(error), .int(latencyMs), .int(retryAt ?? now),
                      delivered ? .int(now) : .null])
        }
    }

    /// A subscription's deliveries, newest first.
    public func webhookDeliveries(subscription: Int64, limit: Int) async throws -> [WebhookDeliveryRecord] {
        try await driver.read { db in
            try await db.query("SELECT \(Self.deliveryColumns) FROM webhook_outbox WHERE sub_id = $1 ORDER BY created_at DESC, id LIMIT $2",
                               [.int(subscription), .int(Int64(limit))]).map(Self.delivery)
        }
    }

    /// Queues a delivery again, now (whatever its state); false when the subscription has no such delivery.
    public func redeliver(subscription: Int64, delivery: String, now: Int64) async throws -> Bool {
        try await driver.write { db in
            !(try await db.query("UPDATE webhook_outbox SET state = 'pending', next_at = $3 WHERE id = $1 AND sub_id = $2 RETURNING id",
                                 [.text(delivery), .int(subscription), .int(now)])).isEmpty
        }
    }

    /// Deliveries waiting for an attempt (for metrics).
    public func pendingDeliveryCount() async throws -> Int64 {
        try await driver.read { db in
            try await db.first("SELECT COUNT(*) AS n FROM webhook_outbox WHERE state = 'pending'")?.int("n") ?? 0
        }
    }
}

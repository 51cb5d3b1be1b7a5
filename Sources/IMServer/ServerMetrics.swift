import Foundation
import IMCore
import Prometheus

/// The server's Prometheus figures.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let connections: Gauge
    let sends: Counter
    let sendDuplicates: Counter
    let commitStalls: Counter
    /// PostgreSQL reads and writes abandoned at `storage.postgres_timeout_seconds`, by kind.
    let deadlinesPassed: [String: Counter]
    let deliveries: Counter
    let errors: Counter
    let sendToAck: DurationHistogram
    let sendToDeliver: DurationHistogram
    let commitSeconds: DurationHistogram
    let batchSize: ValueHistogram
    let logins: Counter
    let loginFailures: Counter
    let refusedConnections: Counter
    let clusterNotices: Counter
    let clusterCatchUpMessages: Counter
    let clusterReconnects: Counter
    let webhookDelivered: Counter
    let webhookFailedAttempts: Counter
    let webhookDisabled: Counter
    let webhookLatency: DurationHistogram
    let assistant: AssistantMetrics
    /// Moderation webhook checks by outcome: allow, mask, block, failed_open (let through), failed_closed (refused).
    let moderationWebhook: [String: Counter]
    static let moderationOutcomes = ["allow", "mask", "block", "failed_open", "failed_closed"]
    private let recent = LockedBox<[Int64]>([])   // per-second send counts for the last 60 s, for status

    public init() {
        let latency: [Duration] = [.microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                                   .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                   .seconds(1), .seconds(2.5)]
        connections = registry.makeGauge(descriptor: .init(metricName: "warbler_connections", unitName: "", helpText: "Open authenticated WebSocket connections"))
        sends = registry.makeCounter(descriptor: .init(metricName: "warbler_sends_total", unitName: "", helpText: "Messages stored (acknowledged sends)"))
        sendDuplicates = registry.makeCounter(descriptor: .init(metricName: "warbler_send_duplicates_total", unitName: "", helpText: "Sends answered from an earlier identical send"))
        commitStalls = registry.makeCounter(descriptor: .init(metricName: "warbler_storage_commit_stalls_total", unitName: "", helpText: "Commits given up on after the commit timeout (their sends were answered unavailable, to be sent again)"))
        let registry = self.registry
        deadlinesPassed = Dictionary(uniqueKeysWithValues: ["read", "write"].map { kind in
            (kind, registry.makeCounter(descriptor: .init(metricName: "warbler_storage_deadlines_passed_total", unitName: "",
                                                          helpText: "PostgreSQL reads and writes abandoned at storage.postgres_timeout_seconds (the caller was answered unavailable; the connection was closed)"),
                                        labels: [("kind", kind)]))
        })
        deliveries = registry.makeCounter(descriptor: .init(metricName: "warbler_deliveries_total", unitName: "", helpText: "Message frames written to connections"))
        errors = registry.makeCounter(descriptor: .init(metricName: "warbler_errors_total", unitName: "", helpText: "Error frames and error responses sent"))
        sendToAck = registry.makeDurationHistogram(descriptor: .init(metricName: "warbler_send_to_ack_seconds", unitName: "", helpText: "From a send frame's arrival to its acknowledgement"), buckets: latency)
        sendToDeliver = registry.makeDurationHistogram(descriptor: .init(metricName: "warbler_send_to_deliver_seconds", unitName: "", helpText: "From a send frame's arrival to its delivery frame being written to a recipient"), buckets: latency)
        commitSeconds = registry.makeDurationHistogram(descriptor: .init(metricName: "warbler_storage_commit_seconds", unitName: "", helpText: "Duration of one storage commit (a batch of sends)"), buckets: latency)
        batchSize = registry.makeValueHistogram(descriptor: .init(metricName: "warbler_storage_batch_size", unitName: "", helpText: "Sends per storage commit"), buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
        logins = registry.makeCounter(descriptor: .init(metricName: "warbler_logins_total", unitName: "", helpText: "Successful logins"))
        loginFailures = registry.makeCounter(descriptor: .init(metricName: "warbler_login_failures_total", unitName: "", helpText: "Failed or rate-limited logins"))
        refusedConnections = registry.makeCounter(descriptor: .init(metricName: "warbler_connections_refused_total", unitName: "", helpText: "Connections refused at accept: over server.max_connections or server.max_connections_per_address"))
        clusterNotices = registry.makeCounter(descriptor: .init(metricName: "warbler_cluster_notices_sent_total", unitName: "", helpText: "Cluster notices (doorbells and cache invalidations) sent to the other nodes"))
        clusterCatchUpMessages = registry.makeCounter(descriptor: .init(metricName: "warbler_cluster_catch_up_messages_total", unitName: "", helpText: "Messages from other nodes read by a catch-up pass rather than for a doorbell (notices lost or late)"))
        webhookDelivered = registry.makeCounter(descriptor: .init(metricName: "warbler_webhook_deliveries_total", unitName: "", helpText: "Webhook deliveries answered 2xx"))
        webhookFailedAttempts = registry.makeCounter(descriptor: .init(metricName: "warbler_webhook_failed_attempts_total", unitName: "", helpText: "Webhook delivery attempts that failed (refused target, no answer, or not 2xx); each is retried with backoff"))
        webhookDisabled = registry.makeCounter(descriptor: .init(metricName: "warbler_webhook_subscriptions_disabled_total", unitName: "", helpText: "Webhook subscriptions turned off because a delivery failed for webhooks.retry_hours"))
        webhookLatency = registry.makeDurationHistogram(descriptor: .init(metricName: "warbler_webhook_delivery_seconds", unitName: "", helpText: "Duration of one webhook delivery attempt"), buckets: [.milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10)])
        assistant = AssistantMetrics(registry)
        var moderation: [String: Counter] = [:]
        for o in Self.moderationOutcomes {
            moderation[o] = registry.makeCounter(descriptor: .init(metricName: "warbler_moderation_webhook_total", unitName: "",
                                                                   helpText: "Moderation webhook checks by outcome (failed_open: let through, failed_closed: refused)"),
                                                 labels: [("outcome", o)])
        }
        moderationWebhook = moderation
        clusterReconnects = registry.makeCounter(descriptor: .init(metricName: "warbler_cluster_listener_reconnects_total", unitName: "", helpText: "Times the cluster listener's PostgreSQL connection ended or could not be opened"))
    }

    func recordSend(count: Int = 1) {
        sends.increment(by: Int64(count))
        let second = Int64(Date().timeIntervalSince1970)
        recent.withLock { r in
            if r.count != 61 { r = Array(repeating: 0, count: 61) }
            let slot = Int(second % 61)
            // Each slot holds (second << 20) | count: a stale slot is reset when its second is not the current one.
            if r[slot] >> 20 != second { r[slot] = second << 20 }
            r[slot] += Int64(count)
        }
    }

    /// Messages stored in the last 60 seconds.
    public func messagesLastMinute() -> Int {
        let now = Int64(Date().timeIntervalSince1970)
        return recent.withLock { r in
            r.reduce(0) { acc, v in (now - (v >> 20)) < 60 && v != 0 ? acc + Int(v & 0xFFFFF) : acc }
        }
    }

    public func render() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

/// The AI assistant's figures (docs/operations.md, "The AI assistant").
struct AssistantMetrics: Sendable {
    /// Answers by how they ended (`outcome`: ok, timeout, rate_limited, server_error, refused, malformed,
    /// disconnected, unreachable, cancelled).
    let requests: [ChatCompletions.Outcome: Counter]
    /// Questions refused before asking the endpoint (`reason`: user_limit, conversation_limit, busy).
    let refused: [String: Counter]
    /// Answers that failed, whatever the outcome: the alert's input.
    let failures: Counter
    let promptTokens: Counter
    let completionTokens: Counter
    let latency: DurationHistogram
    let firstToken: DurationHistogram

    static let refusalReasons = ["user_limit", "conversation_limit", "busy"]

    init(_ registry: PrometheusCollectorRegistry) {
        func counter(_ name: String, _ help: String, _ label: (String, String)) -> Counter {
            registry.makeCounter(descriptor: .init(metricName: name, unitName: "", helpText: help), labels: [label])
        }
        var requests: [ChatCompletions.Outcome: Counter] = [:]
        for o in ChatCompletions.Outcome.allCases {
            requests[o] = counter("warbler_assistant_requests_total", "AI assistant answers by how they ended", ("outcome", o.rawValue))
        }
        self.requests = requests
        var refused: [String: Counter] = [:]
        for r in Self.refusalReasons {
            refused[r] = counter("warbler_assistant_refused_total", "Questions the AI assistant did not take up (a rate limit, or its queue was full)", ("reason", r))
        }
        self.refused = refused
        failures = registry.makeCounter(descriptor: .init(metricName: "warbler_assistant_failures_total", unitName: "", helpText: "AI assistant answers that failed or were cut off (any outcome but ok)"))
        let tokensHelp = "Tokens the AI assistant used: the endpoint's usage figures, else counted chunks (completion) and an estimate (prompt)"
        promptTokens = counter("warbler_assistant_tokens_total", tokensHelp, ("kind", "prompt"))
        completionTokens = counter("warbler_assistant_tokens_total", tokensHelp, ("kind", "completion"))
        let buckets: [Duration] = [.milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120)]
        latency = registry.makeDurationHistogram(descriptor: .init(metricName: "warbler_assistant_answer_seconds", unitName: "", helpText: "From taking up a question to its complete (or failed) answer"), buckets: buckets)
        firstToken = registry.makeDurationHistogram(descriptor: .init(metricName: "warbler_assistant_first_token_seconds", unitName: "", helpText: "From taking up a question to the first words of its answer"), buckets: buckets)
    }
}

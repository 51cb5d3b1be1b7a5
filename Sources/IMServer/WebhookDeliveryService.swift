import AsyncHTTPClient
import Foundation
import IMCore
import IMStorage
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Delivers the webhook outbox: claims due deliveries (a lease, so nodes sharing a database do not send one twice at
/// once), POSTs them signed, records each attempt, retries with exponential backoff and jitter for
/// `webhooks.retry_hours`, and turns a subscription off when a delivery still fails after that. It runs beside
/// the message path and never on it: a slow or dead endpoint slows only its own deliveries.
struct WebhookDeliveryService: Service {
    let store: SQLStore
    let policy: WebhookTargetPolicy
    let settings: ServerConfig.Webhooks
    let metrics: ServerMetrics
    let logger: Logger
    static let maxResponseBytes = 64 * 1024

    func run() async throws {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .milliseconds(Int64(min(settings.timeoutSeconds, 10) * 1000))))
        configuration.decompression = .disabled
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let poll = Duration.milliseconds(Int64(settings.pollSeconds * 1000))
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let now = nowMillis()
            // Long enough for an attempt (its timeout, and a slow name lookup); a node that died holding the claim
            // leaves the delivery to be retried after it.
            let lease = now + Int64((2 * settings.timeoutSeconds + 5) * 1000)
            let batch: [(WebhookDeliveryRecord, WebhookRecord)]
            do {
                batch = try await store.claimDueDeliveries(now: now, leaseUntil: lease, limit: settings.concurrency)
            } catch {
                logger.warning("reading the webhook outbox failed (retrying): \(error)")
                batch = []
            }
            if batch.isEmpty {
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: poll) }
                continue
            }
            await withTaskGroup(of: Void.self) { group in
                for (delivery, subscription) in batch {
                    group.addTask { await deliver(delivery, to: subscription, http: http) }
                }
            }
        }
        try? await http.shutdown()
    }

    /// One attempt. Its outcome is written to the outbox whatever happens.
    func deliver(_ d: WebhookDeliveryRecord, to s: WebhookRecord, http: HTTPClient) async {
        let started = ContinuousClock.now
        var status: Int64?
        var failure: String?
        do {
            if let e = policy.checkURL(s.url) { throw e }
            guard let host = URL(string: s.url)?.host else { throw IMError.invalid("the webhook URL has no host") }
            try await policy.checkHost(host)
            let timestamp = nowMillis() / 1000
            var request = HTTPClientRequest(url: s.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "Warbler-Webhooks/\(WarblerVersion.version)")
            request.headers.add(name: "X-Warbler-Delivery", value: d.id)
            request.headers.add(name: "X-Warbler-Event", value: d.event.rawValue)
            request.headers.add(name: "X-Warbler-Signature", value: WebhookSignature.header(secret: s.secret, timestamp: timestamp, body: d.payload))
            request.body = .bytes(ByteBuffer(string: d.payload))
            let response = try await http.execute(request, timeout: .milliseconds(Int64(settings.timeoutSeconds * 1000)))
            status = Int64(response.status.code)
            _ = try? await response.body.collect(upTo: Self.maxResponseBytes)
            switch response.status.code {
            case 200..<300: break
            case 300..<400: failure = "answered \(response.status.code); redirects are not followed (subscribe the final URL)"
            default: failure = "answered \(response.status.code)"
            }
        } catch let e as IMError {
            failure = e.message
        } catch {
            failure = "\(error)"
        }
        let latency = started.duration(to: .now)
        let latencyMs = latency.components.seconds * 1000 + latency.components.attoseconds / 1_000_000_000_000_000
        let now = nowMillis()
        var retryAt: Int64?
        if failure != nil, Double(now - d.createdAt) < settings.retryHours * 3_600_000 {
            let wait = WebhookBackoff.delay(afterAttempt: d.attempts + 1, baseSeconds: settings.retryBaseSeconds, maxSeconds: settings.retryMaxSeconds)
            retryAt = now + Int64(wait * 1000)
        }
        metrics.webhookLatency.record(latency)
        if failure == nil { metrics.webhookDelivered.increment() } else { metrics.webhookFailedAttempts.increment() }
        do {
            try await store.recordDeliveryAttempt(id: d.id, delivered: failure == nil, status: status, error: failure.map { String($0.prefix(500)) },
                                                  latencyMs: latencyMs, retryAt: retryAt, now: now)
            if let failure, retryAt == nil {
                // Persistent failure: stop sending to it until its owner turns it back on (the alert fires on the counter).
                let reason = "a delivery failed for \(settings.retryHours) hours; last: \(failure.prefix(300))"
                try await store.setWebhookEnabled(id: s.id, enabled: false, reason: reason)
                metrics.webhookDisabled.increment()
                logger.error("webhook subscription disabled", metadata: ["im.webhook.id": "\(s.id)", "im.webhook.reason": "\(reason)"])
            }
        } catch {
            // The lease runs out and the delivery is tried again: at least once, never lost.
            logger.warning("recording a webhook attempt failed: \(error)", metadata: ["im.webhook.delivery": "\(d.id)"])
        }
    }
}

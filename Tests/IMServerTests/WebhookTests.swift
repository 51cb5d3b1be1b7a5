import DurableFiles
import Foundation
import IMClient
import IMCore
@testable import IMServer
import IMStorage
import Testing

/// The Python verifier of docs/protocol.md ("Verifying a delivery"), run as it is there: an implementation of the
/// signature independent of the server's.
func pythonVerifies(secret: String, header: String, body: String) throws -> Bool {
    let dir = NSTemporaryDirectory() + "warbler-sig-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try Data(body.utf8).write(to: URL(fileURLWithPath: dir + "/body"))
    let script = """
        import hmac, hashlib, os, sys, time

        def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
            parts = dict(p.split("=", 1) for p in header.split(","))
            expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) <= tolerance

        body = open(sys.argv[1], "rb").read()
        sys.exit(0 if verify(os.environ["SECRET"], os.environ["SIGNATURE"], body) else 1)
        """
    let r = try Subprocess.run(["python3", "-c", script, dir + "/body"],
                               environment: ["SECRET": secret, "SIGNATURE": header, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"])
    return r.status == 0
}

/// Outgoing webhooks (issue 13): an outbox written with the messages, signed deliveries to a real loopback
/// receiver, retries with backoff, disabling, the address policy, the delivery log and redelivery.
@Suite(.timeLimit(.minutes(3))) struct WebhookTests {
    static func loopbackAllowed(_ c: inout ServerConfig) {
        c.webhooks.allowedNetworks = ["127.0.0.0/8"]
        c.webhooks.pollSeconds = 0.05
        c.webhooks.timeoutSeconds = 2
    }

    @Test(arguments: Backend.allCases) func everyEventIsDeliveredSignedAndVerifiesIndependently(backend: Backend) async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        try await withServer(backend, Self.loopbackAllowed) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let created = try await admin.client.createWebhook(.init(url: receiver.url()))
            #expect(created.secret.hasPrefix("whsec_") && created.webhook.events.count == 6)
            #expect(try await admin.client.webhooks().map(\.id) == [created.webhook.id])

            let group = try await alice.client.createGroup(name: "team", members: [])
            _ = try await alice.client.addMembers([bob.id], to: group.id)
            let a = try await EventLog.connect(alice)
            let ack = try await a.connection.send(conversation: group.id, text: "hello")
            _ = try await a.connection.edit(conversation: group.id, seq: ack.seq, text: "hello, team")
            _ = try await a.connection.recall(conversation: group.id, seq: ack.seq)
            try await alice.client.removeMember(bob.id, from: group.id)
            await a.close()

            let types = ["conversation.created", "member.added", "message.created", "message.edited", "message.recalled", "member.removed"]
            #expect(await receiver.wait { $0.count >= types.count })
            // Deliveries are not ordered with each other (docs/protocol.md); sorted by their message's seq they are.
            let got = receiver.received.sorted { ($0.json["id"] as? String ?? "").split(separator: "_").last.flatMap { Int($0) } ?? 0
                < ($1.json["id"] as? String ?? "").split(separator: "_").last.flatMap { Int($0) } ?? 0 }
            #expect(got.map(\.type) == types.map(Optional.some), "\(got.map(\.type))")
            for r in got {
                let header = try #require(r.headers["x-warbler-signature"])
                #expect(try pythonVerifies(secret: created.secret, header: header, body: r.body), "signature of \(r.type ?? "?") did not verify")
                #expect(try !pythonVerifies(secret: created.secret + "x", header: header, body: r.body))
                #expect(r.headers["x-warbler-delivery"]?.hasPrefix("whd_") == true)
                #expect(r.headers["x-warbler-event"] == r.type)
                #expect(r.json["conversation"] as? Int == Int(group.id))
            }
            let message = try #require((got[2].json["data"] as? [String: Any])?["message"] as? [String: Any])
            #expect(message["text"] as? String == "hello" && message["seq"] as? Int == Int(ack.seq))
            #expect((got[1].json["data"] as? [String: Any])?["users"] as? [Int] == [Int(bob.id)])

            // The delivery log: every one delivered, with status and latency.
            let log = try await admin.client.webhookDeliveries(created.webhook.id)
            #expect(log.count == types.count && log.allSatisfy { $0.state == "delivered" && $0.lastStatus == 200 && $0.latencyMs != nil })
            // Redeliver: the same delivery id and body again.
            let first = try #require(log.first { $0.event == .messageCreated })
            try await admin.client.redeliverWebhook(created.webhook.id, delivery: first.id)
            #expect(await receiver.wait { $0.count == types.count + 1 })
            #expect(receiver.received.last?.headers["x-warbler-delivery"] == first.id)
            #expect(receiver.received.last?.body == got.first { $0.headers["x-warbler-delivery"] == first.id }?.body)
        }
    }

    @Test func aBotsSubscriptionHearsOnlyItsConversations() async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        try await withServer(.sqlite, Self.loopbackAllowed) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let creds = try await admin.client.adminCreateBot(.init(username: "hookbot"))
            let bot = try IMClient(baseURL: server.baseURL)
            try await bot.useBotToken(creds.token)
            let sub = try await bot.createWebhook(.init(url: receiver.url(), events: [.messageCreated]))
            #expect(sub.webhook.ownerBot == creds.bot.user.id)
            // A bot cannot subscribe to a conversation it is not in, nor see admins' subscriptions.
            let other = try await alice.client.createDirectConversation(with: bob.id)
            await expectIMError(.notFound) { _ = try await bot.createWebhook(.init(url: receiver.url(), conversation: other.id)) }
            _ = try await admin.client.createWebhook(.init(url: receiver.url("/admin"), events: [.memberAdded]))
            #expect(try await bot.webhooks().map(\.id) == [sub.webhook.id])
            await expectIMError(.forbidden) { _ = try await alice.client.webhooks() }

            let withBot = try await alice.client.createDirectConversation(with: creds.bot.user.id)
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: other.id, text: "not for the bot")
            _ = try await a.connection.send(conversation: withBot.id, text: "for the bot")
            await a.close()
            #expect(await receiver.wait { $0.contains { $0.path == "/hook" } })
            try await Task.sleep(for: .milliseconds(300))
            let hook = receiver.received.filter { $0.path == "/hook" }
            #expect(hook.count == 1 && hook.first?.body.contains("for the bot") == true && hook.first?.body.contains("not for") == false)
        }
    }

    @Test func privateTargetsAreRefusedHTTPOnlyToLoopbackAndRedirectsNotFollowed() async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        // No allowed networks: loopback is a private target like any other.
        try await withServer(.sqlite, { $0.webhooks.pollSeconds = 0.05 }) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            await expectIMError(.invalid) { _ = try await admin.client.createWebhook(.init(url: "http://hooks.example.com/x")) }
            await expectIMError(.invalid) { _ = try await admin.client.createWebhook(.init(url: "ftp://127.0.0.1/x")) }
            let sub = try await admin.client.createWebhook(.init(url: receiver.url(), events: [.conversationCreated]))
            _ = try await alice.client.createGroup(name: "g", members: [])
            var log: [API.WebhookDelivery] = []
            for _ in 0..<200 {
                log = try await admin.client.webhookDeliveries(sub.webhook.id)
                if log.first?.attempts ?? 0 > 0 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(log.first?.lastError?.contains("webhooks.allowed_networks") == true, "\(log)")
            #expect(log.first?.state == "pending" && log.first?.lastStatus == nil)
            #expect(receiver.received.isEmpty)
        }
        // Allowed: a redirect is an answer, not followed.
        receiver.answer([302], location: receiver.url("/elsewhere"))
        try await withServer(.sqlite, Self.loopbackAllowed) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let sub = try await admin.client.createWebhook(.init(url: receiver.url(), events: [.conversationCreated]))
            _ = try await alice.client.createGroup(name: "g", members: [])
            #expect(await receiver.wait { !$0.isEmpty })
            try await Task.sleep(for: .milliseconds(300))
            #expect(receiver.received.map(\.path) == ["/hook"])
            let log = try await admin.client.webhookDeliveries(sub.webhook.id)
            #expect(log.first?.lastStatus == 302 && log.first?.lastError?.contains("redirects are not followed") == true)
        }
    }

    @Test func failuresRetryWithBackoffThenDisableTheSubscription() async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        receiver.answer([500])
        try await withServer(.sqlite, {
            Self.loopbackAllowed(&$0)
            $0.webhooks.retryBaseSeconds = 0.1
            $0.webhooks.retryMaxSeconds = 0.4
            $0.webhooks.retryHours = 4.0 / 3600   // four seconds of retries stand for the day in production
        }) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let sub = try await admin.client.createWebhook(.init(url: receiver.url(), events: [.conversationCreated]))
            _ = try await alice.client.createGroup(name: "g", members: [])
            var hook: API.Webhook?
            for _ in 0..<1000 {
                hook = try await admin.client.webhooks().first
                if hook?.enabled == false { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(hook?.enabled == false && hook?.disabledReason?.contains("answered 500") == true, "\(String(describing: hook))")
            let log = try await admin.client.webhookDeliveries(sub.webhook.id)
            #expect(log.first?.state == "failed")
            let attempts = receiver.received.count
            #expect(attempts >= 3 && attempts <= 20, "attempts: \(attempts)")   // backoff, not a hot loop
            #expect(Int64(attempts) == log.first?.attempts)
            let metrics = try await rawRequest(.GET, server.metricsURL)
            #expect(metrics.body.contains("warbler_webhook_subscriptions_disabled_total 1"))

            // Turned back on and redelivered, it goes through.
            receiver.answer([200])
            _ = try await admin.client.setWebhookEnabled(sub.webhook.id, true)
            try await admin.client.redeliverWebhook(sub.webhook.id, delivery: try #require(log.first).id)
            #expect(await receiver.wait { $0.count == attempts + 1 })
            for _ in 0..<100 where try await admin.client.webhookDeliveries(sub.webhook.id).first?.state != "delivered" {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try await admin.client.webhookDeliveries(sub.webhook.id).first?.state == "delivered")
        }
    }

    @Test func aSlowEndpointNeverSlowsMessageDelivery() async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        receiver.answer([200], delay: .seconds(5))
        try await withServer(.sqlite, { Self.loopbackAllowed(&$0); $0.webhooks.timeoutSeconds = 10 }) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            _ = try await admin.client.createWebhook(.init(url: receiver.url(), events: [.messageCreated]))
            let conv = try await alice.client.createDirectConversation(with: bob.id)
            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(bob)
            // Every send is acknowledged and delivered in far less than one answer from the endpoint (5 s), while
            // the endpoint holds every delivery slot.
            var slowest = Duration.zero
            for i in 0..<30 {
                let start = ContinuousClock.now
                _ = try await a.connection.send(conversation: conv.id, text: "m\(i)")
                #expect(await b.waitForMessages(i + 1, in: conv.id, timeout: .seconds(5)))
                slowest = max(slowest, start.duration(to: .now))
            }
            #expect(slowest < .seconds(2.5), "a send waited \(slowest) for the webhook endpoint")
            #expect(await receiver.wait(timeout: .seconds(30)) { $0.count >= 30 })
            await a.close(); await b.close()
        }
    }

    @Test func addressPolicyAndBackoffArithmetic() throws {
        let policy = WebhookTargetPolicy(allowedNetworks: ["10.1.0.0/16"], allowHTTP: false)
        for a in ["10.0.0.1", "127.0.0.1", "169.254.169.254", "192.168.1.1", "172.16.5.4", "100.64.0.1", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "0.0.0.0"] {
            #expect(policy.refusal(try #require(WebhookTargetPolicy.parseIP(a))) != nil, "\(a) should be refused")
        }
        for a in ["10.1.2.3", "93.184.216.34", "2606:4700::1111"] {
            #expect(policy.refusal(try #require(WebhookTargetPolicy.parseIP(a))) == nil, "\(a) should be allowed")
        }
        #expect(policy.checkURL("https://hooks.example.com/x") == nil)
        #expect(policy.checkURL("http://hooks.example.com/x") != nil)
        #expect(policy.checkURL("http://127.0.0.1:9/x") == nil && policy.checkURL("http://[::1]:9/x") == nil)
        #expect(policy.checkURL("https://user:pw@hooks.example.com/x") != nil)
        #expect(IPNetwork("10.0.0.0/33") == nil && IPNetwork("10.0.0.0/8") != nil)
        // Exponential with jitter: attempt n waits between half and all of base·2^(n-1), capped.
        #expect(WebhookBackoff.delay(afterAttempt: 1, baseSeconds: 10, maxSeconds: 3600, random: 0) == 5)
        #expect(WebhookBackoff.delay(afterAttempt: 4, baseSeconds: 10, maxSeconds: 3600, random: 1) == 80)
        #expect(WebhookBackoff.delay(afterAttempt: 30, baseSeconds: 10, maxSeconds: 3600, random: 1) == 3600)
        // The defaults keep retrying for a day: the sum of the shortest waits within 24 h gives at least 20 tries.
        var t = 0.0, n: Int64 = 0
        while t < 24 * 3600 { n += 1; t += WebhookBackoff.delay(afterAttempt: n, baseSeconds: 10, maxSeconds: 3600, random: 0) }
        #expect(n >= 20)
        var c = ServerConfig()
        c.webhooks.allowedNetworks = ["nonsense"]
        #expect(throws: ConfigError.self) { try c.validate() }
    }
}

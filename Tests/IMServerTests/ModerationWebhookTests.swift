import Foundation
import IMClient
import IMCore
@testable import IMServer
import Testing

/// The external moderation webhook: a real HTTP receiver on loopback answers allow, mask or block; a slow or broken
/// one is bounded by the time budget and lets sends through or refuses them as configured.
@Suite(.timeLimit(.minutes(2))) struct ModerationWebhookTests {
    static let secret = "whsec_moderation-test-secret"

    /// A server whose moderation webhook is `receiver`, with the given budget and failure mode.
    static func configure(_ receiver: WebhookReceiver, directory: String, budget: Double = 2, failure: ServerConfig.Moderation.Failure = .open)
        throws -> (inout ServerConfig) -> Void {
        let secretFile = directory + "/moderation-secret"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data((secret + "\n").utf8).write(to: URL(fileURLWithPath: secretFile))
        let url = receiver.url("/moderate")
        return { c in
            c.moderation.webhookUrl = url
            c.moderation.webhookSecretFile = secretFile
            c.moderation.webhookTimeoutSeconds = budget
            c.moderation.webhookFailure = failure
        }
    }

    static func scratch() -> String { NSTemporaryDirectory() + "warbler-modhook-" + UUID().uuidString }

    @Test(arguments: Backend.allCases)
    func theServiceAllowsMasksAndBlocksSignedRequestsAndBlocksAreLogged(backend: Backend) async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        let dir = Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        receiver.answer([200], bodies: [#"{"action":"allow"}"#, #"{"action":"mask","text":"call me at ***"}"#,
                                        #"{"action":"block","reason":"spam link"}"#, #"{"action":"allow"}"#])
        try await withServer(backend, try Self.configure(receiver, directory: dir)) { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: conv, text: "你好 bob")
            _ = try await a.connection.send(conversation: conv, text: "call me at 555")
            await expectIMError(.blocked) { _ = try await a.connection.send(conversation: conv, text: "buy now http://spam") }
            _ = try await a.connection.send(conversation: conv, text: "sorry")
            await a.close()
            #expect(try await bob.client.history(conv).messages.map(\.text) == ["sorry", "call me at ***", "你好 bob"])

            // Every request was signed with the secret, carried the text, its sender and conversation.
            let got = receiver.received
            #expect(got.count == 4)
            for r in got {
                let header = try #require(r.headers["x-warbler-signature"])
                #expect(try pythonVerifies(secret: Self.secret, header: header, body: r.body))
                #expect(r.type == "moderation.check" && (r.json["sender"] as? NSNumber)?.int64Value == alice.id
                        && (r.json["conversation"] as? NSNumber)?.int64Value == conv)
            }
            #expect(got.map { $0.json["text"] as? String } == ["你好 bob", "call me at 555", "buy now http://spam", "sorry"])

            let blocks = try await root.client.moderationBlocks()
            #expect(blocks.count == 1 && blocks[0].source == .webhook && blocks[0].word == "spam link" && blocks[0].user == alice.id)
            let status = try await root.client.moderationStatus()
            #expect(status.webhook == receiver.url("/moderate") && status.webhookFailure == "open")
        }
    }

    @Test func aSlowServiceIsCutOffAtTheBudgetAndFailsOpenOrClosedAsConfigured() async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        let dir = Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The service would answer after 20 s; the budget is 0.3 s. A send bounded by the budget returns well before
        // the service would (the bound below leaves room for a loaded machine), one that waited for it would not.
        receiver.answer([200], delay: .seconds(20), bodies: [#"{"action":"block","reason":"too late to count"}"#])

        // Open: the send goes through after the budget, well before the service would answer.
        try await withServer(.sqlite, try Self.configure(receiver, directory: dir, budget: 0.3, failure: .open)) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let started = ContinuousClock.now
            _ = try await a.connection.send(conversation: conv, text: "slow but allowed")
            let took = started.duration(to: .now)
            #expect(took >= .milliseconds(250) && took < .seconds(10), "took \(took)")
            await a.close()
            #expect(try await bob.client.history(conv).messages.map(\.text) == ["slow but allowed"])
        }

        // Closed: the send is refused after the budget with `unavailable`, and the refusal is logged. (The SDK would
        // retry an `unavailable` send by itself; one attempt shows the server's answer alone.)
        try await withServer(.sqlite, try Self.configure(receiver, directory: dir, budget: 0.3, failure: .closed)) { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice, configuration: .init(maxSendAttempts: 1))
            let started = ContinuousClock.now
            await expectIMError(.unavailable) { _ = try await a.connection.send(conversation: conv, text: "slow and refused") }
            let took = started.duration(to: .now)
            #expect(took >= .milliseconds(250) && took < .seconds(10), "took \(took)")
            await a.close()
            #expect(try await bob.client.history(conv).messages.isEmpty)
            let blocks = try await root.client.moderationBlocks()
            #expect(blocks.map(\.source) == [.webhookUnavailable])
        }
    }

    @Test func aBrokenAnswerIsAFailureNotAVerdict() async throws {
        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        let dir = Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A 500, not JSON, an unknown action, and a redirect (to an answer that would allow it: not followed).
        receiver.answer([500, 200, 200, 307, 200], location: receiver.url("/moderate-elsewhere"),
                        bodies: [#"{"action":"block"}"#, #"not json"#, #"{"action":"shrug"}"#, #"{"action":"allow"}"#, #"{"action":"allow"}"#])
        try await withServer(.sqlite, try Self.configure(receiver, directory: dir, failure: .closed)) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice, configuration: .init(maxSendAttempts: 1))
            for text in ["one", "two", "three", "four"] {
                await expectIMError(.unavailable) { _ = try await a.connection.send(conversation: conv, text: text) }
            }
            await a.close()
            #expect(receiver.received.count == 4)
            #expect(try await bob.client.history(conv).messages.isEmpty)
        }
    }

    @Test func answersAreReadStrictly() {
        func decide(_ status: Int, _ body: String) -> ModerationHook.Outcome {
            ModerationHook.decide(status: status, body: Data(body.utf8), textBytes: 10)
        }
        #expect(decide(200, #"{"action":"allow"}"#) == .decided(.allow))
        #expect(decide(204, #"{"action":"mask","text":"a**"}"#) == .decided(.mask("a**")))
        #expect(decide(200, #"{"action":"block"}"#) == .decided(.block(reason: "refused by the moderation service")))
        #expect(decide(200, #"{"action":"block","reason":"r"}"#) == .decided(.block(reason: "r")))
        for (status, body) in [(500, #"{"action":"allow"}"#), (302, ""), (200, ""), (200, "[]"), (200, #"{"action":"mask"}"#),
                               (200, #"{"action":"mask","text":""}"#), (200, #"{"action":"mask","text":"far too long a text"}"#),
                               (200, #"{"action":"maybe"}"#)] {
            guard case .failed = decide(status, body) else {
                Issue.record("\(status) \(body) should be a failure")
                continue
            }
        }
    }

    @Test func theWebhookNeedsASecretAndASaneBudget() throws {
        var c = ServerConfig()
        c.moderation.webhookUrl = "https://moderation.example.com/check"
        #expect(throws: ConfigError.self) { try c.validate() }
        c.moderation.webhookSecretFile = "/nonexistent/secret"
        try c.validate()
        c.moderation.webhookTimeoutSeconds = 0
        #expect(throws: ConfigError.self) { try c.validate() }
        c.moderation.webhookTimeoutSeconds = 0.5
        c.moderation.webhookUrl = "ftp://moderation.example.com"
        #expect(throws: ConfigError.self) { try c.validate() }
        // http goes only to loopback (as for outgoing webhooks), and the secret file must be readable: at start.
        let policy = WebhookTargetPolicy(allowedNetworks: [], allowHTTP: false)
        c.moderation.webhookUrl = "http://moderation.example.com/check"
        #expect(throws: ConfigError.self) { _ = try ModerationHook.configured(c.moderation, policy: policy, textBytes: 100) }
        c.moderation.webhookUrl = "https://moderation.example.com/check"
        #expect(throws: ConfigError.self) { _ = try ModerationHook.configured(c.moderation, policy: policy, textBytes: 100) }
    }
}

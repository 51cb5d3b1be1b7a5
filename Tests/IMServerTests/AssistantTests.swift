import AsyncHTTPClient
import Foundation
import IMClient
import IMCore
@testable import IMServer
import Logging
import Testing

/// The AI assistant (issue 13) against an OpenAI-compatible endpoint the test runs in process: real HTTP and SSE
/// chunks, including a slow stream, a dropped stream, a 429, a 5xx, a malformed chunk and no answer at all; its rate
/// limits, the per-conversation switch, and its key kept out of logs and the admin API.
@Suite(.timeLimit(.minutes(3))) struct AssistantTests {
    static let key = "sk-test-9f2c7e41d0b8"

    /// A server with the assistant on, asking `fake`; `body` gets the server and the assistant's user id.
    func withAssistant(_ fake: FakeChatCompletions, logger: Logger? = nil, _ configure: @escaping @Sendable (inout ServerConfig) -> Void = { _ in },
                       _ body: (TestServer, UserID) async throws -> Void) async throws {
        let keyDir = NSTemporaryDirectory() + "warbler-ai-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: keyDir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: keyDir) }
        try Data("\(Self.key)\n".utf8).write(to: URL(fileURLWithPath: keyDir + "/ai.key"))
        let base = fake.baseURL
        try await withServer(.sqlite, {
            $0.assistant.enabled = true
            $0.assistant.endpoint = base
            $0.assistant.model = "test-model"
            $0.assistant.keyFile = keyDir + "/ai.key"
            $0.assistant.editIntervalSeconds = 0.05
            $0.assistant.timeoutSeconds = 5
            configure(&$0)
        }, logger: logger) { server in
            var bot: UserID?
            for _ in 0..<250 {
                bot = try? await server.runtime.storage.user(username: "assistant")?.id
                if bot != nil { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            try await body(server, try #require(bot, "the assistant's account was not created within 5 seconds"))
        }
    }

    func withFake(_ body: (FakeChatCompletions) async throws -> Void) async throws {
        let fake = try await FakeChatCompletions()
        do { try await body(fake) } catch {
            await fake.stop()
            throw error
        }
        await fake.stop()
    }

    /// The assistant's answer after `seq` as the user's devices see it: its message with every edit applied, the
    /// edits it took, and its `data.assistant` state. Waits (at most `timeout`) until the state is final.
    func answer(_ log: EventLog, in conv: ConversationID, from bot: UserID, after seq: Int64,
                timeout: Duration = .seconds(30)) async -> (text: String, edits: Int, state: String, message: Message)? {
        let result = Mutexed<(String, Int, String, Message)?>(nil)
        // The condition reads only the events it is handed: the log's lock is held while it runs.
        _ = await log.wait(timeout: timeout) { events in
            let mine = events.compactMap { e -> Message? in
                if case .message(let m) = e, m.conversation == conv, m.sender == bot, m.seq > seq { return m }
                return nil
            }
            guard let first = mine.first(where: { $0.kind == .text }) else { return false }
            let edits = mine.filter { $0.kind == .edit && $0.target == first.seq }
            let last = edits.last ?? first
            let state: String = if case .object(let o)? = last.data, case .string(let s)? = o["assistant"] { s } else { "" }
            result.withLock { $0 = (last.text ?? "", edits.count, state, first) }
            return state == "complete" || state == "failed"
        }
        return result.withLock { $0 }.map { (text: $0.0, edits: $0.1, state: $0.2, message: $0.3) }
    }

    func send(_ log: EventLog, _ conv: ConversationID, _ text: String, mentions: [UserID] = []) async throws -> Int64 {
        let connection = log.connection
        return try await within(.seconds(10)) { try await connection.send(conversation: conv, text: text, mentions: mentions).seq }
    }

    func metrics(_ server: TestServer) async throws -> String {
        try await rawRequest(.GET, server.metricsURL).body
    }

    @Test func answersInItsOneToOneStreamingIntoOneGrowingMessageMarkedComplete() async throws {
        try await withFake { fake in
            fake.script([.stream(["Warbler", " is a chat", " server", " in one file."], gap: .milliseconds(250))])
            try await withAssistant(fake) { server, bot in
                let alice = try await server.user("alice")
                #expect(try await alice.client.user(id: bot).kind == .bot)
                let conv = try await alice.client.createDirectConversation(with: bot)
                let log = try await EventLog.connect(alice)
                let q = try await send(log, conv.id, "What is Warbler?")
                let got = await answer(log, in: conv.id, from: bot, after: q)
                #expect(got?.text == "Warbler is a chat server in one file." && got?.state == "complete", "\(String(describing: got))")
                #expect((got?.edits ?? 0) >= 2, "the answer should grow in place, not arrive at once")
                #expect(got?.message.data == .object(["assistant": .string("streaming")]))
                #expect(log.messages(in: conv.id).filter { $0.sender == bot && $0.kind == .text }.count == 1)
                // Typing while it worked, and no longer once done (the last typing goes out after the last edit).
                func typing(_ events: [IMEvent]) -> [Bool] {
                    events.compactMap { e -> Bool? in if case .typing(let t) = e, t.user == bot { return t.active }; return nil }
                }
                #expect(await log.wait(timeout: .seconds(10)) { typing($0).last == false })
                #expect(typing(log.events).first == true)
                // What the endpoint was asked.
                #expect(fake.lastAuthorization == "Bearer \(Self.key)" && fake.lastModel == "test-model" && fake.lastStream == true)
                #expect(fake.lastMessages.first?.role == "system")
                #expect(fake.lastMessages.last?.role == "user" && fake.lastMessages.last?.content == "alice: What is Warbler?")
                // History shows the final text and state (a device that was offline sees it complete).
                let history = try await alice.client.history(conv.id)
                let stored = history.messages.first { $0.sender == bot && $0.kind == .text }
                #expect(stored?.text == "Warbler is a chat server in one file." && stored?.data == .object(["assistant": .string("complete")]))

                // A second question carries the first exchange as context.
                fake.script([.stream(["Yes."], usage: false)])
                let q2 = try await send(log, conv.id, "Really?")
                #expect(await answer(log, in: conv.id, from: bot, after: q2)?.text == "Yes.")
                #expect(fake.lastMessages.map(\.role) == ["system", "user", "assistant", "user"])
                #expect(fake.lastMessages[2].content == "Warbler is a chat server in one file.")
                let text = try await metrics(server)
                // The first answer's usage figures (12 + 7), then one counted chunk and an estimate for the second.
                #expect(text.contains(#"warbler_assistant_tokens_total{kind="completion"} 8"#), "\(text)")
                #expect(text.contains(#"warbler_assistant_requests_total{outcome="ok"} 2"#))
                #expect(text.contains("warbler_assistant_answer_seconds_count 2"))
                await log.close()
            }
        }
    }

    @Test func failuresBecomeShortAnswersWithBoundedRetries() async throws {
        try await withFake { fake in
            // The timeout leaves room for a loaded machine; the slow and silent cases take it (about 12 s in all).
            try await withAssistant(fake, { $0.assistant.timeoutSeconds = 6; $0.assistant.retries = 1 }) { server, bot in
                let alice = try await server.user("alice")
                let conv = try await alice.client.createDirectConversation(with: bot)
                let log = try await EventLog.connect(alice)
                func ask(_ reply: [FakeChatCompletions.Reply], _ question: String) async throws -> (text: String, state: String)? {
                    fake.script(reply)
                    let q = try await send(log, conv.id, question)
                    return await answer(log, in: conv.id, from: bot, after: q).map { ($0.text, $0.state) }
                }
                var before = fake.requestCount
                let busy = try await ask([.status(429)], "one")
                #expect(busy?.state == "failed" && busy?.text.contains("busy (429)") == true, "\(String(describing: busy))")
                #expect(fake.requestCount - before == 2, "one retry, not more")
                before = fake.requestCount
                let recovered = try await ask([.status(503), .stream(["Back."])], "two")
                #expect(recovered?.text == "Back." && recovered?.state == "complete", "a retry before the first token answers")
                #expect(fake.requestCount - before == 2)
                let failed = try await ask([.status(502)], "three")
                #expect(failed?.text.contains("failed (502)") == true && failed?.text.contains("unavailable") == true, "\(String(describing: failed))")
                let refused = try await ask([.status(401)], "four")
                #expect(refused?.text.contains("refused the request (401)") == true, "\(String(describing: refused))")
                before = fake.requestCount
                let malformed = try await ask([.malformed], "five")
                #expect(malformed?.text.hasPrefix("Par") == true && malformed?.text.contains("not chat-completion JSON") == true, "\(String(describing: malformed))")
                #expect(fake.requestCount - before == 1, "nothing is asked again once words were shown")
                let dropped = try await ask([.dropAfter(["Half an"])], "six")
                #expect(dropped?.text.hasPrefix("Half an") == true && dropped?.text.contains("broke off") == true && dropped?.state == "failed",
                        "\(String(describing: dropped))")
                let slow = try await ask([.stream(["Slow", " and", " slower"], gap: .seconds(4))], "seven")
                #expect(slow?.text.hasPrefix("Slow") == true && slow?.text.contains("within 6 seconds") == true, "\(String(describing: slow))")
                let silent = try await ask([.hang(.seconds(30))], "eight")
                #expect(silent?.text.contains("unavailable") == true && silent?.text.contains("within 6 seconds") == true, "\(String(describing: silent))")
                let text = try await metrics(server)
                for (outcome, n) in [("rate_limited", 1), ("server_error", 1), ("refused", 1), ("malformed", 1), ("disconnected", 1), ("timeout", 2), ("ok", 1)] {
                    #expect(text.contains(#"warbler_assistant_requests_total{outcome="\#(outcome)"} \#(n)"#), "\(outcome)")
                }
                #expect(text.contains("warbler_assistant_failures_total 7"))
                await log.close()
            }
        }
    }

    @Test func aSlowModelNeverSlowsMessagesBetweenPeople() async throws {
        try await withFake { fake in
            // The model sits on the question for a minute; people's messages go on meanwhile.
            fake.script([.hang(.seconds(60))])
            try await withAssistant(fake, { $0.assistant.timeoutSeconds = 60 }) { server, bot in
                let alice = try await server.user("alice"), bob = try await server.user("bob")
                let withBot = try await alice.client.createDirectConversation(with: bot)
                let withBob = try await alice.client.createDirectConversation(with: bob.id)
                let log = try await EventLog.connect(alice)
                let bobLog = try await EventLog.connect(bob)
                _ = try await send(log, withBot.id, "a question the model sits on")
                #expect(try await within(.seconds(15)) { while fake.requestCount == 0 { try await Task.sleep(for: .milliseconds(20)) }; return true })
                for i in 0..<20 { _ = try await send(log, withBob.id, "hello \(i)") }
                #expect(await bobLog.waitForMessages(20, in: withBob.id, timeout: .seconds(30)))
                // All delivered while the model still holds the question: nothing waited for the assistant.
                #expect(fake.requestCount == 1)
                #expect(!log.messages(in: withBot.id).contains { $0.sender == bot }, "the assistant cannot have answered yet")
                await bobLog.close()
                await log.close()
            }
        }
    }

    @Test func inAGroupItAnswersOnlyWhenMentioned() async throws {
        try await withFake { fake in
            fake.script([.stream(["Here you are."])])
            try await withAssistant(fake) { server, bot in
                let alice = try await server.user("alice")
                let group = try await alice.client.createGroup(name: "team", members: [bot])
                let log = try await EventLog.connect(alice)
                _ = try await send(log, group.id, "morning all, @assistant is not asked without a mention")
                try await Task.sleep(for: .milliseconds(500))
                #expect(fake.requestCount == 0)
                let q = try await send(log, group.id, "@Assistant summarize please", mentions: [bot])
                let got = await answer(log, in: group.id, from: bot, after: q)
                #expect(got?.text == "Here you are." && got?.message.replyTo == q)
                #expect(fake.requestCount == 1)
                await log.close()
            }
        }
    }

    @Test func rateLimitsPerUserAndPerConversationAnswerWithOneNote() async throws {
        try await withFake { fake in
            fake.script([.stream(["ok"])])
            try await withAssistant(fake, { $0.assistant.perUserPerMinute = 2; $0.assistant.perConversationPerMinute = 3 }) { server, bot in
                let alice = try await server.user("alice"), bob = try await server.user("bob")
                let conv = try await alice.client.createDirectConversation(with: bot)
                let log = try await EventLog.connect(alice)
                var last: Int64 = 0
                for i in 0..<2 {
                    last = try await send(log, conv.id, "question \(i)")
                    #expect(await answer(log, in: conv.id, from: bot, after: last)?.text == "ok")
                }
                // Over alice's limit: one note, then silence; the endpoint is not asked.
                let over = try await send(log, conv.id, "question 2")
                let note = await answer(log, in: conv.id, from: bot, after: over)
                #expect(note?.text.contains("ask again in") == true && note?.state == "failed", "\(String(describing: note))")
                _ = try await send(log, conv.id, "question 3")
                try await Task.sleep(for: .milliseconds(400))
                #expect(fake.requestCount == 2)
                #expect(log.messages(in: conv.id).filter { $0.sender == bot && $0.kind == .text }.count == 3)

                // In a group: the conversation's limit holds whoever asks.
                let carol = try await server.user("carol")
                let group = try await alice.client.createGroup(name: "g", members: [bot, bob.id, carol.id])
                let bobLog = try await EventLog.connect(bob)
                let carolLog = try await EventLog.connect(carol)
                for (i, asker) in [bobLog, bobLog, carolLog].enumerated() {
                    let q = try await send(asker, group.id, "question \(i)", mentions: [bot])
                    #expect(await answer(asker, in: group.id, from: bot, after: q)?.text == "ok")
                }
                let q = try await send(carolLog, group.id, "carol again", mentions: [bot])
                let full = await answer(carolLog, in: group.id, from: bot, after: q)
                #expect(full?.text.contains("many questions here") == true, "\(String(describing: full))")
                #expect(fake.requestCount == 5)
                let text = try await metrics(server)
                #expect(text.contains(#"warbler_assistant_refused_total{reason="user_limit"} 2"#), "\(text)")
                #expect(text.contains(#"warbler_assistant_refused_total{reason="conversation_limit"} 1"#))
                await carolLog.close()
                await bobLog.close()
                await log.close()
            }
        }
    }

    @Test func adminsTurnItOffPerConversationAndNeverSeeTheKey() async throws {
        try await withFake { fake in
            fake.script([.stream(["on again"])])
            try await withAssistant(fake) { server, bot in
                let admin = try await server.admin()
                let alice = try await server.user("alice")
                let conv = try await alice.client.createDirectConversation(with: bot)
                let token = try #require(await admin.client.session?.accessToken)
                let aliceToken = try #require(await alice.client.session?.accessToken)
                let url = server.baseURL + "/v1/admin/assistant"
                #expect(try await rawRequest(.PUT, url + "/conversations/\(conv.id)", json: #"{"enabled":false}"#, bearer: aliceToken).status == 403)
                #expect(try await rawRequest(.PUT, url + "/conversations/999999", json: #"{"enabled":false}"#, bearer: token).status == 404)
                #expect(try await rawRequest(.PUT, url + "/conversations/\(conv.id)", json: #"{"enabled":false}"#, bearer: token).status == 200)

                let log = try await EventLog.connect(alice)
                _ = try await send(log, conv.id, "anyone there?")
                try await Task.sleep(for: .milliseconds(500))
                #expect(fake.requestCount == 0)
                #expect(log.messages(in: conv.id).allSatisfy { $0.sender != bot })

                let status = try await rawRequest(.GET, url, bearer: token)
                #expect(status.status == 200 && !status.body.contains(Self.key))
                let parsed = try decode(API.AdminAssistant.self, status.body)
                #expect(parsed.enabled && parsed.user == bot && parsed.model == "test-model" && parsed.keyConfigured)
                #expect(parsed.conversations.map(\.conv) == [conv.id] && parsed.conversations.first?.enabled == false)

                #expect(try await rawRequest(.PUT, url + "/conversations/\(conv.id)", json: #"{"enabled":true}"#, bearer: token).status == 200)
                let q = try await send(log, conv.id, "and now?")
                #expect(await answer(log, in: conv.id, from: bot, after: q)?.text == "on again")
                let after = try decode(API.AdminAssistant.self, try await rawRequest(.GET, url, bearer: token).body)
                #expect(after.usage.questions == 1 && after.usage.promptTokens == 12 && after.usage.completionTokens == 7)
                await log.close()
            }
        }
    }

    @Test func theKeyNeverAppearsInLogs() async throws {
        let lines = Mutexed<[String]>([])
        var logger = Logger(label: "test.assistant") { _ in CapturingLogHandler(lines: lines) }
        logger.logLevel = .trace
        try await withFake { fake in
            fake.script([.status(401), .stream(["fine"]), .malformed])
            try await withAssistant(fake, logger: logger, { $0.assistant.retries = 0 }) { server, bot in
                let alice = try await server.user("alice")
                let conv = try await alice.client.createDirectConversation(with: bot)
                let log = try await EventLog.connect(alice)
                for q in ["one", "two", "three"] {
                    let seq = try await send(log, conv.id, q)
                    #expect(await answer(log, in: conv.id, from: bot, after: seq) != nil)
                }
                #expect(fake.requestCount == 3 && fake.lastAuthorization == "Bearer \(Self.key)")
                await log.close()
            }
        }
        let all = lines.withLock { $0 }
        #expect(all.contains { $0.contains("assistant") }, "the test should have seen the assistant's log lines")
        #expect(!all.contains { $0.contains(Self.key) || $0.contains("9f2c7e41") })
    }

    @Test func aPersonNamedAssistantKeepsItOffAndTheServerRunning() async throws {
        let dir = NSTemporaryDirectory() + "warbler-ai-name-" + UUID().uuidString
        let first = try await TestServer(.sqlite, directory: dir)
        _ = try await first.user("assistant")
        await first.stop(remove: false)
        try await withFake { fake in
            let base = fake.baseURL
            let server = try await TestServer(.sqlite, {
                $0.assistant.enabled = true; $0.assistant.endpoint = base; $0.assistant.model = "m"
            }, directory: dir)
            do {
                let person = try #require(try await server.runtime.storage.user(username: "assistant"))
                let alice = try await server.user("alice")
                let conv = try await alice.client.createDirectConversation(with: person.id)
                let log = try await EventLog.connect(alice)
                _ = try await send(log, conv.id, "are you a bot?")
                try await Task.sleep(for: .milliseconds(500))
                #expect(fake.requestCount == 0)
                let status = try await server.runtime.assistantStatus()
                #expect(status.enabled && status.user == nil)
                await log.close()
            } catch {
                await server.stop()
                throw error
            }
            await server.stop()
        }
    }

    @Test func aMissingOrEmptyKeyFileStopsTheServerWithAClearError() async throws {
        let dir = NSTemporaryDirectory() + "warbler-ai-key-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("\n".utf8).write(to: URL(fileURLWithPath: dir + "/empty.key"))
        for (file, words) in [(dir + "/missing.key", "cannot read assistant.key_file"), (dir + "/empty.key", "is empty")] {
            do {
                let server = try await TestServer(.sqlite, {
                    $0.assistant.enabled = true; $0.assistant.endpoint = "http://127.0.0.1:9/v1"; $0.assistant.model = "m"; $0.assistant.keyFile = file
                })
                await server.stop()
                Issue.record("the server started without a readable key")
            } catch let e as ConfigError {
                #expect(e.description.contains(words), "\(e)")
            }
        }
    }

    // MARK: The pure parts

    @Test func theStreamParserHandlesSplitLinesCommentsUsageAndGarbage() throws {
        var p = ChatCompletions.StreamParser()
        #expect(try p.feed(Array(": ping\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"He".utf8)).isEmpty)
        #expect(try p.feed(Array("llo\"}}]}\r\n\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n".utf8))
                == [.content("Hello"), .usage(promptTokens: 3, completionTokens: 4)])
        #expect(try p.feed(Array("data: [DONE]".utf8)).isEmpty)
        #expect(try p.finish() == [.done])
        #expect(throws: ChatCompletions.Failure.self) { try p.feed(Array("data: {nope\n".utf8)) }
        var q = ChatCompletions.StreamParser()
        do {
            _ = try q.feed(Array("data: {\"error\":{\"message\":\"key sk-abc is wrong\"}}\n".utf8))
            Issue.record("an error object should fail the answer")
        } catch {
            #expect(error.outcome == .serverError && !error.description.contains("sk-abc"))
        }
    }

    @Test func theContextKeepsTheNewestWithinTheTokenBudget() {
        let long = String(repeating: "x", count: 400)   // about 104 tokens
        let ctx = ChatCompletions.context(system: "S", history: [("a", false, long), ("b", false, "hi"), ("", true, "yo")], maxTokens: 100)
        #expect(ctx.map(\.role) == ["system", "user", "assistant"] && ctx[1].content == "b: hi")
        // The question itself is always sent, however long.
        #expect(ChatCompletions.context(system: "S", history: [("a", false, long)], maxTokens: 10).count == 2)
        // Chinese costs about a token a character.
        #expect(ChatCompletions.estimatedTokens("你好世界") == 8 && ChatCompletions.estimatedTokens("abcdefgh") == 6)
    }

    @Test func theDraftPostsAtOnceThrottlesEditsAndFinishes() {
        var d = AnswerDraft(interval: .milliseconds(300), maxBytes: 40)
        let t0 = ContinuousClock.now
        let first = d.append("Hello", now: t0)
        #expect(first == .post(text: "Hello", state: .streaming))
        #expect(d.append(" there", now: t0) == .post(text: "Hello there", state: .streaming), "nothing was written yet")
        d.wrote(.post(text: "Hello there", state: .streaming), at: t0)
        #expect(d.append(",", now: t0 + .milliseconds(100)) == nil, "edits wait for the interval")
        #expect(d.append(" you", now: t0 + .milliseconds(350)) == .edit(text: "Hello there, you", state: .streaming))
        #expect(d.finish(failure: nil) == .edit(text: "Hello there, you", state: .complete))
        let cut = d.finish(failure: "the model endpoint's answer broke off")
        #expect(cut.state == .failed && cut.text.utf8.count <= 40 && cut.text.hasSuffix("…"))
        #expect(AnswerDraft(interval: .seconds(1), maxBytes: 4000).finish(failure: "x") == .post(text: "The assistant is unavailable right now: x. Try again in a while.", state: .failed))
        #expect(AnswerDraft.fit("héllo", 4) == "h…" && AnswerDraft.fit("abc", 3) == "abc")
    }

    @Test func configurationIsCheckedWhenTheAssistantIsOn() throws {
        var c = ServerConfig()
        c.assistant.enabled = true
        #expect(throws: ConfigError.self) { try c.validate() }
        c.assistant.endpoint = "api.example.com/v1"
        #expect(throws: ConfigError.self) { try c.validate() }
        c.assistant.endpoint = "https://api.example.com/v1"
        #expect(throws: ConfigError.self) { try c.validate() }
        c.assistant.model = "m"
        try c.validate()
        c.assistant.editIntervalSeconds = 0
        #expect(throws: ConfigError.self) { try c.validate() }
        #expect(Assistant.completionsURL("https://api.example.com/v1/") == "https://api.example.com/v1/chat/completions")
        // Azure OpenAI: a deployment's base, its api-version, and the key in `api-key`.
        #expect(Assistant.completionsURL("https://r.openai.azure.com/openai/deployments/gpt4o", apiVersion: "2024-10-21")
                == "https://r.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21")
        #expect(Assistant.keyHeader("k1", "api-key")! == ("api-key", "k1"))
        #expect(Assistant.keyHeader("k1", "authorization")! == ("Authorization", "Bearer k1"))
        #expect(Assistant.keyHeader("", "authorization") == nil)
        #expect(ServerRuntime.withoutCredentials("https://u:secret@api.example.com/v1") == "https://api.example.com/v1")
    }
}

/// Keeps every log line with its metadata, to look for what must never be logged.
struct CapturingLogHandler: LogHandler {
    let lines: Mutexed<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        lines.withLock { $0.append("\(event.level) \(event.message) \(all) \(event.error.map { "\($0)" } ?? "")") }
    }
}

import AsyncHTTPClient
import Foundation
import IMCore
import IMStorage
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// The built-in AI assistant: a bot that answers in its 1:1 conversations, and in groups when mentioned, through an
/// OpenAI-compatible chat-completions endpoint (docs/bots.md, "The assistant").
///
/// It is off the message path: the commit hands it new messages (`observe`, which only queues, into a bounded
/// buffer), `AssistantService` picks out questions and answers them with at most `concurrency` at once, and a
/// slow or dead endpoint slows only the assistant.
final class Assistant: Sendable {
    let settings: ServerConfig.Assistant
    let store: SQLStore
    let service: IMService
    let hub: Hub
    let metrics: AssistantMetrics
    let logger: Logger
    let textBytes: Int
    /// The API key, sent only in the `Authorization` header; never logged, never in an error's words.
    private let key: String?
    private let botID = LockedBox<UserID?>(nil)
    private let usage = LockedBox(Usage())
    /// New messages from the commit, before they are looked at (bounded: under a flood, the newest wait their turn
    /// or are dropped, never the commit).
    private let incoming: AsyncStream<Message>
    private let incomingInput: AsyncStream<Message>.Continuation
    let perUser: RateLimiter
    let perConversation: RateLimiter
    /// One "too many questions" note per user and conversation a minute, not one per refused question.
    private let notices = RateLimiter(perMinute: 1)

    /// Messages the commit may hand over before the assistant has looked at them.
    static let incomingBuffer = 10_000

    struct Usage: Sendable, Equatable {
        var questions = 0
        var failures = 0
        var promptTokens = 0
        var completionTokens = 0
    }

    init(settings: ServerConfig.Assistant, key: String?, textBytes: Int, store: SQLStore, service: IMService, hub: Hub,
         metrics: AssistantMetrics, logger: Logger) {
        self.settings = settings; self.key = key; self.textBytes = textBytes; self.store = store; self.service = service
        self.hub = hub; self.metrics = metrics; self.logger = logger
        (incoming, incomingInput) = AsyncStream.makeStream(of: Message.self, bufferingPolicy: .bufferingOldest(Self.incomingBuffer))
        perUser = RateLimiter(perMinute: settings.perUserPerMinute)
        perConversation = RateLimiter(perMinute: settings.perConversationPerMinute)
    }

    /// Reads the key file (trimmed). The error names the file, never what is in it.
    static func readKey(_ path: String) throws -> String? {
        guard !path.isEmpty else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError("cannot read assistant.key_file \(path); it must be readable by the server's user (mode 0600, owned by it)")
        }
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty else { throw ConfigError("assistant.key_file \(path) is empty; put the endpoint's API key in it") }
        return key
    }

    var bot: UserID? { botID.withLock { $0 } }
    var usageSoFar: Usage { usage.withLock { $0 } }
    var hasKey: Bool { key != nil }

    /// Called with every committed batch, on the commit's path: keeps people's text messages and returns at once.
    func observe(_ messages: [Message]) {
        guard let bot else { return }
        for m in messages where m.kind == .text && m.sender != bot {
            if case .dropped = incomingInput.yield(m) { metrics.refused["busy"]?.increment() }
        }
    }

    /// The assistant's account: found, or created as a bot without a token (it acts inside the server).
    func ensureAccount() async throws -> UserID {
        let name = settings.username.lowercased()
        if let u = try await store.user(username: name) {
            guard u.profile.kind == .bot else {
                throw ConfigError("assistant.username '\(name)' is a person's account; choose another name for the assistant")
            }
            botID.withLock { $0 = u.id }
            return u.id
        }
        let (_, record) = BotTokens.make(bot: 0, scopes: [.read, .send], now: nowMillis())
        let b = try await store.createBot(username: name, displayName: settings.displayName,
                                          description: "the built-in AI assistant", token: record, now: nowMillis())
        _ = try await store.revokeBotTokens(bot: b.user.id, now: nowMillis())
        botID.withLock { $0 = b.user.id }
        logger.notice("created the assistant's account", metadata: ["im.user": "\(b.user.id)"])
        return b.user.id
    }

    /// Whether `m` asks the assistant: a person's text in a 1:1 with it, or a mention of it in a group it is in,
    /// where an admin has not turned it off.
    func isQuestion(_ m: Message, bot: UserID) async throws -> Bool {
        let info = try await hub.conversationInfo(m.conversation)
        guard info.members[bot] != nil else { return false }
        guard info.type == .direct || (m.mentions ?? []).contains(bot) else { return false }
        guard try await store.user(id: m.sender)?.profile.kind == .user else { return false }   // never bot to bot
        return try await store.assistantEnabled(conversation: m.conversation)
    }

    /// Looks at what the commit handed over and answers the questions, at most `concurrency` at once; a question
    /// that finds `queue_size` others waiting is refused with a note. Ends when `stop` was called and the
    /// questions taken up are answered (or at once, cancelled, when the task is).
    func run(http: HTTPClient) async {
        let bot: UserID
        do { bot = try await ensureAccount() } catch {
            logger.error("the assistant is off: \(error)")
            return
        }
        let (questions, input) = AsyncStream.makeStream(of: Message.self, bufferingPolicy: .bufferingOldest(settings.queueSize))
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withTaskGroup(of: Void.self) { answers in
                    var running = 0   // at least as many as are running: finished ones are reaped when at the cap
                    for await m in questions {
                        if running >= self.settings.concurrency {
                            _ = await answers.next()
                            running -= 1
                        }
                        running += 1
                        answers.addTask { await self.answer(m, bot: bot, http: http) }
                    }
                }
            }
            for await m in incoming {
                do {
                    guard try await isQuestion(m, bot: bot) else { continue }
                } catch {
                    logger.warning("the assistant could not look at a message: \(error)", metadata: ["im.conv": "\(m.conversation)"])
                    continue
                }
                if let wait = perUser.take("u\(m.sender)") {
                    await refuse(m, bot: bot, reason: "user_limit", noticeKey: "u\(m.sender)",
                                 text: "You asked the assistant many questions in a short time; ask again in \(Int(wait.rounded(.up))) seconds.")
                    continue
                }
                if let wait = perConversation.take("c\(m.conversation)") {
                    await refuse(m, bot: bot, reason: "conversation_limit", noticeKey: "c\(m.conversation)",
                                 text: "The assistant has answered many questions here in a short time; ask again in \(Int(wait.rounded(.up))) seconds.")
                    continue
                }
                if case .dropped = input.yield(m) {
                    await refuse(m, bot: bot, reason: "busy", noticeKey: "busy\(m.conversation)",
                                 text: "The assistant is busy with other questions; ask again in a minute.")
                }
            }
            input.finish()
        }
    }

    /// No more messages: `run` answers what it took up and returns.
    func stop() { incomingInput.finish() }

    private func refuse(_ m: Message, bot: UserID, reason: String, noticeKey: String, text: String) async {
        metrics.refused[reason]?.increment()
        guard notices.take(noticeKey) == nil else { return }
        _ = await write(.post(text: text, state: .failed), for: m, bot: bot, target: nil, n: 0, suffix: "n")
    }

    // MARK: Answering

    /// Asks the endpoint with the conversation's recent context and streams the answer into one message: posted at
    /// the first words, edited as it grows (at most once per `edit_interval_seconds`), and edited a last time to
    /// mark it complete. A failure becomes the answer's words. Typing shows until the first words.
    func answer(_ m: Message, bot: UserID, http: HTTPClient) async {
        let started = ContinuousClock.now
        usage.withLock { $0.questions += 1 }
        let draft = LockedBox(AnswerDraft(interval: .milliseconds(Int64(settings.editIntervalSeconds * 1000)), maxBytes: textBytes))
        let target = LockedBox<Int64?>(nil)
        let edits = LockedBox(0)
        await typing(m.conversation, bot: bot, true)

        /// Makes `w` and tells the draft (called from the streaming task only, one write at a time).
        @Sendable func make(_ w: AnswerDraft.Write) async {
            let n = edits.withLock { $0 += 1; return $0 }
            if let seq = await write(w, for: m, bot: bot, target: target.withLock { $0 }, n: n, suffix: "") {
                target.withLock { if $0 == nil { $0 = seq } }
                draft.withLock { $0.wrote(w, at: .now) }
            }
        }

        let timeout = Duration.milliseconds(Int64(settings.timeoutSeconds * 1000))
        let failure: ChatCompletions.Failure? = await withTaskGroup(of: ChatCompletions.Failure??.self) { group in
            group.addTask {
                do {
                    let (request, promptEstimate) = try await self.request(for: m, bot: bot)
                    try await self.stream(request, promptEstimate: promptEstimate, http: http) { piece in
                        let w = draft.withLock { $0.append(piece, now: .now) }
                        if draft.withLock({ $0.pieces }) == 1 { self.metrics.firstToken.record(started.duration(to: .now)) }
                        if let w { await make(w) }
                    }
                    return .some(nil)
                } catch let f as ChatCompletions.Failure {
                    return .some(f)
                } catch is CancellationError {
                    return .some(ChatCompletions.Failure(.cancelled, "the server is shutting down"))
                } catch {
                    self.logger.warning("the assistant could not ask: \(error)", metadata: ["im.conv": "\(m.conversation)"])
                    return .some(ChatCompletions.Failure(.unreachable, "the assistant could not ask the model"))
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : .some(ChatCompletions.Failure(.timeout, "no complete answer within \(Self.seconds(timeout))"))
            }
            group.addTask {
                // Typing expires on clients after a few seconds: say it again until the first words are shown.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(3))
                    if !Task.isCancelled, !draft.withLock({ $0.posted }) { await self.typing(m.conversation, bot: bot, true) }
                }
                return nil
            }
            var outcome: ChatCompletions.Failure?? = nil
            while outcome == nil, let r = await group.next() { outcome = r }
            group.cancelAll()
            return outcome ?? ChatCompletions.Failure(.cancelled, "the server is shutting down")
        }

        let last = draft.withLock { $0.finish(failure: failure?.description) }
        await make(last)
        await typing(m.conversation, bot: bot, false)
        metrics.requests[failure?.outcome ?? .ok]?.increment()
        metrics.latency.record(started.duration(to: .now))
        if let failure {
            metrics.failures.increment()
            usage.withLock { $0.failures += 1 }
            logger.warning("the assistant's answer failed: \(failure.outcome.rawValue): \(failure.description)",
                           metadata: ["im.conv": "\(m.conversation)", "im.seq": "\(m.seq)"])
        }
    }

    static func seconds(_ d: Duration) -> String {
        let s = d.inSeconds
        return s == s.rounded() ? "\(Int(s)) seconds" : String(format: "%.1f seconds", s)
    }

    /// Writes a post or an edit through the same checks as any send (membership, blocks, sizes); the seq written,
    /// or nil when it was refused (the answer was recalled, the bot was removed, …).
    func write(_ w: AnswerDraft.Write, for m: Message, bot: UserID, target: Int64?, n: Int, suffix: String) async -> Int64? {
        let cid = "ai-\(m.conversation)-\(m.seq)\(suffix)"
        do {
            let message: NewMessage
            switch w {
            case .post(let text, let state):
                message = try await service.prepare(ClientFrame.Send(cid: cid, conv: m.conversation, text: text, data: AnswerDraft.data(state),
                                                                     replyTo: try await hub.conversationInfo(m.conversation).type == .group ? m.seq : nil),
                                                    from: bot)
            case .edit(let text, let state):
                guard let target else { return nil }
                var edit = try await service.prepareEdit(ClientFrame.Edit(cid: "\(cid)-e\(n)", conv: m.conversation, seq: target, text: text), from: bot)
                edit.data = AnswerDraft.data(state)
                message = edit
            }
            switch try await store.submit(message).result() {
            case .success(let r): return r.message.kind == .edit ? target : r.message.seq
            case .failure(let e): throw e
            }
        } catch {
            logger.notice("the assistant could not write its answer: \(error)", metadata: ["im.conv": "\(m.conversation)"])
            return nil
        }
    }

    func typing(_ conv: ConversationID, bot: UserID, _ active: Bool) async {
        guard let members = try? await hub.members(of: conv) else { return }
        hub.publishTyping(.init(conv: conv, user: bot, active: active), to: members.keys.filter { $0 != bot })
    }

    /// The request: the system prompt and the conversation's recent text messages up to the question (the
    /// assistant's finished answers as `assistant`, its notes left out), within `context_messages` and
    /// `context_tokens`.
    func request(for m: Message, bot: UserID) async throws -> (HTTPClientRequest, promptEstimate: Int) {
        var recent: [Message] = []
        var before = m.seq + 1
        var scanned = 0
        // Edits, reactions and system events take seqs too: read pages until enough text is found.
        while recent.count < settings.contextMessages, scanned < 2_000 {
            let page = try await store.messages(conversation: m.conversation, before: before, limit: 200)
            guard let oldest = page.last else { break }
            scanned += page.count
            before = oldest.seq
            for x in page where x.kind == .text && x.recalled != true && !(x.text ?? "").isEmpty {
                if x.sender == bot, case .object(let o)? = x.data, o["assistant"] != .string(AnswerDraft.State.complete.rawValue) { continue }
                recent.append(x)
                if recent.count == settings.contextMessages { break }
            }
        }
        recent.reverse()
        let senders = Array(Set(recent.map(\.sender)))
        let names = Dictionary(try await store.users(ids: senders).map { ($0.id, $0.displayName) }, uniquingKeysWith: { a, _ in a })
        let messages = ChatCompletions.context(system: settings.systemPrompt,
                                               history: recent.map { (names[$0.sender] ?? "user \($0.sender)", $0.sender == bot, $0.text ?? "") },
                                               maxTokens: settings.contextTokens)
        let promptEstimate = messages.reduce(0) { $0 + ChatCompletions.estimatedTokens($1.content) }
        var request = HTTPClientRequest(url: Self.completionsURL(settings.endpoint, apiVersion: settings.apiVersion))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.headers.add(name: "User-Agent", value: "warbler/\(WarblerVersion.version)")
        if let key, let (name, value) = Self.keyHeader(key, settings.keyHeader) { request.headers.add(name: name, value: value) }
        let body = ChatCompletions.Request(model: settings.model, messages: messages, maxTokens: settings.maxTokens > 0 ? settings.maxTokens : nil)
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(body)))
        return (request, promptEstimate)
    }

    /// The endpoint's chat-completions URL (Azure OpenAI's deployments also need their `api-version`).
    static func completionsURL(_ endpoint: String, apiVersion: String = "") -> String {
        var base = endpoint
        while base.hasSuffix("/") { base.removeLast() }
        return base + "/chat/completions" + (apiVersion.isEmpty ? "" : "?api-version=\(apiVersion)")
    }

    /// The header that carries the key: `Authorization: Bearer` (OpenAI and every compatible server), or Azure
    /// OpenAI's `api-key`.
    static func keyHeader(_ key: String, _ style: String) -> (String, String)? {
        guard !key.isEmpty else { return nil }
        return style == "api-key" ? ("api-key", key) : ("Authorization", "Bearer \(key)")
    }

    /// Sends the request and hands each piece of content to `onContent` as it arrives. A 429, a 5xx, no connection or
    /// a stream that broke off before any content is asked again (`retries` times, waiting a little longer each
    /// time); nothing is asked again once content came. Token figures go to the metrics.
    func stream(_ request: HTTPClientRequest, promptEstimate: Int, http: HTTPClient, onContent: @Sendable (String) async -> Void) async throws {
        var attempt = 0
        while true {
            attempt += 1
            var contentCame = false
            var pieces = 0
            var usageSeen = false
            do {
                let response: HTTPClientResponse
                do {
                    response = try await http.execute(request, timeout: .milliseconds(Int64(settings.timeoutSeconds * 1000)))
                } catch let e as HTTPClientError where e == .cancelled {
                    throw CancellationError()
                } catch is CancellationError {
                    throw CancellationError()
                } catch let e as HTTPClientError where e == .deadlineExceeded {
                    throw ChatCompletions.Failure(.timeout, "the model did not answer within \(Self.seconds(.milliseconds(Int64(settings.timeoutSeconds * 1000))))")
                } catch {
                    throw ChatCompletions.Failure(.unreachable, "the model endpoint cannot be reached")
                }
                let code = Int(response.status.code)
                guard (200..<300).contains(code) else {
                    _ = try? await response.body.collect(upTo: 64 * 1024)
                    switch code {
                    case 429: throw ChatCompletions.Failure(.rateLimited, "the model endpoint is busy (429)")
                    case 500...: throw ChatCompletions.Failure(.serverError, "the model endpoint failed (\(code))")
                    default: throw ChatCompletions.Failure(.refused, "the model endpoint refused the request (\(code)); an administrator should check the assistant's settings")
                    }
                }
                var parser = ChatCompletions.StreamParser()
                var finished = false
                do {
                    reading: for try await chunk in response.body {
                        for event in try parser.feed(chunk.readableBytesView) {
                            switch event {
                            case .content(let s):
                                contentCame = true
                                pieces += 1
                                await onContent(s)
                            case .usage(let p, let c):
                                usageSeen = true
                                record(prompt: p, completion: c)
                            case .done:
                                finished = true
                                break reading
                            }
                        }
                    }
                    if !finished {
                        for event in try parser.finish() {
                            if case .content(let s) = event { contentCame = true; pieces += 1; await onContent(s) }
                            if case .usage(let p, let c) = event { usageSeen = true; record(prompt: p, completion: c) }
                            if event == .done { finished = true }
                        }
                    }
                } catch let f as ChatCompletions.Failure {
                    throw f
                } catch is CancellationError {
                    throw CancellationError()
                } catch let e as HTTPClientError where e == .cancelled {
                    throw CancellationError()
                } catch let e as HTTPClientError where e == .readTimeout {
                    throw ChatCompletions.Failure(.timeout, "the model endpoint went silent")
                } catch {
                    if Task.isCancelled { throw CancellationError() }
                    throw ChatCompletions.Failure(.disconnected, "the model endpoint's answer broke off")
                }
                guard finished else { throw ChatCompletions.Failure(.disconnected, "the model endpoint's answer broke off") }
                if !usageSeen { record(prompt: promptEstimate, completion: pieces) }
                return
            } catch let f as ChatCompletions.Failure {
                // Without the endpoint's figures: the chunks of what was shown, and the prompt's estimate.
                if !usageSeen && pieces > 0 { record(prompt: promptEstimate, completion: pieces) }
                let again = !contentCame && attempt <= settings.retries && (f.retryable || f.outcome == .disconnected)
                guard again else { throw f }
                logger.info("asking the model endpoint again after: \(f.outcome.rawValue)", metadata: ["im.attempt": "\(attempt)"])
                try await Task.sleep(for: .milliseconds(250 << min(attempt, 5)))
            }
        }
    }

    private func record(prompt: Int, completion: Int) {
        metrics.promptTokens.increment(by: Int64(prompt))
        metrics.completionTokens.increment(by: Int64(completion))
        usage.withLock { $0.promptTokens += prompt; $0.completionTokens += completion }
    }
}

/// Runs the assistant beside the server. On shutdown it stops taking questions; answers being written are cut off
/// with a note (the listeners stop before it, storage after it).
struct AssistantService: Service {
    let assistant: Assistant

    func run() async throws {
        let timeout = assistant.settings.timeoutSeconds
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(Int64(min(timeout, 10) * 1000)), read: .milliseconds(Int64(timeout * 1000)))))
        await cancelWhenGracefulShutdown {
            await withTaskCancellationHandler {
                await assistant.run(http: http)
            } onCancel: {
                assistant.stop()
            }
        }
        // `run` returns early only when the assistant could not start (its account; logged): the server runs on
        // without it, as a service that ended on its own would end the whole group.
        try? await gracefulShutdown()
        try? await http.shutdown()
    }
}

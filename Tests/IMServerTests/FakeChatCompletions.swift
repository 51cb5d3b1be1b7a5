import Foundation
import Hummingbird
import Logging
import NIOCore

/// A small OpenAI-compatible chat-completions endpoint the test runs on 127.0.0.1 (port 0): real HTTP, real
/// server-sent events. Each request is answered by the next scripted `Reply` (the last one repeats); every
/// request's authorization and body are kept.
final class FakeChatCompletions: Sendable {
    enum Reply: Sendable {
        /// 200 with these content pieces as SSE chunks, `gap` apart, then (with `usage`) a usage chunk and `[DONE]`.
        case stream([String], gap: Duration = .milliseconds(20), usage: Bool = true)
        /// 200 and these pieces, then the connection is closed before `[DONE]`.
        case dropAfter([String])
        /// 200, a piece, then a chunk that is not chat-completion JSON.
        case malformed
        /// Only this status (429, 500, 401, …) with an error body.
        case status(Int)
        /// No answer at all (not even the status line) for this long.
        case hang(Duration)
    }
    private struct State {
        var replies: [Reply] = [.stream(["Hello"])]
        var requests: [(authorization: String?, body: Data)] = []
    }
    private let state = Mutexed(State())
    private let portBox = Mutexed<Int?>(nil)
    private let task: Task<Void, any Error>

    var baseURL: String { "http://127.0.0.1:\(portBox.withLock { $0 } ?? 0)/v1" }
    var requestCount: Int { state.withLock { $0.requests.count } }
    var lastAuthorization: String? { state.withLock { $0.requests.last?.authorization } }
    private var lastBody: [String: Any] {
        let data = state.withLock { $0.requests.last?.body } ?? Data()
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }
    /// The `messages` of the last request, as (role, content).
    var lastMessages: [(role: String, content: String)] {
        ((lastBody["messages"] as? [[String: Any]]) ?? []).map { ($0["role"] as? String ?? "", $0["content"] as? String ?? "") }
    }
    var lastModel: String? { lastBody["model"] as? String }
    var lastStream: Bool? { lastBody["stream"] as? Bool }

    func script(_ replies: [Reply]) { state.withLock { $0.replies = replies } }

    static func chunk(_ json: String) -> ByteBuffer { ByteBuffer(string: "data: \(json)\n\n") }
    static func content(_ s: String) -> ByteBuffer {
        let escaped = String(decoding: try! JSONEncoder().encode(s), as: UTF8.self)
        return chunk(#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":\#(escaped)}}]}"#)
    }

    struct Dropped: Error {}

    init() async throws {
        let router = Router()
        let state = self.state
        router.post("/v1/chat/completions") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            let reply = state.withLock { s -> Reply in
                s.requests.append((request.headers[.authorization], Data(buffer: body)))
                return s.replies.count > 1 ? s.replies.removeFirst() : s.replies[0]
            }
            let sse: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
            switch reply {
            case .status(let code):
                return Response(status: .init(code: code), headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(string: #"{"error":{"message":"scripted \#(code)"}}"#)))
            case .hang(let d):
                try await Task.sleep(for: d)
                return Response(status: .serviceUnavailable)
            case .stream(let pieces, let gap, let usage):
                return Response(status: .ok, headers: sse, body: .init { writer in
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    for p in pieces {
                        try await Task.sleep(for: gap)
                        try await writer.write(Self.content(p))
                    }
                    if usage {
                        try await writer.write(Self.chunk(#"{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#))
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                })
            case .dropAfter(let pieces):
                // Throwing from the body closes the connection mid-body (Hummingbird closes the channel).
                return Response(status: .ok, headers: sse, body: .init { writer in
                    for p in pieces { try await writer.write(Self.content(p)) }
                    try await Task.sleep(for: .milliseconds(50))
                    throw Dropped()
                })
            case .malformed:
                return Response(status: .ok, headers: sse, body: .init { writer in
                    try await writer.write(Self.content("Par"))
                    try await writer.write(ByteBuffer(string: "data: {this is not json\n\n"))
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                })
            }
        }
        let portBox = self.portBox
        var logger = Logger(label: "fake-openai")
        logger.logLevel = .critical   // its shutdown with requests cut off mid-stream is expected here
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "fake-openai"),
                              onServerRunning: { channel in portBox.withLock { $0 = channel.localAddress?.port } }, logger: logger)
        task = Task { try await app.runService(gracefulShutdownSignals: []) }
        for _ in 0..<500 where portBox.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
        guard portBox.withLock({ $0 }) != nil else { throw Dropped() }
    }

    /// Stops the endpoint, waiting at most a few seconds (a handler still sleeping in `.hang` is cancelled).
    func stop() async {
        task.cancel()
        let task = self.task
        _ = try? await within(.seconds(5)) { _ = try? await task.value }
    }
}

struct TimedOut: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "did not finish within \(limit)" }
}

/// Runs `body`, and throws `TimedOut` (cancelling it) when it takes longer than `limit`: every network wait in the
/// assistant's tests goes through this or a waiter with its own timeout, so a failure fails instead of hanging.
func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TimedOut(limit: limit) }
        return value
    }
}

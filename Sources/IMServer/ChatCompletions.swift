import Foundation
import IMCore

/// The OpenAI-compatible chat-completions protocol (OpenAI, Azure OpenAI, DeepSeek, Qwen/DashScope, vLLM,
/// llama.cpp's server, Ollama): the request body, the context it carries, and a parser for its `stream: true`
/// server-sent events. No I/O here.
enum ChatCompletions {
    struct ChatMessage: Codable, Sendable, Equatable {
        var role: String
        var content: String
    }

    struct Request: Encodable, Sendable {
        struct StreamOptions: Encodable, Sendable {
            var includeUsage = true
            enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
        }
        var model: String
        var messages: [ChatMessage]
        var stream = true
        /// Asks for a last chunk with `usage` (OpenAI, DeepSeek, DashScope, vLLM; others ignore it).
        var streamOptions = StreamOptions()
        var maxTokens: Int?
        enum CodingKeys: String, CodingKey { case model, messages, stream, streamOptions = "stream_options", maxTokens = "max_tokens" }
    }

    /// What one `data:` event said.
    enum Event: Equatable, Sendable {
        case content(String)
        case usage(promptTokens: Int, completionTokens: Int)
        case done
    }

    /// How an answer ended; the `outcome` label of `warbler_assistant_requests_total`.
    enum Outcome: String, Sendable, CaseIterable {
        case ok
        /// No complete answer within `assistant.timeout_seconds` (or a stream silent that long).
        case timeout
        /// The endpoint answered 429.
        case rateLimited = "rate_limited"
        /// The endpoint answered 5xx, or an `error` object in the stream.
        case serverError = "server_error"
        /// The endpoint refused the request (another 4xx: a wrong key, model or URL).
        case refused
        /// A chunk that is not chat-completion JSON.
        case malformed
        /// The stream broke off before `[DONE]`.
        case disconnected
        /// No connection to the endpoint.
        case unreachable
        /// The server shut down while the answer was being written.
        case cancelled
    }

    /// A failed request, said in words fit for the conversation (never the key, nor what the endpoint answered).
    struct Failure: Error, Equatable, CustomStringConvertible {
        var outcome: Outcome
        var description: String
        init(_ outcome: Outcome, _ description: String) { self.outcome = outcome; self.description = description }

        /// Whether asking again may help (and no answer has been shown yet): 429, 5xx and no connection.
        var retryable: Bool { [.rateLimited, .serverError, .unreachable].contains(outcome) }
    }

    /// Splits a byte stream into SSE lines and turns `data:` lines into events: a state machine fed chunk by chunk
    /// as they arrive (a line may span chunks; `\r\n` and `\n` both end one).
    struct StreamParser {
        private var pending: [UInt8] = []

        mutating func feed(_ bytes: some Sequence<UInt8>) throws(Failure) -> [Event] {
            pending.append(contentsOf: bytes)
            var out: [Event] = []
            var start = 0
            while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                var end = nl
                if end > start, pending[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                out += try Self.event(String(decoding: pending[start..<end], as: UTF8.self))
                start = nl + 1
            }
            pending.removeFirst(start)
            // A line is an event of at most a few kilobytes; one that never ends is not SSE.
            if pending.count > 1 << 20 { throw Failure(.malformed, "the model endpoint sent a line of more than a megabyte") }
            return out
        }

        /// What is left when the stream ends (a last line without a newline).
        mutating func finish() throws(Failure) -> [Event] {
            defer { pending = [] }
            return pending.isEmpty ? [] : try Self.event(String(decoding: pending, as: UTF8.self))
        }

        static func event(_ line: String) throws(Failure) -> [Event] {
            // Blank lines separate events; `:` lines are comments (keep-alives); `event:`, `id:` and `retry:` are not used.
            guard line.hasPrefix("data:") else { return [] }
            let data = line.dropFirst(5).trimmingCharacters(in: .whitespaces)
            if data == "[DONE]" { return [.done] }
            guard let json = try? JSONDecoder().decode(JSONValue.self, from: Data(data.utf8)), case .object(let o) = json else {
                throw Failure(.malformed, "the model endpoint sent a chunk that is not chat-completion JSON")
            }
            if o["error"] != nil { throw Failure(.serverError, "the model endpoint reported an error in its answer") }
            var out: [Event] = []
            if case .array(let choices)? = o["choices"], case .object(let first)? = choices.first,
               case .object(let delta)? = first["delta"], case .string(let text)? = delta["content"], !text.isEmpty {
                out.append(.content(text))
            }
            if case .object(let usage)? = o["usage"], case .number(let p)? = usage["prompt_tokens"], case .number(let c)? = usage["completion_tokens"] {
                out.append(.usage(promptTokens: Int(p), completionTokens: Int(c)))
            }
            if out.isEmpty, o["choices"] == nil, o["usage"] == nil {
                throw Failure(.malformed, "the model endpoint sent a chunk that is not chat-completion JSON")
            }
            return out
        }
    }

    /// About how many tokens `text` costs: a quarter per ASCII character (English is about four characters a token)
    /// and one per other character (a Chinese character is about one), plus a few for the message itself.
    static func estimatedTokens(_ text: String) -> Int {
        var ascii = 0, other = 0
        for u in text.unicodeScalars { if u.isASCII { ascii += 1 } else { other += 1 } }
        return (ascii + 3) / 4 + other + 4
    }

    /// The context sent with a question: the system prompt, then the most recent messages that fit in `maxTokens`
    /// (estimated; the oldest dropped first, the question always kept), the assistant's own as `assistant`, others'
    /// as `user` prefixed with their name.
    static func context(system: String, history: [(name: String, isAssistant: Bool, text: String)], maxTokens: Int) -> [ChatMessage] {
        var kept: [ChatMessage] = []
        var used = estimatedTokens(system)
        for h in history.reversed() {
            let m = h.isAssistant ? ChatMessage(role: "assistant", content: h.text) : ChatMessage(role: "user", content: "\(h.name): \(h.text)")
            let cost = estimatedTokens(m.content)
            if used + cost > maxTokens && !kept.isEmpty { break }
            used += cost
            kept.append(m)
        }
        return [ChatMessage(role: "system", content: system)] + kept.reversed()
    }
}

import IMCore

/// One answer of the assistant as it grows: which writes to make as pieces of it arrive (the first words at once as
/// a new message, then edits at most once per `interval`) and the last one, which marks it complete or failed.
/// A state machine without I/O: the caller makes the write and reports it done with `wrote`.
struct AnswerDraft: Sendable {
    /// The assistant's message's `data.assistant` (docs/protocol.md, "The assistant's messages").
    enum State: String, Sendable {
        case streaming, complete, failed
    }

    enum Write: Equatable, Sendable {
        /// A new text message.
        case post(text: String, state: State)
        /// An edit of the posted one.
        case edit(text: String, state: State)

        var text: String { switch self { case .post(let t, _), .edit(let t, _): t } }
        var state: State { switch self { case .post(_, let s), .edit(_, let s): s } }
    }

    let interval: Duration
    let maxBytes: Int
    /// Everything the endpoint said so far.
    private(set) var text = ""
    /// What the conversation shows (`text` cut to `maxBytes`).
    private(set) var shown = ""
    private(set) var posted = false
    private(set) var pieces = 0
    private var lastWrite: ContinuousClock.Instant?

    init(interval: Duration, maxBytes: Int) {
        self.interval = interval
        self.maxBytes = max(maxBytes, 16)
    }

    /// A piece arrived at `now`: the write to make now, if any (nil while edits are throttled; the text is kept).
    mutating func append(_ piece: String, now: ContinuousClock.Instant) -> Write? {
        text += piece
        pieces += 1
        let body = Self.fit(text, maxBytes)
        guard body != shown, !body.isEmpty else { return nil }
        guard posted else { return .post(text: body, state: .streaming) }
        if let lastWrite, lastWrite.duration(to: now) < interval { return nil }
        return .edit(text: body, state: .streaming)
    }

    /// The write made it to storage at `now`.
    mutating func wrote(_ write: Write, at now: ContinuousClock.Instant) {
        shown = write.text
        posted = true
        lastWrite = now
    }

    /// The last write: the whole answer marked complete, or (with `failure`) what came so far with a note, or a
    /// short message saying the assistant is unavailable.
    func finish(failure: String?) -> Write {
        let state: State = failure == nil ? .complete : .failed
        var body: String
        if let failure {
            body = text.isEmpty ? "The assistant is unavailable right now: \(failure). Try again in a while."
                                : Self.fit(text, Swift.max(maxBytes / 2, maxBytes - 200)) + "\n\n[The answer was cut off: \(failure).]"
        } else {
            body = text.isEmpty ? "(The assistant had no answer.)" : text
        }
        body = Self.fit(body, maxBytes)
        return posted ? .edit(text: body, state: state) : .post(text: body, state: state)
    }

    /// `s` cut to at most `max` UTF-8 bytes on a character boundary, with an ellipsis when cut.
    static func fit(_ s: String, _ max: Int) -> String {
        guard s.utf8.count > max else { return s }
        var out = ""
        var used = 0
        let budget = Swift.max(0, max - 3)   // "…" is three bytes
        for ch in s {
            let n = ch.utf8.count
            if used + n > budget { break }
            out.append(ch)
            used += n
        }
        return out + "…"
    }

    /// `data` of a message or edit in `state`.
    static func data(_ state: State) -> JSONValue { .object(["assistant": .string(state.rawValue)]) }
}

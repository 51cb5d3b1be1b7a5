import Foundation

/// Full-text search over messages: the query's rules, the cursor that pages results, and highlighting. Pure: the
/// storage backends find the messages, this decides what a query means and which parts of a text matched.
public enum Search {
    public static let maxQueryCharacters = 200
    public static let maxTerms = 8

    /// The terms of a query: split on whitespace, repeats dropped; a message matches when its text contains every
    /// term (a substring, ignoring case), which is what works for Chinese, written without spaces.
    public static func terms(_ query: String) throws(IMError) -> [String] {
        let trimmed = query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw IMError.invalid("search needs a query: q=WORDS") }
        guard trimmed.count <= maxQueryCharacters else { throw IMError.invalid("a search query may be at most \(maxQueryCharacters) characters") }
        var out: [String] = []
        for t in trimmed.split(whereSeparator: { $0.isWhitespace }).map(String.init) where !out.contains(where: { $0.lowercased() == t.lowercased() }) {
            out.append(t)
        }
        guard out.count <= maxTerms else { throw IMError.invalid("a search query may have at most \(maxTerms) words") }
        return out
    }

    /// Where the next page starts: the last result's time, conversation and seq (results are newest first).
    public struct Cursor: Sendable, Hashable {
        public var ts: Int64
        public var conversation: ConversationID
        public var seq: Int64
        public init(ts: Int64, conversation: ConversationID, seq: Int64) { self.ts = ts; self.conversation = conversation; self.seq = seq }
        public init(after m: Message) { self.init(ts: m.ts, conversation: m.conversation, seq: m.seq) }

        public var token: String { "\(ts).\(conversation).\(seq)" }
        public init(token: String) throws(IMError) {
            let parts = token.split(separator: ".").compactMap { Int64($0) }
            guard parts.count == 3 else { throw IMError.invalid("'before' must be the 'next' value of a previous search page") }
            self.init(ts: parts[0], conversation: parts[1], seq: parts[2])
        }
    }

    /// The parts of `text` with the places that match a term marked, in order (overlapping matches merged).
    public static func highlight(_ text: String, terms: [String]) -> [API.Segment] {
        var ranges: [Range<String.Index>] = []
        for term in terms where !term.isEmpty {
            var from = text.startIndex
            while from < text.endIndex, let r = text.range(of: term, options: [.caseInsensitive], range: from..<text.endIndex) {
                ranges.append(r)
                from = r.upperBound
            }
        }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var merged: [Range<String.Index>] = []
        for r in ranges {
            if let last = merged.last, r.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                merged.append(r)
            }
        }
        var out: [API.Segment] = []
        var at = text.startIndex
        for r in merged {
            if at < r.lowerBound { out.append(API.Segment(text: String(text[at..<r.lowerBound]), match: false)) }
            out.append(API.Segment(text: String(text[r]), match: true))
            at = r.upperBound
        }
        if at < text.endIndex { out.append(API.Segment(text: String(text[at...]), match: false)) }
        return out
    }
}

extension API {
    /// A piece of a search result's text; `match` marks the pieces that matched the query.
    public struct Segment: Sendable, Codable, Hashable {
        public var text: String
        public var match: Bool
        public init(text: String, match: Bool) { self.text = text; self.match = match }
    }
    public struct SearchHit: Sendable, Codable, Hashable {
        public var message: Message
        /// `message.text` cut into pieces, the matching ones marked.
        public var highlight: [Segment]
        public init(message: Message, highlight: [Segment]) { self.message = message; self.highlight = highlight }
    }
    /// `GET /v1/search`: newest first; pass `next` as `before` for the following page (absent on the last one).
    public struct SearchPage: Sendable, Codable, Hashable {
        public var results: [SearchHit]
        public var next: String?
        public init(results: [SearchHit], next: String?) { self.results = results; self.next = next }
    }
}

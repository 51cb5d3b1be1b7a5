/// An operator's word list, matched in message text ignoring case, as substrings (so Chinese, which has no spaces
/// between words, matches too). Pure; the server holds one and swaps it on reload.
public struct WordFilter: Sendable, Hashable {
    /// The words, lower-cased, longest first (so the longest match wins where words overlap).
    public let words: [[Character]]
    private let byFirst: [Character: [[Character]]]

    /// A filter of `words` (blank ones and repeats dropped).
    public init(_ words: [String]) {
        var seen = Set<String>()
        var list: [[Character]] = []
        for w in words {
            let key = w.trimmingSpaces().lowercased()
            guard !key.isEmpty, seen.insert(key).inserted else { continue }
            list.append(Array(key))
        }
        list.sort { $0.count > $1.count }
        self.words = list
        byFirst = Dictionary(grouping: list, by: { $0[0] })
    }

    /// The filter for a word-list file's text: one word or phrase per line; blank lines and lines starting with `#`
    /// are skipped.
    public init(fileText: String) {
        self.init(fileText.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.trimmingSpaces().hasPrefix("#") })
    }

    public var isEmpty: Bool { words.isEmpty }

    /// The matches in `text`: (start, length) in Characters, left to right, not overlapping.
    public func matches(in text: String) -> [(start: Int, length: Int)] {
        guard !words.isEmpty else { return [] }
        let original = Array(text)
        let lower = original.map { Character($0.lowercased()) }
        var out: [(Int, Int)] = []
        var i = 0
        while i < lower.count {
            var matched = 0
            for w in byFirst[lower[i]] ?? [] where i + w.count <= lower.count && lower[i..<(i + w.count)].elementsEqual(w) {
                matched = w.count
                break
            }
            if matched > 0 { out.append((i, matched)); i += matched } else { i += 1 }
        }
        return out
    }

    /// The first listed word `text` contains, as listed (lower case), or nil.
    public func firstMatch(in text: String) -> String? {
        guard let m = matches(in: text).first else { return nil }
        return String(Array(text)[m.start..<(m.start + m.length)]).lowercased()
    }

    /// `text` with every match replaced by as many `*` as it has characters.
    public func masked(_ text: String) -> String {
        let found = matches(in: text)
        guard !found.isEmpty else { return text }
        var chars = Array(text)
        for m in found { for j in m.start..<(m.start + m.length) { chars[j] = "*" } }
        return String(chars)
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and line breaks (IMCore has no Foundation).
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

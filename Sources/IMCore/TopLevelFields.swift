import Foundation

/// The top-level members of a JSON object as raw text, found without decoding their values, so a frame the
/// decoder refuses can still be answered with its `cid` and with the name of the field at fault.
struct TopLevelFields {
    /// Each member's key and the raw JSON text of its value, in order.
    let members: [(key: String, raw: Substring)]

    /// Nil when `text` is not a JSON object (or its keys cannot be read).
    init?(_ text: String) {
        var out: [(String, Substring)] = []
        let s = text
        var i = s.startIndex
        func skipSpace() { while i < s.endIndex, s[i].isWhitespace { i = s.index(after: i) } }
        /// Moves past a string starting at `i` (a quote); returns its raw text including quotes.
        func scanString() -> Substring? {
            guard i < s.endIndex, s[i] == "\"" else { return nil }
            let start = i
            i = s.index(after: i)
            while i < s.endIndex {
                let c = s[i]
                if c == "\\" {
                    i = s.index(after: i)
                    guard i < s.endIndex else { return nil }
                } else if c == "\"" {
                    i = s.index(after: i)
                    return s[start..<i]
                }
                i = s.index(after: i)
            }
            return nil
        }
        /// Moves past one value; returns its raw text.
        func scanValue() -> Substring? {
            skipSpace()
            guard i < s.endIndex else { return nil }
            let start = i
            if s[i] == "\"" { return scanString() }
            if s[i] == "{" || s[i] == "[" {
                var depth = 0
                while i < s.endIndex {
                    let c = s[i]
                    if c == "\"" { guard scanString() != nil else { return nil }; continue }
                    if c == "{" || c == "[" { depth += 1 }
                    if c == "}" || c == "]" { depth -= 1 }
                    i = s.index(after: i)
                    if depth == 0 { return s[start..<i] }
                }
                return nil
            }
            while i < s.endIndex, s[i] != ",", s[i] != "}", !s[i].isWhitespace { i = s.index(after: i) }
            return start == i ? nil : s[start..<i]
        }
        skipSpace()
        guard i < s.endIndex, s[i] == "{" else { return nil }
        i = s.index(after: i)
        skipSpace()
        if i < s.endIndex, s[i] == "}" { members = []; return }
        while true {
            skipSpace()
            guard let rawKey = scanString(), let key = Self.decodeString(rawKey) else { return nil }
            skipSpace()
            guard i < s.endIndex, s[i] == ":" else { return nil }
            i = s.index(after: i)
            guard let value = scanValue() else { return nil }
            out.append((key, value))
            skipSpace()
            guard i < s.endIndex else { return nil }
            if s[i] == "," { i = s.index(after: i); continue }
            if s[i] == "}" { break }
            return nil
        }
        members = out
    }

    /// The value of `key` if it is a JSON string that decodes.
    func string(_ key: String) -> String? {
        members.last(where: { $0.key == key }).flatMap { Self.decodeString($0.raw) }
    }

    /// The first member whose value is not valid JSON, or is a number where frames only hold integers
    /// (every number field of a client frame is an integer; `data` may hold any JSON).
    func firstBadField() -> (name: String, why: String)? {
        for (key, raw) in members {
            guard let value = try? JSONDecoder().decode([JSONValue].self, from: Data("[\(raw)]".utf8)).first else {
                return (key, "invalid value")
            }
            guard key != "data" else { continue }
            if case .number = value, Int64(raw) == nil { return (key, "wrong type (not an integer)") }
            if case .object = value, let inner = TopLevelFields(String(raw)), let bad = inner.firstBadField() {
                return ("\(key).\(bad.name)", bad.why)
            }
        }
        return nil
    }

    static func decodeString(_ raw: Substring) -> String? {
        try? JSONDecoder().decode([String].self, from: Data("[\(raw)]".utf8)).first
    }
}

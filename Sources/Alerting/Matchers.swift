import Foundation

public enum Matchers {
    /// Parses silence matchers as the CLI takes them: each `NAME=VALUE`, `NAME!=VALUE`, `NAME=~REGEX` or
    /// `NAME!~REGEX`, the value optionally in double quotes; several may share one argument separated by commas.
    public static func parse(_ args: [String]) throws -> [LabelMatcher] {
        var out: [LabelMatcher] = []
        for arg in args {
            for part in split(arg) where !part.trimmingCharacters(in: .whitespaces).isEmpty {
                out.append(try parseOne(part.trimmingCharacters(in: .whitespaces)))
            }
        }
        guard !out.isEmpty else { throw ExprError(offset: 0, reason: "give at least one matcher, such as alertname=DiskAlmostFull") }
        return out
    }

    /// Splits on commas outside double quotes.
    static func split(_ s: String) -> [String] {
        var parts: [String] = [], cur = "", quoted = false, escaped = false
        for ch in s {
            if escaped { cur.append(ch); escaped = false; continue }
            if ch == "\\" { escaped = true; cur.append(ch); continue }
            if ch == "\"" { quoted.toggle() }
            if ch == "," && !quoted { parts.append(cur); cur = "" } else { cur.append(ch) }
        }
        parts.append(cur)
        return parts
    }

    static func parseOne(_ s: String) throws -> LabelMatcher {
        guard let i = s.firstIndex(where: { $0 == "=" || $0 == "!" }) else {
            throw ExprError(offset: 0, reason: "'\(s)' is not a matcher: write NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX")
        }
        let name = String(s[..<i]).trimmingCharacters(in: .whitespaces)
        let rest = s[i...]
        guard let op = [MatchOp.matchesRegex, .notMatchesRegex, .notEqual, .equal].first(where: { rest.hasPrefix($0.rawValue) }) else {
            throw ExprError(offset: 0, reason: "'\(s)': expected =, !=, =~ or !~ after \(name)")
        }
        guard Loader.isLabelName(name) else { throw ExprError(offset: 0, reason: "'\(name)' is not a label name in '\(s)'") }
        var value = String(rest.dropFirst(op.rawValue.count)).trimmingCharacters(in: .whitespaces)
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
            value = String(value.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"").replacingOccurrences(of: "\\\\", with: "\\")
        }
        return try LabelMatcher(name: name, op: op, value: value)
    }
}

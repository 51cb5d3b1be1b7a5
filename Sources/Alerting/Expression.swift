import Foundation

/// How a label matcher compares: equal, not equal, regex match, regex non-match (regexes are fully anchored).
public enum MatchOp: String, Sendable, Codable, CaseIterable {
    case equal = "="
    case notEqual = "!="
    case matchesRegex = "=~"
    case notMatchesRegex = "!~"
}

/// `name OP "value"`: used by selectors and by silences.
public struct LabelMatcher: Sendable, Codable, Equatable, CustomStringConvertible {
    public var name: String
    public var op: MatchOp
    public var value: String

    /// Throws when a regex matcher's pattern does not compile.
    public init(name: String, op: MatchOp, value: String) throws {
        self.name = name
        self.op = op
        self.value = value
        if op == .matchesRegex || op == .notMatchesRegex {
            do { _ = try Regex(value) } catch {
                throw ExprError(offset: 0, reason: "the regex \"\(value)\" for label \(name) does not compile")
            }
        }
    }

    /// A missing label matches as the empty string, as in PromQL.
    public func matches(_ labels: Labels) -> Bool {
        let v = labels[name] ?? ""
        switch op {
        case .equal: return v == value
        case .notEqual: return v != value
        case .matchesRegex: return Self.fullMatch(value, v)
        case .notMatchesRegex: return !Self.fullMatch(value, v)
        }
    }

    static func fullMatch(_ pattern: String, _ text: String) -> Bool {
        guard let r = try? Regex(pattern) else { return false }
        return (try? r.wholeMatch(in: text)) != nil
    }

    public var description: String { "\(name)\(op.rawValue)\"\(Self.escape(value))\"" }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// A metric name with label matchers.
public struct Selector: Sendable, Equatable {
    public var name: String
    public var matchers: [LabelMatcher]

    public func matches(_ labels: Labels) -> Bool {
        labels["__name__"] == name && matchers.allSatisfy { $0.matches(labels) }
    }
}

/// The functions over a range of samples.
public enum RangeFunction: String, Sendable, CaseIterable {
    case rate, increase
    case avgOverTime = "avg_over_time"
    case minOverTime = "min_over_time"
    case maxOverTime = "max_over_time"
}

public enum BinaryOp: String, Sendable {
    case add = "+", sub = "-", mul = "*", div = "/"
    case gt = ">", lt = "<", ge = ">=", le = "<=", eq = "==", ne = "!="
    case and, or, unless

    var isComparison: Bool { [.gt, .lt, .ge, .le, .eq, .ne].contains(self) }
    var isSet: Bool { [.and, .or, .unless].contains(self) }
}

/// A parsed alerting expression.
public indirect enum Expr: Sendable, Equatable {
    case number(Double)
    case selector(Selector)
    case range(RangeFunction, Selector, window: Double)
    case histogramQuantile(Double, Expr)
    case negate(Expr)
    case binary(BinaryOp, Expr, Expr)

    /// Whether the expression yields an instant vector (otherwise a scalar).
    public var isVector: Bool {
        switch self {
        case .number: return false
        case .selector, .range, .histogramQuantile: return true
        case .negate(let e): return e.isVector
        case .binary(_, let l, let r): return l.isVector || r.isVector
        }
    }

    /// The longest range window (seconds) the expression reads; the history keeps at least this much.
    public var longestWindow: Double {
        switch self {
        case .number, .selector: return 0
        case .range(_, _, let w): return w
        case .histogramQuantile(_, let e), .negate(let e): return e.longestWindow
        case .binary(_, let l, let r): return max(l.longestWindow, r.longestWindow)
        }
    }

    /// Parses `text`; anything outside the language throws an `ExprError` with the character offset.
    public static func parse(_ text: String) throws -> Expr {
        // An expression that ends too early is reported at its last character, not after trailing newlines.
        let end = text.count - text.reversed().prefix { $0.isWhitespace }.count
        var p = ExprParser(try ExprLexer.tokens(text), length: end)
        let e = try p.parseOr()
        if let t = p.peek { throw ExprError(offset: t.offset, reason: "unexpected \(t.kind.display) after the end of the expression") }
        return e
    }
}

/// An expression outside the language: `offset` is the 0-based character position in the expression.
public struct ExprError: Error, CustomStringConvertible, Sendable, Equatable {
    public var offset: Int
    public var reason: String
    public var description: String { "\(reason) (at character \(offset + 1))" }
}

/// Parses a duration such as `30s`, `5m`, `2h`, `7d`, `1h30m`, `500ms` into seconds.
public func parseDuration(_ text: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 604800)]
    var rest = Substring(text)
    var total = 0.0
    guard !rest.isEmpty else { return nil }
    while !rest.isEmpty {
        let digits = rest.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let n = Double(digits) else { return nil }
        rest = rest.dropFirst(digits.count)
        guard let unit = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) }) else { return nil }
        rest = rest.dropFirst(unit.0.count)
        total += n * unit.1
    }
    return total
}

/// Writes seconds the way the rules file spells durations (`90s` → `1m30s`).
public func formatDuration(_ seconds: Double) -> String {
    if seconds <= 0 { return "0s" }
    if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
    var s = Int(seconds.rounded())
    var out = ""
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] where s >= size {
        out += "\(s / size)\(unit)"
        s %= size
    }
    return out
}

struct Token: Sendable {
    enum Kind: Equatable, Sendable {
        case ident(String), number(Double), string(String), range(String), punct(String)
        var display: String {
            switch self {
            case .ident(let s): return "'\(s)'"
            case .number(let n): return "number \(n)"
            case .string(let s): return "string \"\(s)\""
            case .range(let s): return "range [\(s)]"
            case .punct(let s): return "'\(s)'"
            }
        }
    }
    var kind: Kind
    var offset: Int
}

enum ExprLexer {
    static func tokens(_ text: String) throws -> [Token] {
        let c = Array(text)
        var i = 0
        var out: [Token] = []
        func isIdentStart(_ ch: Character) -> Bool { ch.isASCII && (ch.isLetter || ch == "_" || ch == ":") }
        func isIdent(_ ch: Character) -> Bool { isIdentStart(ch) || (ch.isASCII && ch.isNumber) }
        while i < c.count {
            let ch = c[i]
            if ch.isWhitespace { i += 1; continue }
            let start = i
            if isIdentStart(ch) {
                while i < c.count && isIdent(c[i]) { i += 1 }
                out.append(Token(kind: .ident(String(c[start..<i])), offset: start))
            } else if (ch.isASCII && ch.isNumber) || (ch == "." && i + 1 < c.count && c[i + 1].isNumber) {
                while i < c.count && (c[i].isNumber || c[i] == "." || c[i] == "e" || c[i] == "E"
                                      || ((c[i] == "+" || c[i] == "-") && (c[i - 1] == "e" || c[i - 1] == "E"))) { i += 1 }
                let s = String(c[start..<i])
                guard let v = Double(s) else { throw ExprError(offset: start, reason: "'\(s)' is not a number") }
                out.append(Token(kind: .number(v), offset: start))
            } else if ch == "\"" || ch == "'" {
                i += 1
                var s = ""
                var closed = false
                while i < c.count {
                    if c[i] == "\\" && i + 1 < c.count {
                        switch c[i + 1] {
                        case "n": s.append("\n")
                        case "\\": s.append("\\")
                        case "\"": s.append("\"")
                        case "'": s.append("'")
                        default: s.append("\\"); s.append(c[i + 1])  // regex escapes such as \. pass through
                        }
                        i += 2
                    } else if c[i] == ch {
                        closed = true
                        i += 1
                        break
                    } else {
                        s.append(c[i])
                        i += 1
                    }
                }
                guard closed else { throw ExprError(offset: start, reason: "unterminated string") }
                out.append(Token(kind: .string(s), offset: start))
            } else if ch == "[" {
                guard let end = c[i...].firstIndex(of: "]") else { throw ExprError(offset: start, reason: "'[' without a closing ']'") }
                out.append(Token(kind: .range(String(c[(i + 1)..<end]).trimmingCharacters(in: .whitespaces)), offset: start))
                i = end + 1
            } else {
                let two = i + 1 < c.count ? String(c[i...(i + 1)]) : ""
                if ["!=", "=~", "!~", ">=", "<=", "=="].contains(two) {
                    out.append(Token(kind: .punct(two), offset: start))
                    i += 2
                } else if "{}(),=<>+-*/".contains(ch) {
                    out.append(Token(kind: .punct(String(ch)), offset: start))
                    i += 1
                } else {
                    throw ExprError(offset: start, reason: "unexpected character '\(ch)'")
                }
            }
        }
        return out
    }
}

struct ExprParser {
    var tokens: [Token]
    var pos = 0
    let length: Int

    init(_ tokens: [Token], length: Int) {
        self.tokens = tokens
        self.length = length
    }

    var peek: Token? { pos < tokens.count ? tokens[pos] : nil }
    /// Where the token `next()` returned starts (the end of the text when there was none).
    var lastOffset: Int { pos - 1 < tokens.count ? tokens[pos - 1].offset : endOffset }
    var endOffset: Int { length }

    mutating func next() -> Token? {
        defer { pos += 1 }
        return peek
    }

    func isPunct(_ p: String) -> Bool { peek?.kind == .punct(p) }
    func isKeyword(_ k: String) -> Bool { peek?.kind == .ident(k) }

    mutating func expect(_ p: String, _ context: String) throws {
        guard isPunct(p) else {
            throw ExprError(offset: peek?.offset ?? endOffset, reason: "expected '\(p)' \(context), found \(peek?.kind.display ?? "the end")")
        }
        pos += 1
    }

    mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        while isKeyword("or") {
            let t = next()!
            let right = try parseAnd()
            try checkSet(.or, left, right, t)
            left = .binary(.or, left, right)
        }
        return left
    }

    mutating func parseAnd() throws -> Expr {
        var left = try parseComparison()
        while isKeyword("and") || isKeyword("unless") {
            let t = next()!
            guard case .ident(let k) = t.kind, let op = BinaryOp(rawValue: k) else { break }
            let right = try parseComparison()
            try checkSet(op, left, right, t)
            left = .binary(op, left, right)
        }
        return left
    }

    func checkSet(_ op: BinaryOp, _ l: Expr, _ r: Expr, _ t: Token) throws {
        guard l.isVector && r.isVector else {
            throw ExprError(offset: t.offset, reason: "'\(op.rawValue)' joins two vectors, not a number")
        }
    }

    mutating func parseComparison() throws -> Expr {
        var left = try parseAdditive()
        while let t = peek, case .punct(let p) = t.kind, let op = BinaryOp(rawValue: p), op.isComparison {
            pos += 1
            if isKeyword("bool") { throw ExprError(offset: peek!.offset, reason: "the 'bool' modifier is not supported: comparisons filter") }
            let right = try parseAdditive()
            guard left.isVector || right.isVector else {
                throw ExprError(offset: t.offset, reason: "comparing two numbers is always true or false: compare a metric with a number")
            }
            left = .binary(op, left, right)
        }
        return left
    }

    mutating func parseAdditive() throws -> Expr {
        var left = try parseMultiplicative()
        while isPunct("+") || isPunct("-") {
            let op: BinaryOp = isPunct("+") ? .add : .sub
            pos += 1
            left = .binary(op, left, try parseMultiplicative())
        }
        return left
    }

    mutating func parseMultiplicative() throws -> Expr {
        var left = try parseUnary()
        while isPunct("*") || isPunct("/") {
            let op: BinaryOp = isPunct("*") ? .mul : .div
            pos += 1
            left = .binary(op, left, try parseUnary())
        }
        return left
    }

    mutating func parseUnary() throws -> Expr {
        if isPunct("-") {
            pos += 1
            let e = try parseUnary()
            if case .number(let n) = e { return .number(-n) }
            return .negate(e)
        }
        if isPunct("+") { pos += 1; return try parseUnary() }
        return try parsePrimary()
    }

    mutating func parsePrimary() throws -> Expr {
        guard let t = next() else { throw ExprError(offset: endOffset, reason: "the expression ends where a metric, number or '(' was expected") }
        switch t.kind {
        case .number(let n):
            return .number(n)
        case .punct("("):
            let e = try parseOr()
            try expect(")", "to close '('")
            return e
        case .ident(let name):
            if ["and", "or", "unless"].contains(name) {
                throw ExprError(offset: t.offset, reason: "'\(name)' needs a vector on its left")
            }
            if isPunct("(") {
                return try parseCall(name, t)
            }
            let sel = try parseSelectorRest(name)
            if let r = peek, case .range = r.kind {
                throw ExprError(offset: r.offset, reason: "a range [\u{2026}] is only allowed inside \(RangeFunction.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return .selector(sel)
        default:
            throw ExprError(offset: t.offset, reason: "unexpected \(t.kind.display): expected a metric, number, function or '('")
        }
    }

    mutating func parseSelectorRest(_ name: String) throws -> Selector {
        var matchers: [LabelMatcher] = []
        if isPunct("{") {
            pos += 1
            while !isPunct("}") {
                guard let lt = next(), case .ident(let label) = lt.kind else {
                    throw ExprError(offset: lastOffset, reason: "expected a label name in the matchers of \(name)")
                }
                guard let ot = next(), case .punct(let o) = ot.kind, let op = MatchOp(rawValue: o) else {
                    throw ExprError(offset: lastOffset, reason: "expected =, !=, =~ or !~ after label \(label)")
                }
                guard let vt = next(), case .string(let value) = vt.kind else {
                    throw ExprError(offset: lastOffset, reason: "expected a quoted value for label \(label)")
                }
                do { matchers.append(try LabelMatcher(name: label, op: op, value: value)) } catch var e as ExprError {
                    e.offset = vt.offset
                    throw e
                }
                if isPunct(",") { pos += 1; continue }
                guard isPunct("}") else {
                    throw ExprError(offset: peek?.offset ?? endOffset, reason: "expected ',' or '}' in the matchers of \(name)")
                }
            }
            pos += 1
        }
        return Selector(name: name, matchers: matchers)
    }

    mutating func parseCall(_ name: String, _ t: Token) throws -> Expr {
        pos += 1  // (
        if name == "histogram_quantile" {
            guard let q = next(), case .number(let phi) = q.kind, (0...1).contains(phi) else {
                throw ExprError(offset: lastOffset, reason: "histogram_quantile takes a quantile between 0 and 1 first")
            }
            try expect(",", "after the quantile")
            let e = try parseOr()
            guard e.isVector else { throw ExprError(offset: q.offset, reason: "histogram_quantile needs a vector of _bucket series") }
            try expect(")", "to close histogram_quantile(")
            return .histogramQuantile(phi, e)
        }
        guard let fn = RangeFunction(rawValue: name) else {
            throw ExprError(offset: t.offset, reason: "unknown function \(name): the language has \((RangeFunction.allCases.map(\.rawValue) + ["histogram_quantile"]).joined(separator: ", "))")
        }
        guard let mt = next(), case .ident(let metric) = mt.kind else {
            throw ExprError(offset: lastOffset, reason: "\(name) takes a metric with a range, such as \(name)(metric[5m])")
        }
        let sel = try parseSelectorRest(metric)
        guard let rt = next(), case .range(let r) = rt.kind else {
            throw ExprError(offset: lastOffset, reason: "\(name) needs a range after the metric, such as [5m]")
        }
        guard let window = parseDuration(r), window > 0 else {
            throw ExprError(offset: rt.offset, reason: "'\(r)' is not a duration: use a number with s, m, h or d, such as 5m")
        }
        try expect(")", "to close \(name)(")
        return .range(fn, sel, window: window)
    }
}

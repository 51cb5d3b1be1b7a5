import Foundation

/// A summary or description: text with `{{ $labels.NAME }}` and `{{ $value }}` substitutions and nothing else.
public struct TextTemplate: Sendable, Equatable {
    enum Part: Sendable, Equatable {
        case text(String)
        case value
        case label(String)
    }
    let parts: [Part]
    public let source: String

    /// Throws a reason when `source` holds a `{{ }}` that is not one of the two substitutions.
    public init(_ source: String) throws {
        self.source = source
        var parts: [Part] = []
        var rest = Substring(source)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw TemplateSyntaxError(reason: "'{{' without a closing '}}'")
            }
            let inner = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            if inner == "$value" {
                parts.append(.value)
            } else if inner.hasPrefix("$labels."), case let name = String(inner.dropFirst("$labels.".count)),
                      !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) {
                parts.append(.label(name))
            } else {
                throw TemplateSyntaxError(reason: "'{{\(rest[open.upperBound..<close.lowerBound])}}' is not {{ $value }} or {{ $labels.NAME }}")
            }
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        self.parts = parts
    }

    /// Fills in the alert's labels (a missing label renders empty) and value.
    public func render(labels: Labels, value: Double) -> String {
        parts.map { part -> String in
            switch part {
            case .text(let s): return s
            case .value: return formatValue(value)
            case .label(let name): return labels[name] ?? ""
            }
        }.joined()
    }
}

struct TemplateSyntaxError: Error {
    var reason: String
}

/// Whole numbers without a fraction; others with up to three decimals (`0.0512` → `0.051`).
public func formatValue(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
    if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
    var s = String(format: "%.3f", v)
    while s.hasSuffix("0") { s.removeLast() }
    if s.hasSuffix(".") { s.removeLast() }
    return s == "-0" || s == "0" ? String(format: "%.3g", v) : s
}

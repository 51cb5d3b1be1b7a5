import Foundation

/// A label set: name → value. `__name__` holds a sample's metric name while it is still a raw selection.
public typealias Labels = [String: String]

/// One sample of a Prometheus text exposition.
public struct Sample: Sendable, Equatable {
    public var name: String
    public var labels: Labels
    public var value: Double
    /// Milliseconds since the epoch when the exposition gave one (alertd stamps samples with the scrape time).
    public var timestamp: Int64?

    public init(name: String, labels: Labels = [:], value: Double, timestamp: Int64? = nil) {
        self.name = name
        self.labels = labels
        self.value = value
        self.timestamp = timestamp
    }

    public static func == (a: Sample, b: Sample) -> Bool {
        a.name == b.name && a.labels == b.labels && a.timestamp == b.timestamp && (a.value == b.value || (a.value.isNaN && b.value.isNaN))
    }
}

/// A line of an exposition that does not follow the text format.
public struct ExpositionError: Error, CustomStringConvertible, Sendable, Equatable {
    public var line: Int
    public var reason: String
    public var description: String { "line \(line): \(reason)" }
}

/// The Prometheus text exposition format (version 0.0.4): `# HELP`/`# TYPE` and other comments are skipped,
/// each other non-empty line is `name{label="value",…} value [timestamp]`.
public enum Exposition {
    public static func parse(_ text: String) throws -> [Sample] {
        var samples: [Sample] = []
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.hasSuffix("\r") ? raw.dropLast() : raw[...]
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.first == "#" { continue }
            do {
                samples.append(try parseLine(Array(trimmed.utf8)))
            } catch let reason as Reason {
                throw ExpositionError(line: lineNumber, reason: reason.text)
            }
        }
        return samples
    }

    struct Reason: Error { var text: String }

    static func isNameStart(_ c: UInt8) -> Bool { (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || c == 58 }
    static func isNameChar(_ c: UInt8) -> Bool { isNameStart(c) || (c >= 48 && c <= 57) }

    static func parseLine(_ b: [UInt8]) throws -> Sample {
        var i = 0
        func skipSpace() { while i < b.count && (b[i] == 32 || b[i] == 9) { i += 1 } }
        guard i < b.count, isNameStart(b[i]) else { throw Reason(text: "expected a metric name") }
        let nameStart = i
        while i < b.count && isNameChar(b[i]) { i += 1 }
        let name = String(decoding: b[nameStart..<i], as: UTF8.self)
        var labels: Labels = [:]
        skipSpace()
        if i < b.count && b[i] == UInt8(ascii: "{") {
            i += 1
            while true {
                skipSpace()
                guard i < b.count else { throw Reason(text: "unterminated label set") }
                if b[i] == UInt8(ascii: "}") { i += 1; break }
                guard isNameStart(b[i]) && b[i] != 58 else { throw Reason(text: "expected a label name") }
                let ls = i
                while i < b.count && isNameChar(b[i]) && b[i] != 58 { i += 1 }
                let label = String(decoding: b[ls..<i], as: UTF8.self)
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: "=") else { throw Reason(text: "expected = after label \(label)") }
                i += 1
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw Reason(text: "expected a quoted value for label \(label)") }
                i += 1
                var value: [UInt8] = []
                var closed = false
                while i < b.count {
                    let c = b[i]
                    if c == UInt8(ascii: "\\") {
                        guard i + 1 < b.count else { break }
                        switch b[i + 1] {
                        case UInt8(ascii: "n"): value.append(10)
                        case UInt8(ascii: "\\"): value.append(92)
                        case UInt8(ascii: "\""): value.append(34)
                        default: throw Reason(text: "unknown escape \\\(Character(UnicodeScalar(b[i + 1]))) in label \(label)")
                        }
                        i += 2
                    } else if c == UInt8(ascii: "\"") {
                        i += 1
                        closed = true
                        break
                    } else {
                        value.append(c)
                        i += 1
                    }
                }
                guard closed else { throw Reason(text: "unterminated value for label \(label)") }
                guard labels[label] == nil else { throw Reason(text: "label \(label) appears twice") }
                labels[label] = String(decoding: value, as: UTF8.self)
                skipSpace()
                guard i < b.count else { throw Reason(text: "unterminated label set") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; break }
                throw Reason(text: "expected , or } after label \(label)")
            }
        }
        skipSpace()
        let vs = i
        while i < b.count && b[i] != 32 && b[i] != 9 { i += 1 }
        guard vs < i else { throw Reason(text: "metric \(name) has no value") }
        let text = String(decoding: b[vs..<i], as: UTF8.self)
        guard let value = parseValue(text) else { throw Reason(text: "value '\(text)' of \(name) is not a number") }
        skipSpace()
        var timestamp: Int64?
        if i < b.count {
            let ts = i
            while i < b.count && b[i] != 32 && b[i] != 9 { i += 1 }
            let t = String(decoding: b[ts..<i], as: UTF8.self)
            guard let v = Int64(t) else { throw Reason(text: "timestamp '\(t)' of \(name) is not an integer") }
            timestamp = v
            skipSpace()
            guard i == b.count else { throw Reason(text: "unexpected text after the timestamp of \(name)") }
        }
        return Sample(name: name, labels: labels, value: value, timestamp: timestamp)
    }

    /// Go's ParseFloat forms the format allows, with NaN and ±Inf spelled as Prometheus writes them.
    static func parseValue(_ s: String) -> Double? {
        switch s.lowercased() {
        case "nan": return .nan
        case "+inf", "inf": return .infinity
        case "-inf": return -.infinity
        default:
            guard let first = s.first, first.isNumber || first == "-" || first == "+" || first == "." else { return nil }
            return Double(s)
        }
    }
}

/// A Prometheus metric family's kind, as the `# TYPE` line names it.
public enum MetricType: String, Sendable {
    case counter, gauge
}

/// A metric family's name, kind and help text: every one the exporter can emit is in `Catalog`.
public struct MetricDescriptor: Sendable, Hashable {
    public let name: String
    public let type: MetricType
    public let help: String
    /// The label names its series carry, in the order the docs list them.
    public let labels: [String]

    public init(_ name: String, _ type: MetricType, _ help: String, labels: [String] = []) {
        self.name = name; self.type = type; self.help = help; self.labels = labels
    }
}

/// The samples of one scrape, rendered in the Prometheus text exposition format 0.0.4.
///
/// Families come out sorted by name with one HELP and one TYPE line each; a series (name and label set) added twice
/// keeps its first value, and a name or label that the format cannot carry is refused: both are recorded in
/// `problems` so the scrape still answers.
public struct MetricSet: Sendable {
    struct Family: Sendable {
        var descriptor: MetricDescriptor
        var samples: [(labels: [(String, String)], value: Double)] = []
        var keys: Set<String> = []
    }

    private(set) var families: [String: Family] = [:]
    /// What was refused while building the set (duplicate series, bad names, a name reused with another type).
    public private(set) var problems: [String] = []

    public init() {}

    /// Adds one sample of `descriptor` without labels.
    public mutating func add(_ descriptor: MetricDescriptor, _ value: Double) { add(descriptor, [:], value) }

    /// Adds one sample of `descriptor` with `labels`.
    public mutating func add(_ descriptor: MetricDescriptor, _ labels: [String: String], _ value: Double) {
        guard Self.validName(descriptor.name, colons: true) else {
            problems.append("refused the metric name '\(descriptor.name)'")
            return
        }
        let sorted = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if let bad = sorted.first(where: { !Self.validName($0.0, colons: false) || $0.0.hasPrefix("__") }) {
            problems.append("refused the label name '\(bad.0)' on \(descriptor.name)")
            return
        }
        var family = families[descriptor.name] ?? Family(descriptor: descriptor)
        guard family.descriptor.type == descriptor.type else {
            problems.append("\(descriptor.name) was added as a \(descriptor.type.rawValue) and a \(family.descriptor.type.rawValue); kept the first")
            return
        }
        let key = sorted.map { "\($0.0)=\($0.1)" }.joined(separator: "\u{0}")
        guard family.keys.insert(key).inserted else {
            problems.append("duplicate series \(descriptor.name){\(sorted.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ","))}; kept the first")
            return
        }
        family.samples.append((sorted, value))
        families[descriptor.name] = family
    }

    /// Adds every sample of `other` (same rules as `add`).
    public mutating func merge(_ other: MetricSet) {
        for name in other.families.keys.sorted() {
            let f = other.families[name]!
            for s in f.samples { add(f.descriptor, Dictionary(uniqueKeysWithValues: s.labels), s.value) }
        }
        problems += other.problems
    }

    /// The family names present, sorted.
    public var names: [String] { families.keys.sorted() }

    /// The value of the series `name` with exactly `labels`, if present.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let sorted = labels.sorted { $0.key < $1.key }
        return families[name]?.samples.first { s in
            s.labels.count == sorted.count && zip(s.labels, sorted).allSatisfy { pair in pair.0.0 == pair.1.key && pair.0.1 == pair.1.value }
        }?.value
    }

    /// Every series of `name`: its labels and value.
    public func series(_ name: String) -> [(labels: [String: String], value: Double)] {
        (families[name]?.samples ?? []).map { (Dictionary(uniqueKeysWithValues: $0.labels), $0.value) }
    }

    /// The text exposition format, version 0.0.4.
    public func render() -> String {
        var out = ""
        for name in families.keys.sorted() {
            let f = families[name]!
            out += "# HELP \(name) \(Self.escapeHelp(f.descriptor.help))\n"
            out += "# TYPE \(name) \(f.descriptor.type.rawValue)\n"
            for s in f.samples {
                out += name
                if !s.labels.isEmpty {
                    out += "{" + s.labels.map { "\($0.0)=\"\(Self.escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
                }
                out += " " + Self.format(s.value) + "\n"
            }
        }
        return out
    }

    /// The content type a scraper expects for `render()`.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// HELP text escapes backslash and newline.
    static func escapeHelp(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Label values escape backslash, double quote and newline.
    static func escapeLabelValue(_ s: String) -> String {
        var out = ""
        for ch in s {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Whole numbers without a fraction, others in Swift's shortest round-trip form (which Go's ParseFloat reads),
    /// and the format's spellings of infinity and NaN.
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v == .infinity { return "+Inf" }
        if v == -.infinity { return "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; the same without colons for label names.
    static func validName(_ s: String, colons: Bool) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        func letter(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || (colons && c == ":") }
        guard letter(first) else { return false }
        return s.unicodeScalars.allSatisfy { letter($0) || ($0 >= "0" && $0 <= "9") }
    }
}

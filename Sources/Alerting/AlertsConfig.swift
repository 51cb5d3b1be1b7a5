import AlertReceivers
import Foundation
import Yams

public enum Severity: String, Codable, Sendable, CaseIterable, Comparable {
    case info, warning, critical

    var rank: Int { Severity.allCases.firstIndex(of: self)! }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// An HTTP(S) endpoint serving the Prometheus text format.
public struct ScrapeTarget: Sendable, Equatable {
    public var job: String
    public var url: String
    /// PEM file of the CA that signed an https target's certificate (the system trust store otherwise).
    public var caFile: String?

    public init(job: String, url: String, caFile: String? = nil) {
        self.job = job
        self.url = url
        self.caFile = caFile
    }

    /// `host:port` of the URL, the `instance` label of what it serves.
    public var instance: String {
        guard let u = URL(string: url), let host = u.host else { return url }
        return "\(host):\(u.port ?? (u.scheme == "https" ? 443 : 80))"
    }
}

/// One alerting rule.
public struct Rule: Sendable {
    public var name: String
    public var expr: Expr
    public var exprText: String
    /// Seconds the expression must hold before the alert fires (0: at once).
    public var forSeconds: Double
    public var severity: Severity
    public var labels: Labels
    public var summary: TextTemplate
    public var description: TextTemplate
    /// Where the rule starts in its file.
    public var line: Int
}

/// Which alerts go to which receivers, and how they are grouped.
public struct Route: Sendable {
    /// Empty: any severity.
    public var severities: [Severity]
    /// Label equality the alert must match.
    public var match: Labels
    public var receivers: [String]
    public var groupBy: [String]
    public var groupWait: Double
    /// Keep looking at later routes after this one matched.
    public var continueMatching: Bool

    public func matches(_ labels: Labels, severity: Severity) -> Bool {
        (severities.isEmpty || severities.contains(severity)) && match.allSatisfy { labels[$0.key] == $0.value }
    }
}

/// While a firing alert matches `source`, alerts matching `target` that agree with it on every `equal` label send
/// no notifications (a critical disk alert mutes the warning one for the same mount).
public struct InhibitRule: Sendable, Equatable {
    public var source: Labels
    public var target: Labels
    public var equal: [String]

    public init(source: Labels, target: Labels, equal: [String]) {
        self.source = source
        self.target = target
        self.equal = equal
    }
}

/// `/etc/warbler/alerts.yaml`: global settings, targets, rules, routes and receivers.
public struct AlertsConfig: Sendable {
    public var scrapeInterval: Double = 15
    public var evaluationInterval: Double = 15
    public var scrapeTimeout: Double = 10
    public var stateFile = "/var/lib/warbler/alertd/state.json"
    public var listenHost = "127.0.0.1"
    public var listenPort = 9102
    /// The control token's file (`global.control_token_file`); nil: `control.token` beside the state file.
    public var controlTokenFile: String?
    public var externalURL = ""
    public var repeatInterval: [Severity: Double] = [.info: 86400, .warning: 4 * 3600, .critical: 3600]
    public var targets: [ScrapeTarget] = []
    public var rules: [Rule] = []
    public var routes: [Route] = []
    public var inhibitRules: [InhibitRule] = []
    public var receivers: [ReceiverConfig] = []

    public init() {}

    /// The longest window any rule reads: how much history alertd keeps.
    public var retention: Double { rules.map(\.expr.longestWindow).max() ?? 0 }
    /// How stale the newest sample may be for a selection to still see it.
    public var lookback: Double { 2 * scrapeInterval + 1 }
    /// The control API's address for clients.
    public var controlURL: String {
        let host = listenHost.contains(":") ? "[\(listenHost)]" : listenHost
        return "http://\(host):\(listenPort)"
    }

    /// Where the control token is: alertd creates it (0600, its own user's) on its first start; silences need it.
    public var controlTokenPath: String {
        controlTokenFile ?? ((stateFile as NSString).deletingLastPathComponent + "/control.token")
    }

    /// Reads and validates `path`.
    public static func load(path: String) throws -> AlertsConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw AlertsConfigError(file: path, line: 0, reason: "cannot read the file: \(error.localizedDescription)")
        }
        return try parse(text, file: path)
    }

    /// Parses and validates a rules file's text; the first problem throws with its line and reason.
    public static func parse(_ text: String, file: String = "alerts.yaml") throws -> AlertsConfig {
        var loader = Loader(file: file)
        return try loader.load(text)
    }
}

/// A rules file that is not valid: `file:line: reason`.
public struct AlertsConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    public var line: Int
    public var reason: String
    public var description: String { line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
}

struct Loader {
    let file: String

    func fail(_ node: Node?, _ reason: String) -> AlertsConfigError {
        AlertsConfigError(file: file, line: node?.mark?.line ?? 0, reason: reason)
    }

    func pairs(_ node: Node, _ what: String, allowed: [String]) throws -> [(key: String, keyNode: Node, value: Node)] {
        guard let m = node.mapping else { throw fail(node, "\(what) must be a mapping of keys to values") }
        var out: [(String, Node, Node)] = []
        for (k, v) in m {
            guard let key = k.string else { throw fail(k, "\(what): keys must be plain words") }
            guard allowed.contains(key) else {
                throw fail(k, "\(what): unknown key '\(key)' (known: \(allowed.joined(separator: ", ")))")
            }
            guard !out.contains(where: { $0.0 == key }) else { throw fail(k, "\(what): key '\(key)' appears twice") }
            out.append((key, k, v))
        }
        return out
    }

    func string(_ node: Node, _ what: String) throws -> String {
        guard let s = node.scalar?.string else { throw fail(node, "\(what) must be a single value") }
        return s
    }

    func duration(_ node: Node, _ what: String, allowZero: Bool = false) throws -> Double {
        let s = try string(node, what)
        guard let d = parseDuration(s), allowZero || d > 0 else {
            throw fail(node, "\(what) '\(s)' is not a duration: write a number with ms, s, m, h or d, such as 30s or 5m")
        }
        return d
    }

    func stringList(_ node: Node, _ what: String) throws -> [String] {
        guard let seq = node.sequence else { throw fail(node, "\(what) must be a list") }
        return try seq.map { try string($0, what) }
    }

    func labelMap(_ node: Node, _ what: String) throws -> Labels {
        guard let m = node.mapping else { throw fail(node, "\(what) must be a mapping of label names to values") }
        var out: Labels = [:]
        for (k, v) in m {
            guard let key = k.string, Self.isLabelName(key) else { throw fail(k, "\(what): '\(k.string ?? "?")' is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)") }
            out[key] = try string(v, "\(what).\(key)")
        }
        return out
    }

    static func isLabelName(_ s: String) -> Bool {
        guard let f = s.first, f.isASCII, f.isLetter || f == "_" else { return false }
        return s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
    }

    func severity(_ node: Node, _ what: String) throws -> Severity {
        let s = try string(node, what)
        guard let sev = Severity(rawValue: s) else { throw fail(node, "\(what) '\(s)' must be info, warning or critical") }
        return sev
    }

    mutating func load(_ text: String) throws -> AlertsConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch let e as YamlError {
            throw AlertsConfigError(file: file, line: Self.yamlErrorLine(e), reason: "not valid YAML: \(e)")
        }
        guard let root else { throw AlertsConfigError(file: file, line: 0, reason: "the file is empty") }
        var c = AlertsConfig()
        var rulesSeen = false
        for (key, _, value) in try pairs(root, "the file", allowed: ["global", "targets", "rules", "routes", "inhibit_rules", "receivers"]) {
            switch key {
            case "global": try loadGlobal(value, &c)
            case "targets":
                guard let seq = value.sequence else { throw fail(value, "targets must be a list") }
                for t in seq { c.targets.append(try target(t)) }
            case "rules":
                rulesSeen = true
                guard let seq = value.sequence else { throw fail(value, "rules must be a list") }
                for r in seq {
                    let rule = try rule(r)
                    if c.rules.contains(where: { $0.name == rule.name && $0.severity == rule.severity }) {
                        throw fail(r, "rule \(rule.name) with severity \(rule.severity.rawValue) appears twice")
                    }
                    c.rules.append(rule)
                }
            case "routes":
                guard let seq = value.sequence else { throw fail(value, "routes must be a list") }
                for r in seq { c.routes.append(try route(r)) }
            case "inhibit_rules":
                guard let seq = value.sequence else { throw fail(value, "inhibit_rules must be a list") }
                for r in seq { c.inhibitRules.append(try inhibitRule(r)) }
            default:
                guard let seq = value.sequence else { throw fail(value, "receivers must be a list") }
                for r in seq {
                    let rc = try receiver(r)
                    if c.receivers.contains(where: { $0.name == rc.name }) { throw fail(r, "receiver \(rc.name) appears twice") }
                    c.receivers.append(rc)
                }
            }
        }
        if !rulesSeen { throw AlertsConfigError(file: file, line: 0, reason: "the file has no rules: list (an empty list is allowed)") }
        // Every receiver a route names must exist.
        if let seq = root.mapping?["routes"]?.sequence {
            for (i, r) in c.routes.enumerated() {
                for name in r.receivers where !c.receivers.contains(where: { $0.name == name }) {
                    throw fail(seq[i], "route \(i + 1) names receiver '\(name)', which is not in receivers:")
                }
            }
        }
        return c
    }

    static func yamlErrorLine(_ e: YamlError) -> Int {
        switch e {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return 0
        }
    }

    func loadGlobal(_ node: Node, _ c: inout AlertsConfig) throws {
        let keys = ["scrape_interval", "scrape_timeout", "evaluation_interval", "state_file", "listen", "external_url", "repeat_interval",
                    "control_token_file"]
        for (key, _, v) in try pairs(node, "global", allowed: keys) {
            switch key {
            case "scrape_interval": c.scrapeInterval = try duration(v, "global.scrape_interval")
            case "scrape_timeout": c.scrapeTimeout = try duration(v, "global.scrape_timeout")
            case "evaluation_interval": c.evaluationInterval = try duration(v, "global.evaluation_interval")
            case "state_file":
                c.stateFile = try string(v, "global.state_file")
                guard c.stateFile.hasPrefix("/") else { throw fail(v, "global.state_file must be an absolute path") }
            case "listen":
                let s = try string(v, "global.listen")
                guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
                    throw fail(v, "global.listen '\(s)' must be HOST:PORT, such as 127.0.0.1:9102")
                }
                let host = String(s[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                guard ["127.0.0.1", "::1", "localhost"].contains(host) else {
                    throw fail(v, "global.listen: the alert list needs no authentication, so the control API listens on loopback only (127.0.0.1 or ::1), not \(host)")
                }
                c.listenHost = host
                c.listenPort = port
            case "external_url": c.externalURL = try string(v, "global.external_url")
            case "control_token_file":
                c.controlTokenFile = try string(v, "global.control_token_file")
                guard c.controlTokenFile?.hasPrefix("/") == true else { throw fail(v, "global.control_token_file must be an absolute path") }
            default:
                for (sk, _, sv) in try pairs(v, "global.repeat_interval", allowed: Severity.allCases.map(\.rawValue)) {
                    c.repeatInterval[Severity(rawValue: sk)!] = try duration(sv, "global.repeat_interval.\(sk)")
                }
            }
        }
    }

    func target(_ node: Node) throws -> ScrapeTarget {
        var job: String?, url: String?, ca: String?
        for (key, _, v) in try pairs(node, "a target", allowed: ["job", "url", "ca_file"]) {
            switch key {
            case "job": job = try string(v, "target job")
            case "url": url = try string(v, "target url")
            default: ca = try string(v, "target ca_file")
            }
        }
        guard let job, !job.isEmpty else { throw fail(node, "a target needs job: (a name, such as exporter)") }
        guard let url, let u = URL(string: url), u.scheme == "http" || u.scheme == "https", u.host != nil else {
            throw fail(node, "target \(job) needs url: http(s)://HOST:PORT/metrics")
        }
        return ScrapeTarget(job: job, url: url, caFile: ca)
    }

    func rule(_ node: Node) throws -> Rule {
        let line = node.mark?.line ?? 0
        var name: String?, exprNode: Node?, forSeconds = 0.0, sev: Severity?, labels: Labels = [:]
        var summary = try TextTemplate(""), description = try TextTemplate("")
        for (key, _, v) in try pairs(node, "a rule", allowed: ["name", "expr", "for", "severity", "labels", "summary", "description"]) {
            switch key {
            case "name": name = try string(v, "rule name")
            case "expr": exprNode = v
            case "for": forSeconds = try duration(v, "rule for", allowZero: true)
            case "severity": sev = try severity(v, "rule severity")
            case "labels":
                labels = try labelMap(v, "rule labels")
                for reserved in ["alertname", "severity"] where labels[reserved] != nil {
                    throw fail(v, "rule labels: \(reserved) is set by alertd; remove it")
                }
            default:
                let s = try string(v, "rule \(key)")
                do {
                    let t = try TextTemplate(s)
                    if key == "summary" { summary = t } else { description = t }
                } catch let e as TemplateSyntaxError {
                    throw fail(v, "rule \(key): \(e.reason)")
                }
            }
        }
        guard let name, Self.isLabelName(name) else {
            throw fail(node, "a rule needs name: a word of letters, digits and _ (such as DiskAlmostFull)")
        }
        guard let exprNode else { throw fail(node, "rule \(name) has no expr:") }
        guard let sev else { throw fail(node, "rule \(name) has no severity: (info, warning or critical)") }
        let text = try string(exprNode, "rule \(name) expr")
        let expr: Expr
        do { expr = try Expr.parse(text) } catch let e as ExprError {
            let before = text.prefix(e.offset)
            let blockStyle = exprNode.scalar.map { $0.style == .literal || $0.style == .folded } ?? false
            let exprLine = (exprNode.mark?.line ?? line) + (blockStyle ? 1 : 0) + before.filter { $0 == "\n" }.count
            throw AlertsConfigError(file: file, line: exprLine, reason: "rule \(name) expr: \(e)")
        }
        guard expr.isVector else {
            throw fail(exprNode, "rule \(name) expr: the expression is a plain number; it must select a metric")
        }
        return Rule(name: name, expr: expr, exprText: text.trimmingCharacters(in: .whitespacesAndNewlines), forSeconds: forSeconds,
                    severity: sev, labels: labels, summary: summary, description: description, line: line)
    }

    func route(_ node: Node) throws -> Route {
        var r = Route(severities: [], match: [:], receivers: [], groupBy: ["alertname"], groupWait: 30, continueMatching: false)
        for (key, _, v) in try pairs(node, "a route", allowed: ["severity", "match", "receivers", "group_by", "group_wait", "continue"]) {
            switch key {
            case "severity":
                if let seq = v.sequence { r.severities = try seq.map { try severity($0, "route severity") } } else { r.severities = [try severity(v, "route severity")] }
            case "match": r.match = try labelMap(v, "route match")
            case "receivers": r.receivers = try stringList(v, "route receivers")
            case "group_by": r.groupBy = try stringList(v, "route group_by")
            case "group_wait": r.groupWait = try duration(v, "route group_wait", allowZero: true)
            default:
                guard let b = v.bool else { throw fail(v, "route continue must be true or false") }
                r.continueMatching = b
            }
        }
        guard !r.receivers.isEmpty else { throw fail(node, "a route needs receivers: [NAME, …]") }
        return r
    }

    func inhibitRule(_ node: Node) throws -> InhibitRule {
        var r = InhibitRule(source: [:], target: [:], equal: [])
        for (key, _, v) in try pairs(node, "an inhibit rule", allowed: ["source_match", "target_match", "equal"]) {
            switch key {
            case "source_match": r.source = try labelMap(v, "inhibit rule source_match")
            case "target_match": r.target = try labelMap(v, "inhibit rule target_match")
            default: r.equal = try stringList(v, "inhibit rule equal")
            }
        }
        guard !r.source.isEmpty, !r.target.isEmpty else {
            throw fail(node, "an inhibit rule needs source_match: and target_match: (such as {severity: critical} and {severity: warning})")
        }
        return r
    }

    func receiver(_ node: Node) throws -> ReceiverConfig {
        guard node.mapping != nil else { throw fail(node, "a receiver must be a mapping with name: and type:") }
        do {
            let text = try Yams.serialize(node: node)
            return try YAMLDecoder().decode(ReceiverConfig.self, from: text)
        } catch let e as DecodingError {
            throw fail(node, "receiver: \(Self.describe(e))")
        } catch {
            throw fail(node, "receiver: \(error)")
        }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String { p.map(\.stringValue).joined(separator: ".") }
        switch e {
        case .keyNotFound(let k, let ctx): return "missing \(path(ctx.codingPath + [k]))"
        case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx), .dataCorrupted(let ctx):
            return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

extension AlertsConfig {
    /// Builds every configured receiver (what `alerts check` and alertd do before they accept the file).
    public func makeReceivers() throws -> [any AlertReceiver] {
        try receivers.map { try Receivers.make($0) }
    }
}

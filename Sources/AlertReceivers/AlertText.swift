import Foundation

/// How bad a notification is, for colours and subjects: the worst `severity` label among its firing alerts.
public enum AlertSeverity: String, Sendable, Comparable, CaseIterable {
    case info, warning, critical

    public static func < (a: AlertSeverity, b: AlertSeverity) -> Bool { a.rank < b.rank }

    var rank: Int {
        switch self {
        case .info: return 0
        case .warning: return 1
        case .critical: return 2
        }
    }

    /// An unknown or missing label counts as `warning`: something fires, nobody said how bad.
    init(label: String?) {
        switch label?.lowercased() {
        case "critical", "error", "page", "fatal": self = .critical
        case "info", "informational", "notice", "none": self = .info
        default: self = .warning
        }
    }
}

/// The human text every chat and mail receiver renders, so they all say the same thing.
enum AlertText {
    struct Item {
        var firing: Bool
        var title: String
        var description: String?
        var severity: String?
        var labels: [(String, String)]
        var startsAt: Date
        var endsAt: Date?
        var generatorURL: String?
    }

    /// The worst severity among firing alerts; nil when everything is resolved.
    static func severity(_ n: AlertNotification) -> AlertSeverity? {
        let firing = n.firingAlerts
        guard !firing.isEmpty else { return nil }
        return firing.map { AlertSeverity(label: $0.labels["severity"]) }.max()
    }

    /// What the group is about: the group labels' values, else the alert name, else "alerts".
    static func groupName(_ n: AlertNotification) -> String {
        let values = n.groupLabels.sorted { $0.key < $1.key }.map(\.value).filter { !$0.isEmpty }
        if !values.isEmpty { return values.joined(separator: " ") }
        if let name = n.commonLabels["alertname"], !name.isEmpty { return name }
        return "alerts"
    }

    /// Alertmanager's default title: `[FIRING:2] DiskFull` or `[RESOLVED] DiskFull`.
    static func title(_ n: AlertNotification) -> String {
        let count = n.firingAlerts.count
        let status = n.isFiring ? "[FIRING:\(count)]" : "[RESOLVED]"
        var title = "\(status) \(groupName(n))"
        if let severity = severity(n) { title += " (\(severity.rawValue))" }
        return title
    }

    static func items(_ n: AlertNotification) -> [Item] {
        (n.firingAlerts + n.resolvedAlerts).map { a in
            let name = a.labels["alertname"]
            let summary = a.annotations["summary"].flatMap { $0.isEmpty ? nil : $0 }
            let title = summary.map { s in name.map { "\($0): \(s)" } ?? s } ?? name ?? a.fingerprint
            let hidden: Set<String> = ["alertname", "severity"]
            return Item(
                firing: a.isFiring,
                title: title,
                description: a.annotations["description"].flatMap { $0.isEmpty ? nil : $0 },
                severity: a.labels["severity"],
                labels: a.labels.filter { !hidden.contains($0.key) }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                startsAt: a.startsAt,
                endsAt: a.isFiring ? nil : a.endsAt,
                generatorURL: a.generatorURL.isEmpty ? nil : a.generatorURL)
        }
    }

    /// `2026-11-29 18:10:15 UTC`.
    static func human(_ date: Date) -> String {
        let rfc = RFC3339.format(date)
        let seconds = rfc.prefix(19).replacingOccurrences(of: "T", with: " ")
        return seconds + " UTC"
    }

    static func timing(_ item: Item) -> String {
        if let end = item.endsAt { return "since \(human(item.startsAt)), resolved \(human(end))" }
        return "since \(human(item.startsAt))"
    }

    static func labelText(_ item: Item) -> String {
        item.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ", ")
    }

    /// Plain text (email bodies, Feishu `text`).
    static func plain(_ n: AlertNotification) -> String {
        var lines = [title(n), ""]
        for item in items(n) {
            lines.append("\(item.firing ? "FIRING" : "RESOLVED"): \(item.title)")
            if let severity = item.severity { lines.append("  severity: \(severity)") }
            if let d = item.description { lines.append("  \(d)") }
            if !item.labels.isEmpty { lines.append("  labels: \(labelText(item))") }
            lines.append("  \(timing(item))")
            if let url = item.generatorURL { lines.append("  source: \(url)") }
            lines.append("")
        }
        if n.truncatedAlerts > 0 { lines.append("(\(n.truncatedAlerts) more alerts not shown)") }
        if !n.externalURL.isEmpty { lines.append("Alerts: \(n.externalURL)") }
        return lines.joined(separator: "\n").trimmingCharacters(in: .newlines) + "\n"
    }

    /// Markdown as DingTalk and Feishu's `lark_md` render it, one part per alert then the footer parts:
    /// blank lines between paragraphs, `**bold**`, `[t](u)`.
    static func markdownParts(_ n: AlertNotification) -> [String] {
        var parts: [String] = []
        for item in items(n) {
            var p = "**\(item.firing ? "FIRING" : "RESOLVED")** \(item.title)"
            if let severity = item.severity { p += "\n\nseverity: \(severity)" }
            if let d = item.description { p += "\n\n\(d)" }
            if !item.labels.isEmpty { p += "\n\nlabels: \(labelText(item))" }
            p += "\n\n\(timing(item))"
            if let url = item.generatorURL { p += "\n\n[source](\(url))" }
            parts.append(p)
        }
        if n.truncatedAlerts > 0 { parts.append("(\(n.truncatedAlerts) more alerts not shown)") }
        if !n.externalURL.isEmpty { parts.append("[All alerts](\(n.externalURL))") }
        return parts
    }

    /// Slack's `mrkdwn`: `*bold*`, `<url|text>`, and its three characters escaped.
    static func slack(_ n: AlertNotification) -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;")
        }
        var lines: [String] = []
        for item in items(n) {
            lines.append("*\(item.firing ? "FIRING" : "RESOLVED")* \(esc(item.title))")
            if let severity = item.severity { lines.append("severity: \(esc(severity))") }
            if let d = item.description { lines.append(esc(d)) }
            if !item.labels.isEmpty { lines.append("labels: \(esc(labelText(item)))") }
            var t = timing(item)
            if let url = item.generatorURL { t += " · <\(url)|source>" }
            lines.append(t)
            lines.append("")
        }
        if n.truncatedAlerts > 0 { lines.append("(\(n.truncatedAlerts) more alerts not shown)") }
        return lines.joined(separator: "\n").trimmingCharacters(in: .newlines)
    }

    /// WeCom's markdown: one line per fact, colours only through its three `<font color>` names.
    static func wecom(_ n: AlertNotification) -> String {
        let colour: String
        switch severity(n) {
        case nil: colour = "info"            // green: resolved
        case .info?: colour = "comment"      // grey
        case .warning?, .critical?: colour = "warning"  // orange-red
        }
        var lines = ["### <font color=\"\(colour)\">\(title(n))</font>"]
        for item in items(n) {
            lines.append("")
            lines.append("> **\(item.firing ? "FIRING" : "RESOLVED")** \(item.title)")
            if let severity = item.severity { lines.append("> severity: \(severity)") }
            if let d = item.description { lines.append("> \(d)") }
            if !item.labels.isEmpty { lines.append("> labels: \(labelText(item))") }
            lines.append("> <font color=\"comment\">\(timing(item))</font>")
            if let url = item.generatorURL { lines.append("> [source](\(url))") }
        }
        if n.truncatedAlerts > 0 { lines.append("\n(\(n.truncatedAlerts) more alerts not shown)") }
        if !n.externalURL.isEmpty { lines.append("\n[All alerts](\(n.externalURL))") }
        return lines.joined(separator: "\n")
    }

    /// Cuts `text` to at most `limit` UTF-8 bytes on a character boundary, marking the cut.
    static func truncate(_ text: String, utf8Bytes limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        let marker = "\n…(truncated)"
        var out = ""
        var used = 0
        let budget = limit - marker.utf8.count
        for ch in text {
            let size = String(ch).utf8.count
            if used + size > budget { break }
            out.append(ch)
            used += size
        }
        return out + marker
    }
}

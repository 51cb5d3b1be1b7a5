import AlertReceivers
import Foundation

/// The tables `warbler alerts list` prints.
public enum AlertsTable {
    public static func time(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
        return ([header] + rows).map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// `alerts list --json`: pretty, in the control API's encoding, where a value may be +Inf (BackupStale before the
    /// first backup), which a plain JSONEncoder refuses (it made `--json` fail whenever such an alert was active).
    public static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = ControlJSON.encoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public static func alerts(_ list: [AlertView]) -> String {
        if list.isEmpty { return "no alerts" }
        let rows = list.map { a -> [String] in
            let labels = a.labels.filter { $0.key != "alertname" && $0.key != "severity" }.sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return [a.state, a.severity.rawValue, a.name, time(a.firedAt ?? a.activeAt), labels, a.annotations["summary"] ?? ""]
        }
        return table(["STATE", "SEVERITY", "ALERT", "SINCE", "LABELS", "SUMMARY"], rows)
    }

    public static func silences(_ list: [Silence]) -> String {
        if list.isEmpty { return "no silences" }
        return table(["ID", "ENDS", "MATCHERS", "BY", "COMMENT"], list.map {
            [$0.id, time($0.endsAt), $0.matchers.map(\.description).joined(separator: ","), $0.createdBy, $0.comment]
        })
    }
}

/// What `warbler alerts test` sends.
public enum AlertTest {
    public static func notification(receiver: String, externalURL: String, now: Date = Date()) -> AlertNotification {
        let labels = ["alertname": "WarblerTestNotification", "severity": "info", "receiver": receiver]
        let annotations = ["summary": "test notification from warbler alerts test",
                           "description": "If you read this, alertd can reach the receiver \(receiver)."]
        let alert = AlertNotification.Alert(status: "firing", labels: labels, annotations: annotations, startsAt: now, endsAt: nil,
                                            generatorURL: externalURL, fingerprint: AlertEngine.fingerprint(labels))
        return AlertNotification(groupKey: "test:{receiver=\"\(receiver)\"}", status: "firing", receiver: receiver,
                                 groupLabels: ["receiver": receiver], commonLabels: labels, commonAnnotations: annotations,
                                 externalURL: externalURL, alerts: [alert])
    }
}

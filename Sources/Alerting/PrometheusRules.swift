import Foundation
import Yams

/// Prometheus alerting-rules YAML for sites that run their own Prometheus: the same rules, one group.
///
/// The expression language is a subset of PromQL with the same spelling, so expressions are copied as they are;
/// the differences (rate/increase without extrapolation) only change values at the edges of a window.
public enum PrometheusRules {
    struct File: Encodable {
        var groups: [Group]
    }
    struct Group: Encodable {
        var name: String
        var rules: [Entry]
    }
    struct Entry: Encodable {
        var alert: String
        var expr: String
        var `for`: String?
        var labels: [String: String]
        var annotations: [String: String]
    }

    public static func export(_ config: AlertsConfig, groupName: String = "warbler") throws -> String {
        let entries = config.rules.map { r -> Entry in
            var labels = r.labels
            labels["severity"] = r.severity.rawValue
            var annotations: [String: String] = [:]
            if !r.summary.source.isEmpty { annotations["summary"] = r.summary.source }
            if !r.description.source.isEmpty { annotations["description"] = r.description.source }
            return Entry(alert: r.name, expr: r.exprText, for: r.forSeconds > 0 ? formatDuration(r.forSeconds) : nil,
                         labels: labels, annotations: annotations)
        }
        let header = "# Prometheus alerting rules written by `warbler alerts export-rules`: the rules alertd evaluates.\n"
        return header + (try YAMLEncoder().encode(File(groups: [Group(name: groupName, rules: entries)])))
    }
}

import Alerting
import Foundation
import Templates
import Testing
import Yams

enum Repo {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let templates = root + "/templates"
}

/// The default rules file as an install renders it.
func defaultConfigText(_ context: AlertsConfigContext = AlertsConfigContext()) throws -> String {
    try TemplateSet(directory: Repo.templates).renderAlertsConfig(context)
}

@Suite struct DefaultRulesTests {
    static let defaultRules: [(String, Severity)] = [
        ("WarblerComponentDown", .critical), ("WarblerTargetUnreachable", .critical), ("DiskAlmostFull", .warning),
        ("DiskAlmostFull", .critical), ("MemoryPressure", .warning), ("HighSendErrorRate", .warning), ("SendLatencyHigh", .warning),
        ("StorageCommitStalled", .warning), ("StorageDeadlinePassed", .warning), ("WebhookSubscriptionDisabled", .warning), ("AssistantEndpointFailing", .warning), ("ComponentRestarting", .warning), ("CertificateExpiring", .warning), ("CertificateExpiring", .critical),
        ("BackupStale", .warning), ("ReplicationLag", .critical),
    ]

    @Test func theRenderedDefaultsLoadWithEveryDefaultRule() throws {
        let c = try AlertsConfig.parse(try defaultConfigText(), file: "alerts.yaml")
        #expect(c.rules.map { "\($0.name)/\($0.severity)" } == Self.defaultRules.map { "\($0.0)/\($0.1)" })
        #expect(c.targets == [ScrapeTarget(job: "exporter", url: "http://127.0.0.1:9101/metrics"),
                              ScrapeTarget(job: "server", url: "http://127.0.0.1:9464/metrics")])
        #expect(c.listenHost == "127.0.0.1" && c.listenPort == 9102 && c.stateFile == "/var/lib/warbler/alertd/state.json")
        #expect(c.routes.isEmpty && c.receivers.isEmpty)
        #expect(c.inhibitRules == [InhibitRule(source: ["severity": "critical"], target: ["severity": "warning"], equal: ["alertname", "instance", "mountpoint", "path"])])
        #expect(c.retention == 900, "the restart rule's 15m window is the longest")
        #expect(c.rules.allSatisfy { !$0.summary.source.isEmpty && !$0.description.source.isEmpty })
    }

    @Test func receiversFromTheInstallGetADefaultRoute() throws {
        var ctx = AlertsConfigContext()
        ctx.receivers = [.init(name: "ops-hook", type: "webhook", url: "https://hooks.example.com/warbler"),
                         .init(name: "chat", type: "webhook", url: "http://10.0.0.5/x")]
        ctx.diskWarningPercent = 70
        let c = try AlertsConfig.parse(try defaultConfigText(ctx))
        #expect(c.receivers.map(\.name) == ["ops-hook", "chat"])
        #expect(c.routes.map(\.receivers) == [["ops-hook", "chat"]])
        #expect(c.rules[2].exprText.contains(">= 70 < 90"))
        #expect(throws: TemplateError.self) {
            var bad = AlertsConfigContext()
            bad.diskCriticalPercent = 60
            _ = try defaultConfigText(bad)
        }
    }

    /// The defaults evaluate as intended against figures shaped like the exporter's.
    @Test func theDefaultDiskAndMemoryRulesFireOnTheirThresholds() throws {
        var e = AlertEngine(config: try AlertsConfig.parse(try defaultConfigText()))
        var h = History(retention: 900, lookback: 60)
        let base = ["job": "exporter", "instance": "127.0.0.1:9101"]
        func fs(_ mp: String, avail: Double) -> [Sample] {
            [Sample(name: "node_filesystem_avail_bytes", labels: base.merging(["mountpoint": mp]) { a, _ in a }, value: avail),
             Sample(name: "node_filesystem_size_bytes", labels: base.merging(["mountpoint": mp]) { a, _ in a }, value: 1000)]
        }
        let samples = fs("/", avail: 150) + fs("/var", avail: 50) + fs("/home", avail: 900) + [
            Sample(name: "node_memory_MemAvailable_bytes", labels: base, value: 50),
            Sample(name: "node_memory_MemTotal_bytes", labels: base, value: 1000),
            Sample(name: "warbler_component_up", labels: base.merging(["component": "server"]) { a, _ in a }, value: 0),
            Sample(name: "warbler_tls_certificate_expiry_seconds", labels: base.merging(["path": "/etc/warbler/tls/server.crt"]) { a, _ in a }, value: 10 * 86400),
        ]
        for t in stride(from: 0.0, through: 600, by: 60) {
            h.append(source: "exporter", samples: samples, at: at(t))
            _ = e.evaluate(history: h, at: at(t))
        }
        let firing = e.alerts(at: at(600)).filter { $0.state == "firing" }
        let got = Set(firing.map { "\($0.name)/\($0.severity.rawValue)/\($0.labels["mountpoint"] ?? $0.labels["component"] ?? "")" })
        #expect(got == ["DiskAlmostFull/warning//", "DiskAlmostFull/critical//var", "MemoryPressure/warning/", "WarblerComponentDown/critical/server",
                        "CertificateExpiring/warning/"])
        let disk = try #require(firing.first { $0.name == "DiskAlmostFull" && $0.severity == .warning })
        #expect(disk.annotations["summary"] == "/ on 127.0.0.1:9101 is 85% full")
        // The critical alert on /var inhibits nothing on / (the inhibit rule compares mountpoints too).
        #expect(e.alerts(at: at(600)).allSatisfy { !$0.inhibited })
        let cert = try #require(firing.first { $0.name == "CertificateExpiring" })
        #expect(cert.annotations["summary"] == "the certificate /etc/warbler/tls/server.crt expires in 10 days")
    }

    @Test func theAssistantAlertFiresWhenMostAnswersFailAndNotForAFewFailures() throws {
        func run(failuresPerMinute: Double, answersPerMinute: Double) throws -> Bool {
            var e = AlertEngine(config: try AlertsConfig.parse(try defaultConfigText()))
            var h = History(retention: 900, lookback: 60)
            let base = ["job": "server", "instance": "127.0.0.1:9464"]
            for t in stride(from: 0.0, through: 900, by: 60) {
                let minutes = t / 60
                h.append(source: "server", samples: [
                    Sample(name: "warbler_assistant_failures_total", labels: base, value: failuresPerMinute * minutes),
                    Sample(name: "warbler_assistant_answer_seconds_count", labels: base, value: answersPerMinute * minutes),
                ], at: at(t))
                _ = e.evaluate(history: h, at: at(t))
            }
            return e.alerts(at: at(900)).contains { $0.name == "AssistantEndpointFailing" && $0.state == "firing" }
        }
        #expect(try run(failuresPerMinute: 2, answersPerMinute: 2), "every answer failing")
        #expect(try !run(failuresPerMinute: 1, answersPerMinute: 10), "one in ten failing is not the endpoint down")
        #expect(try !run(failuresPerMinute: 0, answersPerMinute: 0), "no questions, no alert")
    }

    @Test func exportedPrometheusRulesHoldEveryDefaultRule() throws {
        let c = try AlertsConfig.parse(try defaultConfigText())
        let text = try PrometheusRules.export(c)
        let doc = try #require(try Yams.load(yaml: text) as? [String: Any])
        let groups = try #require(doc["groups"] as? [[String: Any]])
        #expect(groups.count == 1 && groups[0]["name"] as? String == "warbler")
        let rules = try #require(groups[0]["rules"] as? [[String: Any]])
        #expect(rules.count == Self.defaultRules.count)
        for (rule, exported) in zip(c.rules, rules) {
            #expect(exported["alert"] as? String == rule.name)
            #expect(exported["expr"] as? String == rule.exprText)
            // The exported text parses in our language too (and so is the same expression).
            #expect(try Expr.parse(exported["expr"] as? String ?? "") == rule.expr)
            let labels = try #require(exported["labels"] as? [String: Any])
            #expect(labels["severity"] as? String == rule.severity.rawValue)
            let annotations = try #require(exported["annotations"] as? [String: Any])
            #expect(annotations["summary"] as? String == rule.summary.source)
            #expect(annotations["description"] as? String == rule.description.source)
            if rule.forSeconds > 0 {
                #expect((exported["for"] as? String).flatMap(parseDuration) == rule.forSeconds)
            } else {
                #expect(exported["for"] == nil)
            }
        }
    }
}

/// A cluster member's rules (alerts.yaml with `cluster`), evaluated against figures shaped like the exporter's
/// cluster collector: each fires on its fault and stays quiet on a healthy cluster.
@Suite struct ClusterRulesTests {
    static func engine() throws -> AlertEngine {
        var ctx = AlertsConfigContext()
        ctx.cluster = true
        return AlertEngine(config: try AlertsConfig.parse(try defaultConfigText(ctx)))
    }
    let base = ["job": "exporter", "instance": "10.0.0.1:9101"]
    func s(_ name: String, _ labels: [String: String] = [:], _ v: Double) -> Sample {
        Sample(name: name, labels: base.merging(labels) { a, _ in a }, value: v)
    }
    func healthy(vip: Double = 1, timeline: Double = 2) -> [Sample] {
        [s("warbler_cluster_im_server_up", ["member": "10.0.0.1"], 1), s("warbler_cluster_im_server_up", ["member": "10.0.0.2"], 1),
         s("warbler_cluster_postgres_timeline", [:], timeline), s("warbler_cluster_postgres_standby_streaming", ["member": "two"], 1),
         s("warbler_cluster_postgres_standby_lag_bytes", ["member": "two"], 0), s("warbler_cluster_etcd_has_leader", [:], 1),
         s("warbler_cluster_etcd_peer_connected", ["peer": "aa"], 1), s("warbler_cluster_vip_held", ["vip": "10.0.0.10"], vip),
         s("warbler_cluster_releases", [:], 1), s("warbler_cluster_releases_fresh", [:], 1)]
    }
    /// `healthy()` with the members on two releases (one member upgraded, the rest not yet).
    func mixed() -> [Sample] {
        healthy().map { $0.name == "warbler_cluster_releases" ? s($0.name, [:], 2) : $0 }
    }
    func firing(_ timeline: [(Double, [Sample])]) throws -> Set<String> {
        var e = try Self.engine()
        var h = History(retention: 900, lookback: 60)
        for (t, samples) in timeline {
            h.append(source: "exporter", samples: samples, at: at(t))
            _ = e.evaluate(history: h, at: at(t))
        }
        return Set(e.alerts(at: at(timeline.last!.0)).filter { $0.state == "firing" }.map(\.name))
    }

    @Test func theClusterRulesLoadOnlyForAClusterMember() throws {
        var ctx = AlertsConfigContext()
        ctx.cluster = true
        let names = try AlertsConfig.parse(try defaultConfigText(ctx)).rules.map(\.name)
        for n in ["ClusterNodeDown", "PostgresPrimaryChanged", "StandbyNotStreaming", "StandbyLagging", "EtcdMemberDown", "EtcdNoLeader", "VIPMoved", "ClusterMixedVersions"] {
            #expect(names.contains(n))
            #expect(!(try AlertsConfig.parse(try defaultConfigText())).rules.map(\.name).contains(n))
        }
    }

    @Test func aHealthyClusterFiresNothing() throws {
        #expect(try firing(stride(from: 0.0, through: 300, by: 15).map { ($0, healthy()) }).isEmpty)
    }

    @Test func eachFaultFiresItsRule() throws {
        func fault(_ change: ([Sample]) -> [Sample]) throws -> Set<String> {
            try firing(stride(from: 0.0, through: 60, by: 15).map { ($0, healthy()) } + stride(from: 75.0, through: 300, by: 15).map { ($0, change(healthy())) })
        }
        func set(_ samples: [Sample], _ name: String, _ v: Double) -> [Sample] {
            samples.map { $0.name == name ? Sample(name: $0.name, labels: $0.labels, value: v) : $0 }
        }
        #expect(try fault { set($0, "warbler_cluster_postgres_standby_streaming", 0) } == ["StandbyNotStreaming"])
        #expect(try fault { set($0, "warbler_cluster_postgres_standby_lag_bytes", 67_108_864) } == ["StandbyLagging"])
        #expect(try fault { set($0, "warbler_cluster_etcd_peer_connected", 0) } == ["EtcdMemberDown"])
        #expect(try fault { set($0, "warbler_cluster_etcd_has_leader", 0) } == ["EtcdNoLeader"])
        #expect(try fault { set($0, "warbler_cluster_postgres_timeline", 3) } == ["PostgresPrimaryChanged"])
        #expect(try fault { set($0, "warbler_cluster_vip_held", 0) } == ["VIPMoved"])
        #expect(try fault { $0.map { $0.name == "warbler_cluster_im_server_up" && $0.labels["member"] == "10.0.0.2" ? Sample(name: $0.name, labels: $0.labels, value: 0) : $0 } } == ["ClusterNodeDown"])
    }

    /// Two releases for an hour fire ClusterMixedVersions; an upgrade that finishes sooner, or one release, do not.
    @Test func mixedVersionsFireAfterAnHourNotBefore() throws {
        let rule = try #require(try Self.engine().config.rules.first { $0.name == "ClusterMixedVersions" })
        #expect(rule.severity == .warning && rule.forSeconds == 3600)
        #expect(rule.description.source.contains("warbler upgrade --resume FILE") && rule.description.source.contains("warbler rollback"))
        // Healthy until 60 s, then one member upgraded from 75 s on.
        func upgradeStoppedAt75(until end: Double) -> [(Double, [Sample])] {
            stride(from: 0.0, through: 60, by: 15).map { ($0, healthy()) } + stride(from: 75.0, through: end, by: 15).map { ($0, mixed()) }
        }
        #expect(try firing(upgradeStoppedAt75(until: 75 + 3600 - 15)).isEmpty, "59:45 of mixed versions is not yet an hour")
        #expect(try firing(upgradeStoppedAt75(until: 75 + 3600 + 15)) == ["ClusterMixedVersions"])
        // The upgrade finished after 50 minutes: nothing, even an hour after it began.
        #expect(try firing(upgradeStoppedAt75(until: 75 + 3000) + stride(from: 3090.0, through: 4000, by: 15).map { ($0, healthy()) }).isEmpty)
        // One release for two hours: nothing.
        #expect(try firing(stride(from: 0.0, through: 7200, by: 15).map { ($0, healthy()) }).isEmpty)
        // The agent's record went stale (the exporter drops the release series): the alert does not stay firing.
        let stale = mixed().filter { $0.name != "warbler_cluster_releases" }.map { $0.name == "warbler_cluster_releases_fresh" ? s($0.name, [:], 0) : $0 }
        #expect(try firing(upgradeStoppedAt75(until: 3690) + stride(from: 3705.0, through: 3900, by: 15).map { ($0, stale) }).isEmpty)
    }
}

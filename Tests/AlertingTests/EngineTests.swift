import AlertReceivers
import Alerting
import Foundation
import Testing

/// An engine over a rules file with receivers `a`, `b` and `c` (webhooks nobody calls: the engine only names them).
func engine(rules: String, routes: String, repeatInterval: String = "{info: 24h, warning: 4h, critical: 1h}") throws -> AlertEngine {
    let receivers = ["a", "b", "c"].map { "  - name: \($0)\n    type: webhook\n    url: http://127.0.0.1:9/\($0)" }.joined(separator: "\n")
    let text = rulesFile(rules, routes: routes, receivers: receivers)
        .replacingOccurrences(of: "  listen: 127.0.0.1:0", with: "  listen: 127.0.0.1:0\n  repeat_interval: \(repeatInterval)")
    return AlertEngine(config: try AlertsConfig.parse(text))
}

/// A history where metric `x` has the given value per `instance` at `time` (instances left out go stale).
struct Feed {
    var history = History(retention: 600, lookback: 30)
    mutating func set(_ values: [String: Double], at time: Date) {
        history.append(source: "t", samples: values.map { Sample(name: "x", labels: ["instance": $0.key], value: $0.value) }, at: time)
    }
}

@Suite struct EngineTests {
    @Test func pendingFiresAfterForThenResolvesWithANotificationEachWay() throws {
        var e = try engine(rules: """
          - name: XHigh
            expr: x > 0
            for: 30s
            severity: warning
            summary: "x on {{ $labels.instance }} is {{ $value }}"
        """, routes: "  - receivers: [a]\n    group_wait: 0s")
        var f = Feed()
        f.set(["n1": 1], at: at(0))
        #expect(e.evaluate(history: f.history, at: at(0)).isEmpty)
        #expect(e.alerts(at: at(0)).map(\.state) == ["pending"])
        f.set(["n1": 2], at: at(20))
        #expect(e.evaluate(history: f.history, at: at(20)).isEmpty)
        f.set(["n1": 2.5], at: at(30))
        let firing = e.evaluate(history: f.history, at: at(30))
        #expect(firing.count == 1)
        let n = try #require(firing.first?.notification)
        #expect(firing.first?.receiver == "a" && n.receiver == "a" && n.status == "firing" && n.version == "4")
        #expect(n.alerts.count == 1 && n.alerts[0].status == "firing" && n.alerts[0].endsAt == nil && n.alerts[0].startsAt == at(0))
        #expect(n.alerts[0].labels == ["alertname": "XHigh", "severity": "warning", "instance": "n1"])
        #expect(n.alerts[0].annotations["summary"] == "x on n1 is 2.5")
        #expect(n.groupLabels == ["alertname": "XHigh"] && n.commonLabels["instance"] == "n1")
        #expect(e.alerts(at: at(30)).map(\.state) == ["firing"])
        // Still firing: nothing new.
        f.set(["n1": 3], at: at(40))
        #expect(e.evaluate(history: f.history, at: at(40)).isEmpty)
        f.set(["n1": 0], at: at(50))
        let resolved = e.evaluate(history: f.history, at: at(50))
        #expect(resolved.count == 1)
        #expect(resolved.first?.notification.status == "resolved")
        #expect(resolved.first?.notification.alerts.map(\.status) == ["resolved"])
        #expect(resolved.first?.notification.alerts.first?.endsAt == at(50))
        #expect(e.alerts(at: at(50)).isEmpty)
        #expect(e.evaluate(history: f.history, at: at(60)).isEmpty)
    }

    @Test func aPendingAlertThatClearsBeforeItsForNeverNotifies() throws {
        var e = try engine(rules: "  - name: XHigh\n    expr: x > 0\n    for: 1m\n    severity: critical", routes: "  - receivers: [a]\n    group_wait: 0s")
        var f = Feed()
        f.set(["n1": 1], at: at(0))
        #expect(e.evaluate(history: f.history, at: at(0)).isEmpty)
        f.set(["n1": 0], at: at(30))
        #expect(e.evaluate(history: f.history, at: at(30)).isEmpty)
        f.set(["n1": 1], at: at(70))
        #expect(e.evaluate(history: f.history, at: at(70)).isEmpty, "the for clock restarted at 70 s")
        f.set(["n1": 1], at: at(130))
        #expect(e.evaluate(history: f.history, at: at(130)).count == 1)
    }

    @Test func aRestartFromThePersistedStateNeitherRenotifiesNorForgets() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("alertd-\(UUID().uuidString)/state.json").path
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let rules = "  - name: XHigh\n    expr: x > 0\n    severity: critical"
        let routes = "  - receivers: [a]\n    group_wait: 0s"
        var e = try engine(rules: rules, routes: routes)
        var f = Feed()
        f.set(["n1": 1], at: at(0))
        #expect(e.evaluate(history: f.history, at: at(0)).count == 1)
        e.addSilence(Silence(matchers: [try LabelMatcher(name: "instance", op: .equal, value: "n9")], startsAt: at(0), endsAt: at(7200),
                             comment: "maintenance", createdBy: "ops"))
        try StateStore(path: path).save(e.state)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))

        // A new process: fresh history, state from the file.
        var restarted = try engine(rules: rules, routes: routes)
        restarted.state = try StateStore(path: path).load()
        #expect(restarted.state == e.state)
        var g = Feed()
        g.set(["n1": 1], at: at(15))
        #expect(restarted.evaluate(history: g.history, at: at(15)).isEmpty, "already announced before the restart")
        #expect(restarted.alerts(at: at(15)).map(\.state) == ["firing"])
        #expect(restarted.state.silences.map(\.comment) == ["maintenance"])
        g.set(["n1": 0], at: at(30))
        let out = restarted.evaluate(history: g.history, at: at(30))
        #expect(out.map(\.notification.status) == ["resolved"], "the firing alert was remembered, so its resolve is sent")
    }

    @Test func afterARestartARangeRuleKeepsItsFiringAlertUntilItsWindowIsFull() throws {
        let rules = "  - name: Errors\n    expr: rate(x[5m]) > 1\n    severity: warning"
        let routes = "  - receivers: [a]\n    group_wait: 0s"
        var e = try engine(rules: rules, routes: routes)
        var f = Feed()
        f.set(["n1": 0], at: at(0))
        f.set(["n1": 600], at: at(60))
        #expect(e.evaluate(history: f.history, at: at(60)).map(\.notification.status) == ["firing"])

        var r = try engine(rules: rules, routes: routes)
        r.state = e.state
        r.warmUpStart = at(1000)
        var g = Feed()
        g.set(["n1": 5000], at: at(1000))
        #expect(r.evaluate(history: g.history, at: at(1000)).isEmpty, "one sample has no rate, yet nothing resolved")
        g.set(["n1": 5000], at: at(1200))
        #expect(r.evaluate(history: g.history, at: at(1200)).isEmpty)
        #expect(r.alerts(at: at(1200)).map(\.state) == ["firing"])
        // A full window after the start the rule's answer counts: the counter stood still, so it resolves.
        g.set(["n1": 5000], at: at(1300))
        #expect(r.evaluate(history: g.history, at: at(1300)).map(\.notification.status) == ["resolved"])
    }

    @Test func aFiringGroupIsNotifiedAgainAfterItsSeveritysRepeatInterval() throws {
        var e = try engine(rules: """
          - name: XHigh
            expr: x > 0
            severity: warning
          - name: XHigh
            expr: x > 10
            severity: critical
        """, routes: "  - receivers: [a]\n    group_wait: 0s\n    group_by: [alertname, severity]",
             repeatInterval: "{warning: 300s, critical: 100s}")
        var f = Feed()
        var sent: [(Double, String)] = []
        for t in stride(from: 0.0, through: 320, by: 10) {
            f.set(["n1": 20], at: at(t))
            for o in e.evaluate(history: f.history, at: at(t)) { sent.append((t, o.notification.commonLabels["severity"] ?? "?")) }
        }
        #expect(sent.filter { $0.1 == "critical" }.map(\.0) == [0, 100, 200, 300])
        #expect(sent.filter { $0.1 == "warning" }.map(\.0) == [0, 300])
    }

    @Test func theGroupWaitBatchesAlertsThatFireTogether() throws {
        var e = try engine(rules: "  - name: XHigh\n    expr: x > 0\n    severity: warning",
                           routes: "  - receivers: [a]\n    group_wait: 30s\n    group_by: [alertname]")
        var f = Feed()
        f.set(["n1": 1], at: at(0))
        #expect(e.evaluate(history: f.history, at: at(0)).isEmpty)
        f.set(["n1": 1, "n2": 1], at: at(10))
        #expect(e.evaluate(history: f.history, at: at(10)).isEmpty)
        f.set(["n1": 1, "n2": 1, "n3": 1], at: at(20))
        #expect(e.evaluate(history: f.history, at: at(20)).isEmpty)
        f.set(["n1": 1, "n2": 1, "n3": 1], at: at(30))
        let out = e.evaluate(history: f.history, at: at(30))
        #expect(out.count == 1)
        #expect(Set(out.first?.notification.alerts.map { $0.labels["instance"]! } ?? []) == ["n1", "n2", "n3"])
        #expect(out.first?.notification.groupKey == "route1:{alertname=\"XHigh\"}")
        // A later alert in the same group waits its own group wait and the notification carries all firing ones.
        f.set(["n1": 1, "n2": 1, "n3": 1, "n4": 1], at: at(40))
        #expect(e.evaluate(history: f.history, at: at(40)).isEmpty)
        f.set(["n1": 1, "n2": 1, "n3": 1, "n4": 1], at: at(70))
        #expect(e.evaluate(history: f.history, at: at(70)).first?.notification.alerts.count == 4)
    }

    @Test func silencesSuppressNotificationsButTheAlertIsStillListed() throws {
        var e = try engine(rules: "  - name: XHigh\n    expr: x > 0\n    severity: critical", routes: "  - receivers: [a]\n    group_wait: 0s\n    group_by: [instance]")
        e.addSilence(Silence(id: "s1", matchers: [try LabelMatcher(name: "instance", op: .matchesRegex, value: "n1|n2")],
                             startsAt: at(0), endsAt: at(100), comment: "upgrade", createdBy: "test"))
        var f = Feed()
        f.set(["n1": 1, "n3": 1], at: at(0))
        let out = e.evaluate(history: f.history, at: at(0))
        #expect(out.map { $0.notification.groupLabels["instance"] } == ["n3"])
        let listed = e.alerts(at: at(0))
        #expect(Set(listed.map(\.state)) == ["suppressed", "firing"])
        #expect(listed.first { $0.labels["instance"] == "n1" }?.silencedBy == ["s1"])
        // Resolving while silenced sends nothing; after the silence ends a still-firing alert is announced.
        f.set(["n3": 1, "n1": 1], at: at(50))
        #expect(e.evaluate(history: f.history, at: at(50)).isEmpty)
        f.set(["n3": 1, "n1": 1], at: at(100))
        #expect(e.evaluate(history: f.history, at: at(100)).map { $0.notification.groupLabels["instance"] } == ["n1"])
        // Removing a silence works the same way.
        e.addSilence(Silence(id: "s2", matchers: [try LabelMatcher(name: "instance", op: .equal, value: "n5")],
                             startsAt: at(100), endsAt: at(1000), comment: "x", createdBy: "test"))
        f.set(["n3": 1, "n1": 1, "n5": 1], at: at(110))
        #expect(e.evaluate(history: f.history, at: at(110)).isEmpty)
        #expect(e.removeSilence("s2") && !e.removeSilence("s2"))
        #expect(e.evaluate(history: f.history, at: at(115)).map { $0.notification.groupLabels["instance"] } == ["n5"])
    }

    @Test func aCriticalAlertInhibitsTheWarningForTheSameInstance() throws {
        var e = try engine(rules: """
          - name: Disk
            expr: x > 80
            severity: warning
          - name: Disk
            expr: x > 90
            severity: critical
        """, routes: "  - receivers: [a]\n    group_wait: 0s\n    group_by: [alertname, severity, instance]")
        e.config.inhibitRules = [InhibitRule(source: ["severity": "critical"], target: ["severity": "warning"], equal: ["alertname", "instance"])]
        var f = Feed()
        f.set(["n1": 95, "n2": 85], at: at(0))
        let out = e.evaluate(history: f.history, at: at(0))
        #expect(Set(out.map { "\($0.notification.groupLabels["instance"]!)/\($0.notification.groupLabels["severity"]!)" }) == ["n1/critical", "n2/warning"])
        let listed = e.alerts(at: at(0))
        #expect(listed.filter(\.inhibited).map { $0.labels["instance"]! + "/" + $0.severity.rawValue } == ["n1/warning"])
        #expect(listed.first { $0.inhibited }?.state == "suppressed")
        // When the critical one clears, the warning is announced.
        f.set(["n1": 85, "n2": 85], at: at(10))
        let next = e.evaluate(history: f.history, at: at(10))
        #expect(Set(next.map { "\($0.notification.groupLabels["instance"]!)/\($0.notification.status)" }) == ["n1/resolved", "n1/firing"])
    }

    @Test func routesMatchBySeverityAndLabelsFirstMatchUnlessContinue() throws {
        var e = try engine(rules: """
          - name: Db
            expr: x{instance="db"} > 0
            severity: warning
            labels: {team: dba}
          - name: Pager
            expr: x{instance="web"} > 0
            severity: critical
          - name: Chat
            expr: x{instance="misc"} > 0
            severity: info
        """, routes: """
          - severity: critical
            receivers: [a]
            group_wait: 0s
            continue: true
          - match: {team: dba}
            receivers: [b]
            group_wait: 0s
          - severity: [info, critical]
            receivers: [c]
            group_wait: 0s
        """)
        var f = Feed()
        f.set(["db": 1, "web": 1, "misc": 1], at: at(0))
        let out = e.evaluate(history: f.history, at: at(0))
        let byReceiver = Dictionary(grouping: out, by: \.receiver).mapValues { $0.flatMap { $0.notification.alerts.map { $0.labels["alertname"]! } }.sorted() }
        #expect(byReceiver == ["a": ["Pager"], "b": ["Db"], "c": ["Chat", "Pager"]])
    }
}

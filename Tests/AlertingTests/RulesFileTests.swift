import Alerting
import Testing

/// A rules file around `rules` (YAML list items indented by two spaces).
func rulesFile(_ rules: String, routes: String = "", receivers: String = "") -> String {
    """
    global:
      scrape_interval: 1s
      evaluation_interval: 1s
      state_file: /tmp/unused-state.json
      listen: 127.0.0.1:0
    targets:
      - job: exporter
        url: http://127.0.0.1:9101/metrics
    rules:
    \(rules)
    routes:
    \(routes.isEmpty ? "  []" : routes)
    receivers:
    \(receivers.isEmpty ? "  []" : receivers)
    """
}

@Suite struct RulesFileTests {
    @Test func loadsAGoodFile() throws {
        let c = try AlertsConfig.parse(rulesFile("""
          - name: DiskAlmostFull
            expr: (1 - node_filesystem_avail_bytes{mountpoint=~"/|/var.*"} / node_filesystem_size_bytes) * 100 >= 80 < 90
            for: 5m
            severity: warning
            labels: {team: ops}
            summary: "{{ $labels.mountpoint }} is {{ $value }}% full"
          - name: Restarts
            expr: increase(warbler_component_restarts_total[15m]) > 2 and warbler_component_up == 1 or up unless up{job="x"}
            severity: critical
        """, routes: """
          - severity: [critical]
            match: {team: ops}
            receivers: [hook]
            group_by: [alertname, instance]
            group_wait: 10s
            continue: true
        """, receivers: """
          - name: hook
            type: webhook
            url: http://127.0.0.1:9/hook
        """))
        #expect(c.rules.count == 2)
        #expect(c.rules[0].forSeconds == 300 && c.rules[0].severity == .warning && c.rules[0].labels == ["team": "ops"])
        #expect(c.rules[1].forSeconds == 0)
        #expect(c.retention == 900)
        #expect(c.routes[0].severities == [.critical] && c.routes[0].groupBy == ["alertname", "instance"] && c.routes[0].continueMatching)
        #expect(c.receivers.map(\.name) == ["hook"])
        #expect(c.scrapeInterval == 1 && c.listenPort == 0)
        let inhibit = try AlertsConfig.parse(rulesFile("  []") + "\ninhibit_rules:\n  - source_match: {severity: critical}\n    target_match: {severity: warning}\n    equal: [alertname]\n")
        #expect(inhibit.inhibitRules == [InhibitRule(source: ["severity": "critical"], target: ["severity": "warning"], equal: ["alertname"])])
    }

    /// Each bad rule is on line 11 of the file (rules start at line 10), or at the line of the offending value.
    @Test(arguments: [
        ("  - name: A\n    expr: rate(x[5m] > 1\n    severity: info", 11, "expected ')'"),
        ("  - name: A\n    expr: foo(x[5m]) > 1\n    severity: info", 11, "unknown function foo"),
        ("  - name: A\n    expr: x[5m] > 1\n    severity: info", 11, "only allowed inside"),
        ("  - name: A\n    expr: 1 > 2\n    severity: info", 11, "comparing two numbers"),
        ("  - name: A\n    expr: x{a=\"b\"} > 1\n    severity: urgent", 12, "must be info, warning or critical"),
        ("  - name: A\n    expr: x > 1\n    for: soon\n    severity: info", 12, "not a duration"),
        ("  - name: A\n    exprs: x > 1\n    severity: info", 11, "unknown key 'exprs'"),
        ("  - name: A\n    expr: x > 1\n    severity: info\n    summary: \"{{ .Labels.x }}\"", 13, "is not {{ $value }}"),
        ("  - name: A\n    expr: x and 1\n    severity: info", 11, "joins two vectors"),
        ("  - name: A\n    expr: x{a=~\"(\"} > 1\n    severity: info", 11, "does not compile"),
        ("  - name: A\n    expr: rate(x[5q]) > 1\n    severity: info", 11, "is not a duration"),
        ("  - name: A\n    expr: x >= 1 ; 2\n    severity: info", 11, "unexpected character ';'"),
        ("  - name: A\n    expr: 3\n    severity: info", 11, "plain number"),
        ("  - name: A\n    expr: x > 1\n    severity: info\n    labels: {alertname: B}", 13, "set by alertd"),
        ("  - name: A\n    expr: |\n      x > 1 and\n      y >\n    severity: info", 13, "the expression ends"),
        ("  - expr: x > 1\n    severity: info", 10, "needs name"),
    ])
    func rejectsABadRuleWithItsLineAndReason(rule: String, line: Int, reason: String) {
        do {
            _ = try AlertsConfig.parse(rulesFile(rule), file: "t.yaml")
            Issue.record("accepted:\n\(rule)")
        } catch let e as AlertsConfigError {
            #expect(e.line == line, "\(e)")
            #expect(e.reason.contains(reason), "\(e)")
            #expect(e.description.hasPrefix("t.yaml:\(line): "))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func rejectsARouteToAnUnknownReceiverAndANonLoopbackListener() {
        #expect(throws: AlertsConfigError.self) {
            try AlertsConfig.parse(rulesFile("  []", routes: "  - receivers: [nobody]"))
        }
        do {
            _ = try AlertsConfig.parse(rulesFile("  []").replacingOccurrences(of: "127.0.0.1:0", with: "0.0.0.0:9102"))
            Issue.record("accepted a public listener")
        } catch let e as AlertsConfigError {
            #expect(e.line == 5 && e.reason.contains("loopback"))
        } catch { Issue.record("\(error)") }
    }

    @Test func parsesDurationsAndSilenceMatchers() throws {
        #expect(parseDuration("1h30m") == 5400)
        #expect(parseDuration("250ms") == 0.25)
        #expect(parseDuration("2d") == 172800)
        #expect(parseDuration("5") == nil && parseDuration("m") == nil)
        #expect(formatDuration(5400) == "1h30m")
        let m = try Matchers.parse(["alertname=DiskAlmostFull,instance=~\"node1.*\"", "severity!=info"])
        #expect(m.map(\.description) == ["alertname=\"DiskAlmostFull\"", "instance=~\"node1.*\"", "severity!=\"info\""])
        #expect(m[1].matches(["instance": "node1:9101"]) && !m[1].matches(["instance": "xnode1"]))
        #expect(throws: ExprError.self) { try Matchers.parse(["justaword"]) }
        #expect(throws: ExprError.self) { try Matchers.parse(["a=~\"[\""]) }
    }
}

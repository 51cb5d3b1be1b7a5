@testable import AlertReceivers
import Foundation
import Testing
import Yams

/// Fixtures shared by the suites.
enum Fixture {
    static let start = Date(timeIntervalSince1970: 1_795_000_000.25)  // 2026-11-18T11:06:40.25Z
    static let end = Date(timeIntervalSince1970: 1_795_000_600)

    static func firing(severity: String = "critical") -> AlertNotification {
        let disk = AlertNotification.Alert(
            status: "firing",
            labels: ["alertname": "DiskFull", "severity": severity, "instance": "node1", "mount": "/var"],
            annotations: ["summary": "Disk /var at 93%", "description": "Free space on /var is below 10%."],
            startsAt: start, generatorURL: "http://node1:9100/alerts?rule=DiskFull", fingerprint: "a1b2c3d4e5f60718")
        let disk2 = AlertNotification.Alert(
            status: "firing",
            labels: ["alertname": "DiskFull", "severity": severity, "instance": "node2", "mount": "/var"],
            annotations: ["summary": "Disk /var at 91%", "description": "Free space on /var is below 10%."],
            startsAt: start, generatorURL: "", fingerprint: "0f1e2d3c4b5a6978")
        return AlertNotification(receiver: "ops", groupKey: "{}:{alertname=\"DiskFull\"}",
                                 groupLabels: ["alertname": "DiskFull"], externalURL: "http://warbler.example:9095",
                                 alerts: [disk, disk2])
    }

    static func resolved() -> AlertNotification {
        var n = firing()
        for i in n.alerts.indices {
            n.alerts[i].status = "resolved"
            n.alerts[i].endsAt = end
        }
        n.status = "resolved"
        return n
    }
}

@Suite struct ModelTests {
    /// Field by field against Alertmanager's documented webhook body (version 4).
    @Test func encodesAlertmanagerWebhookShape() throws {
        let data = try Fixture.firing().webhookJSON()
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(json.keys) == ["version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                                   "commonLabels", "commonAnnotations", "externalURL", "alerts"])
        #expect(json["version"] as? String == "4")
        #expect(json["groupKey"] as? String == "{}:{alertname=\"DiskFull\"}")
        #expect(json["truncatedAlerts"] as? Int == 0)
        #expect(json["status"] as? String == "firing")
        #expect(json["receiver"] as? String == "ops")
        #expect(json["groupLabels"] as? [String: String] == ["alertname": "DiskFull"])
        #expect(json["commonLabels"] as? [String: String] == ["alertname": "DiskFull", "severity": "critical", "mount": "/var"])
        #expect(json["commonAnnotations"] as? [String: String] == ["description": "Free space on /var is below 10%."])
        #expect(json["externalURL"] as? String == "http://warbler.example:9095")
        let alerts = try #require(json["alerts"] as? [[String: Any]])
        #expect(alerts.count == 2)
        let a = alerts[0]
        #expect(Set(a.keys) == ["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"])
        #expect(a["status"] as? String == "firing")
        #expect(a["startsAt"] as? String == "2026-11-18T11:06:40.25Z")
        #expect(a["endsAt"] as? String == "0001-01-01T00:00:00Z")
        #expect(a["generatorURL"] as? String == "http://node1:9100/alerts?rule=DiskFull")
        #expect(a["fingerprint"] as? String == "a1b2c3d4e5f60718")
        #expect((a["labels"] as? [String: String])?["instance"] == "node1")
    }

    /// A body Alertmanager itself sends decodes, and survives a round trip.
    @Test func decodesAlertmanagerPayload() throws {
        let body = #"""
        {"receiver":"sms","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"ProbeFailure","severity":"critical"},
        "annotations":{"summary":"down"},"startsAt":"2023-02-06T13:08:45.828Z","endsAt":"0001-01-01T00:00:00Z",
        "generatorURL":"http://prometheus.example.org:9090/graph","fingerprint":"1a30ba71cca2921f"},
        {"status":"resolved","labels":{"alertname":"ProbeFailure"},"annotations":{},"startsAt":"2018-08-03T09:52:26.739266876+02:00",
        "endsAt":"2018-08-03T10:02:26Z","generatorURL":"","fingerprint":"ff"}],
        "groupLabels":{"alertname":"ProbeFailure"},"commonLabels":{"alertname":"ProbeFailure"},"commonAnnotations":{},
        "externalURL":"http://prometheus.example.org:9093","version":"4","groupKey":"{}:{alertname=\"ProbeFailure\"}","truncatedAlerts":0}
        """#
        let n = try JSONDecoder().decode(AlertNotification.self, from: Data(body.utf8))
        #expect(n.alerts.count == 2)
        #expect(n.alerts[0].endsAt == nil)
        #expect(abs(n.alerts[0].startsAt.timeIntervalSince1970 - 1_675_688_925.828) < 0.001)
        // +02:00 offset: 09:52:26.739 local is 07:52:26.739 UTC.
        #expect(abs(n.alerts[1].startsAt.timeIntervalSince1970 - 1_533_282_746.739) < 0.001)
        #expect(n.alerts[1].endsAt == Date(timeIntervalSince1970: 1_533_290_546))
        // Re-encoding is stable (times keep microseconds; Alertmanager's nanoseconds are rounded once).
        let again = try JSONDecoder().decode(AlertNotification.self, from: try n.webhookJSON())
        #expect(try again.webhookJSON() == n.webhookJSON())
        #expect(abs(again.alerts[1].startsAt.timeIntervalSince(n.alerts[1].startsAt)) < 0.000_001)
        #expect(String(decoding: try again.webhookJSON(), as: UTF8.self).contains("\"2018-08-03T07:52:26.739267Z\""))
    }

    @Test func rejectsTimesThatAreNotRFC3339() {
        let body = #"{"groupKey":"g","status":"firing","receiver":"r","alerts":[{"status":"firing","startsAt":"yesterday","fingerprint":"x"}]}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(AlertNotification.self, from: Data(body.utf8)) }
    }

    @Test func statusAndCommonLabelsFollowTheAlerts() {
        let n = Fixture.resolved()
        let rebuilt = AlertNotification(receiver: "ops", groupKey: n.groupKey, groupLabels: n.groupLabels,
                                        externalURL: "", alerts: n.alerts)
        #expect(rebuilt.status == "resolved")
        var mixed = n.alerts
        mixed[0].status = "firing"
        #expect(AlertNotification(receiver: "ops", groupKey: "g", groupLabels: [:], externalURL: "", alerts: mixed).status == "firing")
        #expect(rebuilt.commonLabels["instance"] == nil)
        #expect(rebuilt.commonLabels["mount"] == "/var")
    }

    @Test func titlesSayStatusCountAndSeverity() {
        #expect(AlertText.title(Fixture.firing()) == "[FIRING:2] DiskFull (critical)")
        #expect(AlertText.title(Fixture.resolved()) == "[RESOLVED] DiskFull")
    }
}

@Suite struct ReceiverConfigTests {
    static func decode(_ yaml: String) throws -> [ReceiverConfig] {
        try YAMLDecoder().decode([ReceiverConfig].self, from: yaml)
    }

    @Test func decodesEveryTypeFromYAML() throws {
        let passwordFile = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString)").path
        try "pw\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: passwordFile) }
        let configs = try Self.decode("""
        - name: hook
          type: webhook
          url: https://hooks.example.com/alerts
          max_alerts: 10
        - name: slack
          type: slack
          url: https://hooks.slack.com/services/T/B/X
          timeout: 5s
        - name: ding
          type: dingtalk
          url: https://oapi.dingtalk.com/robot/send?access_token=abc
          secret: SECabc
          timeout: 1500ms
        - name: wecom
          type: wecom
          url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k
          timeout: 20
        - name: feishu
          type: feishu
          url: https://open.feishu.cn/open-apis/bot/v2/hook/x
          secret: s
          message_type: text
        - name: mail
          type: email
          email:
            host: smtp.example.com
            port: 2525
            username: alerts
            password_file: \(passwordFile)
            from: alerts@example.com
            to: [ops@example.com, oncall@example.com]
        """)
        #expect(configs.map(\.type) == [.webhook, .slack, .dingtalk, .wecom, .feishu, .email])
        #expect(configs[0].maxAlerts == 10)
        #expect(configs[0].timeout == ReceiverConfig.defaultTimeout)
        #expect(configs[1].timeout == 5)
        #expect(configs[2].timeout == 1.5)
        #expect(configs[2].secret == "SECabc")
        #expect(configs[3].timeout == 20)
        #expect(configs[4].messageType == "text")
        let email = try #require(configs[5].email)
        #expect(email.host == "smtp.example.com")
        #expect(email.port == 2525)
        #expect(email.starttls)
        #expect(email.username == "alerts")
        #expect(email.to == ["ops@example.com", "oncall@example.com"])
        let smtps = try #require(try Self.decode("- {name: s, type: email, email: {host: h, tls: true, from: a@b.c, to: x@y.z}}").first?.email)
        #expect(smtps.tls && !smtps.starttls && smtps.port == 465 && smtps.to == ["x@y.z"])
        #expect(try Receivers.make(configs).map(\.name) == ["hook", "slack", "ding", "wecom", "feishu", "mail"])
    }

    /// Each mistake names the receiver and the field, and says what to do.
    @Test(arguments: [
        ("- type: webhook\n  url: http://x", "'(unnamed)'", "name"),
        ("- name: a\n  url: http://x", "'a'", "type"),
        ("- name: a\n  type: pager\n  url: http://x", "'a'", "type"),
        ("- name: a\n  type: webhook", "'a'", "url"),
        ("- name: a\n  type: slack\n  url: ftp://x/y", "'a'", "url"),
        ("- name: a\n  type: webhook\n  url: http://x\n  timeout: soon", "'a'", "timeout"),
        ("- name: a\n  type: webhook\n  url: http://x\n  secret: s", "'a'", "secret"),
        ("- name: a\n  type: wecom\n  url: http://x\n  max_alerts: 3", "'a'", "max_alerts"),
        ("- name: a\n  type: feishu\n  url: http://x\n  message_type: post", "'a'", "message_type"),
        ("- name: m\n  type: email", "'m'", "email"),
        ("- name: m\n  type: email\n  email: {host: h, from: a@b.c}", "'m'", "email.to"),
        ("- name: m\n  type: email\n  email: {host: h, from: nobody, to: [a@b.c]}", "'m'", "email.from"),
        ("- name: m\n  type: email\n  email: {host: h, port: 70000, from: a@b.c, to: [a@b.c]}", "'m'", "email.port"),
        ("- name: m\n  type: email\n  email: {host: h, from: a@b.c, to: [a@b.c], username: u}", "'m'", "email.password_file"),
        ("- name: m\n  type: email\n  email: {host: h, from: a@b.c, to: [a@b.c], username: u, password_file: /nonexistent/pw}", "'m'", "email.password_file"),
        ("- name: m\n  type: email\n  email: {host: h, port: many, from: a@b.c, to: [a@b.c]}", "'m'", "email.port"),
        ("- name: m\n  type: email\n  email: {host: h, tls: true, starttls: true, from: a@b.c, to: [a@b.c]}", "'m'", "email.starttls"),
    ])
    func mistakesNameReceiverAndField(yaml: String, receiver: String, field: String) throws {
        do {
            _ = try Self.decode(yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            // Yams wraps what init(from:) throws; `find` digests that.
            let error = try #require(ReceiverConfigError.find(in: error), "\(error)")
            #expect(error.field == field, "\(error)")
            #expect(error.description.contains("receiver \(receiver)"), "\(error)")
            #expect(error.description.contains("field '\(field)'"), "\(error)")
        }
    }

    @Test func duplicateNamesAreRefused() throws {
        let configs = try Self.decode("- {name: a, type: webhook, url: 'http://x'}\n- {name: a, type: slack, url: 'http://y'}")
        #expect(throws: ReceiverConfigError(receiver: "a", field: "name", "two receivers are called 'a'; give each a unique name")) {
            try Receivers.make(configs)
        }
    }

    @Test func durations() {
        #expect(ReceiverConfig.parseDuration("250ms") == 0.25)
        #expect(ReceiverConfig.parseDuration("2m") == 120)
        #expect(ReceiverConfig.parseDuration("3") == 3)
        #expect(ReceiverConfig.parseDuration("-1s") == nil)
        #expect(ReceiverConfig.parseDuration("fast") == nil)
    }
}

@Suite struct SMTPProtocolTests {
    @Test func multiLineRepliesAreOneReply() throws {
        var pending: [String] = []
        var code: Int?
        #expect(try SMTPReplyDecoder.feed("250-mail.example greets you", pending: &pending, pendingCode: &code) == nil)
        #expect(try SMTPReplyDecoder.feed("250-STARTTLS", pending: &pending, pendingCode: &code) == nil)
        #expect(try SMTPReplyDecoder.feed("250-AUTH=LOGIN", pending: &pending, pendingCode: &code) == nil)
        let reply = try #require(try SMTPReplyDecoder.feed("250 AUTH LOGIN PLAIN CRAM-MD5", pending: &pending, pendingCode: &code))
        #expect(reply.code == 250)
        #expect(reply.lines.count == 4)
        #expect(reply.extensions["STARTTLS"] == [])
        #expect(reply.extensions["AUTH"] == ["LOGIN", "LOGIN", "PLAIN", "CRAM-MD5"])
        #expect(try SMTPReplyDecoder.feed("354", pending: &pending, pendingCode: &code) == SMTPReply(code: 354, lines: [""]))
        #expect(throws: SMTPReplyDecoder.Malformed.self) { try SMTPReplyDecoder.feed("hello", pending: &pending, pendingCode: &code) }
        _ = try SMTPReplyDecoder.feed("250-a", pending: &pending, pendingCode: &code)
        #expect(throws: SMTPReplyDecoder.Malformed.self) { try SMTPReplyDecoder.feed("550 b", pending: &pending, pendingCode: &code) }
    }

    @Test func authPrefersPlainThenLogin() {
        #expect(SMTPAuthMechanism.choose(offered: ["LOGIN", "PLAIN"]) == .plain)
        #expect(SMTPAuthMechanism.choose(offered: ["login", "CRAM-MD5"]) == .login)
        #expect(SMTPAuthMechanism.choose(offered: ["XOAUTH2"]) == nil)
    }

    @Test func dotStuffingDoublesLeadingDots() {
        #expect(MailMessage.dotStuffed("a\r\n.b\r\n.\r\nc") == "a\r\n..b\r\n..\r\nc\r\n.\r\n")
        #expect(MailMessage.dotStuffed(".\n") == "..\r\n.\r\n")
    }

    @Test func quotedPrintableKeepsLinesShortAndBytesSevenBit() {
        let text = "Disk full: 93 % — Über 9000 ✓ " + String(repeating: "x", count: 200) + " \nnext=line"
        let qp = MailMessage.quotedPrintable(text)
        for line in qp.components(separatedBy: "\r\n") { #expect(line.utf8.count <= 76, "\(line)") }
        #expect(qp.utf8.allSatisfy { $0 < 128 })
        #expect(qp.contains("=C3=9Cber"))
        #expect(qp.contains("=20\r\nnext=3Dline"))
        // Decoding gives the text back.
        var decoded: [UInt8] = []
        var bytes = Array(qp.replacingOccurrences(of: "=\r\n", with: "").utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "=") {
                let hex = String(decoding: bytes.prefix(2), as: UTF8.self)
                bytes = bytes.dropFirst(2)
                decoded.append(UInt8(hex, radix: 16)!)
            } else { decoded.append(b) }
        }
        #expect(String(decoding: decoded, as: UTF8.self) == text.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
    }

    @Test func nonASCIISubjectsBecomeEncodedWords() {
        #expect(MailMessage.encodeHeader("[FIRING:1] DiskFull") == "[FIRING:1] DiskFull")
        let subject = "[FIRING:1] 磁盘空间不足 on node1 — " + String(repeating: "告警", count: 20)
        let encoded = MailMessage.encodeHeader(subject)
        var joined = Data()
        for word in encoded.components(separatedBy: "\r\n ") {
            #expect(word.count <= 75)
            #expect(word.hasPrefix("=?UTF-8?B?") && word.hasSuffix("?="))
            joined += Data(base64Encoded: String(word.dropFirst(10).dropLast(2)))!
        }
        #expect(String(decoding: joined, as: UTF8.self) == subject)
        #expect(MailMessage.encodeHeader("a\r\nBcc: evil@x") == "a  Bcc: evil@x")
    }

    @Test func datesAreRFC5322InEnglish() {
        #expect(MailMessage.rfc5322Date(Date(timeIntervalSince1970: 1_795_000_000)) == "Wed, 18 Nov 2026 11:06:40 +0000")
    }
}

@testable import AlertReceivers
import Crypto
import Foundation
import Testing

/// Every HTTP receiver against a real HTTP server on loopback that records what arrives.
@Suite(.timeLimit(.minutes(2))) struct HTTPReceiverTests {
    static func receiver(_ type: ReceiverType, url: String, name: String = "r", secret: String? = nil,
                         timeout: TimeInterval = 10, maxAlerts: Int = 0, messageType: String? = nil) throws -> any AlertReceiver {
        try Receivers.make(ReceiverConfig(name: name, type: type, url: url, secret: secret, timeout: timeout,
                                          maxAlerts: maxAlerts, messageType: messageType))
    }

    /// Sends `n` through a receiver of `type` and returns the one request the server got.
    static func roundTrip(_ type: ReceiverType, _ n: AlertNotification, path: String = "/hook", secret: String? = nil,
                          maxAlerts: Int = 0, messageType: String? = nil,
                          answer: TestHTTPServer.Answer = .init()) async throws -> RecordedRequest {
        let server = try await TestHTTPServer.start(answers: [answer])
        do {
            let r = try receiver(type, url: server.baseURL + path, secret: secret, maxAlerts: maxAlerts, messageType: messageType)
            try await r.send(n)
            try await server.stop()
            let requests = server.requests
            try #require(requests.count == 1)
            #expect(requests[0].method == "POST")
            #expect(requests[0].header("Content-Type")?.hasPrefix("application/json") == true)
            return requests[0]
        } catch {
            try? await server.stop()
            throw error
        }
    }

    static let robotOK = TestHTTPServer.Answer(body: #"{"errcode":0,"errmsg":"ok"}"#)
    static let feishuOK = TestHTTPServer.Answer(body: #"{"code":0,"msg":"success","data":{}}"#)

    @Test func webhookPostsAlertmanagerJSON() async throws {
        let n = Fixture.firing()
        let request = try await Self.roundTrip(.webhook, n, path: "/alerts")
        #expect(request.uri == "/alerts")
        let decoded = try JSONDecoder().decode(AlertNotification.self, from: request.body)
        #expect(decoded == n)
        let json = try request.json()
        #expect(json["version"] as? String == "4")
        #expect(((json["alerts"] as? [[String: Any]])?.first?["endsAt"]) as? String == "0001-01-01T00:00:00Z")
    }

    @Test func webhookSendsTheBearerToken() async throws {
        let tokenFile = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-token-\(UUID().uuidString)").path
        try "tok-123\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        let server = try await TestHTTPServer.start()
        defer { Task { try? await server.stop() } }
        let hook = try Receivers.make(ReceiverConfig(name: "hook", type: .webhook, url: server.baseURL + "/a", bearerTokenFile: tokenFile))
        try await hook.send(Fixture.firing())
        #expect(server.requests.first?.header("Authorization") == "Bearer tok-123")
        // Rotated on disk: the next delivery carries the new token.
        try "tok-456".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        try await hook.send(Fixture.firing())
        #expect(server.requests.last?.header("Authorization") == "Bearer tok-456")
        #expect(throws: ReceiverConfigError.self) {
            try Receivers.make(ReceiverConfig(name: "s", type: .slack, url: "http://x", bearerTokenFile: tokenFile))
        }
    }

    @Test func webhookTruncatesToMaxAlerts() async throws {
        let request = try await Self.roundTrip(.webhook, Fixture.firing(), maxAlerts: 1)
        let decoded = try JSONDecoder().decode(AlertNotification.self, from: request.body)
        #expect(decoded.alerts.count == 1)
        #expect(decoded.truncatedAlerts == 1)
    }

    @Test func slackColoursBySeverity() async throws {
        for (n, colour) in [(Fixture.firing(severity: "critical"), "#D00000"), (Fixture.firing(severity: "warning"), "#F2A900"),
                            (Fixture.firing(severity: "info"), "#439FE0"), (Fixture.resolved(), "#2EB886")] {
            let json = try await Self.roundTrip(.slack, n).json()
            #expect(json["text"] as? String == AlertText.title(n))
            let attachment = try #require((json["attachments"] as? [[String: Any]])?.first)
            #expect(attachment["color"] as? String == colour)
            #expect(attachment["fallback"] as? String == AlertText.title(n))
            #expect(attachment["title_link"] as? String == "http://warbler.example:9095")
            #expect(attachment["mrkdwn_in"] as? [String] == ["text"])
            let text = try #require(attachment["text"] as? String)
            #expect(text.contains("DiskFull: Disk /var at 93%"))
            #expect(text.contains("instance=node1, mount=/var"))
            #expect(text.contains("<http://node1:9100/alerts?rule=DiskFull|source>"))
            #expect(text.contains(n.isFiring ? "*FIRING*" : "*RESOLVED*"))
        }
    }

    @Test func dingTalkMarkdownSignedInTheQuery() async throws {
        let secret = "SEC0123456789abcdef"
        let before = Date()
        let request = try await Self.roundTrip(.dingtalk, Fixture.firing(), path: "/robot/send?access_token=tok", secret: secret,
                                               answer: Self.robotOK)
        let json = try request.json()
        #expect(json["msgtype"] as? String == "markdown")
        let markdown = try #require(json["markdown"] as? [String: Any])
        #expect(markdown["title"] as? String == "[FIRING:2] DiskFull (critical)")
        let text = try #require(markdown["text"] as? String)
        #expect(text.hasPrefix("### [FIRING:2] DiskFull (critical)\n\n"))
        #expect(text.contains("**FIRING** DiskFull: Disk /var at 93%"))
        #expect(text.contains("[source](http://node1:9100/alerts?rule=DiskFull)"))
        // The signature, recomputed: Base64(HMAC-SHA256(key: secret, "timestamp\nsecret")), then URL-encoded.
        let query = request.query
        #expect(query["access_token"] == "tok")
        let ts = try #require(query["timestamp"].flatMap { Int64($0) })
        #expect(abs(Double(ts) / 1000 - before.timeIntervalSince1970) < 60)
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(ts)\n\(secret)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        #expect(query["sign"] == Data(mac).base64EncodedString())
        // The raw query carries the encoded form ('+', '/' and '=' never bare).
        let rawSign = try #require(request.uri.components(separatedBy: "sign=").last)
        #expect(!rawSign.contains("+") && !rawSign.contains("/") && !rawSign.contains("="))
    }

    @Test func dingTalkUnsignedHasNoSignature() async throws {
        let request = try await Self.roundTrip(.dingtalk, Fixture.resolved(), path: "/robot/send?access_token=tok", answer: Self.robotOK)
        #expect(request.query.keys.sorted() == ["access_token"])
        let text = try #require((try request.json()["markdown"] as? [String: Any])?["text"] as? String)
        #expect(text.hasPrefix("### [RESOLVED] DiskFull"))
        #expect(text.contains("resolved 2026-11-18 11:16:40 UTC"))
    }

    @Test func dingTalkRefusalIsAnError() async throws {
        let answer = TestHTTPServer.Answer(body: #"{"errcode":310000,"errmsg":"sign not match"}"#)
        do {
            _ = try await Self.roundTrip(.dingtalk, Fixture.firing(), path: "/robot/send?access_token=tok", secret: "s", answer: answer)
            Issue.record("a refusal was taken for a delivery")
        } catch let error as ReceiverError {
            #expect(error.description.contains("receiver 'r'"))
            #expect(error.description.contains("310000 sign not match"))
            #expect(error.permanent)
        }
    }

    @Test func weComMarkdownWithColours() async throws {
        let firing = try await Self.roundTrip(.wecom, Fixture.firing(), answer: Self.robotOK).json()
        #expect(firing["msgtype"] as? String == "markdown")
        let content = try #require((firing["markdown"] as? [String: Any])?["content"] as? String)
        #expect(content.hasPrefix("### <font color=\"warning\">[FIRING:2] DiskFull (critical)</font>"))
        #expect(content.contains("> **FIRING** DiskFull: Disk /var at 91%"))
        let resolved = try await Self.roundTrip(.wecom, Fixture.resolved(), answer: Self.robotOK).json()
        let resolvedContent = try #require((resolved["markdown"] as? [String: Any])?["content"] as? String)
        #expect(resolvedContent.hasPrefix("### <font color=\"info\">[RESOLVED] DiskFull</font>"))
    }

    @Test func weComStaysWithinItsSizeLimit() async throws {
        var n = Fixture.firing()
        n.alerts[0].annotations["description"] = String(repeating: "磁盘空间不足。", count: 1000)
        let json = try await Self.roundTrip(.wecom, n, answer: Self.robotOK).json()
        let content = try #require((json["markdown"] as? [String: Any])?["content"] as? String)
        #expect(content.utf8.count <= 4096)
        #expect(content.hasSuffix("…(truncated)"))
    }

    @Test func feishuCardSignedInTheBody() async throws {
        let secret = "feishu-secret"
        let before = Date()
        let json = try await Self.roundTrip(.feishu, Fixture.firing(), secret: secret, answer: Self.feishuOK).json()
        #expect(json["msg_type"] as? String == "interactive")
        let card = try #require(json["card"] as? [String: Any])
        let header = try #require(card["header"] as? [String: Any])
        #expect(header["template"] as? String == "red")
        let title = try #require(header["title"] as? [String: Any])
        #expect(title["tag"] as? String == "plain_text")
        #expect(title["content"] as? String == "[FIRING:2] DiskFull (critical)")
        let elements = try #require(card["elements"] as? [[String: Any]])
        let first = try #require(elements.first?["text"] as? [String: Any])
        #expect(elements.first?["tag"] as? String == "div")
        #expect(first["tag"] as? String == "lark_md")
        #expect((first["content"] as? String)?.contains("**FIRING** DiskFull: Disk /var at 93%") == true)
        #expect(elements.contains { $0["tag"] as? String == "hr" })
        // Signature recomputed: Base64(HMAC-SHA256(key: "timestamp\nsecret", message: empty)).
        let ts = try #require((json["timestamp"] as? String).flatMap { Int64($0) })
        #expect(abs(Double(ts) - before.timeIntervalSince1970) < 60)
        let mac = HMAC<SHA256>.authenticationCode(for: Data(), using: SymmetricKey(data: Data("\(ts)\n\(secret)".utf8)))
        #expect(json["sign"] as? String == Data(mac).base64EncodedString())
    }

    @Test func feishuTextAndResolvedColour() async throws {
        let text = try await Self.roundTrip(.feishu, Fixture.firing(), messageType: "text", answer: Self.feishuOK).json()
        #expect(text["msg_type"] as? String == "text")
        #expect(text["sign"] == nil)
        let content = try #require((text["content"] as? [String: Any])?["text"] as? String)
        #expect(content.hasPrefix("[FIRING:2] DiskFull (critical)\n"))
        #expect(content.contains("FIRING: DiskFull: Disk /var at 93%"))
        let card = try await Self.roundTrip(.feishu, Fixture.resolved(), answer: Self.feishuOK).json()
        #expect(((card["card"] as? [String: Any])?["header"] as? [String: Any])?["template"] as? String == "green")
    }

    @Test func feishuRefusalIsAnError() async throws {
        let answer = TestHTTPServer.Answer(body: #"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#)
        await #expect(throws: ReceiverError.self) {
            _ = try await Self.roundTrip(.feishu, Fixture.firing(), secret: "s", answer: answer)
        }
    }

    /// A non-2xx answer says which receiver, the status and the body; never the URL's secret path or query.
    @Test func non2xxSaysWhoAndWhat() async throws {
        let server = try await TestHTTPServer.start(answers: [.init(status: 503, body: "upstream down for maintenance")])
        defer { Task { try? await server.stop() } }
        let r = try Self.receiver(.slack, url: server.baseURL + "/services/T000/B000/SECRETTOKEN", name: "ops-slack")
        do {
            try await r.send(Fixture.firing())
            Issue.record("a 503 was taken for a delivery")
        } catch let error as ReceiverError {
            #expect(error.description.contains("receiver 'ops-slack'"))
            #expect(error.description.contains("answered 503 Service Unavailable: upstream down for maintenance"))
            #expect(error.description.contains("http://127.0.0.1:\(server.port)"))
            #expect(!error.description.contains("SECRETTOKEN"))
            #expect(!error.permanent)
        }
        let notFound = try await TestHTTPServer.start(answers: [.init(status: 404, body: "no_service")])
        defer { Task { try? await notFound.stop() } }
        do {
            try await Self.receiver(.slack, url: notFound.baseURL + "/x").send(Fixture.firing())
            Issue.record("a 404 was taken for a delivery")
        } catch let error as ReceiverError {
            #expect(error.permanent)
            #expect(error.description.contains("404 Not Found: no_service"))
        }
    }

    @Test func slowEndpointTimesOut() async throws {
        let server = try await TestHTTPServer.start(answers: [.init(delay: .seconds(5))])
        defer { Task { try? await server.stop() } }
        let r = try Self.receiver(.webhook, url: server.baseURL + "/slow", name: "slow", timeout: 0.3)
        do {
            try await r.send(Fixture.firing())
            Issue.record("no timeout")
        } catch let error as ReceiverError {
            #expect(error.description.contains("did not answer within 0.3s"))
        }
    }

    /// An https endpoint with a private CA: refused with the system's roots, delivered with `tls_ca_file`.
    @Test func httpsWithPrivateCA() async throws {
        let pki = try TestPKI()
        let caFile = try pki.writeCA()
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        let server = try await TestHTTPServer.start(pki: pki)
        defer { Task { try? await server.stop() } }
        #expect(server.baseURL.hasPrefix("https://"))
        do {
            try await Self.receiver(.webhook, url: server.baseURL + "/tls", name: "tls", timeout: 1).send(Fixture.firing())
            Issue.record("trusted a private CA without tls_ca_file")
        } catch let error as ReceiverError {
            #expect(error.description.contains("receiver 'tls': cannot POST to https://127.0.0.1"), "\(error)")
            #expect(error.description.contains("set `tls_ca_file`"), "\(error)")
        }
        #expect(server.requests.isEmpty)
        let trusting = try Receivers.make(ReceiverConfig(name: "tls", type: .webhook, url: server.baseURL + "/tls", tlsCAFile: caFile))
        try await trusting.send(Fixture.firing())
        #expect(server.requests.count == 1)
        #expect(try JSONDecoder().decode(AlertNotification.self, from: server.requests[0].body) == Fixture.firing())
    }

    @Test func unreachableEndpointSaysSo() async throws {
        // Bind and close to get a port nobody listens on.
        let server = try await TestHTTPServer.start()
        let url = server.baseURL + "/gone"
        try await server.stop()
        do {
            try await Self.receiver(.webhook, url: url, name: "gone", timeout: 2).send(Fixture.firing())
            Issue.record("delivered to a closed port")
        } catch let error as ReceiverError {
            #expect(error.description.contains("receiver 'gone': cannot POST to http://127.0.0.1"), "\(error)")
        }
    }
}

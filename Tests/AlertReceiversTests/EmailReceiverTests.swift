@testable import AlertReceivers
import Foundation
import Testing

/// The email receiver against a real SMTP conversation with an in-process server on loopback.
@Suite(.timeLimit(.minutes(2))) struct EmailReceiverTests {
    struct Setup {
        let pki: TestPKI
        let server: FakeSMTPServer
        let caFile: String
        let passwordFile: String

        init(_ options: FakeSMTPServer.Options = .init(), password: String? = nil) async throws {
            pki = try TestPKI()
            server = FakeSMTPServer(options: options)
            try await server.start(pki: pki)
            caFile = try pki.writeCA()
            passwordFile = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-smtp-pw-\(UUID().uuidString)").path
            try ((password ?? options.password) + "\n").write(toFile: passwordFile, atomically: true, encoding: .utf8)
        }

        func config(name: String = "mail", to: [String] = ["ops@example.com", "oncall@example.com"], starttls: Bool = true,
                    tls: Bool = false, trust: Bool = true, login: Bool = true, timeout: TimeInterval = 10) -> ReceiverConfig {
            ReceiverConfig(name: name, type: .email, email: .init(
                host: "127.0.0.1", port: server.port, starttls: starttls, tls: tls,
                username: login ? server.options.username : nil, passwordFile: login ? passwordFile : nil,
                from: "alerts@example.com", to: to, tlsCAFile: trust && (starttls || tls) ? caFile : nil, hello: "alertd.test"),
                timeout: timeout)
        }

        func send(_ config: ReceiverConfig, _ n: AlertNotification = Fixture.firing()) async throws {
            try await Receivers.make(config).send(n)
        }

        func finish() async {
            try? await server.stop()
            try? FileManager.default.removeItem(atPath: caFile)
            try? FileManager.default.removeItem(atPath: passwordFile)
        }
    }

    static func header(_ name: String, in message: String) -> String? {
        let head = message.components(separatedBy: "\r\n\r\n").first ?? ""
        // Unfold continuation lines first.
        let unfolded = head.replacingOccurrences(of: "\r\n ", with: " ")
        return unfolded.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix(name.lowercased() + ":") }
            .map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
    }

    static func decodeQP(_ text: String) -> String {
        var out: [UInt8] = []
        var bytes = Array(text.replacingOccurrences(of: "=\r\n", with: "").utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "="), let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func deliversOverSTARTTLSWithAuthPlain() async throws {
        let setup = try await Setup()
        defer { Task { await setup.finish() } }
        try await setup.send(setup.config())
        let delivery = try #require(setup.server.deliveries.first)
        #expect(setup.server.deliveries.count == 1)
        #expect(delivery.overTLS)
        #expect(delivery.authMechanism == "PLAIN")
        #expect(delivery.authUser == "alerts")
        #expect(delivery.mailFrom == "alerts@example.com")
        #expect(delivery.recipients == ["ops@example.com", "oncall@example.com"])
        let commands = setup.server.record.withLock { $0.commands }
        #expect(commands.prefix(3) == ["EHLO alertd.test", "STARTTLS", "EHLO alertd.test"])
        let attempts = setup.server.record.withLock { $0.authAttempts }
        #expect(attempts.count == 1 && attempts[0].password == "s3cret pass" && attempts[0].overTLS)

        let m = delivery.message
        #expect(Self.header("Subject", in: m) == "[FIRING:2] DiskFull (critical)")
        #expect(Self.header("From", in: m) == "alerts@example.com")
        #expect(Self.header("To", in: m) == "ops@example.com, oncall@example.com")
        #expect(Self.header("MIME-Version", in: m) == "1.0")
        #expect(Self.header("Content-Type", in: m) == "text/plain; charset=UTF-8")
        #expect(Self.header("Content-Transfer-Encoding", in: m) == "quoted-printable")
        let messageID = try #require(Self.header("Message-ID", in: m))
        #expect(messageID.hasPrefix("<") && messageID.hasSuffix("@example.com>"))
        let date = try #require(Self.header("Date", in: m))
        #expect(date.range(of: #"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$"#, options: .regularExpression) != nil)
        let body = Self.decodeQP(m.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
        #expect(body.contains("FIRING: DiskFull: Disk /var at 93%"))
        #expect(body.contains("labels: instance=node1, mount=/var"))
        #expect(body.contains("Alerts: http://warbler.example:9095"))
    }

    @Test func usesAuthLoginWhenThatIsAllTheServerOffers() async throws {
        var options = FakeSMTPServer.Options()
        options.authMechanisms = ["LOGIN", "CRAM-MD5"]
        let setup = try await Setup(options)
        defer { Task { await setup.finish() } }
        try await setup.send(setup.config())
        #expect(setup.server.deliveries.first?.authMechanism == "LOGIN")
        #expect(setup.server.deliveries.first?.overTLS == true)
    }

    @Test func refusedLoginSaysSoWithoutThePassword() async throws {
        var options = FakeSMTPServer.Options()
        options.rejectAuth = true
        let setup = try await Setup(options)
        defer { Task { await setup.finish() } }
        do {
            try await setup.send(setup.config(name: "ops-mail"))
            Issue.record("delivered despite a refused login")
        } catch let error as ReceiverError {
            let text = error.description
            #expect(text.contains("receiver 'ops-mail'"))
            #expect(text.contains("refused the login of 'alerts' (AUTH PLAIN): 535 5.7.8"))
            #expect(text.contains("email.password_file"))
            #expect(!text.contains("s3cret"))
            #expect(error.permanent)
        }
        #expect(setup.server.deliveries.isEmpty)
    }

    @Test func refusedRecipientStopsBeforeData() async throws {
        var options = FakeSMTPServer.Options()
        options.rejectRecipients = ["nobody@example.com"]
        let setup = try await Setup(options)
        defer { Task { await setup.finish() } }
        do {
            try await setup.send(setup.config(to: ["ops@example.com", "nobody@example.com"]))
            Issue.record("delivered despite a refused recipient")
        } catch let error as ReceiverError {
            #expect(error.description.contains("refused the recipient RCPT TO:<nobody@example.com>: 550 5.1.1"))
            #expect(error.description.contains("email.to"))
        }
        #expect(setup.server.deliveries.isEmpty)
        #expect(!setup.server.record.withLock { $0.commands }.contains("DATA"))
    }

    /// Lines starting with "." are doubled on the wire and arrive intact.
    @Test func dotStuffing() async throws {
        let setup = try await Setup()
        defer { Task { await setup.finish() } }
        var n = Fixture.firing()
        n.alerts[0].annotations["description"] = "first\n.\n.hidden line\n..two dots"
        try await setup.send(setup.config(), n)
        let delivery = try #require(setup.server.deliveries.first)
        #expect(delivery.rawLines.contains(".."))
        #expect(delivery.rawLines.contains("..hidden line"))
        #expect(delivery.rawLines.contains("...two dots"))
        #expect(!delivery.rawLines.contains { $0.hasPrefix(".") && !$0.hasPrefix("..") })
        let body = Self.decodeQP(delivery.message.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n"))
        #expect(body.contains("first\r\n.\r\n.hidden line\r\n..two dots"))
    }

    @Test func nonASCIISubjectIsEncoded() async throws {
        let setup = try await Setup()
        defer { Task { await setup.finish() } }
        var n = Fixture.firing()
        n.groupLabels = ["alertname": "磁盘空间不足"]
        try await setup.send(setup.config(), n)
        let m = try #require(setup.server.deliveries.first?.message)
        let subject = try #require(Self.header("Subject", in: m))
        #expect(subject.hasPrefix("=?UTF-8?B?"))
        let decoded = subject.components(separatedBy: " ").map { word in
            String(decoding: Data(base64Encoded: String(word.dropFirst(10).dropLast(2))) ?? Data(), as: UTF8.self)
        }.joined()
        #expect(decoded == "[FIRING:2] 磁盘空间不足 (critical)")
        #expect(m.utf8.allSatisfy { $0 < 128 })
    }

    @Test func refusesToLogInWithoutSTARTTLS() async throws {
        var options = FakeSMTPServer.Options()
        options.offerStartTLS = false
        let setup = try await Setup(options)
        defer { Task { await setup.finish() } }
        do {
            try await setup.send(setup.config())
            Issue.record("sent in the clear")
        } catch let error as ReceiverError {
            #expect(error.description.contains("does not offer STARTTLS"))
        }
        #expect(setup.server.record.withLock { $0.authAttempts }.isEmpty)
        // With `starttls: false` the operator accepts that: the server offers AUTH in the clear and the mail goes.
        try await setup.send(setup.config(starttls: false))
        #expect(setup.server.deliveries.first?.overTLS == false)
    }

    @Test func untrustedCertificateNamesTheFix() async throws {
        let setup = try await Setup()
        defer { Task { await setup.finish() } }
        do {
            try await setup.send(setup.config(trust: false))
            Issue.record("trusted an unknown CA")
        } catch let error as ReceiverError {
            #expect(error.description.contains("TLS with SMTP server 127.0.0.1:\(setup.server.port) failed"))
            #expect(error.description.contains("email.tls_ca_file"))
        }
        #expect(setup.server.record.withLock { $0.authAttempts }.isEmpty)
    }

    /// SMTPS: TLS from the first byte, no STARTTLS said; an untrusted certificate fails before anything is sent.
    @Test func implicitTLS() async throws {
        var options = FakeSMTPServer.Options()
        options.implicitTLS = true
        let setup = try await Setup(options)
        defer { Task { await setup.finish() } }
        try await setup.send(setup.config(tls: true))
        let delivery = try #require(setup.server.deliveries.first)
        #expect(delivery.overTLS)
        #expect(delivery.authMechanism == "PLAIN")
        #expect(!setup.server.record.withLock { $0.commands }.contains("STARTTLS"))
        do {
            try await setup.send(setup.config(tls: true, trust: false))
            Issue.record("trusted an unknown CA")
        } catch let error as ReceiverError {
            #expect(error.description.contains("TLS with SMTP server 127.0.0.1:\(setup.server.port) failed after connecting"), "\(error)")
            #expect(error.description.contains("email.tls_ca_file"))
        }
        #expect(setup.server.deliveries.count == 1)
    }

    @Test func silentServerTimesOut() async throws {
        var options = FakeSMTPServer.Options()
        options.silent = true
        let setup = try await Setup(options)
        defer { Task { await setup.finish() } }
        let started = ContinuousClock.now
        do {
            try await setup.send(setup.config(timeout: 0.5))
            Issue.record("delivered to a silent server")
        } catch let error as ReceiverError {
            #expect(error.description.contains("did not finish the delivery within 0.5s"))
        }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func mailFromRefusedWithoutLogin() async throws {
        let setup = try await Setup()
        defer { Task { await setup.finish() } }
        do {
            try await setup.send(setup.config(login: false))
            Issue.record("delivered without the login the server requires")
        } catch let error as ReceiverError {
            #expect(error.description.contains("refused the sender MAIL FROM:<alerts@example.com>: 530 5.7.0 Authentication required"))
        }
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

/// Email through SMTP: one plain-text mail per notification to every `to` address.
public struct EmailReceiver: AlertReceiver {
    public let name: String
    let email: ReceiverConfig.Email
    let client: SMTPClient

    init(name: String, email: ReceiverConfig.Email, timeout: TimeInterval, group: any EventLoopGroup) {
        self.name = name
        self.email = email
        self.client = SMTPClient(receiver: name, host: email.host, port: email.port, starttls: email.starttls,
                                 implicitTLS: email.tls, caFile: email.tlsCAFile, hello: email.hello, timeout: timeout,
                                 group: group)
    }

    /// Subject `[FIRING:1] DiskFull (critical)`; the body lists every alert.
    public func message(for n: AlertNotification, date: Date = Date()) -> String {
        MailMessage.render(from: email.from, to: email.to, subject: AlertText.title(n), body: AlertText.plain(n),
                           date: date, messageID: MailMessage.makeMessageID(from: email.from))
    }

    /// Reads the password now rather than at start-up, so a rotated file takes effect without a restart.
    func credentials() throws -> SMTPClient.Credentials? {
        guard let username = email.username, let file = email.passwordFile else { return nil }
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw ReceiverError(receiver: name, "cannot read email.password_file '\(file)': \(error.localizedDescription); restore the file (readable by the warbler user)")
        }
        var password = text
        while password.hasSuffix("\n") || password.hasSuffix("\r") { password.removeLast() }
        guard !password.isEmpty else {
            throw ReceiverError(receiver: name, "email.password_file '\(file)' is empty; write the SMTP password into it")
        }
        return SMTPClient.Credentials(username: username, password: password)
    }

    public func send(_ notification: AlertNotification) async throws {
        try await client.send(from: email.from, to: email.to, message: message(for: notification),
                              credentials: try credentials())
    }
}

/// Builds receivers from their configuration.
public enum Receivers {
    /// The receiver `config` describes. Validates it first (a `ReceiverConfigError` names the field).
    /// HTTP receivers share `httpClient`; SMTP connections run on `eventLoopGroup`.
    public static func make(_ config: ReceiverConfig, httpClient: HTTPClient = .shared,
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws -> any AlertReceiver {
        try config.validate()
        let poster = HTTPPoster(receiver: config.name, client: httpClient, timeout: config.timeout, caFile: config.tlsCAFile)
        let url = config.url ?? ""
        switch config.type {
        case .webhook:
            return WebhookReceiver(name: config.name, url: url, maxAlerts: config.maxAlerts,
                                   bearerTokenFile: config.bearerTokenFile, poster: poster)
        case .slack:
            return SlackReceiver(name: config.name, url: url, poster: poster)
        case .dingtalk:
            return DingTalkReceiver(name: config.name, url: url, secret: config.secret, poster: poster)
        case .wecom:
            return WeComReceiver(name: config.name, url: url, poster: poster)
        case .feishu:
            return FeishuReceiver(name: config.name, url: url, secret: config.secret,
                                  card: (config.messageType ?? "interactive") == "interactive", poster: poster)
        case .email:
            guard let email = config.email else {
                throw ReceiverConfigError(receiver: config.name, field: "email", "a `type: email` receiver needs an `email:` mapping")
            }
            return EmailReceiver(name: config.name, email: email, timeout: config.timeout, group: eventLoopGroup)
        }
    }

    /// All of them, refusing two with the same name.
    public static func make(_ configs: [ReceiverConfig], httpClient: HTTPClient = .shared,
                            eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws -> [any AlertReceiver] {
        var seen = Set<String>()
        return try configs.map { config in
            guard seen.insert(config.name).inserted else {
                throw ReceiverConfigError(receiver: config.name, field: "name", "two receivers are called '\(config.name)'; give each a unique name")
            }
            return try make(config, httpClient: httpClient, eventLoopGroup: eventLoopGroup)
        }
    }
}

extension AlertNotification {
    /// What `warbler alerts test RECEIVER` sends: one firing `WarblerTestNotification` alert of severity info.
    public static func test(receiver: String, externalURL: String = "", now: Date = Date()) -> AlertNotification {
        let labels = ["alertname": "WarblerTestNotification", "severity": "info"]
        let alert = Alert(
            status: "firing", labels: labels,
            annotations: [
                "summary": "Test notification from Warbler",
                "description": "Sent by `warbler alerts test \(receiver)` to check that this receiver works. Nothing is wrong.",
            ],
            startsAt: now, generatorURL: externalURL, fingerprint: "0000000000000000")
        return AlertNotification(receiver: receiver, groupKey: "{}:{alertname=\"WarblerTestNotification\"}",
                                 groupLabels: ["alertname": "WarblerTestNotification"], externalURL: externalURL,
                                 alerts: [alert])
    }
}

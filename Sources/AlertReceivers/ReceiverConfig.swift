import Foundation

/// The kinds of receiver a `ReceiverConfig` can name.
public enum ReceiverType: String, Sendable, CaseIterable, Codable {
    case webhook, slack, dingtalk, wecom, feishu, email
}

/// A configuration mistake: which receiver, which field, and what to do about it.
public struct ReceiverConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var receiver: String
    public var field: String
    public var problem: String

    public init(receiver: String, field: String, _ problem: String) {
        self.receiver = receiver
        self.field = field
        self.problem = problem
    }

    public var description: String {
        "receiver '\(receiver.isEmpty ? "(unnamed)" : receiver)', field '\(field)': \(problem)"
    }

    /// The `ReceiverConfigError` inside `error`: decoders (Yams among them) wrap what `init(from:)` throws in a
    /// `DecodingError`; this digs it out so the operator sees the plain message.
    public static func find(in error: any Error) -> ReceiverConfigError? {
        if let own = error as? ReceiverConfigError { return own }
        let context: DecodingError.Context
        switch error as? DecodingError {
        case .dataCorrupted(let c)?: context = c
        case .typeMismatch(_, let c)?: context = c
        case .valueNotFound(_, let c)?: context = c
        case .keyNotFound(_, let c)?: context = c
        default: return nil
        }
        return context.underlyingError.flatMap { find(in: $0) }
    }
}

/// One entry of the `receivers:` list in alerts.yaml.
///
/// ```yaml
/// - name: ops-chat
///   type: dingtalk            # webhook | slack | dingtalk | wecom | feishu | email
///   url: https://oapi.dingtalk.com/robot/send?access_token=…
///   secret: SEC…              # optional: DingTalk and Feishu signing
///   timeout: 10s
/// ```
///
/// Decoding validates the entry; a mistake throws a `ReceiverConfigError` that names the receiver and the field.
public struct ReceiverConfig: Decodable, Sendable, Equatable {
    /// SMTP delivery settings (`type: email`).
    public struct Email: Decodable, Sendable, Equatable {
        public var host: String
        /// Default 587 (submission).
        public var port: Int
        /// Upgrade with STARTTLS before anything else is said (default true); the server must offer it.
        public var starttls: Bool
        /// TLS from the first byte ("SMTPS", port 465 by default) instead of STARTTLS (default false).
        public var tls: Bool
        public var username: String?
        /// A file holding the SMTP password (one line; a trailing newline is ignored).
        public var passwordFile: String?
        public var from: String
        public var to: [String]
        /// PEM trust roots for the server's certificate instead of the system's.
        public var tlsCAFile: String?
        /// The name given in EHLO (default: this host's name).
        public var hello: String?

        public init(host: String, port: Int? = nil, starttls: Bool = true, tls: Bool = false, username: String? = nil,
                    passwordFile: String? = nil, from: String, to: [String], tlsCAFile: String? = nil,
                    hello: String? = nil) {
            self.host = host
            self.port = port ?? (tls ? 465 : 587)
            self.starttls = starttls && !tls
            self.tls = tls
            self.username = username
            self.passwordFile = passwordFile
            self.from = from
            self.to = to
            self.tlsCAFile = tlsCAFile
            self.hello = hello
        }

        enum CodingKeys: String, CodingKey {
            case host, port, starttls, tls, username, from, to, hello
            case passwordFile = "password_file"
            case tlsCAFile = "tls_ca_file"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            host = try c.decodeIfPresent(String.self, forKey: .host) ?? ""
            tls = try c.decodeIfPresent(Bool.self, forKey: .tls) ?? false
            port = try c.decodeIfPresent(Int.self, forKey: .port) ?? (tls ? 465 : 587)
            let starttls = try c.decodeIfPresent(Bool.self, forKey: .starttls)
            if tls, starttls == true {
                throw DecodingError.dataCorruptedError(
                    forKey: .starttls, in: c,
                    debugDescription: "`tls: true` (TLS from the start, port 465) and `starttls: true` exclude each other; keep one")
            }
            self.starttls = tls ? false : (starttls ?? true)
            username = try c.decodeIfPresent(String.self, forKey: .username)
            passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
            from = try c.decodeIfPresent(String.self, forKey: .from) ?? ""
            if let one = try? c.decodeIfPresent(String.self, forKey: .to) {
                to = [one]
            } else {
                to = try c.decodeIfPresent([String].self, forKey: .to) ?? []
            }
            tlsCAFile = try c.decodeIfPresent(String.self, forKey: .tlsCAFile)
            hello = try c.decodeIfPresent(String.self, forKey: .hello)
        }
    }

    public var name: String
    public var type: ReceiverType
    /// The endpoint of the HTTP receivers.
    public var url: String?
    /// DingTalk: signs with `timestamp` and `sign` query parameters. Feishu: `timestamp` and `sign` in the body.
    public var secret: String?
    public var email: Email?
    /// Seconds one delivery attempt may take (default 10). YAML takes `10s`, `500ms`, `2m` or a number of seconds.
    public var timeout: TimeInterval
    /// Webhook only: at most this many alerts per notification, the rest counted in `truncatedAlerts` (0: all).
    public var maxAlerts: Int
    /// Feishu only: `interactive` (a card, the default) or `text`.
    public var messageType: String?
    /// HTTP receivers: PEM trust roots for an https `url` instead of the system's (an internal CA).
    public var tlsCAFile: String?
    /// Webhook only: a file holding a token sent as `Authorization: Bearer …` (read at each delivery).
    public var bearerTokenFile: String?

    public static let defaultTimeout: TimeInterval = 10

    public init(name: String, type: ReceiverType, url: String? = nil, secret: String? = nil, email: Email? = nil,
                timeout: TimeInterval = ReceiverConfig.defaultTimeout, maxAlerts: Int = 0, messageType: String? = nil,
                tlsCAFile: String? = nil, bearerTokenFile: String? = nil) {
        self.name = name
        self.type = type
        self.url = url
        self.secret = secret
        self.email = email
        self.timeout = timeout
        self.maxAlerts = maxAlerts
        self.messageType = messageType
        self.tlsCAFile = tlsCAFile
        self.bearerTokenFile = bearerTokenFile
    }

    enum CodingKeys: String, CodingKey {
        case name, type, url, secret, email, timeout
        case maxAlerts = "max_alerts"
        case messageType = "message_type"
        case tlsCAFile = "tls_ca_file"
        case bearerTokenFile = "bearer_token_file"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = (try? c.decodeIfPresent(String.self, forKey: .name)) ?? nil
        guard let name, !name.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ReceiverConfigError(receiver: "", field: "name", "every receiver needs a `name` (routes refer to it); add one")
        }
        self.name = name
        let typeText = (try? c.decodeIfPresent(String.self, forKey: .type)) ?? nil
        guard let typeText else {
            throw ReceiverConfigError(receiver: name, field: "type", "missing; set one of \(Self.typeList)")
        }
        guard let type = ReceiverType(rawValue: typeText.lowercased()) else {
            throw ReceiverConfigError(receiver: name, field: "type", "'\(typeText)' is not a receiver type; use one of \(Self.typeList)")
        }
        self.type = type
        func field<T: Decodable>(_ key: CodingKeys, _ what: String) throws -> T? {
            do { return try c.decodeIfPresent(T.self, forKey: key) } catch {
                throw ReceiverConfigError(receiver: name, field: key.stringValue, "must be \(what)")
            }
        }
        url = try field(.url, "a URL string")
        secret = try field(.secret, "a string")
        do {
            email = try c.decodeIfPresent(Email.self, forKey: .email)
        } catch let error as ReceiverConfigError {
            throw error
        } catch let DecodingError.typeMismatch(_, context) {
            let key = context.codingPath.last?.stringValue ?? ""
            throw ReceiverConfigError(receiver: name, field: "email." + key, "has the wrong type: \(context.debugDescription)")
        } catch let DecodingError.dataCorrupted(context) where context.codingPath.last?.stringValue == "starttls" {
            throw ReceiverConfigError(receiver: name, field: "email.starttls", context.debugDescription)
        } catch {
            throw ReceiverConfigError(receiver: name, field: "email", "must be a mapping with host, port, from and to: \(error)")
        }
        if let seconds = try? c.decodeIfPresent(Double.self, forKey: .timeout) {
            timeout = seconds
        } else if let text: String = try field(.timeout, "a duration such as 10s") {
            guard let seconds = Self.parseDuration(text) else {
                throw ReceiverConfigError(receiver: name, field: "timeout", "'\(text)' is not a duration; write it like 10s, 500ms or 2m")
            }
            timeout = seconds
        } else {
            timeout = Self.defaultTimeout
        }
        maxAlerts = try field(.maxAlerts, "a whole number") ?? 0
        messageType = try field(.messageType, "`interactive` or `text`")
        tlsCAFile = try field(.tlsCAFile, "a file path")
        bearerTokenFile = try field(.bearerTokenFile, "a file path")
        try validate()
    }

    static var typeList: String { ReceiverType.allCases.map(\.rawValue).joined(separator: ", ") }

    /// `500ms`, `10s`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
    public static func parseDuration(_ text: String) -> TimeInterval? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v.isFinite, v >= 0 else { return nil }
            return v * scale
        }
        guard let v = Double(t), v.isFinite, v >= 0 else { return nil }
        return v
    }

    /// Checks the entry for its type; throws the first mistake found.
    public func validate() throws {
        func fail(_ field: String, _ problem: String) -> ReceiverConfigError {
            ReceiverConfigError(receiver: name, field: field, problem)
        }
        if name.trimmingCharacters(in: .whitespaces).isEmpty {
            throw fail("name", "every receiver needs a `name` (routes refer to it); add one")
        }
        guard timeout > 0, timeout <= 300 else {
            throw fail("timeout", "must be more than 0 and at most 5m (one delivery attempt); retries come on top")
        }
        switch type {
        case .email:
            guard let email else {
                throw fail("email", "a `type: email` receiver needs an `email:` mapping with host, from and to")
            }
            if url != nil { throw fail("url", "email receivers take `email.host`, not `url`; remove `url`") }
            try validate(email, fail)
        case .webhook, .slack, .dingtalk, .wecom, .feishu:
            guard let url, !url.isEmpty else {
                throw fail("url", "a `type: \(type.rawValue)` receiver needs the `url` to POST to; \(Self.urlHint(type))")
            }
            guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", let host = parsed.host, !host.isEmpty else {
                throw fail("url", "'\(url)' is not an http:// or https:// URL; \(Self.urlHint(type))")
            }
            if email != nil { throw fail("email", "only `type: email` receivers take `email:`; remove it") }
            if secret != nil, type != .dingtalk, type != .feishu {
                throw fail("secret", "only dingtalk and feishu receivers sign requests; remove `secret`")
            }
            if let secret, secret.isEmpty { throw fail("secret", "is empty; paste the robot's signing secret or remove the key") }
            guard maxAlerts >= 0 else { throw fail("max_alerts", "must be 0 (no limit) or more") }
            if maxAlerts > 0, type != .webhook { throw fail("max_alerts", "only webhook receivers truncate; remove it") }
            if let messageType {
                guard type == .feishu else { throw fail("message_type", "only feishu receivers take it; remove it") }
                guard messageType == "interactive" || messageType == "text" else {
                    throw fail("message_type", "'\(messageType)' is not supported; use `interactive` (a card) or `text`")
                }
            }
            if let tlsCAFile { try Self.checkReadable(tlsCAFile, "tls_ca_file", fail) }
            if let bearerTokenFile {
                guard type == .webhook else { throw fail("bearer_token_file", "only webhook receivers send it (robot URLs carry their own token); remove it") }
                try Self.checkReadable(bearerTokenFile, "bearer_token_file", fail)
            }
        }
    }

    private func validate(_ email: Email, _ fail: (String, String) -> ReceiverConfigError) throws {
        if email.host.isEmpty { throw fail("email.host", "missing; set the SMTP server's host name") }
        guard (1...65535).contains(email.port) else {
            throw fail("email.port", "\(email.port) is not a TCP port; use 587 (submission with STARTTLS) or 25")
        }
        if email.from.isEmpty { throw fail("email.from", "missing; set the sender address, like alerts@example.com") }
        guard Self.isAddress(email.from) else {
            throw fail("email.from", "'\(email.from)' is not an email address like alerts@example.com")
        }
        if email.to.isEmpty { throw fail("email.to", "missing; list at least one recipient address") }
        for address in email.to where !Self.isAddress(address) {
            throw fail("email.to", "'\(address)' is not an email address like ops@example.com")
        }
        switch (email.username, email.passwordFile) {
        case (nil, nil): break
        case (.some, nil): throw fail("email.password_file", "`username` is set but no `password_file`; name a file holding the password")
        case (nil, .some): throw fail("email.username", "`password_file` is set but no `username`; add the SMTP user name")
        case (let user?, let file?):
            if user.isEmpty { throw fail("email.username", "is empty; set the SMTP user name or remove both username and password_file") }
            try Self.checkReadable(file, "email.password_file", fail)
        }
        if let ca = email.tlsCAFile {
            guard email.starttls || email.tls else {
                throw fail("email.tls_ca_file", "only used with TLS (`starttls: true` or `tls: true`); remove it or enable TLS")
            }
            try Self.checkReadable(ca, "email.tls_ca_file", fail)
        }
        if let hello = email.hello, hello.isEmpty || hello.contains(where: { $0.isWhitespace }) {
            throw fail("email.hello", "'\(hello)' is not a host name; remove it to use this host's name")
        }
    }

    private static func checkReadable(_ path: String, _ field: String, _ fail: (String, String) -> ReceiverConfigError) throws {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw fail(field, "cannot read '\(path)'; create it (mode 0600 or 0640, readable by the warbler user) or fix the path")
        }
    }

    /// A deliberately plain check: local@domain, no spaces, no angle brackets or line breaks that would break SMTP.
    static func isAddress(_ text: String) -> Bool {
        guard let at = text.lastIndex(of: "@"), at != text.startIndex, text.index(after: at) != text.endIndex else {
            return false
        }
        return !text.contains { $0.isWhitespace || $0 == "<" || $0 == ">" || $0 == "," || $0.isNewline }
    }

    static func urlHint(_ type: ReceiverType) -> String {
        switch type {
        case .webhook: return "give the endpoint that takes Alertmanager's webhook JSON"
        case .slack: return "use the incoming-webhook URL, https://hooks.slack.com/services/…"
        case .dingtalk: return "use the robot's URL, https://oapi.dingtalk.com/robot/send?access_token=…"
        case .wecom: return "use the robot's URL, https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"
        case .feishu: return "use the robot's URL, https://open.feishu.cn/open-apis/bot/v2/hook/…"
        case .email: return ""
        }
    }
}

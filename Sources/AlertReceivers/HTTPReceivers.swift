import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL

/// A delivery that failed: which receiver, and what the remote said (or why it could not be reached).
public struct ReceiverError: Error, CustomStringConvertible, Sendable, Equatable {
    public var receiver: String
    public var message: String
    /// The remote answered but refused (an HTTP 4xx, an SMTP 5xx): retrying the same thing will not help.
    public var permanent: Bool

    public init(receiver: String, _ message: String, permanent: Bool = false) {
        self.receiver = receiver
        self.message = message
        self.permanent = permanent
    }

    public var description: String { "receiver '\(receiver)': \(message)" }
}

/// POSTs JSON with AsyncHTTPClient and turns every unhappy answer into a `ReceiverError`.
struct HTTPPoster: Sendable {
    let receiver: String
    let client: HTTPClient
    let timeout: TimeInterval
    /// Trust only these PEM roots for https (a dedicated client per request; alerts are rare).
    let caFile: String?

    /// Where the request went, without the path or query: robot URLs carry their secret token there.
    static func redacted(_ url: String) -> String {
        guard let u = URL(string: url), let scheme = u.scheme, let host = u.host else { return "the configured url" }
        return "\(scheme)://\(host)\(u.port.map { ":\($0)" } ?? "")"
    }

    /// POSTs `body`; returns the answer's body when the status is 2xx, throws otherwise.
    func post(_ url: String, json body: Data, headers: [(String, String)] = []) async throws -> String {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        request.headers.add(name: "User-Agent", value: "warbler-alertd")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(data: body))
        let where_ = Self.redacted(url)
        let client: HTTPClient
        let owned: Bool
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(caFile)
            client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(tlsConfiguration: tls))
            owned = true
        } else {
            client = self.client
            owned = false
        }
        do {
            let answer = try await exchange(client, request, where_)
            if owned { try? await client.shutdown() }
            return answer
        } catch {
            if owned { try? await client.shutdown() }
            throw error
        }
    }

    private func exchange(_ client: HTTPClient, _ request: HTTPClientRequest, _ where_: String) async throws -> String {
        let response: HTTPClientResponse
        let text: String
        do {
            response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
            let buffer = try await response.body.collect(upTo: 1 << 20)
            text = String(buffer: buffer)
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            throw ReceiverError(receiver: receiver, "\(where_) did not answer within \(Self.seconds(timeout)); check that it is reachable or raise `timeout`")
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as NIOSSLError {
            throw ReceiverError(receiver: receiver, "cannot POST to \(where_): TLS failed: \(error); if it uses a private CA, set `tls_ca_file` to that CA's PEM file")
        } catch let error as BoringSSLError {
            throw ReceiverError(receiver: receiver, "cannot POST to \(where_): TLS failed: \(error); if it uses a private CA, set `tls_ca_file` to that CA's PEM file")
        } catch {
            throw ReceiverError(receiver: receiver, "cannot POST to \(where_): \(error)")
        }
        guard (200..<300).contains(response.status.code) else {
            let permanent = (400..<500).contains(response.status.code) && response.status.code != 408 && response.status.code != 429
            throw ReceiverError(
                receiver: receiver,
                "\(where_) answered \(response.status.code) \(response.status.reasonPhrase)\(Self.excerpt(text))",
                permanent: permanent)
        }
        return text
    }

    static func excerpt(_ body: String) -> String {
        let t = body.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.isEmpty else { return "" }
        return ": " + (t.count > 300 ? String(t.prefix(300)) + "…" : t)
    }

    static func seconds(_ t: TimeInterval) -> String {
        t == t.rounded() ? "\(Int(t))s" : "\(t)s"
    }
}

/// The generic webhook: POSTs the notification as Alertmanager's webhook JSON (version 4).
public struct WebhookReceiver: AlertReceiver {
    public let name: String
    let poster: HTTPPoster
    let url: String
    let maxAlerts: Int
    let bearerTokenFile: String?

    init(name: String, url: String, maxAlerts: Int, bearerTokenFile: String?, poster: HTTPPoster) {
        self.name = name
        self.url = url
        self.maxAlerts = maxAlerts
        self.bearerTokenFile = bearerTokenFile
        self.poster = poster
    }

    /// `Authorization: Bearer …` from the token file, read now so a rotated token takes effect at once.
    func authorization() throws -> [(String, String)] {
        guard let file = bearerTokenFile else { return [] }
        let token: String
        do { token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) } catch {
            throw ReceiverError(receiver: name, "cannot read bearer_token_file '\(file)': \(error.localizedDescription); restore the file (readable by the warbler user)")
        }
        guard !token.isEmpty, !token.contains(where: { $0.isNewline }) else {
            throw ReceiverError(receiver: name, "bearer_token_file '\(file)' holds no single-line token; write the token into it")
        }
        return [("Authorization", "Bearer \(token)")]
    }

    /// The notification as this receiver sends it: alerts beyond `max_alerts` dropped and counted.
    public func payload(_ n: AlertNotification) -> AlertNotification {
        guard maxAlerts > 0, n.alerts.count > maxAlerts else { return n }
        var copy = n
        copy.truncatedAlerts += n.alerts.count - maxAlerts
        copy.alerts = Array(n.alerts.prefix(maxAlerts))
        return copy
    }

    public func send(_ notification: AlertNotification) async throws {
        _ = try await poster.post(url, json: try payload(notification).webhookJSON(), headers: try authorization())
    }
}

/// Slack incoming webhook: `text` for the notification line and one attachment coloured by severity.
public struct SlackReceiver: AlertReceiver {
    public let name: String
    let poster: HTTPPoster
    let url: String

    init(name: String, url: String, poster: HTTPPoster) {
        self.name = name
        self.url = url
        self.poster = poster
    }

    /// Hex colours: red critical, amber warning, blue info, green resolved.
    static func colour(_ severity: AlertSeverity?) -> String {
        switch severity {
        case nil: return "#2EB886"
        case .info?: return "#439FE0"
        case .warning?: return "#F2A900"
        case .critical?: return "#D00000"
        }
    }

    static func payload(_ n: AlertNotification, now: Date = Date()) -> JSONValue {
        let title = AlertText.title(n)
        var attachment: [String: JSONValue] = [
            "color": .string(colour(AlertText.severity(n))),
            "fallback": .string(title),
            "title": .string(title),
            "text": .string(AlertText.slack(n)),
            "mrkdwn_in": .array([.string("text")]),
            "footer": .string("Warbler alertd"),
            "ts": .number(Double(Int(now.timeIntervalSince1970))),
        ]
        if !n.externalURL.isEmpty { attachment["title_link"] = .string(n.externalURL) }
        return .object(["text": .string(title), "attachments": .array([.object(attachment)])])
    }

    public func send(_ notification: AlertNotification) async throws {
        _ = try await poster.post(url, json: Self.payload(notification).data())
    }
}

/// The `errcode`/`errmsg` (DingTalk, WeCom) or `code`/`msg` (Feishu) a robot answers with HTTP 200.
struct RobotAnswer: Decodable {
    var errcode: Int?
    var errmsg: String?
    var code: Int?
    var msg: String?
    var StatusCode: Int?
    var StatusMessage: String?

    /// Throws when the body says the message was refused.
    static func check(_ body: String, receiver: String, vendor: String, hint: String) throws {
        guard let answer = try? JSONDecoder().decode(RobotAnswer.self, from: Data(body.utf8)) else {
            throw ReceiverError(receiver: receiver, "\(vendor) answered with something that is not its JSON reply\(HTTPPoster.excerpt(body)); check the url")
        }
        let code = answer.errcode ?? answer.code ?? answer.StatusCode
        let message = answer.errmsg ?? answer.msg ?? answer.StatusMessage ?? ""
        guard let code else {
            throw ReceiverError(receiver: receiver, "\(vendor) answered without a result code\(HTTPPoster.excerpt(body)); check the url")
        }
        guard code == 0 else {
            throw ReceiverError(receiver: receiver, "\(vendor) refused the message: code \(code) \(message)\(hint)", permanent: true)
        }
    }
}

/// DingTalk custom robot: `msgtype: markdown`; with a `secret`, the `timestamp` and `sign` query parameters.
public struct DingTalkReceiver: AlertReceiver {
    public let name: String
    let poster: HTTPPoster
    let url: String
    let secret: String?

    init(name: String, url: String, secret: String?, poster: HTTPPoster) {
        self.name = name
        self.url = url
        self.secret = secret
        self.poster = poster
    }

    /// DingTalk caps a markdown message's text at 20,000 bytes.
    static let limit = 20_000

    static func payload(_ n: AlertNotification) -> JSONValue {
        let title = AlertText.title(n)
        let text = AlertText.truncate(
            (["### \(title)"] + AlertText.markdownParts(n)).joined(separator: "\n\n"), utf8Bytes: limit)
        return .object([
            "msgtype": .string("markdown"),
            "markdown": .object(["title": .string(title), "text": .string(text)]),
        ])
    }

    /// Base64 of HMAC-SHA256 over "timestamp\nsecret" keyed with the secret (before URL encoding).
    public static func signature(timestampMillis: Int64, secret: String) -> String {
        let key = SymmetricKey(data: Data(secret.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(timestampMillis)\n\(secret)".utf8), using: key)
        return Data(mac).base64EncodedString()
    }

    /// The URL with `timestamp` (milliseconds) and the URL-encoded `sign` appended.
    static func signedURL(_ url: String, secret: String, now: Date) -> String {
        let ts = Int64((now.timeIntervalSince1970 * 1000).rounded())
        let sign = signature(timestampMillis: ts, secret: secret)
            .addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        return url + (url.contains("?") ? "&" : "?") + "timestamp=\(ts)&sign=\(sign)"
    }

    public func send(_ notification: AlertNotification) async throws {
        let target = secret.map { Self.signedURL(url, secret: $0, now: Date()) } ?? url
        let body = try await poster.post(target, json: Self.payload(notification).data())
        try RobotAnswer.check(body, receiver: name, vendor: "DingTalk",
                              hint: "; check the access_token, the `secret` (signing) and the robot's keyword and IP settings")
    }
}

/// WeCom (WeChat Work) group robot: `msgtype: markdown`.
public struct WeComReceiver: AlertReceiver {
    public let name: String
    let poster: HTTPPoster
    let url: String

    init(name: String, url: String, poster: HTTPPoster) {
        self.name = name
        self.url = url
        self.poster = poster
    }

    /// WeCom caps markdown content at 4,096 bytes.
    static let limit = 4096

    static func payload(_ n: AlertNotification) -> JSONValue {
        .object([
            "msgtype": .string("markdown"),
            "markdown": .object(["content": .string(AlertText.truncate(AlertText.wecom(n), utf8Bytes: limit))]),
        ])
    }

    public func send(_ notification: AlertNotification) async throws {
        let body = try await poster.post(url, json: Self.payload(notification).data())
        try RobotAnswer.check(body, receiver: name, vendor: "WeCom", hint: "; check the robot's key in the url")
    }
}

/// Feishu (Lark) custom robot: an `interactive` card (or `text`); with a `secret`, `timestamp` and `sign` in the body.
public struct FeishuReceiver: AlertReceiver {
    public let name: String
    let poster: HTTPPoster
    let url: String
    let secret: String?
    let card: Bool

    init(name: String, url: String, secret: String?, card: Bool, poster: HTTPPoster) {
        self.name = name
        self.url = url
        self.secret = secret
        self.card = card
        self.poster = poster
    }

    /// Feishu refuses request bodies over 20 KB; leave room for the JSON around the text.
    static let limit = 18_000

    /// Card header colours: red critical, orange warning, blue info, green resolved.
    static func template(_ severity: AlertSeverity?) -> String {
        switch severity {
        case nil: return "green"
        case .info?: return "blue"
        case .warning?: return "orange"
        case .critical?: return "red"
        }
    }

    static func payload(_ n: AlertNotification, card: Bool) -> JSONValue {
        guard card else {
            return .object([
                "msg_type": .string("text"),
                "content": .object(["text": .string(AlertText.truncate(AlertText.plain(n), utf8Bytes: limit))]),
            ])
        }
        var elements: [JSONValue] = []
        var used = 0
        for (i, part) in AlertText.markdownParts(n).enumerated() {
            used += part.utf8.count
            if used > limit {
                elements.append(.object(["tag": .string("div"), "text": .object(["tag": .string("lark_md"), "content": .string("…(truncated)")])]))
                break
            }
            if i > 0 { elements.append(.object(["tag": .string("hr")])) }
            elements.append(.object(["tag": .string("div"), "text": .object(["tag": .string("lark_md"), "content": .string(part)])]))
        }
        elements.append(.object([
            "tag": .string("note"),
            "elements": .array([.object(["tag": .string("plain_text"), "content": .string("Warbler alertd")])]),
        ]))
        return .object([
            "msg_type": .string("interactive"),
            "card": .object([
                "config": .object(["wide_screen_mode": .bool(true)]),
                "header": .object([
                    "template": .string(template(AlertText.severity(n))),
                    "title": .object(["tag": .string("plain_text"), "content": .string(AlertText.title(n))]),
                ]),
                "elements": .array(elements),
            ]),
        ])
    }

    /// Base64 of HMAC-SHA256 keyed with "timestamp\nsecret" over an empty message (Feishu's scheme).
    public static func signature(timestampSeconds: Int64, secret: String) -> String {
        let key = SymmetricKey(data: Data("\(timestampSeconds)\n\(secret)".utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data(), using: key)
        return Data(mac).base64EncodedString()
    }

    static func signed(_ payload: JSONValue, secret: String, now: Date) -> JSONValue {
        guard case .object(var fields) = payload else { return payload }
        let ts = Int64(now.timeIntervalSince1970)
        fields["timestamp"] = .string(String(ts))
        fields["sign"] = .string(signature(timestampSeconds: ts, secret: secret))
        return .object(fields)
    }

    public func send(_ notification: AlertNotification) async throws {
        var payload = Self.payload(notification, card: card)
        if let secret { payload = Self.signed(payload, secret: secret, now: Date()) }
        let body = try await poster.post(url, json: payload.data())
        try RobotAnswer.check(body, receiver: name, vendor: "Feishu",
                              hint: "; check the hook URL, the `secret` (signature verification) and the robot's keyword and IP settings")
    }
}

/// Just enough JSON to build the vendors' bodies (encoded with sorted keys, so bytes are stable).
enum JSONValue: Encodable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .string(let s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case .number(let d):
            var c = encoder.singleValueContainer()
            if d == d.rounded(), abs(d) < 1e15 { try c.encode(Int64(d)) } else { try c.encode(d) }
        case .bool(let b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .array(let items):
            var c = encoder.unkeyedContainer()
            for item in items { try c.encode(item) }
        case .object(let fields):
            var c = encoder.container(keyedBy: Key.self)
            for (k, v) in fields { try c.encode(v, forKey: Key(stringValue: k)) }
        }
    }

    func data() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

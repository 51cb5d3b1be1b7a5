// Sources/AlertReceivers/Model.swift — Alertmanager webhook payload (version 4) as the notification model.
//
// alertd's branch carries this interim copy of the receivers module's interface (the `receivers` branch owns
// the real file, which replaces this one when both are merged): the model, and a minimal `ReceiverConfig`,
// `Receivers.make` (generic webhook only) and `NotificationDispatcher` so the daemon runs end to end.
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore

public struct AlertNotification: Codable, Sendable, Equatable {
    public struct Alert: Codable, Sendable, Equatable {
        public var status: String            // "firing" | "resolved"
        public var labels: [String: String]
        public var annotations: [String: String]
        public var startsAt: Date
        public var endsAt: Date?               // encoded as "0001-01-01T00:00:00Z" when nil
        public var generatorURL: String
        public var fingerprint: String

        public init(status: String, labels: [String: String], annotations: [String: String], startsAt: Date, endsAt: Date?,
                    generatorURL: String, fingerprint: String) {
            self.status = status
            self.labels = labels
            self.annotations = annotations
            self.startsAt = startsAt
            self.endsAt = endsAt
            self.generatorURL = generatorURL
            self.fingerprint = fingerprint
        }

        enum CodingKeys: String, CodingKey { case status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint }
        static let zeroTime = "0001-01-01T00:00:00Z"

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            status = try c.decode(String.self, forKey: .status)
            labels = try c.decode([String: String].self, forKey: .labels)
            annotations = try c.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
            startsAt = try c.decode(Date.self, forKey: .startsAt)
            if let s = try? c.decode(String.self, forKey: .endsAt), s == Self.zeroTime { endsAt = nil } else {
                endsAt = try c.decodeIfPresent(Date.self, forKey: .endsAt)
            }
            generatorURL = try c.decodeIfPresent(String.self, forKey: .generatorURL) ?? ""
            fingerprint = try c.decodeIfPresent(String.self, forKey: .fingerprint) ?? ""
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(status, forKey: .status)
            try c.encode(labels, forKey: .labels)
            try c.encode(annotations, forKey: .annotations)
            try c.encode(startsAt, forKey: .startsAt)
            if let endsAt { try c.encode(endsAt, forKey: .endsAt) } else { try c.encode(Self.zeroTime, forKey: .endsAt) }
            try c.encode(generatorURL, forKey: .generatorURL)
            try c.encode(fingerprint, forKey: .fingerprint)
        }
    }
    public var version: String = "4"
    public var groupKey: String
    public var truncatedAlerts: Int = 0
    public var status: String                // "firing" if any alert firing, else "resolved"
    public var receiver: String
    public var groupLabels: [String: String]
    public var commonLabels: [String: String]
    public var commonAnnotations: [String: String]
    public var externalURL: String
    public var alerts: [Alert]

    public init(groupKey: String, status: String, receiver: String, groupLabels: [String: String], commonLabels: [String: String],
                commonAnnotations: [String: String], externalURL: String, alerts: [Alert]) {
        self.groupKey = groupKey
        self.status = status
        self.receiver = receiver
        self.groupLabels = groupLabels
        self.commonLabels = commonLabels
        self.commonAnnotations = commonAnnotations
        self.externalURL = externalURL
        self.alerts = alerts
    }
}

public protocol AlertReceiver: Sendable {
    var name: String { get }
    func send(_ notification: AlertNotification) async throws
}

/// One entry of the rules file's `receivers:` list.
public struct ReceiverConfig: Decodable, Sendable {
    public struct Email: Decodable, Sendable {
        public var host: String
        public var port: Int?
        public var starttls: Bool?
        public var username: String?
        public var passwordFile: String?
        public var from: String
        public var to: [String]

        enum CodingKeys: String, CodingKey {
            case host, port, starttls, username, from, to
            case passwordFile = "password_file"
        }
    }
    public var name: String
    public var type: String
    public var url: String?
    public var email: Email?
}

/// A receiver that cannot be built from its config.
public struct ReceiverError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum Receivers {
    /// Builds the receiver an entry describes (this interim copy knows only `webhook`).
    public static func make(_ config: ReceiverConfig) throws -> any AlertReceiver {
        switch config.type {
        case "webhook":
            guard let text = config.url, let url = URL(string: text), url.scheme == "http" || url.scheme == "https" else {
                throw ReceiverError("receiver \(config.name): a webhook needs url: http(s)://…")
            }
            return WebhookReceiver(name: config.name, url: text)
        default:
            throw ReceiverError("receiver \(config.name): type \(config.type) is not available in this build (webhook is)")
        }
    }
}

/// POSTs the notification as JSON (Alertmanager's webhook shape); any answer but 2xx is a failure.
struct WebhookReceiver: AlertReceiver {
    let name: String
    let url: String

    func send(_ notification: AlertNotification) async throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try encoder.encode(notification)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        _ = try? await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(response.status.code) else {
            throw ReceiverError("webhook \(name) answered \(response.status.code)")
        }
    }
}

/// Sends each notification in the background, retrying with backoff; one receiver never waits for another.
public actor NotificationDispatcher {
    let receivers: [String: any AlertReceiver]
    let logger: Logger

    public init(receivers: [any AlertReceiver], logger: Logger) {
        self.receivers = Dictionary(receivers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.logger = logger
    }

    public func dispatch(_ n: AlertNotification, to receiverName: String) {
        guard let receiver = receivers[receiverName] else {
            logger.error("no receiver named \(receiverName)")
            return
        }
        let logger = self.logger
        Task {
            var delay = Duration.seconds(1)
            for attempt in 1...5 {
                do {
                    try await receiver.send(n)
                    return
                } catch {
                    logger.warning("receiver \(receiverName) failed (attempt \(attempt) of 5): \(error)")
                    try? await Task.sleep(for: delay)
                    delay *= 2
                }
            }
            logger.error("receiver \(receiverName) gave up on \(n.groupKey)")
        }
    }
}

import Foundation

/// The notification model: Alertmanager's webhook payload, version 4.
///
/// Encoding produces exactly the JSON Alertmanager's `webhook_config` POSTs (field names, RFC 3339 times,
/// `endsAt` as Go's zero time `0001-01-01T00:00:00Z` when unset), so tooling written for Alertmanager reads it.
/// Times are encoded by this type itself, whatever date strategy the encoder was configured with.
public struct AlertNotification: Codable, Sendable, Equatable {
    public struct Alert: Codable, Sendable, Equatable {
        /// "firing" or "resolved".
        public var status: String
        public var labels: [String: String]
        public var annotations: [String: String]
        public var startsAt: Date
        /// Encoded as "0001-01-01T00:00:00Z" when nil.
        public var endsAt: Date?
        public var generatorURL: String
        public var fingerprint: String

        public init(
            status: String,
            labels: [String: String],
            annotations: [String: String] = [:],
            startsAt: Date,
            endsAt: Date? = nil,
            generatorURL: String = "",
            fingerprint: String
        ) {
            self.status = status
            self.labels = labels
            self.annotations = annotations
            self.startsAt = startsAt
            self.endsAt = endsAt
            self.generatorURL = generatorURL
            self.fingerprint = fingerprint
        }

        enum CodingKeys: String, CodingKey {
            case status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            status = try c.decode(String.self, forKey: .status)
            labels = try c.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
            annotations = try c.decodeIfPresent([String: String].self, forKey: .annotations) ?? [:]
            startsAt = try RFC3339.decode(c, .startsAt) ?? Date(timeIntervalSince1970: 0)
            endsAt = try RFC3339.decode(c, .endsAt)
            generatorURL = try c.decodeIfPresent(String.self, forKey: .generatorURL) ?? ""
            fingerprint = try c.decodeIfPresent(String.self, forKey: .fingerprint) ?? ""
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(status, forKey: .status)
            try c.encode(labels, forKey: .labels)
            try c.encode(annotations, forKey: .annotations)
            try c.encode(RFC3339.format(startsAt), forKey: .startsAt)
            try c.encode(endsAt.map(RFC3339.format) ?? RFC3339.zeroTime, forKey: .endsAt)
            try c.encode(generatorURL, forKey: .generatorURL)
            try c.encode(fingerprint, forKey: .fingerprint)
        }

        /// Whether this alert is firing (anything but "resolved" counts as firing).
        public var isFiring: Bool { status != "resolved" }
    }

    public var version: String = "4"
    public var groupKey: String
    public var truncatedAlerts: Int = 0
    /// "firing" if any alert is firing, else "resolved".
    public var status: String
    public var receiver: String
    public var groupLabels: [String: String]
    public var commonLabels: [String: String]
    public var commonAnnotations: [String: String]
    public var externalURL: String
    public var alerts: [Alert]

    public init(
        version: String = "4",
        groupKey: String,
        truncatedAlerts: Int = 0,
        status: String,
        receiver: String,
        groupLabels: [String: String],
        commonLabels: [String: String],
        commonAnnotations: [String: String],
        externalURL: String,
        alerts: [Alert]
    ) {
        self.version = version
        self.groupKey = groupKey
        self.truncatedAlerts = truncatedAlerts
        self.status = status
        self.receiver = receiver
        self.groupLabels = groupLabels
        self.commonLabels = commonLabels
        self.commonAnnotations = commonAnnotations
        self.externalURL = externalURL
        self.alerts = alerts
    }

    /// Builds a notification for `alerts` the way Alertmanager does: `status` is "firing" when any alert fires,
    /// `commonLabels`/`commonAnnotations` are the pairs every alert shares.
    public init(
        receiver: String,
        groupKey: String,
        groupLabels: [String: String],
        externalURL: String,
        alerts: [Alert],
        truncatedAlerts: Int = 0
    ) {
        self.init(
            groupKey: groupKey,
            truncatedAlerts: truncatedAlerts,
            status: alerts.contains(where: \.isFiring) ? "firing" : "resolved",
            receiver: receiver,
            groupLabels: groupLabels,
            commonLabels: Self.common(alerts.map(\.labels)),
            commonAnnotations: Self.common(alerts.map(\.annotations)),
            externalURL: externalURL,
            alerts: alerts
        )
    }

    /// The key/value pairs present, with the same value, in every dictionary.
    public static func common(_ maps: [[String: String]]) -> [String: String] {
        guard var result = maps.first else { return [:] }
        for map in maps.dropFirst() {
            result = result.filter { map[$0.key] == $0.value }
        }
        return result
    }

    enum CodingKeys: String, CodingKey {
        case version, groupKey, truncatedAlerts, status, receiver, groupLabels, commonLabels, commonAnnotations,
            externalURL, alerts
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decodeIfPresent(String.self, forKey: .version) ?? "4"
        groupKey = try c.decode(String.self, forKey: .groupKey)
        truncatedAlerts = try c.decodeIfPresent(Int.self, forKey: .truncatedAlerts) ?? 0
        status = try c.decode(String.self, forKey: .status)
        receiver = try c.decode(String.self, forKey: .receiver)
        groupLabels = try c.decodeIfPresent([String: String].self, forKey: .groupLabels) ?? [:]
        commonLabels = try c.decodeIfPresent([String: String].self, forKey: .commonLabels) ?? [:]
        commonAnnotations = try c.decodeIfPresent([String: String].self, forKey: .commonAnnotations) ?? [:]
        externalURL = try c.decodeIfPresent(String.self, forKey: .externalURL) ?? ""
        alerts = try c.decodeIfPresent([Alert].self, forKey: .alerts) ?? []
    }

    /// The notification as Alertmanager's webhook JSON (keys sorted, so the bytes are stable).
    public func webhookJSON() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    public var isFiring: Bool { status != "resolved" }

    /// The alerts that are firing, then those resolved.
    public var firingAlerts: [Alert] { alerts.filter(\.isFiring) }
    public var resolvedAlerts: [Alert] { alerts.filter { !$0.isFiring } }
}

/// RFC 3339 times as Go's `time.Time` marshals them: UTC, fractional seconds only when present (no trailing
/// zeros), and the zero time "0001-01-01T00:00:00Z" for "unset".
enum RFC3339 {
    static let zeroTime = "0001-01-01T00:00:00Z"

    static func format(_ date: Date) -> String {
        var seconds = date.timeIntervalSince1970
        var whole = seconds.rounded(.down)
        // Microseconds are what a Date (a Double) carries reliably at today's epoch; round to them so 0.1 does
        // not print as 0.0999999.
        var micros = Int(((seconds - whole) * 1_000_000).rounded())
        if micros == 1_000_000 {
            whole += 1
            micros = 0
        }
        seconds = whole
        let t = time_t(seconds)
        var parts = tm()
        var tt = t
        gmtime_r(&tt, &parts)
        var s = String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d",
            Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
        if micros != 0 {
            var frac = String(format: "%06d", micros)
            while frac.hasSuffix("0") { frac.removeLast() }
            s += "." + frac
        }
        return s + "Z"
    }

    /// Parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)". Returns nil for Go's zero time (year 1).
    static func parse(_ text: String) -> Date?? {
        let bytes = Array(text.utf8)
        func digits(_ at: Int, _ count: Int) -> Int? {
            guard at + count <= bytes.count else { return nil }
            var v = 0
            for b in bytes[at..<(at + count)] {
                guard b >= 48, b <= 57 else { return nil }
                v = v * 10 + Int(b - 48)
            }
            return v
        }
        func byte(_ at: Int, _ c: Character) -> Bool { at < bytes.count && bytes[at] == c.asciiValue! }
        guard let year = digits(0, 4), byte(4, "-"), let month = digits(5, 2), byte(7, "-"),
            let day = digits(8, 2), byte(10, "T") || byte(10, "t") || byte(10, " "),
            let hour = digits(11, 2), byte(13, ":"), let minute = digits(14, 2), byte(16, ":"),
            let second = digits(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return .none }
        var i = 19
        var fraction = 0.0
        if byte(i, ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 {
                fraction += Double(bytes[i] - 48) * scale
                scale /= 10
                i += 1
            }
            if i == start { return .none }
        }
        var offset = 0
        if byte(i, "Z") || byte(i, "z") {
            i += 1
        } else if byte(i, "+") || byte(i, "-") {
            let sign = byte(i, "-") ? -1 : 1
            guard let oh = digits(i + 1, 2), byte(i + 3, ":"), let om = digits(i + 4, 2) else { return .none }
            offset = sign * (oh * 3600 + om * 60)
            i += 6
        } else {
            return .none
        }
        guard i == bytes.count else { return .none }
        if year == 1 { return .some(nil) }
        // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        let secs = Double(days * 86400 + hour * 3600 + minute * 60 + second - offset) + fraction
        return .some(Date(timeIntervalSince1970: secs))
    }

    static func decode<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> Date? {
        guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
        guard let parsed = parse(text) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: c, debugDescription: "'\(text)' is not an RFC 3339 time (like 2026-01-02T03:04:05Z)")
        }
        return parsed
    }
}

/// Something that delivers notifications: a webhook, a chat robot, a mailbox.
public protocol AlertReceiver: Sendable {
    /// The receiver's name from the configuration (routes refer to it).
    var name: String { get }
    /// Delivers one notification, or throws (a `ReceiverError` saying what the remote said).
    func send(_ notification: AlertNotification) async throws
}

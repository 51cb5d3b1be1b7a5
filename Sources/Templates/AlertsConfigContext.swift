/// What `alerts.yaml.mustache` (`/etc/warbler/alerts.yaml`) is rendered from: alertd's settings, its scrape
/// targets, the thresholds of the default rules and the receivers the install names.
public struct AlertsConfigContext: Sendable, Equatable {
    public static func == (a: Self, b: Self) -> Bool {
        a.scrapeInterval == b.scrapeInterval && a.evaluationInterval == b.evaluationInterval && a.stateFile == b.stateFile
            && a.listen == b.listen && a.targets == b.targets && a.receivers == b.receivers
            && a.receiverEntries.map(\.name) == b.receiverEntries.map(\.name) && a.receiverEntries.map(\.line) == b.receiverEntries.map(\.line)
            && a.diskWarningPercent == b.diskWarningPercent && a.diskCriticalPercent == b.diskCriticalPercent
            && a.memoryAvailablePercent == b.memoryAvailablePercent && a.errorPercent == b.errorPercent
            && a.sendLatencyP99Seconds == b.sendLatencyP99Seconds && a.certWarningDays == b.certWarningDays
            && a.certCriticalDays == b.certCriticalDays && a.backupMaxAgeHours == b.backupMaxAgeHours
            && a.replicationLagSeconds == b.replicationLagSeconds
    }

    public struct Target: Sendable, Equatable {
        public var job: String
        public var url: String
        public init(job: String, url: String) {
            self.job = job
            self.url = url
        }
    }
    /// A receiver entry with a URL (webhook and the chat-robot types).
    public struct Receiver: Sendable, Equatable {
        public var name: String
        public var type: String
        public var url: String
        public init(name: String, type: String, url: String) {
            self.name = name
            self.type = type
            self.url = url
        }
    }

    public var scrapeInterval = "15s"
    public var evaluationInterval = "15s"
    public var stateFile = "/var/lib/warbler/alertd/state.json"
    public var listen = "127.0.0.1:9102"
    /// The exporter and the server's metrics listener, by default.
    public var targets = [Target(job: "exporter", url: "http://127.0.0.1:9101/metrics"),
                          Target(job: "server", url: "http://127.0.0.1:9464/metrics")]
    public var receivers: [Receiver] = []
    /// Receivers given whole, each as one line of YAML flow style (JSON), named for the routes.
    public var receiverEntries: [(name: String, line: String)] = []
    public var diskWarningPercent = 80
    public var diskCriticalPercent = 90
    public var memoryAvailablePercent = 10
    public var errorPercent = 5
    public var sendLatencyP99Seconds = 0.5
    public var certWarningDays = 30
    public var certCriticalDays = 7
    public var backupMaxAgeHours = 36
    public var replicationLagSeconds = 60
    /// A cluster member: the cluster's rules (node down, primary changed, standby, etcd, VIP) are added.
    public var cluster = false
    public var standbyLagBytes = 16 << 20

    public init() {}

    func view() throws -> [String: Any] {
        for (what, p) in [("disk warning", diskWarningPercent), ("disk critical", diskCriticalPercent), ("memory", memoryAvailablePercent),
                          ("error", errorPercent)] where !(1...100).contains(p) {
            throw TemplateError("the \(what) threshold \(p)% must be 1-100")
        }
        guard diskWarningPercent < diskCriticalPercent else { throw TemplateError("the disk warning threshold must be below the critical one") }
        guard certCriticalDays < certWarningDays else { throw TemplateError("the certificate critical days must be fewer than the warning days") }
        for name in receivers.map(\.name) + receiverEntries.map(\.name)
        where name.isEmpty || name.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
            throw TemplateError("receiver name '\(name)' may hold only letters, digits, - and _")
        }
        for e in receiverEntries where !e.line.hasPrefix("{") || e.line.contains(where: \.isNewline) {
            throw TemplateError("receiver '\(e.name)' must be one line of YAML flow style ({…})")
        }
        let allNames = receivers.map(\.name) + receiverEntries.map(\.name)
        return [
            "scrapeInterval": YAML.quote(scrapeInterval),
            "evaluationInterval": YAML.quote(evaluationInterval),
            "stateFile": YAML.quote(stateFile),
            "listen": YAML.quote(listen),
            "targets": targets.map { ["job": YAML.quote($0.job), "url": YAML.quote($0.url)] },
            "receivers": receivers.map { ["name": YAML.quote($0.name), "type": YAML.quote($0.type), "url": YAML.quote($0.url)] },
            "receiverEntries": receiverEntries.map { ["line": $0.line] },
            "hasReceivers": !allNames.isEmpty,
            "receiverNames": allNames.map { YAML.quote($0) }.joined(separator: ", "),
            "diskWarningPercent": String(diskWarningPercent),
            "diskCriticalPercent": String(diskCriticalPercent),
            "memoryAvailablePercent": String(memoryAvailablePercent),
            "errorPercent": String(errorPercent),
            "sendLatencyP99Seconds": String(sendLatencyP99Seconds),
            "certWarningDays": String(certWarningDays),
            "certCriticalDays": String(certCriticalDays),
            "backupMaxAgeHours": String(backupMaxAgeHours),
            "replicationLagSeconds": String(replicationLagSeconds),
            "cluster": cluster,
            "standbyLagBytes": String(standbyLagBytes),
        ]
    }
}

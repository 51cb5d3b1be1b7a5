import Foundation
import Yams

/// Which init system runs the daemons.
public enum InitSystem: String, Sendable, Codable, CaseIterable {
    /// systemd units (systemd must be PID 1).
    case systemd
    /// `warbler`'s own supervisor, for hosts (containers) where systemd is not PID 1.
    case builtin
    /// Lay out files only; start nothing.
    case none
}

/// What an operator asked for, from flags or an answers file (`--config FILE`). Every field is optional: a field
/// left out keeps the previous install's answer, then the default. YAML keys are snake_case.
public struct InstallAnswers: Sendable, Equatable, Codable {
    public var host: String?
    public var port: Int?
    public var metricsPort: Int?
    /// Extra names the server certificate covers (besides the hostname and its addresses).
    public var domains: [String]?
    /// Operator-supplied PEM certificate chain and key, instead of the internal CA.
    public var tlsCert: String?
    public var tlsKey: String?
    /// false: plain HTTP (behind a TLS-terminating proxy).
    public var tls: Bool?
    public var registration: String?
    public var adminUser: String?
    public var adminPasswordFile: String?
    public var logLevel: String?
    public var initSystem: InitSystem?
    public var skipChecks: [String]?
    public var minFreeDiskMB: Int?
    public var minMemoryMB: Int?
    /// Generic webhooks alertd notifies (Alertmanager's JSON), named webhook-1, webhook-2, …
    public var alertWebhooks: [String]?
    /// Any receivers, in alerts.yaml's `receivers:` format (docs/operations.md, "Alert receivers").
    public var alertReceivers: [AlertReceiverAnswer]?
    /// The Ed25519 public key (base64) every release this install upgrades to must be signed with.
    public var releaseKey: String?
    /// Set on a cluster member (`install --cluster-init`, `join`).
    public var cluster: ClusterAnswers?
    /// The AI assistant: an OpenAI-compatible API base and model turn it on; the key file is copied into the
    /// install's secrets (`/etc/warbler/secrets/ai.key`) and not remembered (the copy is kept).
    public var aiEndpoint: String?
    public var aiModel: String?
    public var aiKeyFile: String?

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case host, port, domains, tls, registration, cluster
        case metricsPort = "metrics_port"
        case tlsCert = "tls_cert"
        case tlsKey = "tls_key"
        case adminUser = "admin_user"
        case adminPasswordFile = "admin_password_file"
        case logLevel = "log_level"
        case initSystem = "init"
        case skipChecks = "skip_checks"
        case minFreeDiskMB = "min_free_disk_mb"
        case minMemoryMB = "min_memory_mb"
        case alertWebhooks = "alert_webhooks"
        case alertReceivers = "alert_receivers"
        case releaseKey = "release_key"
        case aiEndpoint = "ai_endpoint"
        case aiModel = "ai_model"
        case aiKeyFile = "ai_key_file"
    }

    /// Parses an answers file. Unknown keys are refused, like the server refuses unknown settings.
    public static func parse(yaml text: String, source: String) throws -> InstallAnswers {
        let loaded: Any?
        do { loaded = try Yams.load(yaml: text) } catch {
            throw OptionsError("\(source) is not valid YAML: \(error)")
        }
        guard let loaded else { return InstallAnswers() }
        guard let map = loaded as? [String: Any] else { throw OptionsError("\(source) must be a YAML mapping of answers") }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = map.keys.sorted().first(where: { !known.contains($0) }) {
            throw OptionsError("\(source): unknown answer '\(unknown)'; known answers: \(known.sorted().joined(separator: ", "))")
        }
        do { return try YAMLDecoder().decode(InstallAnswers.self, from: text) } catch {
            throw OptionsError("\(source): \(Self.describe(error))")
        }
    }

    public static func load(path: String) throws -> InstallAnswers {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw OptionsError("cannot read the answers file \(path)")
        }
        return try parse(yaml: text, source: path)
    }

    /// `self` where set, `base` elsewhere.
    public func over(_ base: InstallAnswers) -> InstallAnswers {
        var out = base
        out.host = host ?? base.host
        out.port = port ?? base.port
        out.metricsPort = metricsPort ?? base.metricsPort
        out.domains = domains ?? base.domains
        out.tlsCert = tlsCert ?? base.tlsCert
        out.tlsKey = tlsKey ?? base.tlsKey
        out.tls = tls ?? base.tls
        out.registration = registration ?? base.registration
        out.adminUser = adminUser ?? base.adminUser
        out.adminPasswordFile = adminPasswordFile ?? base.adminPasswordFile
        out.logLevel = logLevel ?? base.logLevel
        out.initSystem = initSystem ?? base.initSystem
        out.skipChecks = skipChecks ?? base.skipChecks
        out.minFreeDiskMB = minFreeDiskMB ?? base.minFreeDiskMB
        out.minMemoryMB = minMemoryMB ?? base.minMemoryMB
        out.alertWebhooks = alertWebhooks ?? base.alertWebhooks
        out.alertReceivers = alertReceivers ?? base.alertReceivers
        out.releaseKey = releaseKey ?? base.releaseKey
        out.cluster = cluster.map { $0.over(base.cluster) } ?? base.cluster
        out.aiEndpoint = aiEndpoint ?? base.aiEndpoint
        out.aiModel = aiModel ?? base.aiModel
        out.aiKeyFile = aiKeyFile ?? base.aiKeyFile
        return out
    }

    /// The answers a later run inherits: what shapes the install, not one-run choices (checks skipped, the
    /// admin password source, thresholds).
    public var persistent: InstallAnswers {
        var p = self
        p.skipChecks = nil
        p.adminPasswordFile = nil
        p.aiKeyFile = nil
        p.minFreeDiskMB = nil
        p.minMemoryMB = nil
        return p
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.typeMismatch(let t, let c), DecodingError.valueNotFound(let t, let c):
            return "'\(c.codingPath.map(\.stringValue).joined(separator: "."))' must be \(t)"
        case DecodingError.dataCorrupted(let c):
            return "'\(c.codingPath.map(\.stringValue).joined(separator: "."))': \(c.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

/// The resolved settings of one install: answers over defaults, validated.
public struct InstallSettings: Sendable, Equatable {
    public enum TLS: Sendable, Equatable {
        /// Certificates from the install's own CA.
        case internalCA
        /// The operator's certificate chain and key files.
        case provided(cert: String, key: String)
        case off
    }

    public var host = "0.0.0.0"
    public var port = 8443
    public var metricsPort = 9464
    public var domains: [String] = []
    public var tls: TLS = .internalCA
    /// Only admins create accounts unless the operator opts in (`--registration open`): an open server lets anyone
    /// on the network make accounts, each costing a bcrypt.
    public var registration = "admin"
    public var adminUser = "admin"
    public var adminPasswordFile: String?
    public var logLevel = "info"
    public var initSystem: InitSystem?
    public var skipChecks: Set<String> = []
    public var minFreeDiskMB = 1024
    public var minMemoryMB = 256
    /// The monitoring exporter's and alertd's loopback ports.
    public var exporterPort = 9101
    public var alertdPort = 9102
    /// Where alertd sends notifications: the answers' receivers, then one webhook entry per `--alert-webhook`.
    public var alertReceivers: [AlertReceiverAnswer] = []
    /// Base64 Ed25519 public key that upgrades must be signed with; nil: checksums only.
    public var releaseKey: String?
    /// nil: a single node.
    public var cluster: ClusterSettings?
    /// nil: no AI assistant.
    public var assistant: AssistantSettings?

    /// The AI assistant's endpoint, model, and the operator's key file to copy (nil: keep the installed copy, if any).
    public struct AssistantSettings: Sendable, Equatable {
        public var endpoint: String
        public var model: String
        public var keyFile: String?
        public init(endpoint: String, model: String, keyFile: String?) { self.endpoint = endpoint; self.model = model; self.keyFile = keyFile }
    }

    public init() {}

    /// The TCP ports the server binds (the metrics port only when it is on).
    public var ports: [Int] { metricsPort > 0 ? [port, metricsPort] : [port] }
    /// Every port the install's daemons bind: the server's, the exporter's, alertd's, and a cluster member's.
    public var allPorts: [Int] { ports + [exporterPort, alertdPort] + (cluster.map { Array($0.ports(frontend: port).dropFirst()) } ?? []) }

    /// Applies `answers` over the defaults and checks every value, reporting all problems at once.
    public init(_ answers: InstallAnswers, hostname: String = ProcessInfo.processInfo.hostName) throws {
        var s = InstallSettings()
        var problems: [String] = []
        if let h = answers.host { s.host = h }
        if let p = answers.port { s.port = p }
        if let p = answers.metricsPort { s.metricsPort = p }
        if let d = answers.domains { s.domains = d.map { $0.lowercased() } }
        if let r = answers.registration { s.registration = r }
        if let u = answers.adminUser { s.adminUser = u }
        s.adminPasswordFile = answers.adminPasswordFile
        if let l = answers.logLevel { s.logLevel = l }
        s.initSystem = answers.initSystem
        s.skipChecks = Set(answers.skipChecks ?? [])
        if let m = answers.minFreeDiskMB { s.minFreeDiskMB = m }
        if let m = answers.minMemoryMB { s.minMemoryMB = m }
        s.alertReceivers = answers.alertReceivers ?? []
        if let k = answers.releaseKey?.trimmingCharacters(in: .whitespaces), !k.isEmpty {
            if let raw = Data(base64Encoded: k), raw.count == 32 { s.releaseKey = k } else {
                problems.append("the release key must be the base64 Ed25519 public key `packaging/sign.sh --new-key` printed (32 bytes), not '\(k)'")
            }
        }
        for (i, url) in (answers.alertWebhooks ?? []).enumerated() {
            s.alertReceivers.append(AlertReceiverAnswer(name: "webhook-\(i + 1)", type: "webhook", url: url))
        }

        switch (answers.tlsCert, answers.tlsKey) {
        case (let c?, let k?):
            if answers.tls == false { problems.append("--no-tls contradicts --tls-cert/--tls-key: give one or the other") }
            s.tls = .provided(cert: c, key: k)
        case (nil, nil):
            s.tls = answers.tls == false ? .off : .internalCA
        default:
            problems.append("give both --tls-cert and --tls-key, or neither (the internal CA then issues the certificate)")
        }

        if !(1...65535).contains(s.port) { problems.append("port \(s.port) is not 1-65535") }
        if s.metricsPort != -1 && !(1...65535).contains(s.metricsPort) { problems.append("metrics port \(s.metricsPort) is not 1-65535 (or -1 for off)") }
        if s.metricsPort == s.port { problems.append("the metrics port and the server port are both \(s.port): pick two") }
        if !["open", "admin"].contains(s.registration) { problems.append("registration must be open or admin, not '\(s.registration)'") }
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(s.logLevel) {
            problems.append("log level must be trace, debug, info, notice, warning, error or critical, not '\(s.logLevel)'")
        }
        if !Self.isAddress(s.host) { problems.append("host '\(s.host)' is not an IP address to listen on (0.0.0.0 for all)") }
        for d in s.domains where !Self.isDomainName(d) && !Self.isAddress(d) { problems.append("'\(d)' is not a domain name or an IP address") }
        if !Self.isUsername(s.adminUser) { problems.append("admin user '\(s.adminUser)' must be 3-32 of a-z 0-9 . _ -") }
        if s.minFreeDiskMB < 0 || s.minMemoryMB < 0 { problems.append("minimums cannot be negative") }
        for p in [s.port, s.metricsPort] where [s.exporterPort, s.alertdPort].contains(p) {
            problems.append("port \(p) is the exporter's or alertd's (\(s.exporterPort), \(s.alertdPort)): pick another")
        }
        var names = Set<String>()
        for r in s.alertReceivers {
            if let problem = r.problem { problems.append(problem) }
            if !names.insert(r.name).inserted { problems.append("two alert receivers are named '\(r.name)'") }
        }
        switch (answers.aiEndpoint.flatMap { $0.isEmpty ? nil : $0 }, answers.aiModel.flatMap { $0.isEmpty ? nil : $0 }) {
        case (let e?, let m?):
            if let u = URL(string: e), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host != nil, u.query == nil {
                s.assistant = AssistantSettings(endpoint: e, model: m, keyFile: answers.aiKeyFile)
            } else {
                problems.append("--ai-endpoint must be the endpoint's http(s) API base, such as https://api.openai.com/v1, not '\(e)'")
            }
        case (nil, nil):
            if answers.aiKeyFile != nil { problems.append("--ai-key-file needs --ai-endpoint and --ai-model (the assistant's endpoint and model)") }
        default:
            problems.append("give both --ai-endpoint and --ai-model to turn the AI assistant on (empty values for both turn it off)")
        }
        if let c = answers.cluster {
            let cluster = ClusterSettings(c, hostname: hostname, problems: &problems)
            if s.tls != .internalCA { problems.append("a cluster runs on its own CA: leave out --tls-cert/--tls-key/--no-tls") }
            if cluster.ports(frontend: s.port).dropFirst().contains(s.port) { problems.append("port \(s.port) is a cluster component's: pick another --port") }
            s.cluster = cluster
        }
        guard problems.isEmpty else { throw OptionsError(problems.joined(separator: "\n")) }
        self = s
    }

    static func isAddress(_ s: String) -> Bool { IPAddress.parse(s) != nil }

    /// A DNS name (a leading `*.` wildcard allowed) in lower case.
    static func isDomainName(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 253 else { return false }
        let labels = s.split(separator: ".", omittingEmptySubsequences: false)
        for (i, l) in labels.enumerated() {
            if i == 0 && l == "*" && labels.count > 2 { continue }
            guard (1...63).contains(l.count), l.first != "-", l.last != "-",
                  l.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" })
            else { return false }
        }
        return true
    }

    static func isUsername(_ s: String) -> Bool {
        (3...32).contains(s.count) && s.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-"
        }
    }
}

/// One receiver alertd notifies, as the answers file gives it (`alert_receivers:`); written into alerts.yaml as it
/// is. `warbler install` checks each entry with alertd's own receiver rules before anything changes.
public struct AlertReceiverAnswer: Sendable, Equatable, Codable {
    public struct Email: Sendable, Equatable, Codable {
        public var host: String
        public var port: Int?
        public var starttls: Bool?
        public var tls: Bool?
        public var username: String?
        public var passwordFile: String?
        public var from: String
        public var to: [String]
        public var tlsCaFile: String?
        enum CodingKeys: String, CodingKey {
            case host, port, starttls, tls, username, from, to
            case passwordFile = "password_file"
            case tlsCaFile = "tls_ca_file"
        }
    }
    public var name: String
    /// webhook, slack, dingtalk, wecom, feishu or email.
    public var type: String
    public var url: String?
    public var secret: String?
    public var email: Email?

    public init(name: String, type: String, url: String? = nil, secret: String? = nil, email: Email? = nil) {
        self.name = name; self.type = type; self.url = url; self.secret = secret; self.email = email
    }

    /// What is wrong with the entry at a glance (the full check is alertd's, run by `warbler install`).
    var problem: String? {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            return "alert receiver name '\(name)' may hold only letters, digits, - and _"
        }
        guard ["webhook", "slack", "dingtalk", "wecom", "feishu", "email"].contains(type) else {
            return "alert receiver '\(name)': type must be webhook, slack, dingtalk, wecom, feishu or email, not '\(type)'"
        }
        if type == "email" { return email == nil ? "alert receiver '\(name)' (email) needs an email: section" : nil }
        guard let url, url.hasPrefix("https://") || url.hasPrefix("http://") else {
            return "alert receiver '\(name)' (\(type)) needs an http(s) url"
        }
        return nil
    }

    /// The entry as one line of YAML (JSON is YAML's flow style).
    public func yamlLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// An answer that cannot be used, with what to give instead.
public struct OptionsError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

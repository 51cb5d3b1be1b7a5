import Foundation
import Yams
import IMCore

/// Everything `warbler server` can be told. Loaded from YAML (snake_case keys), then overridden by
/// `WARBLER_<SECTION>_<KEY>` environment variables; every setting has a default that works.
public struct ServerConfig: Codable, Sendable, Equatable {
    public struct Server: Codable, Sendable, Equatable {
        public var host = "0.0.0.0"
        public var port = 8080
        /// PEM certificate chain and key; TLS (1.2+) is on when both are set.
        public var tlsCert = ""
        public var tlsKey = ""
        /// How often (seconds) the server looks for renewed certificate/key files; a changed pair is used by the
        /// next handshakes without a restart.
        public var tlsReloadSeconds = 30.0
        /// Origins allowed to open the WebSocket from a browser (besides the server's own); empty = same host only.
        public var allowedOrigins: [String] = []
        /// Seconds given to clients to go away on shutdown.
        public var drainSeconds = 3.0
        /// The web client and admin console (index.html, admin.html and their assets), served at `/` and `/admin`.
        /// Empty means the `web` directory of the release this executable belongs to (`BIN/../web`).
        public var webRoot = ""
        /// Most client connections open at once (0: as many as the process's descriptors allow, less a reserve for
        /// the database and files; a larger setting is lowered to that too).
        public var maxConnections = 50_000
        /// Most connections from one client address (an IPv4 address or an IPv6 /64); 0: no cap. Raise it (or set
        /// 0) when clients reach the server through a proxy or a NAT that many of them share.
        public var maxConnectionsPerAddress = 1_000
        /// A cluster member behind HAProxy: every connection must present a client certificate that chains to this
        /// CA (HAProxy's), so only the cluster's proxies reach the server. Empty: no client certificates asked.
        public var clientCaFile = ""
        /// Take the client's address for rate limits from X-Forwarded-For's last entry (what HAProxy appended).
        /// Needs client_ca_file: only authenticated proxies may say who the client is.
        public var trustForwardedFor = false
        /// A new connection must deliver a complete request head (after its TLS handshake) within this many seconds.
        public var requestHeadTimeoutSeconds = 10.0
        /// A keep-alive HTTP connection idle this long is closed (WebSockets are kept alive by pings instead).
        public var idleTimeoutSeconds = 75.0
    }
    public struct Metrics: Codable, Sendable, Equatable {
        public var host = "127.0.0.1"
        /// The Prometheus listener; -1 turns it off.
        public var port = 9464
    }
    public struct StorageSettings: Codable, Sendable, Equatable {
        /// `sqlite` (embedded, the single-node default) or `postgres`.
        public var driver = "sqlite"
        public var path = "/var/lib/warbler/warbler.db"
        public var postgresHost = "127.0.0.1"
        public var postgresPort = 5432
        public var postgresUser = "warbler"
        public var postgresPassword = ""
        public var postgresPasswordFile = ""
        public var postgresDatabase = "warbler"
        public var postgresTls = false
        /// With postgres_tls: the CA the server's certificate must chain to (empty: the system's trusted roots).
        public var postgresCaFile = ""
        /// Largest number of sends committed in one transaction (1024: in the T benchmark, 1,600 sends in flight,
        /// it cut the server's CPU per message by about a fifth against 256; docs/benchmarks.md).
        public var maxBatch = 1024
        /// Longest a PostgreSQL read or write may take, waiting for a pooled connection included, before it is
        /// abandoned as `unavailable` (retryable) and its connection closed; 0: no limit. The group commit has its
        /// own 10 s watchdog; this bounds every other query (docs/operations.md).
        public var postgresTimeoutSeconds = 15.0
        /// PostgreSQL only: how many group commits may run at once, each on its own pooled connection (the next
        /// starts once the one before it holds its seqs). 1: one after the other, as SQLite's single writer must.
        public var postgresCommitsInFlight = 2
    }
    public struct Auth: Codable, Sendable, Equatable {
        /// `open`: anyone may register; `admin`: only admins create accounts.
        public var registration = "open"
        /// Ed25519 signing key (base64 of 32 bytes); created with mode 0600 if missing.
        public var jwtKeyFile = "/etc/warbler/secrets/jwt.key"
        public var accessTtlSeconds = 900
        public var refreshTtlSeconds = 30 * 24 * 3600
        public var bcryptCost = 12
        /// Wrong passwords per minute for one account from one address (an IPv4 address or an IPv6 /64) before
        /// logins to that account from there must wait: failures count, successes do not, and strangers' failures
        /// from elsewhere never lock the owner out.
        public var loginPerMinutePerAccount = 10
        /// Wrong passwords per minute from one address, whatever the account.
        public var loginPerMinutePerAddress = 60
        /// Registrations, and password changes, per hour from one address.
        public var registerPerHourPerAddress = 20
        public var passwordChangesPerHourPerAddress = 20
        /// bcrypt computations in flight at once; beyond that, requests that need one are answered 503 with
        /// Retry-After instead of queueing without bound.
        public var maxConcurrentHashes = 8
    }
    public struct Limits: Codable, Sendable, Equatable {
        public var frameBytes = 64 * 1024
        public var bodyBytes = 1024 * 1024
        public var sendsPerSecond = 100.0
        public var sendBurst = 200.0
        /// Per connection; over it a frame is answered `rate_limited` (docs/protocol.md).
        public var typingPerSecond = 5.0
        public var receiptsPerSecond = 20.0
        public var syncsPerSecond = 5.0
        /// Open WebSockets per user; one more is closed with 4008.
        public var connectionsPerUser = 32
        public var attachmentBytes = 25 * 1024 * 1024
        /// Bytes of attachments one user may have stored at once.
        public var attachmentQuotaBytes = 2 * 1024 * 1024 * 1024
        /// Uploads one user may start per minute.
        public var uploadsPerMinute = 30
        public var attachmentTypes = ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain",
                                      "application/zip", "audio/mpeg", "audio/ogg", "video/mp4", "application/octet-stream"]
        public var groupSize = 2000
        public var recallSeconds = 120
        public var textBytes = 16 * 1024
    }

    /// Read by `warbler backup` (the server ignores it).
    public struct Backup: Codable, Sendable, Equatable {
        /// Where backups go (and `last-success.json`, which the exporter reads).
        public var directory = "/var/lib/warbler/backups"
        /// Backups kept in `directory` after a successful one; 0 keeps every one.
        public var keep = 7
    }

    /// `warbler exporter`: the monitoring exporter's listener and what it watches.
    public struct Exporter: Codable, Sendable, Equatable {
        public var host = "127.0.0.1"
        public var port = 9101
        /// Components reported: `server` is `warbler-server.service` (or /run/warbler/server.pid under the supervisor).
        public var components = ["server", "exporter", "alertd"]
        /// `auto` (systemd when it is PID 1's init, else the built-in supervisor), `systemd` or `supervisor`.
        public var manager = "auto"
        /// What `warbler backup` writes after each successful backup.
        public var backupMarker = "/var/lib/warbler/backups/last-success.json"
        /// A collector slower than this is reported down for that scrape.
        public var collectorTimeoutSeconds = 5.0
    }

    public struct Alerts: Codable, Sendable, Equatable {
        /// alertd's loopback control API (e.g. `http://127.0.0.1:9102`); `GET /v1/admin/alerts` proxies its
        /// `/api/v1/alerts`. Empty: the server answers that alerting is not available.
        public var controlUrl = ""
    }

    /// Several servers on one PostgreSQL database delivering to each other's users (docs/architecture.md,
    /// "Cross-node delivery").
    public struct Cluster: Codable, Sendable, Equatable {
        /// Off: a single node (every delivery is local). On: requires `storage.driver: postgres`.
        public var enabled = false
        /// This node's name in the cluster's notifications and logs (letters, digits, `.`, `_`, `-`; at most 64).
        /// Empty: a random one per start.
        public var nodeId = ""
        /// How often the node compares what it delivered with the database's last seqs; a lost notification
        /// delays a message by at most about twice this.
        public var catchUpSeconds = 1.0
        /// The cluster CA's certificate, served at `GET /v1/cluster/ca` to hosts joining with a token (which
        /// check its key's hash against the token). Empty: this server takes no joins.
        public var caFile = ""
    }

    /// Bot accounts (docs/bots.md).
    public struct Bots: Codable, Sendable, Equatable {
        /// Messages one bot may send per minute, over all its connections and `POST /v1/bot/messages` together.
        public var sendsPerMinute = 600
        /// Sends a bot may make at once before the per-minute rate applies.
        public var sendBurst = 60
        /// How often (seconds) a bot's open WebSockets re-check that its token is still live; a token revoked
        /// through the command line (not the running server) ends them within this time.
        public var revocationCheckSeconds = 15.0
    }

    /// Outgoing webhooks (docs/protocol.md, "Outgoing webhooks").
    public struct Webhooks: Codable, Sendable, Equatable {
        /// Networks (CIDR) webhooks may go to although they are private, loopback or link-local, e.g. an
        /// integration host inside the company: `[10.20.0.0/16]`. Empty: only public addresses.
        public var allowedNetworks: [String] = []
        /// Allow http:// URLs to non-loopback hosts (https is required otherwise).
        public var allowHttp = false
        /// One delivery attempt's limit, connecting included.
        public var timeoutSeconds = 10.0
        /// How long a delivery is retried before it fails and its subscription is turned off (at least a day).
        public var retryHours = 24.0
        /// The first retry waits about this; each one doubles it, up to `retry_max_seconds` (with jitter).
        public var retryBaseSeconds = 10.0
        public var retryMaxSeconds = 3600.0
        /// Deliveries in flight at once on this node.
        public var concurrency = 8
        /// How often the outbox is looked at for due deliveries.
        public var pollSeconds = 0.5
    }

    public var server = Server()
    public var metrics = Metrics()
    public var exporter = Exporter()
    public var storage = StorageSettings()
    public var auth = Auth()
    public var limits = Limits()
    public var backup = Backup()
    public var alerts = Alerts()
    public var cluster = Cluster()
    public var bots = Bots()
    public var webhooks = Webhooks()
    // --- Content moderation (issue 15, branch features2): one contiguous block, all public. ---
    /// An operator-managed word list applied to every message text before it is stored (docs/operations.md,
    /// "Content moderation").
    public struct Moderation: Codable, Sendable, Equatable {
        public enum Action: String, Codable, Sendable, Equatable { case block, mask }
        /// The word list: one word or phrase per line, `#` starts a comment line. Empty: no moderation. Edits are
        /// picked up within `reload_seconds` (or at once with `POST /v1/admin/moderation/reload`), no restart.
        public var wordsFile = ""
        /// `block` refuses a message that contains a listed word (`blocked` error, logged for the admin console);
        /// `mask` stores it with each listed word replaced by `*`.
        public var action = Action.block
        /// How often (at most) the file's modification time is checked for changes.
        public var reloadSeconds = 10.0
        /// What a send does when the moderation webhook fails or is late: `open` lets it through, `closed` refuses it.
        public enum Failure: String, Codable, Sendable, Equatable { case open, closed }
        /// An external moderation service (docs/operations.md, "The moderation webhook"): every text the word list
        /// passed is POSTed to it, signed like an outgoing webhook, and it answers allow, mask or block. Empty: none.
        /// https, or http to loopback (`webhooks.allow_http` allows http elsewhere).
        public var webhookUrl = ""
        /// The file holding the signing secret (its first line; `X-Warbler-Signature` as for outgoing webhooks).
        public var webhookSecretFile = ""
        /// The time budget for the service's answer, in seconds; past it the send goes on as `webhook_failure` says.
        public var webhookTimeoutSeconds = 0.5
        public var webhookFailure = Failure.open
        public init() {}
    }
    public var moderation = Moderation()
    // --- end of content moderation ---
    /// The built-in AI assistant (`Assistant` and its checks are at the end of this file).
    public var assistant = Assistant()
    /// Attachments and other files live here.
    public var dataDir = "/var/lib/warbler"
    /// `info`, `debug`, `warning`, …
    public var logLevel = "info"

    public init() {}

    /// Loads `path` (if given) over the defaults, then applies `environment` overrides.
    /// With `lenient`, unknown settings are skipped and the result is not validated: for root's tools that need only
    /// where things are (data_dir, storage) from a config a failed release wrote (a rollback), never for running.
    public static func load(path: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
                            lenient: Bool = false) throws -> ServerConfig {
        var tree = try toTree(ServerConfig())
        if let path {
            guard let handle = FileHandle(forReadingAtPath: path), let data = try? handle.readToEnd() ?? Data(),
                  let text = String(data: data, encoding: .utf8) else {
                throw ConfigError("cannot read config file \(path); check the path and that this user may read it")
            }
            let loaded: Any?
            do { loaded = try Yams.load(yaml: text) } catch {
                throw ConfigError("\(path) is not valid YAML: \(error)")
            }
            if let loaded {
                guard let map = loaded as? [String: Any] else { throw ConfigError("\(path) must be a YAML mapping of sections") }
                try merge(map, into: &tree, path: "", skipUnknown: lenient)
            }
        }
        try applyEnvironment(environment, to: &tree)
        do {
            let data = try JSONSerialization.data(withJSONObject: tree)
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            let config = try decoder.decode(ServerConfig.self, from: data)
            if !lenient { try config.validate() }
            return config
        } catch let e as ConfigError { throw e } catch {
            throw ConfigError("invalid configuration: \(error)")
        }
    }

    public func validate() throws {
        guard ["sqlite", "postgres"].contains(storage.driver) else { throw ConfigError("storage.driver must be sqlite or postgres, not '\(storage.driver)'") }
        guard ["open", "admin"].contains(auth.registration) else { throw ConfigError("auth.registration must be open or admin") }
        guard (0...65535).contains(server.port) else { throw ConfigError("server.port must be 0-65535") }
        guard (-1...65535).contains(metrics.port) else { throw ConfigError("metrics.port must be -1 (off) or 0-65535") }
        guard (4...31).contains(auth.bcryptCost) else { throw ConfigError("auth.bcrypt_cost must be 4-31 (12 or more in production)") }
        guard server.tlsCert.isEmpty == server.tlsKey.isEmpty else { throw ConfigError("set both server.tls_cert and server.tls_key, or neither") }
        guard !server.trustForwardedFor || !server.clientCaFile.isEmpty else {
            throw ConfigError("server.trust_forwarded_for needs server.client_ca_file: without client certificates anyone could claim any address")
        }
        guard server.clientCaFile.isEmpty || !server.tlsCert.isEmpty else {
            throw ConfigError("server.client_ca_file needs TLS (server.tls_cert and server.tls_key)")
        }
        guard server.tlsReloadSeconds > 0 else { throw ConfigError("server.tls_reload_seconds must be above 0 (seconds between looks for a renewed certificate)") }
        try validateLimits()
        guard backup.keep >= 0 else { throw ConfigError("backup.keep must be 0 (keep every backup) or more") }
        guard backup.directory.hasPrefix("/") else { throw ConfigError("backup.directory must be an absolute path") }
        guard (0...65535).contains(exporter.port) else { throw ConfigError("exporter.port must be 0-65535") }
        guard ["auto", "systemd", "supervisor"].contains(exporter.manager) else {
            throw ConfigError("exporter.manager must be auto, systemd or supervisor, not '\(exporter.manager)'")
        }
        for c in exporter.components where c.isEmpty || !c.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) {
            throw ConfigError("exporter.components: '\(c)' is not a component name (lower-case letters, digits and -, as in server, alertd)")
        }
        guard exporter.collectorTimeoutSeconds > 0 else { throw ConfigError("exporter.collector_timeout_seconds must be above 0") }
        try validateCluster()
        try validateAssistant()
        try validateModeration()
        if !alerts.controlUrl.isEmpty {
            guard let u = URL(string: alerts.controlUrl), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host != nil else {
                throw ConfigError("alerts.control_url must be an http(s) URL such as http://127.0.0.1:9102, not '\(alerts.controlUrl)'")
            }
        }
    }

    func validateModeration() throws {
        guard moderation.reloadSeconds > 0, moderation.reloadSeconds.isFinite else {
            throw ConfigError("moderation.reload_seconds must be a number above 0, not \(moderation.reloadSeconds)")
        }
        guard !moderation.webhookUrl.isEmpty else { return }
        guard let u = URL(string: moderation.webhookUrl), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host != nil else {
            throw ConfigError("moderation.webhook_url must be an http(s) URL such as https://moderation.example.com/check, not '\(moderation.webhookUrl)'")
        }
        guard !moderation.webhookSecretFile.isEmpty else {
            throw ConfigError("moderation.webhook_url needs moderation.webhook_secret_file: a file whose first line is the secret its requests are signed with")
        }
        guard moderation.webhookTimeoutSeconds > 0, moderation.webhookTimeoutSeconds <= 10 else {
            throw ConfigError("moderation.webhook_timeout_seconds must be above 0 and at most 10 (every send waits for it), not \(moderation.webhookTimeoutSeconds)")
        }
    }

    /// A node id's characters: letters, digits, '.', '_', '-' (it travels in cluster notices, space-separated).
    public static func isNodeIDScalar(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "." || c == "_" || c == "-"
    }

    func validateCluster() throws {
        guard cluster.nodeId.count <= 64, cluster.nodeId.unicodeScalars.allSatisfy({ Self.isNodeIDScalar($0) }) else {
            throw ConfigError("cluster.node_id must be at most 64 letters, digits, '.', '_' or '-', not '\(cluster.nodeId)'")
        }
        guard cluster.catchUpSeconds > 0, cluster.catchUpSeconds.isFinite else {
            throw ConfigError("cluster.catch_up_seconds must be a number above 0, not \(cluster.catchUpSeconds)")
        }
        if cluster.enabled && storage.driver != "postgres" {
            throw ConfigError("cluster.enabled needs storage.driver: postgres (nodes share one PostgreSQL database); "
                              + "\(storage.driver) is a single node's own file")
        }
    }

    /// Every limit and period must be one the server can work with: a zero rate would divide by zero at the first
    /// request, a zero size would refuse everything.
    func validateLimits() throws {
        func atLeast<T: Comparable>(_ value: T, _ minimum: T, _ key: String, _ why: String = "") throws {
            guard value >= minimum else { throw ConfigError("\(key) must be at least \(minimum)\(why), not \(value)") }
        }
        func above(_ value: Double, _ key: String) throws {
            guard value > 0, value.isFinite else { throw ConfigError("\(key) must be a number above 0, not \(value)") }
        }
        try atLeast(limits.frameBytes, 1024, "limits.frame_bytes")
        try atLeast(limits.bodyBytes, 1024, "limits.body_bytes")
        try above(limits.sendsPerSecond, "limits.sends_per_second")
        try atLeast(limits.sendBurst, 1, "limits.send_burst")
        try atLeast(limits.attachmentBytes, 1, "limits.attachment_bytes")
        try atLeast(limits.attachmentQuotaBytes, limits.attachmentBytes, "limits.attachment_quota_bytes", " (limits.attachment_bytes)")
        try atLeast(limits.uploadsPerMinute, 1, "limits.uploads_per_minute")
        try above(limits.typingPerSecond, "limits.typing_per_second")
        try above(limits.receiptsPerSecond, "limits.receipts_per_second")
        try above(limits.syncsPerSecond, "limits.syncs_per_second")
        try atLeast(limits.connectionsPerUser, 1, "limits.connections_per_user")
        try atLeast(limits.groupSize, 2, "limits.group_size")
        try atLeast(limits.recallSeconds, 0, "limits.recall_seconds")
        try atLeast(limits.textBytes, 1, "limits.text_bytes")
        try atLeast(auth.loginPerMinutePerAccount, 1, "auth.login_per_minute_per_account")
        try atLeast(auth.loginPerMinutePerAddress, 1, "auth.login_per_minute_per_address")
        try atLeast(auth.registerPerHourPerAddress, 1, "auth.register_per_hour_per_address")
        try atLeast(auth.passwordChangesPerHourPerAddress, 1, "auth.password_changes_per_hour_per_address")
        try atLeast(auth.maxConcurrentHashes, 1, "auth.max_concurrent_hashes")
        try atLeast(auth.accessTtlSeconds, 30, "auth.access_ttl_seconds")
        try atLeast(auth.refreshTtlSeconds, auth.accessTtlSeconds, "auth.refresh_ttl_seconds", " (auth.access_ttl_seconds)")
        try atLeast(storage.maxBatch, 1, "storage.max_batch")
        guard (1...8).contains(storage.postgresCommitsInFlight) else {
            throw ConfigError("storage.postgres_commits_in_flight must be 1 to 8 (commits at once, each on one of the pool's 20 connections), not \(storage.postgresCommitsInFlight)")
        }
        if !(storage.postgresTimeoutSeconds >= 0) || storage.postgresTimeoutSeconds.isInfinite {
            throw ConfigError("storage.postgres_timeout_seconds must be 0 (no limit) or a number of seconds, not \(storage.postgresTimeoutSeconds)")
        }
        try atLeast(server.drainSeconds, 0, "server.drain_seconds")
        try atLeast(server.maxConnections, 0, "server.max_connections", " (0: as many as descriptors allow)")
        try atLeast(server.maxConnectionsPerAddress, 0, "server.max_connections_per_address", " (0: no cap)")
        try above(server.requestHeadTimeoutSeconds, "server.request_head_timeout_seconds")
        try above(server.idleTimeoutSeconds, "server.idle_timeout_seconds")
        try atLeast(bots.sendsPerMinute, 1, "bots.sends_per_minute")
        try atLeast(bots.sendBurst, 1, "bots.send_burst")
        try above(bots.revocationCheckSeconds, "bots.revocation_check_seconds")
        for n in webhooks.allowedNetworks where IPNetwork(n) == nil {
            throw ConfigError("webhooks.allowed_networks: '\(n)' is not an address or CIDR such as 10.1.0.0/16 or fd00::/8")
        }
        try above(webhooks.timeoutSeconds, "webhooks.timeout_seconds")
        try above(webhooks.retryHours, "webhooks.retry_hours")
        try above(webhooks.retryBaseSeconds, "webhooks.retry_base_seconds")
        try atLeast(webhooks.retryMaxSeconds, webhooks.retryBaseSeconds, "webhooks.retry_max_seconds", " (webhooks.retry_base_seconds)")
        try atLeast(webhooks.concurrency, 1, "webhooks.concurrency")
        try above(webhooks.pollSeconds, "webhooks.poll_seconds")
    }

    /// The directory the web client is served from: `server.web_root`, or `web` beside the running release's `bin/`.
    public func resolvedWebRoot(executable: String = Bundle.main.executablePath ?? CommandLine.arguments.first ?? "") -> String {
        if !server.webRoot.isEmpty { return server.webRoot }
        let exe = URL(fileURLWithPath: executable).resolvingSymlinksInPath()
        return exe.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("web").path
    }

    static func toTree(_ c: ServerConfig) throws -> [String: Any] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return try JSONSerialization.jsonObject(with: try encoder.encode(c)) as? [String: Any] ?? [:]
    }

    enum Kind { case bool, int, double, string, list, section }

    /// The type of every setting, read off the defaults, keyed by `section.key` in snake_case.
    static let schema: [String: Kind] = {
        var out: [String: Kind] = [:]
        func kind(_ v: Any) -> Kind {
            switch v {
            case is Bool: .bool
            case is Int: .int
            case is Double: .double
            case is String: .string
            case is [String]: .list
            default: .section
            }
        }
        for top in Mirror(reflecting: ServerConfig()).children {
            guard let label = top.label else { continue }
            let k = kind(top.value)
            out[snake(label)] = k
            if k == .section {
                for c in Mirror(reflecting: top.value).children {
                    if let l = c.label { out["\(snake(label)).\(snake(l))"] = kind(c.value) }
                }
            }
        }
        return out
    }()

    static func snake(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    static func merge(_ src: [String: Any], into dst: inout [String: Any], path: String, skipUnknown: Bool = false) throws {
        for (k, v) in src {
            let key = path.isEmpty ? k : "\(path).\(k)"
            guard let kind = schema[key], let existing = dst[k] else {
                if skipUnknown { continue }
                throw ConfigError("unknown setting '\(key)'; see docs/operations.md for the settings")
            }
            if kind == .section {
                guard var sub = existing as? [String: Any], let vmap = v as? [String: Any] else { throw ConfigError("'\(key)' must be a mapping") }
                try merge(vmap, into: &sub, path: key, skipUnknown: skipUnknown)
                dst[k] = sub
            } else {
                dst[k] = try coerce(v, kind: kind, key: key)
            }
        }
    }

    static func coerce(_ v: Any, kind: Kind, key: String) throws -> Any {
        let text = "\(v)"
        switch kind {
        case .list:
            if let a = v as? [Any] { return a.map { "\($0)" } }
            return text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case .bool:
            if let b = v as? Bool { return b }
            switch text.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw ConfigError("'\(key)' must be true or false, not '\(text)'")
            }
        case .int:
            if let i = v as? Int { return i }
            guard let i = Int(text) else { throw ConfigError("'\(key)' must be a whole number, not '\(text)'") }
            return i
        case .double:
            if let d = v as? Double { return d }
            guard let d = Double(text) else { throw ConfigError("'\(key)' must be a number, not '\(text)'") }
            return d
        case .string, .section:
            return text
        }
    }

    static func applyEnvironment(_ env: [String: String], to tree: inout [String: Any]) throws {
        for (key, kind) in schema where kind != .section {
            let name = "WARBLER_" + key.replacingOccurrences(of: ".", with: "_").uppercased()
            guard let v = env[name] else { continue }
            let parts = key.split(separator: ".").map(String.init)
            let value = try coerce(v, kind: kind, key: "\(key) (from \(name))")
            if parts.count == 1 {
                tree[parts[0]] = value
            } else if var sub = tree[parts[0]] as? [String: Any] {
                sub[parts[1]] = value
                tree[parts[0]] = sub
            }
        }
    }
}

/// A configuration problem, with what to do about it.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

// MARK: The AI assistant (docs/bots.md, "The assistant"; docs/operations.md, "The AI assistant")

extension ServerConfig {
    /// The built-in AI assistant: a bot that answers through an OpenAI-compatible chat-completions endpoint.
    public struct Assistant: Codable, Sendable, Equatable {
        public var enabled = false
        /// The bot's username; the account is created at start (a bot without a token) when missing.
        public var username = "assistant"
        public var displayName = "Assistant"
        /// The API base: `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` (Ollama), …; `/chat/completions`
        /// is appended.
        public var endpoint = ""
        public var model = ""
        /// A file holding the API key, sent as `Authorization: Bearer`; empty for an endpoint without one. Never logged.
        public var keyFile = ""
        /// How the key travels: `authorization` (`Authorization: Bearer KEY`, every OpenAI-compatible server) or
        /// `api-key` (`api-key: KEY`, Azure OpenAI's deployments).
        public var keyHeader = "authorization"
        /// Azure OpenAI's `api-version` (such as `2024-10-21`), sent as a query parameter; empty for others.
        public var apiVersion = ""
        public var systemPrompt = "You are a helpful assistant in a company chat. Answer briefly and clearly."
        /// The most recent messages of the conversation sent as context, and about this many tokens of them
        /// (estimated from their characters); the oldest are dropped first.
        public var contextMessages = 20
        public var contextTokens = 4000
        /// The most tokens an answer may use (sent as `max_tokens`); 0 leaves it to the endpoint.
        public var maxTokens = 0
        /// An answer that has not finished in this long is cut off with a note (and a silent stream fails this soon).
        public var timeoutSeconds = 60.0
        /// Retries of a request that failed before any answer came (429, 5xx, no connection).
        public var retries = 1
        /// The growing answer is written (as an edit of its message) at most this often.
        public var editIntervalSeconds = 0.5
        /// Questions per user per minute, and per conversation per minute.
        public var perUserPerMinute = 10
        public var perConversationPerMinute = 20
        /// Answers being worked on at once, and questions that may wait for one (more are refused with a note).
        public var concurrency = 4
        public var queueSize = 100

        public init() {}
    }

    func validateAssistant() throws {
        let a = assistant
        func positive(_ value: Double, _ key: String) throws {
            guard value > 0, value.isFinite else { throw ConfigError("assistant.\(key) must be a number above 0, not \(value)") }
        }
        func atLeast(_ value: Int, _ minimum: Int, _ key: String) throws {
            guard value >= minimum else { throw ConfigError("assistant.\(key) must be at least \(minimum), not \(value)") }
        }
        try atLeast(a.contextMessages, 1, "context_messages")
        try atLeast(a.contextTokens, 100, "context_tokens")
        try atLeast(a.maxTokens, 0, "max_tokens")
        try positive(a.timeoutSeconds, "timeout_seconds")
        try atLeast(a.retries, 0, "retries")
        try positive(a.editIntervalSeconds, "edit_interval_seconds")
        try atLeast(a.perUserPerMinute, 1, "per_user_per_minute")
        try atLeast(a.perConversationPerMinute, 1, "per_conversation_per_minute")
        try atLeast(a.concurrency, 1, "concurrency")
        try atLeast(a.queueSize, 1, "queue_size")
        guard a.enabled else { return }
        guard let u = URL(string: a.endpoint), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host != nil, u.query == nil else {
            throw ConfigError("assistant.endpoint must be the endpoint's http(s) API base, such as https://api.openai.com/v1, not '\(a.endpoint)'")
        }
        guard !a.model.isEmpty else { throw ConfigError("assistant.model must name the model to ask, such as gpt-4o-mini or qwen2.5:7b") }
        guard ["authorization", "api-key"].contains(a.keyHeader) else {
            throw ConfigError("assistant.key_header must be authorization (Bearer, the default) or api-key (Azure OpenAI), not '\(a.keyHeader)'")
        }
        guard a.apiVersion.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "." }) else {
            throw ConfigError("assistant.api_version must be a version such as 2024-10-21, not '\(a.apiVersion)'")
        }
        if let e = Validation.username(a.username.lowercased()) { throw ConfigError("assistant.username: \(e.message)") }
    }
}

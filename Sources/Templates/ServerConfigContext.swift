/// What `warbler.yaml.mustache` is rendered from: the settings the installer manages. Every other server setting
/// keeps its default (or a `WARBLER_…` environment override).
public struct ServerConfigContext: Sendable, Equatable {
    public var host = "0.0.0.0"
    public var port = 8443
    /// PEM chain and key; both nil turns TLS off.
    public var tlsCertFile: String?
    public var tlsKeyFile: String?
    public var allowedOrigins: [String] = []
    /// The web client and admin console: the `web` directory of the current release.
    public var webRoot = "/opt/warbler/current/web"
    /// alertd's loopback control API, proxied by `GET /v1/admin/alerts`; empty when alerting is not installed.
    public var alertsControlURL = ""
    public var metricsHost = "127.0.0.1"
    /// -1 turns the metrics listener off.
    public var metricsPort = 9464
    /// `warbler exporter`'s listener and the components it reports.
    public var exporterHost = "127.0.0.1"
    public var exporterPort = 9101
    public var exporterComponents = ["server", "exporter", "alertd"]
    public var storageDriver = "sqlite"
    public var databasePath = "/var/lib/warbler/warbler.db"
    /// `open` or `admin`.
    public var registration = "open"
    public var jwtKeyFile = "/etc/warbler/secrets/jwt.key"
    public var dataDir = "/var/lib/warbler"
    public var logLevel = "info"
    /// A cluster member's database: PostgreSQL (through the local HAProxy that follows the primary), over TLS
    /// verified against the cluster CA. nil: SQLite at `databasePath`.
    public var postgres: Postgres?
    /// A cluster member: its node name and the cluster CA it hands to joining hosts.
    public var clusterNodeID: String?
    public var clusterCAFile = ""
    /// The AI assistant, on: its endpoint, model and key file (nil: no key). nil: off.
    public var assistant: Assistant?

    public struct Assistant: Sendable, Equatable {
        public var endpoint: String
        public var model: String
        public var keyFile: String?
        public init(endpoint: String, model: String, keyFile: String?) { self.endpoint = endpoint; self.model = model; self.keyFile = keyFile }
    }

    public struct Postgres: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var user: String
        public var passwordFile: String
        public var database: String
        public var caFile: String
        public var tls: Bool
        public init(host: String, port: Int, user: String, passwordFile: String, database: String, caFile: String, tls: Bool = true) {
            self.host = host; self.port = port; self.user = user; self.passwordFile = passwordFile; self.database = database; self.caFile = caFile
            self.tls = tls
        }
    }

    public init() {}

    /// The values as YAML literals, in the shape the template addresses (`server.port`, `auth.jwtKeyFile`, …).
    func view() -> [String: Any] {
        [
            "server": [
                "host": YAML.quote(host),
                "port": String(port),
                "tlsCert": YAML.quote(tlsCertFile ?? ""),
                "tlsKey": YAML.quote(tlsKeyFile ?? ""),
                "allowedOrigins": YAML.list(allowedOrigins),
                "webRoot": YAML.quote(webRoot),
            ],
            "alerts": ["controlUrl": YAML.quote(alertsControlURL)],
            "metrics": ["host": YAML.quote(metricsHost), "port": String(metricsPort)],
            "exporter": ["host": YAML.quote(exporterHost), "port": String(exporterPort), "components": YAML.list(exporterComponents)],
            "storage": ["driver": YAML.quote(postgres == nil ? storageDriver : "postgres"), "path": YAML.quote(databasePath)],
            "postgres": postgres.map { p -> [[String: Any]] in
                [["host": YAML.quote(p.host), "port": String(p.port), "user": YAML.quote(p.user), "passwordFile": YAML.quote(p.passwordFile),
                  "database": YAML.quote(p.database), "caFile": YAML.quote(p.caFile), "tls": p.tls ? "true" : "false"]]
            } ?? [],
            "cluster": clusterNodeID.map { [["nodeId": YAML.quote($0), "caFile": YAML.quote(clusterCAFile)]] } ?? [],
            "auth": ["registration": YAML.quote(registration), "jwtKeyFile": YAML.quote(jwtKeyFile)],
            "assistant": assistant.map { a -> [[String: Any]] in
                [["endpoint": YAML.quote(a.endpoint), "model": YAML.quote(a.model), "keyFile": YAML.quote(a.keyFile ?? "")]]
            } ?? [],
            "dataDir": YAML.quote(dataDir),
            "logLevel": YAML.quote(logLevel),
        ]
    }
}

/// YAML literals for values that came from an operator: always double-quoted, so no value can end the mapping,
/// start a comment or change type.
public enum YAML {
    public static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f || (0x80...0x9f).contains(scalar.value) {
                    out += "\\x" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 2)
                } else if scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xfeff {
                    out += "\\u" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// A flow sequence of quoted strings: `["a", "b"]`, or `[]`.
    public static func list(_ items: [String]) -> String {
        "[" + items.map(quote).joined(separator: ", ") + "]"
    }
}

extension String {
    func leftPadded(to n: Int) -> String { String(repeating: "0", count: Swift.max(0, n - count)) + self }
}

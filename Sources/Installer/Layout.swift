/// Where an install puts things. `Paths` are as the installed host sees them (they go into configs and units);
/// `Layout` prefixes them with a staging root (`--root DIR`) to get the path this process writes.
public enum Paths {
    public static let etc = "/etc/warbler"
    public static let config = "/etc/warbler/warbler.yaml"
    public static let secrets = "/etc/warbler/secrets"
    public static let jwtKey = "/etc/warbler/secrets/jwt.key"
    public static let adminPassword = "/etc/warbler/secrets/admin-password"
    /// The AI assistant's API key (`install --ai-key-file`), 0600 warbler.
    public static let aiKey = "/etc/warbler/secrets/ai.key"
    public static let tls = "/etc/warbler/tls"
    public static let caCert = "/etc/warbler/tls/ca.crt"
    public static let caKey = "/etc/warbler/tls/ca.key"
    public static let serverCert = "/etc/warbler/tls/server.crt"
    public static let serverKey = "/etc/warbler/tls/server.key"
    public static let opt = "/opt/warbler"
    public static let releases = "/opt/warbler/releases"
    public static let current = "/opt/warbler/current"
    public static let currentBinary = "/opt/warbler/current/bin/warbler"
    public static let data = "/var/lib/warbler"
    public static let database = "/var/lib/warbler/warbler.db"
    /// Root's own state (root 0700), outside every tree the service user can write: what root reads back here
    /// (undo actions, inherited answers, the upgrade record) only root can have written.
    public static let installState = "/var/lib/warbler-install"
    public static let journal = "/var/lib/warbler-install/journal.json"
    public static let journalBackups = "/var/lib/warbler-install/backup"
    public static let adminCreatedMarker = "/var/lib/warbler-install/admin-created"
    public static let upgradeRecord = "/var/lib/warbler-install/upgrade.json"
    /// Where earlier releases kept root's state, inside the service user's data directory; the next root run moves
    /// what is trustworthy of it to `installState`.
    public static let legacyInstallState = "/var/lib/warbler/install"
    /// root:warbler 0750: the service user reads its logs but cannot plant links or files where root opens them.
    public static let logs = "/var/log/warbler"
    public static let serverLog = "/var/log/warbler/server.log"
    /// The output of the jobs the built-in supervisor runs as root (certificate renewal, the daily backup).
    public static let jobsLog = "/var/log/warbler/jobs.log"
    /// `warbler` on PATH: a link to the current release's binary.
    public static let binLink = "/usr/local/bin/warbler"
    public static let binLinkTarget = "/opt/warbler/current/bin/warbler"
    public static let run = "/run/warbler"
    public static let supervisorPID = "/run/warbler/supervise.pid"
    public static let serverPID = "/run/warbler/server.pid"
    public static let unitDir = "/etc/systemd/system"
    public static let serverUnitName = "warbler-server.service"
    public static let serverUnit = "/etc/systemd/system/warbler-server.service"
    public static let certRenewServiceName = "warbler-cert-renew.service"
    public static let certRenewTimerName = "warbler-cert-renew.timer"
    public static let exporterUnitName = "warbler-exporter.service"
    public static let alertdUnitName = "warbler-alertd.service"
    public static let backupServiceName = "warbler-backup.service"
    public static let backupTimerName = "warbler-backup.timer"
    /// Every unit an install may put in /etc/systemd/system, in stopping order: timers before the jobs they start,
    /// alerting before what it watches, the server last.
    public static let unitNames = [certRenewTimerName, certRenewServiceName, backupTimerName, backupServiceName,
                                   ClusterPaths.upgradeReceiverUnit, alertdUnitName, exporterUnitName, serverUnitName,
                                   ClusterPaths.keepalivedUnit, ClusterPaths.vipAgentUnit, ClusterPaths.agentUnit, ClusterPaths.haproxyUnit, ClusterPaths.patroniUnit, ClusterPaths.etcdUnit]
    /// The long-running daemons, in starting order.
    public static let daemonUnitNames = [serverUnitName, exporterUnitName, alertdUnitName]
    public static let alertsConfig = "/etc/warbler/alerts.yaml"
    /// The public key releases must be signed with (`--release-key`); `warbler upgrade` checks FILE.sig against it.
    public static let releaseKey = "/etc/warbler/release-key.pub"
    public static let alertdState = "/var/lib/warbler/alertd"
    public static let backups = "/var/lib/warbler/backups"
    public static func unitFile(_ name: String) -> String { "\(unitDir)/\(name)" }

    public static func release(_ version: String) -> String { "\(releases)/\(version)" }
}

/// The installer's view of the target: the host itself, or a staging directory.
public struct Layout: Sendable, Equatable {
    /// Empty for the host; otherwise an absolute directory every path is placed under.
    public let root: String

    public init(root: String? = nil) {
        var r = root ?? ""
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r == "/" ? "" : r
    }

    public var isStaging: Bool { !root.isEmpty }

    /// The path this process uses for the host path `target`.
    public func path(_ target: String) -> String { root + target }
}

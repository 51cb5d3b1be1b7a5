/// What the backup job's systemd units (a oneshot service and its daily timer) are rendered from.
public struct BackupUnitContext: Sendable, Equatable {
    public var unitName = "warbler-backup.service"
    public var timerName = "warbler-backup.timer"
    public var serverUnitName = "warbler-server.service"
    /// The executable as the host sees it (never under a staging root).
    public var binary = "/opt/warbler/current/bin/warbler"
    public var configPath = "/etc/warbler/warbler.yaml"
    /// The service user: it owns the database, the attachments and the secrets.
    public var user = "warbler"
    public var group = "warbler"
    /// Writable for the job (the backups, the SQLite snapshot's bookkeeping).
    public var dataDir = "/var/lib/warbler"
    /// `backup.directory`; made writable too when it is not under `dataDir`.
    public var backupDir = "/var/lib/warbler/backups"
    /// The root-only internal CA key; empty when the install has no internal CA. No longer handed to the unit (an
    /// unattended backup leaves the CA key out); kept so the installer's blueprint need not change with it.
    public var caKeyPath = "/etc/warbler/tls/ca.key"
    /// systemd.time(7) calendar expression.
    public var onCalendar = "daily"
    /// systemd.time(7) time span.
    public var randomizedDelaySec = "1h"
    /// A cluster member: root takes the cluster's daily lock in etcd before the run (`ExecCondition=+`, which skips
    /// the run when another member holds it or took today's) and releases it after (`ExecStopPost=+`).
    public var cluster = false

    public init() {}

    func view() throws -> [String: Any] {
        for (what, value) in [("unit name", unitName), ("timer name", timerName), ("server unit name", serverUnitName),
                              ("binary", binary), ("config path", configPath), ("user", user), ("group", group),
                              ("data directory", dataDir), ("backup directory", backupDir), ("random delay", randomizedDelaySec)] {
            try ServiceUnitContext.checkUnitValue(value, what: what)
        }
        if !caKeyPath.isEmpty { try ServiceUnitContext.checkUnitValue(caKeyPath, what: "CA key path") }
        guard unitName.hasSuffix(".service"), timerName.hasSuffix(".timer") else {
            throw TemplateError("the backup units must be named NAME.service and NAME.timer, not \(unitName) and \(timerName)")
        }
        for (what, path) in [("binary", binary), ("config path", configPath), ("data directory", dataDir), ("backup directory", backupDir)]
        where !path.hasPrefix("/") {
            throw TemplateError("the \(what) \(path) must be an absolute path")
        }
        // A calendar expression may hold spaces ("Mon *-*-* 03:00") but nothing that starts a new line or a comment.
        guard !onCalendar.isEmpty, !onCalendar.contains(where: { $0.isNewline || "%\"'\\;$`#".contains($0) }) else {
            throw TemplateError("'\(onCalendar)' cannot be a timer's OnCalendar=: use a systemd.time(7) calendar expression such as daily or *-*-* 03:00")
        }
        let dataPrefix = dataDir.hasSuffix("/") ? dataDir : dataDir + "/"
        return [
            "unitName": unitName,
            "timerName": timerName,
            "serverUnitName": serverUnitName,
            "binary": binary,
            "configPath": configPath,
            "user": user,
            "group": group,
            "dataDir": dataDir,
            "backupDir": backupDir,
            "backupDirOutsideData": backupDir != dataDir && !backupDir.hasPrefix(dataPrefix),
            "hasCAKey": !caKeyPath.isEmpty,
            "caKeyPath": caKeyPath,
            "onCalendar": onCalendar,
            "randomizedDelaySec": randomizedDelaySec,
            "cluster": cluster,
        ]
    }
}

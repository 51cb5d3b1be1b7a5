import Foundation
import Templates

/// Turns an install's settings into the state the host should be in: the user, the directories with their modes
/// and owners, the release, the rendered config and units, the secrets and certificates, the services.
/// Existing secrets and certificates are read back and kept, so the same inputs always give the same state.
public struct Blueprint: Sendable {
    public var settings: InstallSettings
    public var layout: Layout
    public var initSystem: InitSystem
    public var release: ResolvedRelease
    public var templates: TemplateSet
    public var names: CertificateNames
    /// A cluster member's components and joined secrets (nil: a single node).
    public var cluster: ClusterInputs?

    public static let user = "warbler"

    public init(settings: InstallSettings, layout: Layout, initSystem: InitSystem, release: ResolvedRelease,
                templates: TemplateSet, names: CertificateNames, cluster: ClusterInputs? = nil) {
        self.settings = settings; self.layout = layout; self.initSystem = initSystem
        self.release = release; self.templates = templates; self.names = names; self.cluster = cluster
    }

    /// What the build learned that the operator is told.
    public struct Facts: Sendable, Equatable {
        public var tls: TLSMaterial?
        public var adminPasswordGenerated: Bool
        /// The given `--admin-password-file` was not used: the admin already exists.
        public var adminPasswordIgnored: Bool
    }

    /// Ownership is managed on a real host; a staging root has no `warbler` user to own things.
    var managesOwnership: Bool { !layout.isStaging }
    var managesServices: Bool { !layout.isStaging && initSystem != .none }

    public func build(on system: any System) throws -> (DesiredState, Facts) {
        var d = DesiredState()
        let root = managesOwnership ? Owner.root : nil
        let svc = managesOwnership ? Owner(Self.user, Self.user) : nil
        let rootGroupSvc = managesOwnership ? Owner("root", Self.user) : nil
        func dir(_ p: String, _ mode: UInt16, _ owner: Owner?) {
            d.directories.append(.init(path: layout.path(p), mode: mode, owner: owner))
        }
        func file(_ p: String, _ content: Data, _ mode: UInt16, _ owner: Owner?, label: String? = nil) {
            d.files.append(.init(path: layout.path(p), content: .bytes(content), mode: mode, owner: owner, label: label))
        }
        func existing(_ p: String) throws -> Data? {
            try system.info(layout.path(p))?.kind == .file ? try system.read(layout.path(p)) : nil
        }

        if managesOwnership { d.users.append(.init(name: Self.user, home: Paths.data)) }

        // Directories, parents first.
        dir(Paths.etc, 0o755, root)
        dir(Paths.secrets, 0o700, svc)
        if settings.tls != .off { dir(Paths.tls, 0o750, rootGroupSvc) }
        dir(Paths.opt, 0o755, root)
        dir(Paths.releases, 0o755, root)
        let releaseDir = Paths.release(release.version)
        dir(releaseDir, 0o755, root)
        let releaseFiles = release.files
        for sub in Set(releaseFiles.map { ($0.relativePath as NSString).deletingLastPathComponent }).filter({ !$0.isEmpty }).sorted() {
            var prefix = ""
            for part in sub.split(separator: "/") {
                prefix += (prefix.isEmpty ? "" : "/") + part
                if !d.directories.contains(where: { $0.path == layout.path("\(releaseDir)/\(prefix)") }) {
                    dir("\(releaseDir)/\(prefix)", 0o755, root)
                }
            }
        }
        dir(Paths.data, 0o700, svc)
        dir(Paths.installState, 0o700, root)
        dir(Paths.unitDir, 0o755, root)
        // Root opens the logs here (the built-in supervisor): root's, readable by the service user's group.
        if initSystem == .builtin && !layout.isStaging { dir(Paths.logs, 0o750, rootGroupSvc) }

        // The release.
        for f in releaseFiles {
            d.files.append(.init(path: layout.path("\(releaseDir)/\(f.relativePath)"), content: f.content, mode: f.mode, owner: root,
                                 label: f.relativePath == "bin/warbler" ? "warbler \(release.version)" : nil))
        }
        d.links.append(.init(path: layout.path(Paths.current), target: "releases/\(release.version)"))
        // `warbler` on PATH (as k3s does), unless something that is not ours is already there.
        let onPath = try system.info(layout.path(Paths.binLink))
        if onPath == nil || (onPath?.kind == .symlink && onPath?.linkTarget?.hasPrefix(Paths.opt + "/") == true) {
            let binDir = (Paths.binLink as NSString).deletingLastPathComponent
            if try system.info(layout.path(binDir)) == nil { dir(binDir, 0o755, root) }
            d.links.append(.init(path: layout.path(Paths.binLink), target: Paths.binLinkTarget))
        }

        // Secrets, generated once.
        let bundle = cluster?.bundle
        file(Paths.jwtKey, try Secrets.jwtKey(existing: try existing(Paths.jwtKey) ?? bundle.map { Data($0.jwtKey.utf8) }, path: layout.path(Paths.jwtKey)), 0o600, svc,
             label: "token signing key")
        let adminExists = try RootState(system: system, layout: layout).exists(Paths.adminCreatedMarker)
        let given = try settings.adminPasswordFile.map { path -> Data in
            guard try system.info(path) != nil else { throw OptionsError("--admin-password-file \(path): no such file") }
            return try system.read(path)
        }
        let currentPassword = try existing(Paths.adminPassword)
        var passwordGenerated = false
        if adminExists {
            // The admin's password lives in the database now: keep the file as it is, or its absence (an operator
            // who deleted it after the first login did the right thing).
            if let currentPassword { file(Paths.adminPassword, currentPassword, 0o600, svc, label: "first admin's password") }
        } else {
            let password = try Secrets.adminPassword(existing: given != nil ? nil : currentPassword, given: given,
                                                     source: settings.adminPasswordFile)
            file(Paths.adminPassword, password.content, 0o600, svc, label: "first admin's password")
            passwordGenerated = password.generated
        }

        // The AI assistant's key: the operator's file copied into the secrets (trimmed), else the installed copy kept.
        var aiKeyInstalled = false
        if let a = settings.assistant {
            if let path = a.keyFile {
                guard try system.info(path) != nil else { throw OptionsError("--ai-key-file \(path): no such file") }
                let key = String(decoding: try system.read(path), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard !key.isEmpty else { throw OptionsError("--ai-key-file \(path) is empty; put the endpoint's API key in it") }
                file(Paths.aiKey, Data((key + "\n").utf8), 0o600, svc, label: "AI assistant key")
                aiKeyInstalled = true
            } else if let kept = try existing(Paths.aiKey) {
                file(Paths.aiKey, kept, 0o600, svc, label: "AI assistant key")
                aiKeyInstalled = true
            }
        }

        // TLS.
        var tls: TLSMaterial?
        switch settings.tls {
        case .internalCA:
            let m = try PKI.internalCA(caCert: try existing(Paths.caCert).map { String(decoding: $0, as: UTF8.self) } ?? bundle?.caCert,
                                       caKey: try existing(Paths.caKey).map { String(decoding: $0, as: UTF8.self) } ?? bundle?.caKey,
                                       serverCert: try existing(Paths.serverCert).map { String(decoding: $0, as: UTF8.self) },
                                       serverKey: try existing(Paths.serverKey).map { String(decoding: $0, as: UTF8.self) },
                                       names: names, now: system.now())
            file(Paths.caCert, Data(m.caCertificatePEM!.utf8), 0o644, root, label: "internal CA certificate")
            file(Paths.caKey, Data(m.caKeyPEM!.utf8), 0o600, root, label: "internal CA key")
            file(Paths.serverCert, Data(m.serverCertificatePEM.utf8), 0o644, root, label: "server certificate")
            file(Paths.serverKey, Data(m.serverKeyPEM.utf8), 0o600, svc, label: "server key")
            tls = m
        case .provided(let certPath, let keyPath):
            for p in [certPath, keyPath] where try system.info(p) == nil { throw OptionsError("\(p): no such file") }
            let m = try PKI.provided(certificatePEM: String(decoding: try system.read(certPath), as: UTF8.self),
                                     keyPEM: String(decoding: try system.read(keyPath), as: UTF8.self),
                                     certPath: certPath, keyPath: keyPath, now: system.now())
            file(Paths.serverCert, Data(m.serverCertificatePEM.utf8), 0o644, root, label: "server certificate from \(certPath)")
            file(Paths.serverKey, Data(m.serverKeyPEM.utf8), 0o600, svc, label: "server key from \(keyPath)")
            tls = m
        case .off:
            break
        }

        // Config and unit, rendered from templates/.
        var config = ServerConfigContext()
        config.host = settings.host
        config.port = settings.port
        config.metricsPort = settings.metricsPort
        config.tlsCertFile = tls == nil ? nil : Paths.serverCert
        config.tlsKeyFile = tls == nil ? nil : Paths.serverKey
        config.registration = settings.registration
        config.logLevel = settings.logLevel
        config.databasePath = Paths.database
        config.jwtKeyFile = Paths.jwtKey
        config.dataDir = Paths.data
        config.exporterPort = settings.exporterPort
        config.alertsControlURL = "http://127.0.0.1:\(settings.alertdPort)"
        config.assistant = settings.assistant.map { .init(endpoint: $0.endpoint, model: $0.model, keyFile: aiKeyInstalled ? Paths.aiKey : nil) }
        if let c = settings.cluster {
            // Behind HAProxy (which owns the public port), on the address the other members reach.
            config.host = c.advertise.description
            config.port = ClusterSettings.Port.im
            if let e = c.externalDatabase {
                // The site's PostgreSQL, directly (its own failover is the site's); TLS verified against the CA the
                // operator gave, else the system's roots.
                let ca = try system.info(layout.path(ClusterPaths.externalDatabaseCA)) != nil
                    || cluster?.bundle?.databaseCA?.isEmpty == false || cluster?.externalCA?.isEmpty == false
                config.postgres = .init(host: e.host, port: e.port, user: e.user, passwordFile: ClusterPaths.appPassword,
                                        database: e.database, caFile: ca ? ClusterPaths.externalDatabaseCA : "", tls: e.tls)
            } else {
                config.postgres = .init(host: "127.0.0.1", port: ClusterSettings.Port.primary, user: "warbler",
                                        passwordFile: ClusterPaths.appPassword, database: "warbler", caFile: Paths.caCert)
            }
            config.clusterNodeID = c.nodeName
            config.clusterCAFile = Paths.caCert
        }
        file(Paths.config, Data(try templates.renderServerConfig(config).utf8), 0o640, rootGroupSvc)

        var unit = ServiceUnitContext()
        unit.unitName = Paths.serverUnitName
        unit.binary = Paths.currentBinary
        unit.configPath = Paths.config
        unit.configDir = Paths.etc
        unit.user = Self.user
        unit.group = Self.user
        unit.dataDir = Paths.data
        unit.ports = settings.ports
        if settings.cluster != nil {
            unit.ports = settings.metricsPort > 0 ? [ClusterSettings.Port.im, settings.metricsPort] : [ClusterSettings.Port.im]
            unit.after = [ClusterPaths.haproxyUnit]
        }
        file(Paths.serverUnit, Data(try templates.renderServerUnit(unit).utf8), 0o644, root)

        if let key = settings.releaseKey {
            file(Paths.releaseKey, Data((key + "\n").utf8), 0o644, root, label: "release signing key (upgrades must be signed)")
        }

        // The monitoring exporter and alertd: their units, and alertd's rules, targets and receivers.
        func daemonUnit(_ name: String, config: String, port: Int) -> ServiceUnitContext {
            var u = unit
            u.unitName = name
            u.configPath = config
            u.ports = [port]
            return u
        }
        file(Paths.unitFile(Paths.exporterUnitName),
             Data(try templates.renderExporterUnit(daemonUnit(Paths.exporterUnitName, config: Paths.config, port: settings.exporterPort)).utf8), 0o644, root)
        file(Paths.unitFile(Paths.alertdUnitName),
             Data(try templates.renderAlertdUnit(daemonUnit(Paths.alertdUnitName, config: Paths.alertsConfig, port: settings.alertdPort)).utf8), 0o644, root)
        var alerts = AlertsConfigContext()
        alerts.listen = "127.0.0.1:\(settings.alertdPort)"
        alerts.stateFile = Paths.alertdState + "/state.json"
        alerts.targets = [.init(job: "exporter", url: "http://127.0.0.1:\(settings.exporterPort)/metrics")]
        if settings.metricsPort > 0 { alerts.targets.append(.init(job: "server", url: "http://127.0.0.1:\(settings.metricsPort)/metrics")) }
        alerts.cluster = settings.cluster != nil
        alerts.receiverEntries = try settings.alertReceivers.map { ($0.name, try $0.yamlLine()) }
        file(Paths.alertsConfig, Data(try templates.renderAlertsConfig(alerts).utf8), 0o640, rootGroupSvc, label: "alertd's rules and receivers")
        dir(Paths.alertdState, 0o700, svc)
        dir(Paths.backups, 0o700, svc)

        // The daily backup (the built-in supervisor runs it itself).
        let backsUp = initSystem == .systemd
        if backsUp {
            var job = BackupUnitContext()
            job.binary = Paths.currentBinary
            job.configPath = Paths.config
            job.user = Self.user
            job.group = Self.user
            job.dataDir = Paths.data
            job.backupDir = Paths.backups
            job.caKeyPath = settings.tls == .internalCA ? Paths.caKey : ""
            job.cluster = settings.cluster != nil
            file(Paths.unitFile(Paths.backupServiceName), Data(try templates.renderBackupService(job).utf8), 0o644, root)
            file(Paths.unitFile(Paths.backupTimerName), Data(try templates.renderBackupTimer(job).utf8), 0o644, root)
        }

        // The daily renewal of the internal CA's server certificate (the built-in supervisor runs it itself).
        let renewsCertificate = settings.tls == .internalCA && initSystem == .systemd
        if renewsCertificate {
            var job = CertRenewUnitContext()
            job.binary = Paths.currentBinary
            job.caKey = Paths.caKey
            job.tlsDir = Paths.tls
            job.user = Self.user
            file(Paths.unitFile(Paths.certRenewServiceName), Data(try templates.renderCertRenewService(job).utf8), 0o644, root)
            file(Paths.unitFile(Paths.certRenewTimerName), Data(try templates.renderCertRenewTimer(job).utf8), 0o644, root)
        }

        if managesServices {
            d.systemdUnits = initSystem == .systemd
            d.services.append(.init(unit: Paths.serverUnitName, unitFile: layout.path(Paths.serverUnit),
                                    restartOn: [Paths.config, Paths.jwtKey, Paths.serverCert, Paths.serverKey, Paths.current,
                                                "\(releaseDir)/bin/warbler"].map(layout.path)))
            let binaries = [Paths.current, "\(releaseDir)/bin/warbler"]
            d.services.append(.init(unit: Paths.exporterUnitName, unitFile: layout.path(Paths.unitFile(Paths.exporterUnitName)),
                                    restartOn: ([Paths.config] + binaries).map(layout.path)))
            d.services.append(.init(unit: Paths.alertdUnitName, unitFile: layout.path(Paths.unitFile(Paths.alertdUnitName)),
                                    restartOn: ([Paths.alertsConfig] + binaries).map(layout.path)))
            if backsUp {
                d.services.append(.init(unit: Paths.backupTimerName, unitFile: layout.path(Paths.unitFile(Paths.backupTimerName)),
                                        restartOn: [], companionUnitFiles: [layout.path(Paths.unitFile(Paths.backupServiceName))]))
            }
            if renewsCertificate {
                d.services.append(.init(unit: Paths.certRenewTimerName, unitFile: layout.path(Paths.unitFile(Paths.certRenewTimerName)),
                                        restartOn: [], companionUnitFiles: [layout.path(Paths.unitFile(Paths.certRenewServiceName))]))
            }
            // A joining member's cluster has its admin already.
            if settings.cluster?.founder ?? true {
                d.oneTime.append(.init(
                    name: "create the first admin, \(settings.adminUser)",
                    argv: [Paths.currentBinary, "user-add", settings.adminUser, "--admin", "--exists-ok",
                           "--password-file", Paths.adminPassword, "--config", Paths.config],
                    user: Self.user, marker: layout.path(Paths.adminCreatedMarker),
                    beforeUnit: settings.cluster == nil ? nil : Paths.serverUnitName))
            }
        }
        if let c = settings.cluster {
            guard let tls else { throw OptionsError("a cluster member needs the cluster CA's certificates") }
            try addCluster(c, tls: tls, into: &d, on: system)
        }
        return (d, Facts(tls: tls, adminPasswordGenerated: passwordGenerated, adminPasswordIgnored: given != nil && adminExists))
    }
}

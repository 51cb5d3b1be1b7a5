import Foundation
import Templates

/// One `warbler install` run's request.
public struct InstallRequest: Sendable {
    /// Flags over the answers file; unset answers come from the previous run, then the defaults.
    public var answers: InstallAnswers
    public var layout: Layout
    public var release: any ReleaseSource
    public var templates: TemplateSet
    /// Compute and show the plan, change nothing.
    public var dryRun: Bool
    /// A cluster member's embedded components and (when joining) the cluster's secrets.
    public var cluster: ClusterInputs?

    public init(answers: InstallAnswers, layout: Layout, release: any ReleaseSource, templates: TemplateSet, dryRun: Bool = false,
                cluster: ClusterInputs? = nil) {
        self.answers = answers; self.layout = layout; self.release = release; self.templates = templates; self.dryRun = dryRun
        self.cluster = cluster
    }
}

/// What a run found, planned and did, and what the operator needs to know afterwards.
public struct InstallOutcome: Sendable {
    public var preflight: PreflightReport
    public var settings: InstallSettings
    public var initSystem: InitSystem
    public var layout: Layout
    public var version: String
    public var plan: Plan
    public var applied: Bool
    /// This run finished an interrupted one.
    public var resumed: Bool
    public var url: String
    public var tls: TLSMaterial?
    public var facts: Blueprint.Facts
    public var notes: [String]

    /// The closing message: where the service is, how to trust it, where the admin password is, how to log in.
    public func render() -> String {
        var out = ""
        let verb = applied ? (plan.isEmpty ? "is already installed as asked; nothing changed" : "is installed") : "would be changed as planned (dry run)"
        let managed = switch initSystem {
        case .systemd: "running under systemd (\(Paths.serverUnitName))"
        case .builtin: "running under Warbler's built-in supervisor (log \(Paths.logs)/server.log)"
        case .none: layout.isStaging ? "staged under \(layout.root); nothing was started" : "laid out; nothing was started (--init none)"
        }
        out += "Warbler \(version) \(verb), \(managed).\n"
        out += "  URL:             \(url)\n"
        if let tls {
            if tls.caCertificatePEM != nil {
                out += "  CA certificate:  \(Paths.caCert) (have clients trust it)\n"
                out += "  CA fingerprint:  SHA-256 \(tls.fingerprint)\n"
            } else {
                out += "  certificate:     yours, SHA-256 \(tls.fingerprint)\n"
            }
            out += "  names covered:   \(tls.names.joined(separator: ", "))\n"
        }
        out += "  admin:           \(settings.adminUser), password in \(Paths.adminPassword) (mode 0600)\n"
        if initSystem != .none && !layout.isStaging {
            let ca = tls?.caCertificatePEM != nil ? " --cacert \(Paths.caCert)" : ""
            out += "  log in:          curl\(ca) \(url)/v1/auth/login -H 'content-type: application/json' \\\n"
            out += "                     -d '{\"username\":\"\(settings.adminUser)\",\"password\":\"'\"$(head -1 \(Paths.adminPassword))\"'\"}'\n"
        } else {
            out += "  first admin:     created by the first install on the host (or: warbler user-add \(settings.adminUser) --admin --password-file \(Paths.adminPassword))\n"
        }
        for note in notes { out += "  note: \(note)\n" }
        return out
    }
}

/// Preflight found something that stops the install; nothing was changed.
public struct PreflightFailed: Error, CustomStringConvertible, Sendable {
    public var report: PreflightReport
    public var description: String {
        "preflight failed (\(report.failures.map(\.name).joined(separator: ", "))); nothing was changed:\n" + report.render()
            + "Fix the failures above, or skip a check with --skip-check NAME if you know better."
    }
}

/// The install engine: preflight, desired state, plan, apply with a journal.
public struct Installer: Sendable {
    public let system: any System
    public let probe: any HostProbe

    public init(system: any System, probe: any HostProbe) { self.system = system; self.probe = probe }

    /// The settings a run uses: `given` over the previous run's answers over the defaults.
    public func resolve(_ given: InstallAnswers, layout: Layout) throws -> (settings: InstallSettings, answers: InstallAnswers, journal: Journal?) {
        let journal = try JournalStore(system: system, layout: layout).load()
        let answers = given.over(journal?.inheritedAnswers ?? InstallAnswers())
        let settings = try InstallSettings(answers, hostname: probe.hostname())
        try Preflight.validateSkips(settings.skipChecks)
        return (settings, answers, journal)
    }

    /// The init system that will run the services.
    public func initSystem(for settings: InstallSettings, layout: Layout) -> InitSystem {
        if layout.isStaging { return .none }
        return settings.initSystem ?? (probe.systemdIsRunning() ? .systemd : .builtin)
    }

    /// The checks alone (`warbler doctor`).
    public func doctor(_ given: InstallAnswers, layout: Layout, releaseBytes: UInt64 = 0) throws -> PreflightReport {
        let (settings, _, journal) = try resolve(given, layout: layout)
        return Preflight.run(.init(settings: settings, layout: layout, existing: existing(journal), releaseBytes: releaseBytes), probe: probe)
    }

    func existing(_ journal: Journal?) -> ExistingInstall? {
        guard let j = journal, j.state != .undone || j.baseline != nil else { return nil }
        return ExistingInstall(version: j.version, ports: j.ports, interrupted: j.interrupted, stoppedAt: j.interrupted ? j.stoppedAt : nil)
    }

    public func install(_ request: InstallRequest, progress: @Sendable (String) -> Void = { _ in }) throws -> InstallOutcome {
        let layout = request.layout
        let moved = request.dryRun ? [] : try RootState(system: system, layout: layout).migrate()
        let (settings, answers, journal) = try resolve(request.answers, layout: layout)
        let release = try ResolvedRelease(request.release, on: system)

        let report = Preflight.run(.init(settings: settings, layout: layout, existing: existing(journal),
                                         releaseBytes: try release.size(on: system)), probe: probe)
        guard report.passed else { throw PreflightFailed(report: report) }

        let initSystem = initSystem(for: settings, layout: layout)
        system.selectInit(initSystem)
        let names = Self.certificateNames(settings, hostname: probe.hostname(), addresses: probe.addresses())
        let blueprint = Blueprint(settings: settings, layout: layout, initSystem: initSystem, release: release,
                                  templates: request.templates, names: names, cluster: settings.cluster == nil ? nil : request.cluster)
        let (desired, facts) = try blueprint.build(on: system)
        let plan = try Planner.plan(desired, on: system, pending: journal?.pendingWork ?? PendingWork())

        var outcome = InstallOutcome(preflight: report, settings: settings, initSystem: initSystem, layout: layout, version: release.version,
                                     plan: plan, applied: false, resumed: journal?.interrupted == true, url: url(settings, names),
                                     tls: facts.tls, facts: facts, notes: [])
        outcome.notes += moved
        // An earlier release's install that took the old default (open) without choosing it: say that it closes.
        let wasOpen = (try? system.read(layout.path(Paths.config))).map { String(decoding: $0, as: UTF8.self).contains("registration: \"open\"") } ?? false
        if journal != nil, answers.registration == nil, settings.registration == "admin", wasOpen {
            outcome.notes.append("registration is now admin (only admins create accounts), the default since this release; `warbler install --registration open` lets anyone register again")
        }
        if facts.adminPasswordIgnored {
            outcome.notes.append("--admin-password-file was not used: the first admin exists already (change its password through the API)")
        }
        if initSystem == .builtin {
            outcome.notes.append("systemd is not PID 1 here: `warbler supervise` runs the server and restarts it if it dies (PID file \(Paths.supervisorPID))")
            if let c = settings.cluster {
                var ctx = ClusterContext()
                ClusterPaths.lay(out: &ctx)
                ctx.vip = c.vip?.description ?? ""
                let names = ctx.components(etcd: c.roles.contains(.etcd), database: c.roles.contains(.database)).map(\.name)
                outcome.notes.append("the cluster's components run under `warbler supervise --unit UNIT` too, each as its own user, logging to \(Paths.logs)/NAME.log (\(names.joined(separator: ", ")))")
            }
        }
        if layout.isStaging {
            outcome.notes.append("staged without owners (no warbler user under --root); the first install on the target host sets them and creates the first admin")
        }
        guard !request.dryRun else { return outcome }

        let store = JournalStore(system: system, layout: layout)
        if plan.isEmpty {
            if var j = journal, j.interrupted {
                // The interrupted run's remaining steps turned out to be done already.
                j.state = .complete
                j.finishedAt = system.now()
                try store.save(j)
            }
            outcome.applied = true
            return outcome
        }
        let now = system.now()
        let fresh = Journal(runID: Self.runID(now), version: release.version, state: .running, startedAt: now, finishedAt: nil,
                            inputs: answers.persistent,
                            baseline: journal.map { $0.state == .complete ? $0.inputs : ($0.baseline ?? InstallAnswers()) },
                            ports: settings.allPorts, entries: [], error: nil)
        _ = try Applier(system: system, store: store).apply(plan, journal: fresh, progress: progress)
        outcome.applied = true
        return outcome
    }

    /// Reverts the done steps of an interrupted run (`warbler install --undo`).
    public func undo(layout: Layout) throws -> [String] {
        try RootState(system: system, layout: layout).migrate()
        let store = JournalStore(system: system, layout: layout)
        guard let journal = try store.load() else { throw SystemError("no install journal at \(store.path): nothing to undo") }
        system.selectInit(journal.inputs.initSystem ?? (layout.isStaging ? .none : (probe.systemdIsRunning() ? .systemd : .builtin)))
        return try Undoer(system: system, store: store).undo(journal).report
    }

    /// A single node's certificate covers its hostname, its addresses and the domains. A cluster member's covers
    /// the domains (the cluster CA is constrained to them, the same on every member), its advertise address and
    /// 127.0.0.1 (its own components reach it there).
    public static func certificateNames(_ settings: InstallSettings, hostname: String, addresses: [IPAddress]) -> CertificateNames {
        guard let c = settings.cluster else { return CertificateNames(hostname: hostname, domains: settings.domains, addresses: addresses) }
        var ips = [c.advertise, IPAddress.parse("127.0.0.1")!]
        if let vip = c.vip { ips.append(vip) }
        for d in settings.domains { if let ip = IPAddress.parse(d), !ips.contains(ip) { ips.append(ip) } }
        return CertificateNames(dns: settings.domains.filter { IPAddress.parse($0) == nil }, ips: ips)
    }

    func url(_ settings: InstallSettings, _ names: CertificateNames) -> String {
        let host = settings.domains.first ?? (settings.cluster.map { ($0.vip ?? $0.advertise).description } ?? names.dns.first ?? "localhost")
        let shown = IPAddress.parse(host).map { $0.isIPv4 ? host : "[\(host)]" } ?? host
        return "\(settings.tls == .off ? "http" : "https")://\(shown):\(settings.port)"
    }

    static func runID(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withYear, .withMonth, .withDay, .withTime]
        return f.string(from: date) + "-" + Secrets.randomPassword(length: 6)
    }
}

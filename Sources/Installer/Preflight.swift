/// The outcome of one preflight check.
public struct CheckResult: Sendable, Equatable {
    public enum Status: String, Sendable {
        case pass, warn, fail, skipped
    }
    /// The name `--skip-check` takes.
    public var name: String
    public var status: Status
    /// What was found.
    public var message: String
    /// What to do about it (failures and warnings).
    public var fix: String?

    public init(_ name: String, _ status: Status, _ message: String, fix: String? = nil) {
        self.name = name; self.status = status; self.message = message; self.fix = fix
    }
}

/// Every check's result, reported together.
public struct PreflightReport: Sendable, Equatable {
    public var results: [CheckResult]

    public var failures: [CheckResult] { results.filter { $0.status == .fail } }
    public var warnings: [CheckResult] { results.filter { $0.status == .warn } }
    public var passed: Bool { failures.isEmpty }

    public func result(_ name: String) -> CheckResult? { results.first { $0.name == name } }

    /// One line per check, and the fix under each failure or warning.
    public func render() -> String {
        let width = results.map(\.name.count).max() ?? 0
        var out = ""
        for r in results {
            let tag = switch r.status {
            case .pass: "  ok"
            case .warn: "warn"
            case .fail: "FAIL"
            case .skipped: "skip"
            }
            out += "  [\(tag)] \(r.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(r.message)\n"
            if let fix = r.fix, r.status == .fail || r.status == .warn {
                out += "         \(String(repeating: " ", count: width))  -> \(fix)\n"
            }
        }
        return out
    }
}

/// What an earlier run left on the host (from its journal).
public struct ExistingInstall: Sendable, Equatable {
    public var version: String
    /// The ports that install's server binds.
    public var ports: [Int]
    /// The run did not finish: this run resumes it.
    public var interrupted: Bool
    /// The step it stopped at, when interrupted.
    public var stoppedAt: String?

    public init(version: String, ports: [Int], interrupted: Bool = false, stoppedAt: String? = nil) {
        self.version = version; self.ports = ports; self.interrupted = interrupted; self.stoppedAt = stoppedAt
    }
}

/// The checks `warbler install` runs before changing anything, and `warbler doctor` runs alone.
public enum Preflight {
    /// Every check, in the order they are reported; these are the names `--skip-check` takes.
    public static let checkNames = ["root", "platform", "init", "disk", "memory", "ports", "clock", "hostname", "existing-install"]

    /// What the checks are run against.
    public struct Context: Sendable {
        public var settings: InstallSettings
        public var layout: Layout
        public var existing: ExistingInstall?
        /// Bytes the release needs under /opt.
        public var releaseBytes: UInt64

        public init(settings: InstallSettings, layout: Layout, existing: ExistingInstall? = nil, releaseBytes: UInt64 = 0) {
            self.settings = settings; self.layout = layout; self.existing = existing; self.releaseBytes = releaseBytes
        }
    }

    /// Fails on names `--skip-check` does not know, listing the ones it does.
    public static func validateSkips(_ names: Set<String>) throws {
        if let bad = names.sorted().first(where: { !checkNames.contains($0) }) {
            throw OptionsError("--skip-check \(bad): no such check; the checks are \(checkNames.joined(separator: ", "))")
        }
    }

    /// Runs every check (none stops the others) and reports them all.
    public static func run(_ context: Context, probe: any HostProbe) -> PreflightReport {
        let c = context
        let staging = c.layout.isStaging
        let notWhenStaging = "not applicable when staging under --root (nothing is started)"
        var results: [CheckResult] = []
        func add(_ name: String, _ check: () -> CheckResult) {
            if c.settings.skipChecks.contains(name) {
                results.append(CheckResult(name, .skipped, "skipped by --skip-check \(name)"))
            } else {
                results.append(check())
            }
        }

        add("root") {
            if staging { return CheckResult("root", .skipped, notWhenStaging) }
            let uid = probe.effectiveUserID()
            return uid == 0
                ? CheckResult("root", .pass, "running as root")
                : CheckResult("root", .fail, "running as uid \(uid), not root; the install creates a system user and writes /etc, /opt and /var/lib",
                              fix: "run it as root: sudo warbler install …")
        }
        add("platform") {
            let kernel = probe.kernelName(), machine = probe.machine()
            return kernel == "Linux" && machine == "x86_64"
                ? CheckResult("platform", .pass, "Linux x86_64")
                : CheckResult("platform", .fail, "this host is \(kernel) \(machine); this build of Warbler runs on Linux x86_64 only",
                              fix: "use an x86_64 Linux host (Debian 12 or similar)")
        }
        add("init") {
            let pid1 = probe.initProcessName() ?? "unknown"
            if staging { return CheckResult("init", .skipped, notWhenStaging) }
            switch c.settings.initSystem {
            case .systemd?:
                return probe.systemdIsRunning()
                    ? CheckResult("init", .pass, "systemd is PID 1: the services run as systemd units")
                    : CheckResult("init", .fail, "--init systemd, but systemd is not PID 1 here (PID 1 is \(pid1))",
                                  fix: "use --init builtin (Warbler's own supervisor) on hosts without systemd, such as containers")
            case .builtin?:
                return CheckResult("init", .pass, "--init builtin: the services run under Warbler's own supervisor")
            case .none?:
                return CheckResult("init", .pass, "--init none: files are laid out and nothing is started")
            case nil:
                return probe.systemdIsRunning()
                    ? CheckResult("init", .pass, "systemd is PID 1: the services run as systemd units")
                    : CheckResult("init", .warn, "systemd is not PID 1 (PID 1 is \(pid1)): the services\(c.settings.cluster != nil ? " (the cluster's components too)" : "") will run under Warbler's own supervisor",
                                  fix: "nothing to do for containers; on a full host, boot with systemd for units, journald and restarts by systemd")
            }
        }
        add("disk") {
            let minimum = UInt64(c.settings.minFreeDiskMB) * 1024 * 1024
            var problems: [String] = [], found: [String] = []
            for (dir, need, what) in [("/var/lib", minimum, "data"), ("/opt", c.releaseBytes, "the release")] {
                guard let free = probe.freeBytes(at: c.layout.path(dir)) else {
                    problems.append("cannot read the free space under \(c.layout.path(dir))")
                    continue
                }
                found.append("\(mib(free)) free under \(c.layout.path(dir))")
                if free < need { problems.append("\(c.layout.path(dir)) has \(mib(free)) free; \(what) needs at least \(mib(need))") }
            }
            return problems.isEmpty
                ? CheckResult("disk", .pass, found.joined(separator: ", "))
                : CheckResult("disk", .fail, problems.joined(separator: "; "),
                              fix: "free space there (or grow the filesystem); the data minimum is --config's min_free_disk_mb (\(c.settings.minFreeDiskMB) MiB)")
        }
        add("memory") {
            guard let m = probe.memory() else { return CheckResult("memory", .warn, "cannot read /proc/meminfo", fix: "check that /proc is mounted") }
            let need = UInt64(c.settings.minMemoryMB) * 1024 * 1024
            return m.available >= need
                ? CheckResult("memory", .pass, "\(mib(m.available)) available of \(mib(m.total))")
                : CheckResult("memory", .fail, "only \(mib(m.available)) of memory available; the server needs at least \(mib(need))",
                              fix: "stop other programs or add memory (the minimum is min_memory_mb)")
        }
        add("ports") {
            if staging { return CheckResult("ports", .skipped, notWhenStaging) }
            var taken: [String] = [], ours: [Int] = []
            for (port, flag) in [(c.settings.port, "--port"), (c.settings.metricsPort, "--metrics-port"),
                                 (c.settings.exporterPort, "the exporter's"), (c.settings.alertdPort, "alertd's")] where port > 0 {
                if probe.canBind(host: c.settings.host, port: port) { continue }
                if c.existing?.ports.contains(port) == true { ours.append(port); continue }
                taken.append("\(port) (\(flag))")
            }
            if !taken.isEmpty {
                let first = taken[0].prefix { $0 != " " }
                return CheckResult("ports", .fail, "in use by another program on \(c.settings.host): port \(taken.joined(separator: ", port "))",
                                   fix: "free it (see which program: ss -ltnp 'sport = :\(first)') or choose another port with the flag named")
            }
            let list = c.settings.ports.map(String.init).joined(separator: ", ")
            return ours.isEmpty
                ? CheckResult("ports", .pass, "\(list) free on \(c.settings.host)")
                : CheckResult("ports", .pass, "\(list): \(ours.map(String.init).joined(separator: ", ")) held by the installed Warbler server")
        }
        add("clock") {
            switch probe.clockSynchronized() {
            case true?: return CheckResult("clock", .pass, "the clock is synchronised")
            case false?: return CheckResult("clock", .warn, "the clock is not synchronised; certificates and tokens depend on the time",
                                            fix: "enable NTP: timedatectl set-ntp true (or install chrony / systemd-timesyncd)")
            case nil: return CheckResult("clock", .warn, "cannot tell whether the clock is synchronised", fix: "check it with timedatectl")
            }
        }
        add("hostname") {
            let name = probe.hostname()
            return probe.resolves(name)
                ? CheckResult("hostname", .pass, "\(name) resolves")
                : CheckResult("hostname", .warn, "the hostname \(name) does not resolve; the certificate and the printed URL use it",
                              fix: "add '127.0.1.1 \(name)' to /etc/hosts, or give clients an address or a --domain")
        }
        add("existing-install") {
            guard let e = c.existing else { return CheckResult("existing-install", .pass, "no earlier install: installing fresh") }
            if e.interrupted {
                return CheckResult("existing-install", .warn,
                                   "an earlier install of \(e.version) stopped\(e.stoppedAt.map { " at: \($0)" } ?? ""); this run resumes it",
                                   fix: "to revert what it did instead, run: warbler install --undo")
            }
            return CheckResult("existing-install", .pass, "Warbler \(e.version) is installed: converging (only what changed is rewritten)")
        }
        return PreflightReport(results: results)
    }

    static func mib(_ bytes: UInt64) -> String {
        bytes >= 10 * 1024 * 1024 * 1024 ? "\(bytes / (1024 * 1024 * 1024)) GiB" : "\(bytes / (1024 * 1024)) MiB"
    }
}

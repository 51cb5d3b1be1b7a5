import DurableFiles
import Foundation
import Templates
import Yams
#if canImport(Glibc)
import Glibc
#endif

/// Services on hosts where systemd is not PID 1: `warbler supervise` runs detached in its own session as root,
/// with its PID file in /run/warbler/supervise.pid; it runs the daemon as the service user, appends its output to
/// /var/log/warbler/server.log (root:warbler 0750 directory, opened without following links), restarts it with backoff,
/// and stops it when it gets SIGTERM. Its root jobs (renewal, backup) write /var/log/warbler/jobs.log.
/// On a cluster member each component (etcd, Patroni, HAProxy, the member agent, the VIP agent and keepalived) gets
/// its own `warbler supervise --unit UNIT`, which runs it from the description its systemd unit is rendered from
/// (`ClusterComponent`), logging to /var/log/warbler/NAME.log.
struct BuiltinServices {
    let system: LocalSystem
    static let runDir = Paths.run

    struct Daemon {
        var argv: [String]
        var pidFile: String
        var logFile: String
        /// The IPv4 address and TCP port whose listener means ready.
        var readyAddress: IPAddress?
        var readyPort: Int?
        /// How long a stop waits for the supervisor before killing it (its child gets `stopTimeout` of that).
        var stopWait: Double = 30
        /// How long a start waits for the listener.
        var startWait: Double = 60
        /// A cluster component: what its supervisor runs and the steps after it.
        var component: ClusterComponent? = nil
    }

    /// Every unit the built-in supervisor can run.
    static let units = Paths.daemonUnitNames + ClusterPaths.unitNames

    /// A cluster component's description on this member: from its member record; without one (a broken install),
    /// from the layout alone, which still names its PID files to stop it.
    static func component(_ unit: String) -> ClusterComponent? {
        if let c = try? ClusterPaths.installedComponent(unit) { return c }
        return ClusterPaths.laidOutComponents.first { $0.unit == unit }
    }

    func daemon(_ unit: String) throws -> Daemon {
        // The listener that means ready, from the installed config: the server's port, the exporter's, alertd's.
        func yaml(_ path: String) -> [String: Any]? {
            (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { try? Yams.load(yaml: $0) as? [String: Any] }
        }
        func listener(_ section: [String: Any]?, port key: String = "port") -> (IPAddress?, Int?) {
            var address = IPAddress.parse("127.0.0.1")
            if let host = section?["host"] as? String, let ip = IPAddress.parse(host), host != "0.0.0.0" { address = ip }
            return (address?.isIPv4 == true ? address : nil, section?[key] as? Int)
        }
        switch unit {
        case Paths.serverUnitName:
            let (address, port) = listener(yaml(Paths.config)?["server"] as? [String: Any])
            return Daemon(argv: [Paths.currentBinary, "supervise"], pidFile: Paths.supervisorPID, logFile: Paths.serverLog,
                          readyAddress: address, readyPort: port)
        case Paths.exporterUnitName, Paths.alertdUnitName:
            let name = unit == Paths.exporterUnitName ? "exporter" : "alertd"
            let (address, port): (IPAddress?, Int?)
            if name == "exporter" {
                (address, port) = listener(yaml(Paths.config)?["exporter"] as? [String: Any])
            } else {
                // alerts.yaml: global.listen is HOST:PORT on loopback.
                let listen = (yaml(Paths.alertsConfig)?["global"] as? [String: Any])?["listen"] as? String ?? "127.0.0.1:9102"
                let parts = listen.split(separator: ":")
                (address, port) = (IPAddress.parse(String(parts.first ?? "127.0.0.1")), parts.last.flatMap { Int($0) })
            }
            let config = name == "exporter" ? Paths.config : Paths.alertsConfig
            return Daemon(argv: [Paths.currentBinary, "supervise", "--log", "\(Paths.logs)/\(name).log",
                                 "--pid-file", "\(Paths.run)/supervise-\(name).pid", "--child-pid-file", "\(Paths.run)/\(name).pid",
                                 "--", Paths.currentBinary, name, "--config", config],
                          pidFile: "\(Paths.run)/supervise-\(name).pid", logFile: "\(Paths.logs)/\(name).log",
                          readyAddress: address?.isIPv4 == true ? address : nil, readyPort: port)
        default:
            guard let c = Self.component(unit) else { throw SystemError("the built-in supervisor does not run \(unit)") }
            let config = SupervisorConfig.component(c)
            var d = Daemon(argv: [Paths.currentBinary, "supervise", "--unit", unit], pidFile: config.pidFile, logFile: config.logFile,
                           readyAddress: c.readyAddress.flatMap(IPAddress.parse), readyPort: c.readyPort, stopWait: config.stopTimeout + 5, startWait: 90)
            d.component = c
            return d
        }
    }

    func status(_ unit: String) throws -> ServiceStatus {
        // Nothing starts at boot without an init system; "enabled" has no meaning here.
        ServiceStatus(enabled: true, active: runningPID(try daemon(unit)) != nil)
    }

    func perform(_ action: ServiceAction) throws {
        switch action {
        case .daemonReload, .enable, .disable:
            return
        case .start(let u):
            let d = try daemon(u)
            if runningPID(d) == nil { try start(d, unit: u) }
        case .stop(let u):
            try stop(try daemon(u))
        case .restart(let u):
            let d = try daemon(u)
            try stop(d)
            try start(d, unit: u)
        }
    }

    func runningPID(_ d: Daemon) -> pid_t? {
        guard let text = try? String(contentsOfFile: d.pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0,
              let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        // A recycled PID belongs to some other program.
        let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        // A component's supervisor names its unit (they all run the same binary).
        return args.contains(d.argv[0]) && args.contains("supervise") && (d.component.map { args.contains($0.unit) } ?? true) ? pid : nil
    }

    func start(_ d: Daemon, unit: String) throws {
        try system.makeDirectory(Self.runDir, mode: 0o755, owner: nil)
        // Root's directory, the service user's group: root opens logs here, so the service user must not be able to
        // plant names in it.
        try system.makeDirectory(Paths.logs, mode: 0o750, owner: Owner("root", Blueprint.user))
        let log = try Supervisor.openLog(d.logFile)
        defer { close(log) }
        // The supervisor stays root (it writes /run/warbler) and drops to the service user for the daemon itself.
        let argv = d.argv
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, log, 1)
        posix_spawn_file_actions_adddup2(&actions, log, 2)
        closeInheritedDescriptors(&actions)
        var attrs = posix_spawnattr_t()
        posix_spawnattr_init(&attrs)
        defer { posix_spawnattr_destroy(&attrs) }
        // Its own session: the terminal closing or the installer ending does not reach it.
        // POSIX_SPAWN_SETSID (glibc 2.26+) is hidden behind _GNU_SOURCE in the headers Swift sees.
        let spawnSetsid: Int16 = 0x80
        posix_spawnattr_setflags(&attrs, spawnSetsid)
        var pid: pid_t = 0
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        let environment: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
        let env: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { env.forEach { free($0) } }
        let rc = posix_spawn(&pid, argv[0], &actions, &attrs, cargs, env)
        guard rc == 0 else { throw SystemError("cannot start \(unit): \(String(cString: strerror(rc)))") }
        // The supervisor writes its own PID file; write it here too so a stop right after a start finds it.
        try system.write(d.pidFile, Data("\(pid)\n".utf8), mode: 0o644, owner: nil)
        try waitReady(pid: pid, daemon: d, unit: unit)
    }

    func waitReady(pid: pid_t, daemon d: Daemon, unit: String) throws {
        let deadline = Date().addingTimeInterval(d.startWait)
        while Date() < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid || kill(pid, 0) != 0 {
                throw SystemError("\(unit) exited while starting; see \(d.logFile)")
            }
            guard let port = d.readyPort, let address = d.readyAddress else { return }
            if Self.accepts(address, port: port) { return }
            usleep(100_000)
        }
        throw SystemError("\(unit) did not start listening within \(Int(d.startWait)) seconds; see \(d.logFile)")
    }

    static func accepts(_ address: IPAddress, port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: address.bytes) }
        return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    func stop(_ d: Daemon) throws {
        guard let pid = runningPID(d) else { try? system.remove(d.pidFile); return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(d.stopWait)
        while kill(pid, 0) == 0 && Date() < deadline {
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
            usleep(100_000)
        }
        if kill(pid, 0) == 0 {
            kill(pid, SIGKILL)
            // The supervisor could not finish its child's stop: finish it here, steps after it included (keepalived's
            // address goes with it).
            if let c = d.component {
                let config = SupervisorConfig.component(c)
                if let child = Self.childPID(config: config) { kill(child, SIGKILL) }
                if !config.postStop.isEmpty, let log = try? Supervisor.openLog(config.logFile) {
                    Supervisor(config: config).runPostStop(log: log)
                    close(log)
                }
            }
        }
        try? system.remove(d.pidFile)
    }

    /// The running child of a component's supervisor: its PID file (root's, in root's directory) and a process that
    /// runs the component's program.
    static func childPID(config: SupervisorConfig) -> pid_t? {
        guard let text = try? RootFile.readText(config.childPIDFile), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
              kill(pid, 0) == 0, let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.contains(config.argv[0]) ? pid : nil
    }
}

/// What `systemctl reload UNIT` does, for a cluster component under the built-in supervisor: SIGHUP to the program
/// itself (keepalived rereads its config and keeps its VRRP state).
public func reloadSupervised(_ unit: String) throws {
    guard let c = BuiltinServices.component(unit) else { throw SystemError("the built-in supervisor does not run \(unit)") }
    guard let pid = BuiltinServices.childPID(config: SupervisorConfig.component(c)) else {
        throw SystemError("\(unit) is not running under the built-in supervisor")
    }
    guard kill(pid, SIGHUP) == 0 else { throw SystemError("cannot signal \(unit) (pid \(pid)): \(String(cString: strerror(errno)))") }
}

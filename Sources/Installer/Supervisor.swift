import DurableFiles
import Foundation
import Synchronization
import Templates
#if canImport(Glibc)
import Glibc
#endif

/// When the built-in supervisor restarts its child: 1 s after the first unexpected exit, doubling up to 30 s, and back
/// to 1 s once the child has stayed up for 60 s. Mirrors the units' Restart=on-failure: a clean exit (status 0) is
/// not restarted, unless `restartCleanExit` (Restart=always).
public struct RestartPolicy: Sendable, Equatable {
    public var initialDelay: Double
    public var maximumDelay: Double
    public var resetAfter: Double
    public var restartCleanExit: Bool

    public init(initialDelay: Double = 1, maximumDelay: Double = 30, resetAfter: Double = 60, restartCleanExit: Bool = false) {
        self.initialDelay = initialDelay; self.maximumDelay = maximumDelay; self.resetAfter = resetAfter
        self.restartCleanExit = restartCleanExit
    }
}

/// The supervisor's decisions as a state machine with no I/O: the runner feeds it what happened and does what it says.
public struct SupervisorStateMachine: Sendable, Equatable {
    public enum Phase: Sendable, Equatable {
        case idle
        case running(since: Double)
        case waiting(until: Double)
        case stopping
        case stopped
    }

    public enum Event: Sendable, Equatable {
        case start(now: Double)
        /// The child ended; `status` is its exit status (128 + signal when a signal ended it).
        case childExited(status: Int32, now: Double)
        /// A chance to act on time passing (the runner sends one at least every few hundred milliseconds).
        case tick(now: Double)
        /// SIGTERM or SIGINT reached the supervisor.
        case terminate(now: Double)
    }

    public enum Action: Sendable, Equatable {
        case none
        case spawn
        /// The child died unexpectedly; it is spawned again after `delay` seconds (the runner just logs this).
        case scheduleRestart(delay: Double, status: Int32)
        case signalChild
        case exit(code: Int32)
    }

    public private(set) var phase: Phase = .idle
    /// The delay before the next restart.
    public private(set) var nextDelay: Double
    public private(set) var restarts = 0
    public let policy: RestartPolicy

    public init(policy: RestartPolicy = RestartPolicy()) {
        self.policy = policy
        nextDelay = policy.initialDelay
    }

    public mutating func event(_ event: Event) -> Action {
        switch (phase, event) {
        case (.idle, .start(let now)):
            phase = .running(since: now)
            return .spawn
        case (.idle, .terminate), (.waiting, .terminate):
            phase = .stopped
            return .exit(code: 0)
        case (.running, .terminate):
            phase = .stopping
            return .signalChild
        case (.running(let since), .childExited(let status, let now)):
            if status == 0 && !policy.restartCleanExit {
                phase = .stopped
                return .exit(code: 0)
            }
            if now - since >= policy.resetAfter { nextDelay = policy.initialDelay }
            let delay = nextDelay
            nextDelay = min(nextDelay * 2, policy.maximumDelay)
            phase = .waiting(until: now + delay)
            return .scheduleRestart(delay: delay, status: status)
        case (.waiting(let until), .tick(let now)) where now >= until:
            restarts += 1
            phase = .running(since: now)
            return .spawn
        case (.stopping, .childExited):
            phase = .stopped
            return .exit(code: 0)
        default:
            return .none
        }
    }
}

/// What `warbler supervise` runs and where it keeps its files.
public struct SupervisorConfig: Sendable {
    public var argv: [String]
    /// Run the child as this user (and its group) through setpriv; nil keeps the supervisor's identity.
    public var user: String?
    public var logFile: String
    public var pidFile: String
    public var childPIDFile: String
    public var policy: RestartPolicy
    /// Commands the supervisor runs on a schedule as itself (root), their output to the log — what systemd timers do
    /// on a systemd host.
    public var periodic: [PeriodicCommand]
    /// Where the periodic commands (run as root) write; nil: `logFile`.
    public var jobsLogFile: String?
    /// NAME=VALUE added to the child's environment (and its steps').
    public var environment: [String] = []
    /// Run as `user` before each start, in order; one failing fails that start (systemd's ExecStartPre).
    public var preStart: [[String]] = []
    /// Run as `user` after each end of the child, however it ended, and after a failed start (ExecStopPost).
    public var postStop: [[String]] = []
    /// Made (or put right) before each start, owned by `user` (StateDirectory/RuntimeDirectory).
    public var directories: [ClusterComponent.Directory] = []
    /// The signal that asks the child to stop.
    public var stopSignal: Int32 = SIGTERM
    /// How long a stopping child gets between `stopSignal` and SIGKILL.
    public var stopTimeout: Double = 25

    public init(argv: [String], user: String?, logFile: String, pidFile: String, childPIDFile: String, policy: RestartPolicy = RestartPolicy(),
                periodic: [PeriodicCommand] = [], jobsLogFile: String? = nil) {
        self.argv = argv; self.user = user; self.logFile = logFile; self.pidFile = pidFile; self.childPIDFile = childPIDFile; self.policy = policy
        self.periodic = periodic; self.jobsLogFile = jobsLogFile
    }

    /// The server on a cluster member: its daily backup takes the cluster's daily lock in etcd first and gives it
    /// back after (what the backup unit's ExecCondition and ExecStopPost do), so one member a day takes it. Exit 1 from
    /// the lock (another member has it) skips the run; any other failure shows in jobs.log.
    public static var serverOnClusterMember: SupervisorConfig {
        var config = server
        let b = Paths.currentBinary
        if let i = config.periodic.firstIndex(where: { $0.argv.dropFirst().first == "backup" }) {
            config.periodic[i].argv = ["/bin/sh", "-c", "\(b) backup-lock acquire; a=$?; if [ $a -eq 1 ]; then exit 0; elif [ $a -ne 0 ]; then exit $a; fi; \(b) backup --config \(Paths.config); r=$?; "
                                       + "if [ $r -eq 0 ]; then result=success; else result=exit-code; fi; SERVICE_RESULT=$result \(b) backup-lock release; exit $r"]
        }
        return config
    }

    /// A cluster component under the supervisor, from the same description its systemd unit is rendered from: its
    /// log /var/log/warbler/NAME.log, its PID files /run/warbler/supervise-NAME.pid and NAME.pid.
    public static func component(_ c: ClusterComponent) -> SupervisorConfig {
        var config = SupervisorConfig(argv: c.execStart, user: c.user, logFile: "\(Paths.logs)/\(c.name).log",
                                      pidFile: "\(Paths.run)/supervise-\(c.name).pid", childPIDFile: "\(Paths.run)/\(c.name).pid",
                                      policy: RestartPolicy(initialDelay: 2, restartCleanExit: c.restart == .always))
        config.environment = c.environment
        config.preStart = c.execStartPre
        config.postStop = c.execStopPost
        config.directories = [c.stateDirectory, c.runtimeDirectory].compactMap { $0 }
        config.stopSignal = c.stopSignal == .int ? SIGINT : SIGTERM
        config.stopTimeout = Double(c.stopTimeout ?? 25)
        return config
    }

    /// The server under the supervisor, as the installer lays it out, with the daily certificate renewal check.
    public static let server = SupervisorConfig(
        argv: [Paths.currentBinary, "server", "--config", Paths.config], user: Blueprint.user,
        logFile: "\(Paths.logs)/server.log", pidFile: "\(Paths.run)/supervise.pid", childPIDFile: "\(Paths.run)/server.pid",
        periodic: [PeriodicCommand(argv: [Paths.currentBinary, "certs", "renew"], firstAfter: 300, every: 12 * 3600),
                   // What warbler-backup.timer does on a systemd host: a backup a day, the first an hour after start.
                   PeriodicCommand(argv: [Paths.currentBinary, "backup", "--config", Paths.config], firstAfter: 3600, every: 24 * 3600)],
        jobsLogFile: Paths.jobsLog)
}

/// A command run every `every` seconds, the first time `firstAfter` seconds after the supervisor starts. A run
/// still going when the next is due is not started twice.
public struct PeriodicCommand: Sendable, Equatable {
    public var argv: [String]
    public var firstAfter: Double
    public var every: Double
    public init(argv: [String], firstAfter: Double, every: Double) { self.argv = argv; self.firstAfter = firstAfter; self.every = every }
}

/// The built-in supervisor (`warbler supervise`): runs one child, appends its output to a log, restarts it with
/// backoff when it dies, and on SIGTERM/SIGINT stops it and exits 0.
public struct Supervisor: Sendable {
    public let config: SupervisorConfig

    public init(config: SupervisorConfig) { self.config = config }

    /// Makes SIGTERM and SIGINT set a flag that `run(handleSignals: true)` acts on (whichever thread they reach).
    public static func installTerminationHandlers() {
        for sig in [SIGTERM, SIGINT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in terminationRequested.store(true, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            sigaction(sig, &action, nil)
        }
    }

    /// Supervises until told to stop (a termination signal when `handleSignals`, or `stop()` returning true) or the
    /// child exits cleanly. Returns the exit code.
    public func run(handleSignals: Bool = true, stop: @Sendable () -> Bool = { false }) throws -> Int32 {
        let log = try Self.openLog(config.logFile)
        defer { close(log) }
        let jobsLog = try config.jobsLogFile.map { try Self.openLog($0) } ?? log
        defer { if jobsLog != log { close(jobsLog) } }
        try Data("\(getpid())\n".utf8).write(to: URL(fileURLWithPath: config.pidFile))
        defer { unlink(config.pidFile); unlink(config.childPIDFile) }

        var machine = SupervisorStateMachine(policy: config.policy)
        var child: pid_t = 0
        // Set once a stop was asked for: when the child gets SIGKILL if it has not exited by then.
        var killAt: Double?
        var action = machine.event(.start(now: Self.now()))
        let started = Self.now()
        var nextRun = config.periodic.map { started + $0.firstAfter }
        var running = [pid_t](repeating: 0, count: config.periodic.count)
        defer { for pid in running where pid > 0 { kill(pid, SIGTERM) } }
        while true {
            switch action {
            case .none:
                break
            case .spawn:
                do {
                    try makeDirectories()
                    for step in config.preStart {
                        let code = try runStep(step, log: log) { (handleSignals && terminationRequested.load(ordering: .relaxed)) || stop() }
                        if code != 0 { throw SystemError("\(step.joined(separator: " ")) exited with status \(code)") }
                    }
                    child = try spawn(log: log)
                } catch {
                    // Like a child that could not exec: back off and try again (what ends a start runs after it too).
                    note("\(error)", log: log)
                    runPostStop(log: log)
                    action = machine.event(.childExited(status: 127, now: Self.now()))
                    continue
                }
                try? Data("\(child)\n".utf8).write(to: URL(fileURLWithPath: config.childPIDFile))
                note("started \(config.argv[0]) (pid \(child))", log: log)
            case .scheduleRestart(let delay, let status):
                unlink(config.childPIDFile)
                note("\(config.argv[0]) exited with status \(status); restarting in \(Self.format(delay)) s", log: log)
            case .signalChild:
                note("stopping \(config.argv[0]) (pid \(child))", log: log)
                kill(child, config.stopSignal)
            case .exit(let code):
                note("supervisor exiting", log: log)
                return code
            }
            action = .none
            // Look at the signal flag, the child and the clock five times a second (a signal cuts the sleep short).
            usleep(200_000)
            if killAt == nil && ((handleSignals && terminationRequested.load(ordering: .relaxed)) || stop()) {
                killAt = Self.now() + config.stopTimeout
                action = machine.event(.terminate(now: Self.now()))
                continue
            }
            if let deadline = killAt, child > 0, Self.now() > deadline {
                note("\(config.argv[0]) did not stop within \(Int(config.stopTimeout)) s; killing it", log: log)
                kill(child, SIGKILL)
                killAt = .infinity
            }
            if child > 0 {
                var status: Int32 = 0
                if waitpid(child, &status, WNOHANG) == child {
                    child = 0
                    runPostStop(log: log)
                    action = machine.event(.childExited(status: Self.exitStatus(status), now: Self.now()))
                    continue
                }
            }
            for (i, job) in config.periodic.enumerated() {
                if running[i] > 0 {
                    var status: Int32 = 0
                    if waitpid(running[i], &status, WNOHANG) == running[i] {
                        let code = Self.exitStatus(status)
                        if code != 0 { note("\(job.argv.joined(separator: " ")) exited with status \(code)", log: jobsLog) }
                        running[i] = 0
                    }
                }
                if killAt == nil, running[i] == 0, Self.now() >= nextRun[i] {
                    nextRun[i] = Self.now() + job.every
                    do { running[i] = try spawn(argv: job.argv, user: nil, log: jobsLog) } catch { note("\(error)", log: jobsLog) }
                }
            }
            action = machine.event(.tick(now: Self.now()))
        }
    }

    /// Opens a log for appending as root would safely: relative to its directory, which must be root's (or this
    /// process's user's) and writable by nobody else, never through a symlink (`O_NOFOLLOW`), never a FIFO or
    /// device (`O_NONBLOCK`, then a regular-file check), never a second name of another file. A log that is not
    /// this user's regular file (from a release that gave the directory to the service user) is moved aside to
    /// NAME.untrusted and a new one started. The new file is 0640, group from the directory's (root:warbler).
    public static func openLog(_ path: String) throws -> Int32 {
        func failure(_ why: String) -> SystemError { SystemError("cannot open the log \(path): \(why)") }
        let dirPath = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let dir = open(dirPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dir >= 0 else { throw failure("cannot open \(dirPath): \(String(cString: strerror(errno)))") }
        defer { close(dir) }
        var st = stat()
        guard fstat(dir, &st) == 0 else { throw failure(String(cString: strerror(errno))) }
        let me = geteuid()
        guard st.st_uid == 0 || st.st_uid == me, st.st_mode & 0o022 == 0 else {
            throw failure("\(dirPath) must belong to root and be writable by nobody else (root:warbler 0750); `warbler install` sets it")
        }
        let flags = O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
        for attempt in 0..<2 {
            let fd = openat(dir, name, flags, 0o640)
            if fd < 0 {
                let code = errno
                // ELOOP: a symlink sits at the name.
                guard attempt == 0, code == ELOOP || code == ENXIO || code == EISDIR else {
                    throw failure(String(cString: strerror(code)))
                }
            } else {
                var f = stat()
                if fstat(fd, &f) == 0, f.st_mode & S_IFMT == S_IFREG, f.st_nlink == 1, f.st_uid == me {
                    _ = fcntl(fd, F_SETFL, O_WRONLY | O_APPEND)
                    // The service user reads its logs through the directory's group.
                    if me == 0 && f.st_gid != st.st_gid { _ = fchown(fd, 0, st.st_gid) }
                    return fd
                }
                close(fd)
                guard attempt == 0 else { throw failure("it is not a regular file of this user") }
            }
            // Whatever is at the name is not ours to append to: move it aside (renameat never follows links).
            guard renameat(dir, name, dir, name + ".untrusted") == 0 else {
                throw failure("cannot move the untrusted \(name) aside: \(String(cString: strerror(errno)))")
            }
        }
        throw failure("it keeps being replaced")
    }

    func spawn(log: Int32) throws -> pid_t { try spawn(argv: config.argv, user: config.user, log: log, environment: config.environment) }

    /// The post-stop steps, each to its end (a failure is logged: the next one still runs).
    func runPostStop(log: Int32) {
        for step in config.postStop {
            do {
                let code = try runStep(step, log: log) { false }
                if code != 0 { note("\(step.joined(separator: " ")) exited with status \(code)", log: log) }
            } catch { note("\(error)", log: log) }
        }
    }

    /// Runs a start or stop step as the child's user and waits for it (at most `stepTimeout`); `abandon` returning true
    /// (a stop was asked for) ends it early. Returns its exit status.
    func runStep(_ argv: [String], log: Int32, abandon: () -> Bool) throws -> Int32 {
        let pid = try spawn(argv: argv, user: config.user, log: log, environment: config.environment)
        let deadline = Self.now() + Self.stepTimeout
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { return Self.exitStatus(status) }
            if abandon() || Self.now() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                return 128 + SIGKILL
            }
            usleep(50_000)
        }
    }

    /// Makes each of `config.directories` the way systemd makes a StateDirectory or RuntimeDirectory: in its parent
    /// (root's, writable by no one else, opened without following links), given to the child's user with its mode.
    /// What is at the name must be a directory itself, never a link (the child's user may own it, not its parent).
    func makeDirectories() throws {
        let (uid, gid): (uid_t, gid_t)
        if let user = config.user {
            guard let pw = getpwnam(user) else { throw SystemError("no user \(user) on this host; run `warbler install` again") }
            (uid, gid) = (pw.pointee.pw_uid, pw.pointee.pw_gid)
        } else {
            (uid, gid) = (geteuid(), getegid())
        }
        for d in config.directories {
            let parent = (d.path as NSString).deletingLastPathComponent, name = (d.path as NSString).lastPathComponent
            let dir = try RootFile.openDirectory(parent, owners: [0, geteuid()])
            defer { close(dir) }
            if mkdirat(dir, name, mode_t(d.mode)) != 0 && errno != EEXIST {
                throw SystemError("cannot create \(d.path): \(String(cString: strerror(errno)))")
            }
            let fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("\(d.path) is not a directory (a link or a file is in its place): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw SystemError("cannot inspect \(d.path): \(String(cString: strerror(errno)))") }
            if st.st_uid != uid || st.st_gid != gid, fchown(fd, uid, gid) != 0 {
                throw SystemError("cannot give \(d.path) to \(config.user ?? "root"): \(String(cString: strerror(errno)))")
            }
            if st.st_mode & 0o7777 != mode_t(d.mode), fchmod(fd, mode_t(d.mode)) != 0 {
                throw SystemError("cannot chmod \(d.path): \(String(cString: strerror(errno)))")
            }
        }
    }

    func spawn(argv: [String], user: String?, log: Int32, environment extra: [String] = []) throws -> pid_t {
        var argv = argv
        if let user {
            argv = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "--"] + argv
        }
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
        // The child starts with no blocked signals and default handlers, whatever the supervisor set up.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attrs, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attrs, &defaults)
        posix_spawnattr_setflags(&attrs, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
        // What systemd gives a unit with User=: the user's home and name.
        if let user, let pw = getpwnam(user) {
            environment += ["HOME=\(String(cString: pw.pointee.pw_dir))", "USER=\(user)", "LOGNAME=\(user)"]
        }
        environment += extra
        let env: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { env.forEach { free($0) } }
        let rc = posix_spawn(&pid, argv[0], &actions, &attrs, cargs, env)
        guard rc == 0 else { throw SystemError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    func note(_ line: String, log: Int32) {
        let f = ISO8601DateFormatter()
        let text = "\(f.string(from: Date())) warbler supervise: \(line)\n"
        _ = text.withCString { Glibc.write(log, $0, strlen($0)) }
    }

    /// The exit status, or 128 + the signal that ended the process (as shells report it).
    static func exitStatus(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// How long a start or stop step may run (keepalived's vip-wait waits up to a minute).
    static let stepTimeout: Double = 120

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func format(_ d: Double) -> String { d == d.rounded() ? String(Int(d)) : String(d) }
}

/// Set by the SIGTERM/SIGINT handler (an atomic store is async-signal-safe).
let terminationRequested = Atomic<Bool>(false)

import DurableFiles
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Installer
import Synchronization
import Testing

@Suite struct SupervisorStateMachineTests {
    typealias M = SupervisorStateMachine

    @Test func startsTheChildAndRestartsItWithDoublingDelaysUpTo30Seconds() {
        var m = M()
        #expect(m.event(.start(now: 0)) == .spawn)
        var now = 0.0
        var delays: [Double] = []
        for _ in 0..<8 {
            now += 2  // dies two seconds after each start
            guard case .scheduleRestart(let delay, let status) = m.event(.childExited(status: 3, now: now)) else {
                Issue.record("no restart scheduled"); return
            }
            #expect(status == 3)
            delays.append(delay)
            // Not before the delay is over.
            #expect(m.event(.tick(now: now + delay - 0.1)) == .none)
            now += delay
            #expect(m.event(.tick(now: now)) == .spawn)
        }
        #expect(delays == [1, 2, 4, 8, 16, 30, 30, 30])
        #expect(m.restarts == 8)
    }

    @Test func sixtySecondsOfUptimeResetTheBackoff() {
        var m = M()
        _ = m.event(.start(now: 0))
        #expect(m.event(.childExited(status: 1, now: 1)) == .scheduleRestart(delay: 1, status: 1))
        #expect(m.event(.tick(now: 2)) == .spawn)
        #expect(m.event(.childExited(status: 1, now: 3)) == .scheduleRestart(delay: 2, status: 1))
        #expect(m.event(.tick(now: 5)) == .spawn)
        // 59 s up is not enough...
        #expect(m.event(.childExited(status: 1, now: 64)) == .scheduleRestart(delay: 4, status: 1))
        #expect(m.event(.tick(now: 68)) == .spawn)
        // ...60 s is.
        #expect(m.event(.childExited(status: 137, now: 128)) == .scheduleRestart(delay: 1, status: 137))
    }

    @Test func terminateSignalsTheChildAndExitsZeroOnceItIsGone() {
        var m = M()
        _ = m.event(.start(now: 0))
        #expect(m.event(.terminate(now: 5)) == .signalChild)
        #expect(m.event(.tick(now: 6)) == .none)
        #expect(m.event(.childExited(status: 143, now: 7)) == .exit(code: 0))
        #expect(m.phase == .stopped)
    }

    @Test func terminateWhileWaitingToRestartExitsAtOnce() {
        var m = M()
        _ = m.event(.start(now: 0))
        _ = m.event(.childExited(status: 2, now: 1))
        #expect(m.event(.terminate(now: 1.5)) == .exit(code: 0))
        #expect(m.event(.tick(now: 10)) == .none)
    }

    @Test func aCleanExitIsNotRestarted() {
        var m = M()
        _ = m.event(.start(now: 0))
        #expect(m.event(.childExited(status: 0, now: 100)) == .exit(code: 0))
    }

    @Test func aCleanExitIsRestartedWhenTheComponentAlwaysRestarts() {
        var m = M(policy: RestartPolicy(restartCleanExit: true))
        _ = m.event(.start(now: 0))
        #expect(m.event(.childExited(status: 0, now: 100)) == .scheduleRestart(delay: 1, status: 0))
        #expect(m.event(.tick(now: 101)) == .spawn)
        // A stop still ends it.
        #expect(m.event(.terminate(now: 102)) == .signalChild)
        #expect(m.event(.childExited(status: 0, now: 103)) == .exit(code: 0))
    }
}

/// A value shared with the supervisor's thread.
final class Shared<T: Sendable>: Sendable {
    let value: Mutex<T>
    init(_ v: T) { value = Mutex(v) }
    func get() -> T { value.withLock { $0 } }
    func set(_ v: T) { value.withLock { $0 = v } }
}

/// A supervisor run on its own thread until `stop`.
final class RunningSupervisor: Sendable {
    let stopRequested = Shared(false)
    let exitCode = Shared<Int32?>(nil)

    init(_ config: SupervisorConfig) {
        let (stop, done) = (stopRequested, exitCode)
        Thread {
            let code = try? Supervisor(config: config).run(handleSignals: false) { stop.get() }
            done.set(code ?? -1)
        }.start()
    }

    /// Asks it to stop and waits (until `deadline`) for its exit code.
    func stop(by deadline: Date) async throws -> Int32? {
        stopRequested.set(true)
        while exitCode.get() == nil && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        return exitCode.get()
    }
}

func lineCount(_ path: String) -> Int { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count }

/// The supervisor running real child processes.
@Suite struct SupervisorProcessTests {
    static func directory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-supervise-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func restartsAChildThatKeepsFailingAndLogsIt() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = SupervisorConfig(argv: ["/bin/sh", "-c", "echo run >> \(dir)/runs; echo child says hello; exit 3"], user: nil,
                                      logFile: "\(dir)/server.log", pidFile: "\(dir)/supervise.pid", childPIDFile: "\(dir)/server.pid",
                                      policy: RestartPolicy(initialDelay: 0.2, maximumDelay: 0.4, resetAfter: 60))
        let running = RunningSupervisor(config)
        // Three runs: the first and two restarts (after 0.2 s and 0.4 s).
        let deadline = Date().addingTimeInterval(15)
        func runs() -> Int { lineCount("\(dir)/runs") }
        while runs() < 3 && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(runs() >= 3)
        #expect(FileManager.default.fileExists(atPath: "\(dir)/supervise.pid"))
        #expect(try await running.stop(by: deadline) == 0)
        let log = try String(contentsOfFile: "\(dir)/server.log", encoding: .utf8)
        #expect(log.contains("child says hello"))
        #expect(log.contains("exited with status 3; restarting in 0.2 s"))
        #expect(log.contains("exited with status 3; restarting in 0.4 s"))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/supervise.pid"), "the PID file goes with the supervisor")
    }

    @Test func runsPeriodicCommandsOnScheduleBesideTheChild() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = SupervisorConfig(argv: ["/bin/sleep", "300"], user: nil, logFile: "\(dir)/server.log",
                                      pidFile: "\(dir)/supervise.pid", childPIDFile: "\(dir)/server.pid",
                                      periodic: [PeriodicCommand(argv: ["/bin/sh", "-c", "echo tick >> \(dir)/ticks; exit 4"], firstAfter: 0, every: 0.5)])
        let running = RunningSupervisor(config)
        let deadline = Date().addingTimeInterval(20)
        func ticks() -> Int { lineCount("\(dir)/ticks") }
        while ticks() < 3 && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(ticks() >= 3, "the command runs again and again")
        #expect(try await running.stop(by: deadline) == 0)
        let log = try String(contentsOfFile: "\(dir)/server.log", encoding: .utf8)
        #expect(log.contains("exited with status 4"), "a failing run is logged")
    }

    @Test func stopForwardsSIGTERMToALongRunningChildAndExitsZero() async throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = SupervisorConfig(argv: ["/bin/sleep", "300"], user: nil, logFile: "\(dir)/server.log",
                                      pidFile: "\(dir)/supervise.pid", childPIDFile: "\(dir)/server.pid")
        let running = RunningSupervisor(config)
        let deadline = Date().addingTimeInterval(15)
        var childPID: pid_t?
        while childPID == nil && Date() < deadline {
            childPID = (try? String(contentsOfFile: "\(dir)/server.pid", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let pid = try #require(childPID)
        #expect(kill(pid, 0) == 0, "the child runs")
        #expect(try await running.stop(by: deadline) == 0)
        #expect(kill(pid, 0) != 0, "the child is gone (and reaped)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/server.pid"))
    }
}

/// The supervisor running a cluster component's description: the steps around each run, its environment, its
/// directories, its stop signal, and keepalived's release after every end.
@Suite struct SupervisedComponentTests {
    static func config(_ dir: String, _ script: String) -> SupervisorConfig {
        var config = SupervisorConfig(argv: ["/bin/sh", "-c", script], user: nil, logFile: "\(dir)/component.log",
                                      pidFile: "\(dir)/supervise-component.pid", childPIDFile: "\(dir)/component.pid",
                                      policy: RestartPolicy(initialDelay: 0.2, maximumDelay: 0.4, resetAfter: 60, restartCleanExit: true))
        config.preStart = [["/bin/sh", "-c", "echo pre >> \(dir)/steps"]]
        config.postStop = [["/bin/sh", "-c", "echo release >> \(dir)/steps"]]
        return config
    }

    static func steps(_ dir: String) -> [String] {
        ((try? String(contentsOfFile: "\(dir)/steps", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    static func childPID(_ dir: String, replacing old: pid_t? = nil, by deadline: Date) async throws -> pid_t {
        while Date() < deadline {
            if let pid = (try? String(contentsOfFile: "\(dir)/component.pid", encoding: .utf8)).flatMap({ pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
               pid != old, kill(pid, 0) == 0 {
                return pid
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw SystemError("no child started")
    }

    @Test func theReleaseStepRunsAfterAKillAndAfterAStopAndTheChildComesBack() async throws {
        let dir = try SupervisorProcessTests.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = Self.config(dir, "echo run >> \(dir)/steps; echo \"$WARBLER_TEST_VALUE\" > \(dir)/env; exec sleep 300")
        config.environment = ["WARBLER_TEST_VALUE=from-the-description"]
        config.directories = [.init(path: "\(dir)/state", mode: 0o711)]
        let running = RunningSupervisor(config)
        let deadline = Date().addingTimeInterval(20)
        let first = try await Self.childPID(dir, by: deadline)
        // However it ended: kill -9.
        kill(first, SIGKILL)
        let second = try await Self.childPID(dir, replacing: first, by: deadline)
        #expect(second != first)
        #expect(try await running.stop(by: deadline) == 0)
        #expect(Self.steps(dir) == ["pre", "run", "release", "pre", "run", "release"])
        #expect((try? String(contentsOfFile: "\(dir)/env", encoding: .utf8)) == "from-the-description\n")
        var st = stat()
        #expect(lstat("\(dir)/state", &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_mode & 0o7777 == 0o711)
    }

    @Test func aFailingStartStepKeepsTheChildFromStartingAndStillReleases() async throws {
        let dir = try SupervisorProcessTests.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = Self.config(dir, "echo run >> \(dir)/steps; exec sleep 300")
        config.preStart = [["/bin/sh", "-c", "echo pre >> \(dir)/steps; exit 5"]]
        let running = RunningSupervisor(config)
        let deadline = Date().addingTimeInterval(20)
        while Self.steps(dir).count < 4 && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(try await running.stop(by: deadline) == 0)
        let steps = Self.steps(dir)
        #expect(!steps.contains("run"))
        #expect(Array(steps.prefix(4)) == ["pre", "release", "pre", "release"], "tried again, released after each")
        #expect(try String(contentsOfFile: "\(dir)/component.log", encoding: .utf8).contains("exited with status 5"))
    }

    @Test func aLinkWhereItsDirectoryGoesIsRefused() async throws {
        let dir = try SupervisorProcessTests.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/state", withDestinationPath: "\(dir)/elsewhere")
        var config = Self.config(dir, "echo run >> \(dir)/steps; exec sleep 300")
        config.directories = [.init(path: "\(dir)/state", mode: 0o700)]
        let running = RunningSupervisor(config)
        let deadline = Date().addingTimeInterval(20)
        while Self.steps(dir).count < 1 && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(try await running.stop(by: deadline) == 0)
        #expect(!Self.steps(dir).contains("run"))
        #expect(try String(contentsOfFile: "\(dir)/component.log", encoding: .utf8).contains("is not a directory"))
        var st = stat()
        #expect(stat("\(dir)/elsewhere", &st) == 0 && st.st_mode & 0o7777 == 0o755, "the link's target is untouched")
    }

    @Test func stopSendsTheComponentsOwnSignalAndACleanExitIsRestartedWhenItAlwaysRestarts() async throws {
        let dir = try SupervisorProcessTests.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = Self.config(dir, "echo run >> \(dir)/steps; trap 'echo interrupted >> \(dir)/steps; exit 0' INT; "
                                      + "if [ -e \(dir)/second ]; then while :; do sleep 0.1; done; fi; touch \(dir)/second; exit 0")
        config.stopSignal = SIGINT
        let running = RunningSupervisor(config)
        let deadline = Date().addingTimeInterval(20)
        while Self.steps(dir).filter({ $0 == "run" }).count < 2 && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(try await running.stop(by: deadline) == 0)
        #expect(Self.steps(dir) == ["pre", "run", "release", "pre", "run", "interrupted", "release"])
    }
}

/// The server's daily backup on a cluster member under the supervisor: the cluster's daily lock around it, as the
/// backup unit's ExecCondition and ExecStopPost do. The command runs against a stand-in for the warbler binary.
@Suite struct ClusterMemberBackupJobTests {
    /// Runs the job's shell with `warbler` replaced by a script that logs its arguments (and SERVICE_RESULT) and
    /// exits with ACQUIRE for `backup-lock acquire`, BACKUP for `backup`.
    static func run(acquire: Int32, backup: Int32) throws -> (status: Int32, calls: [String]) {
        let dir = try SupervisorProcessTests.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = "\(dir)/warbler"
        try """
            #!/bin/sh
            echo "$* ${SERVICE_RESULT:-}" >> \(dir)/calls
            case "$1 $2" in "backup-lock acquire") exit \(acquire);; "backup --config") exit \(backup);; esac
            exit 0
            """.write(toFile: fake, atomically: true, encoding: .utf8)
        chmod(fake, 0o755)
        let job = try #require(SupervisorConfig.serverOnClusterMember.periodic.first { $0.argv.first == "/bin/sh" })
        // Run by sh, not executed: a test beside this one forking while the fake is being written would hold it open
        // for writing in its child, and executing it would then fail (Text file busy, exit 126: seen in CI).
        let argv = job.argv.map { $0.replacingOccurrences(of: Paths.currentBinary, with: "/bin/sh " + fake) }
        let r = try Subprocess.run(argv)
        let calls = ((try? String(contentsOfFile: "\(dir)/calls", encoding: .utf8)) ?? "").split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        return (r.status, calls)
    }

    @Test func theMemberHoldingTheLockBacksUpAndReleasesItWithTheOutcome() throws {
        let ok = try Self.run(acquire: 0, backup: 0)
        #expect(ok.status == 0)
        #expect(ok.calls == ["backup-lock acquire", "backup --config /etc/warbler/warbler.yaml", "backup-lock release success"])
        let failed = try Self.run(acquire: 0, backup: 3)
        #expect(failed.status == 3)
        #expect(failed.calls.last == "backup-lock release exit-code")
    }

    @Test func anotherMembersLockSkipsTheRunAndAnErrorFailsIt() throws {
        let skipped = try Self.run(acquire: 1, backup: 0)
        #expect(skipped.status == 0 && skipped.calls == ["backup-lock acquire"])
        let broken = try Self.run(acquire: 255, backup: 0)
        #expect(broken.status == 255 && broken.calls == ["backup-lock acquire"])
        // A single node's job is the plain backup.
        #expect(SupervisorConfig.server.periodic.contains { $0.argv == [Paths.currentBinary, "backup", "--config", Paths.config] })
    }
}

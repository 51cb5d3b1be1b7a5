import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Installer
import Testing

/// The supervisor runs as root and opens logs in a directory: it must not follow what someone else planted there.
@Suite struct SupervisorLogTests {
    func directory(mode: mode_t = 0o750) throws -> String {
        let dir = try SupervisorProcessTests.directory()
        chmod(dir, mode)
        return dir
    }

    func config(_ dir: String, argv: [String] = ["/bin/sh", "-c", "echo child output"]) -> SupervisorConfig {
        SupervisorConfig(argv: argv, user: nil, logFile: "\(dir)/server.log", pidFile: "\(dir)/supervise.pid", childPIDFile: "\(dir)/server.pid")
    }

    @Test func aLinkPlantedAtTheLogIsMovedAsideNotFollowed() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        symlink(victim, dir + "/server.log")
        // The child exits 0, so the supervisor ends by itself.
        #expect(try Supervisor(config: config(dir)).run(handleSignals: false) == 0)
        #expect(!FileManager.default.fileExists(atPath: victim), "root created a file through the link")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/server.log.untrusted") == victim)
        #expect(try String(contentsOfFile: dir + "/server.log", encoding: .utf8).contains("child output"))
    }

    @Test func aSecondNameOfAnotherFileIsNotAppendedTo() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let other = dir + "/other"
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: other))
        link(other, dir + "/server.log")
        #expect(try Supervisor(config: config(dir)).run(handleSignals: false) == 0)
        #expect(try String(contentsOfFile: other, encoding: .utf8) == "precious\n")
    }

    @Test func aLogDirectoryOthersCanWriteIsRefused() throws {
        let dir = try directory(mode: 0o777)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: SystemError.self) { try Supervisor(config: config(dir)).run(handleSignals: false) }
        #expect(!FileManager.default.fileExists(atPath: dir + "/server.log"))
    }

    @Test func rootsPeriodicJobsWriteTheirOwnLog() async throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = config(dir, argv: ["/bin/sleep", "300"])
        c.periodic = [PeriodicCommand(argv: ["/bin/sh", "-c", "echo job output; exit 4"], firstAfter: 0, every: 0.3)]
        c.jobsLogFile = dir + "/jobs.log"
        let running = RunningSupervisor(c)
        let deadline = Date().addingTimeInterval(15)
        func jobs() -> String { (try? String(contentsOfFile: dir + "/jobs.log", encoding: .utf8)) ?? "" }
        while !jobs().contains("exited with status 4") && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(try await running.stop(by: deadline) == 0)
        #expect(jobs().contains("job output") && jobs().contains("exited with status 4"))
        let server = try String(contentsOfFile: dir + "/server.log", encoding: .utf8)
        #expect(!server.contains("job output"), "the server's log is the server's")
        #expect(SupervisorConfig.server.jobsLogFile == Paths.jobsLog)
    }
}

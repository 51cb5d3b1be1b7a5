import Foundation
@testable import Monitoring
import NIOConcurrencyHelpers
import Testing

/// Answers `systemctl show UNIT …` from recorded output in Fixtures/systemctl, with `PID` replaced by this process's PID.
final class RecordedSystemctl: CommandRunner {
    let files: [String: String]
    let calls = NIOLockedValueBox<[[String]]>([])
    init(_ files: [String: String]) { self.files = files }

    func run(_ argv: [String]) async throws -> (status: Int32, output: String) {
        calls.withLockedValue { $0.append(argv) }
        guard argv.count >= 3, argv[0] == "systemctl", argv[1] == "show", let file = files[argv[2]] else {
            return (1, "Failed to connect to bus: No such file or directory\n")
        }
        let text = try String(contentsOfFile: Repo.fixtures + "/systemctl/" + file, encoding: .utf8)
        return (0, text.replacingOccurrences(of: "=PID\n", with: "=\(getpid())\n"))
    }
}

@Suite struct ComponentCollectorTests {
    @Test func systemdUnitsFromRecordedSystemctlShow() async throws {
        let runner = RecordedSystemctl(["warbler-server.service": "warbler-server.service",
                                        "warbler-exporter.service": "warbler-exporter.service",
                                        "warbler-alertd.service": "warbler-alertd.service"])
        let s = try await ComponentCollector(components: ["server", "exporter", "alertd"], manager: .systemd, runner: runner).collect()
        #expect(runner.calls.withLockedValue { $0 }.first == ["systemctl", "show", "warbler-server.service", "-p",
                                                              "LoadState,ActiveState,SubState,NRestarts,MainPID,MemoryCurrent,CPUUsageNSec"])
        let server = ["component": "server"]
        #expect(s.value("warbler_component_up", server) == 1)
        #expect(s.value("warbler_component_info", ["component": "server", "manager": "systemd", "state": "active", "sub_state": "running"]) == 1)
        #expect(s.value("warbler_component_restarts_total", server) == 2)
        #expect(s.value("warbler_component_cgroup_memory_bytes", server) == 52318208)
        // CPUUsageNSec, in seconds.
        #expect(s.value("warbler_component_cpu_seconds_total", server) == 12.345678901)
        // MainPID is this test process: its /proc entry gives memory, descriptors and the start time.
        #expect((s.value("warbler_component_resident_memory_bytes", server) ?? 0) > 1024.0 * 1024)
        #expect((s.value("warbler_component_open_fds", server) ?? 0) >= 3)
        let start = try #require(s.value("warbler_component_start_time_seconds", server))
        #expect(start <= Date().timeIntervalSince1970 + 1 && start > Date().timeIntervalSince1970 - 24.0 * 3600)

        // systemd tracks no cgroup figures for the exporter here (2^64-1): CPU comes from /proc, memory stays absent.
        let exporter = ["component": "exporter"]
        #expect(s.value("warbler_component_up", exporter) == 1)
        #expect(s.value("warbler_component_cgroup_memory_bytes", exporter) == nil)
        #expect((s.value("warbler_component_cpu_seconds_total", exporter) ?? 0) > 0)
        #expect(s.value("warbler_component_restarts_total", exporter) == 0)

        // alertd is not installed (LoadState=not-found): not reported at all.
        #expect(s.series("warbler_component_up").map { $0.labels["component"]! }.sorted() == ["exporter", "server"])
    }

    @Test func aFailedServerUnitIsDownWithItsRestarts() async throws {
        let runner = RecordedSystemctl(["warbler-server.service": "warbler-server-failed.service",
                                        "warbler-alertd.service": "warbler-alertd.service"])
        let s = try await ComponentCollector(components: ["server"], manager: .systemd, runner: runner).collect()
        let server = ["component": "server"]
        #expect(s.value("warbler_component_up", server) == 0)
        #expect(s.value("warbler_component_info", ["component": "server", "manager": "systemd", "state": "failed", "sub_state": "failed"]) == 1)
        #expect(s.value("warbler_component_restarts_total", server) == 5)
        #expect(s.value("warbler_component_resident_memory_bytes", server) == nil)
        #expect(s.value("warbler_component_open_fds", server) == nil)
    }

    @Test func theServerIsReportedDownEvenWhenItsUnitIsMissing() async throws {
        let runner = RecordedSystemctl(["warbler-server.service": "warbler-alertd.service"])
        let s = try await ComponentCollector(components: ["server"], manager: .systemd, runner: runner).collect()
        #expect(s.value("warbler_component_up", ["component": "server"]) == 0)
    }

    @Test func systemctlFailingFailsTheCollectorWithItsOutput() async throws {
        let runner = RecordedSystemctl([:])
        let e = await #expect(throws: MonitoringError.self) {
            // A root without a cgroup hierarchy, so the D-Bus-free fallback has nothing to read either.
            try await ComponentCollector(components: ["server"], manager: .systemd, runner: runner,
                                         files: HostFiles(root: Repo.fixtures + "/broken")).collect()
        }
        #expect(e?.description.contains("Failed to connect to bus") == true)
    }

    @Test func withoutDBusTheUnitsCgroupSaysWhetherItRuns() async throws {
        let root = try Self.pidDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let slice = root + "/sys/fs/cgroup/system.slice"
        try FileManager.default.createDirectory(atPath: slice + "/warbler-server.service", withIntermediateDirectories: true)
        try "".write(toFile: slice + "/cgroup.controllers", atomically: true, encoding: .utf8)
        try "\(getpid())\n".write(toFile: slice + "/warbler-server.service/cgroup.procs", atomically: true, encoding: .utf8)
        try "73400320\n".write(toFile: slice + "/warbler-server.service/memory.current", atomically: true, encoding: .utf8)
        try "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n".write(toFile: slice + "/warbler-server.service/cpu.stat", atomically: true, encoding: .utf8)
        // alertd's unit file is installed but it is not running; exporter is not installed at all.
        try FileManager.default.createDirectory(atPath: root + "/etc/systemd/system", withIntermediateDirectories: true)
        try "".write(toFile: root + "/etc/systemd/system/warbler-alertd.service", atomically: true, encoding: .utf8)
        // /proc is the live one: the PID in cgroup.procs is this process.
        let proc = root + "/proc"
        try FileManager.default.createSymbolicLink(atPath: proc, withDestinationPath: "/proc")
        let s = try await ComponentCollector(components: ["server", "exporter", "alertd"], manager: .systemd, runner: RecordedSystemctl([:]),
                                             files: HostFiles(root: root)).collect()
        let server = ["component": "server"]
        #expect(s.value("warbler_component_up", server) == 1)
        #expect(s.value("warbler_component_info", ["component": "server", "manager": "systemd", "state": "active", "sub_state": "unknown"]) == 1)
        #expect(s.value("warbler_component_cgroup_memory_bytes", server) == 73400320)
        #expect(s.value("warbler_component_cpu_seconds_total", server) == 2.5)
        #expect((s.value("warbler_component_open_fds", server) ?? 0) >= 3)
        #expect(s.value("warbler_component_restarts_total", server) == nil)
        #expect(s.value("warbler_component_up", ["component": "alertd"]) == 0)
        #expect(s.value("warbler_component_up", ["component": "exporter"]) == nil)
    }

    static func pidDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-run-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func aSupervisorPIDFilePointingAtALiveProcessIsUp() async throws {
        let dir = try Self.pidDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "\(getpid())\n".write(toFile: dir + "/server.pid", atomically: true, encoding: .utf8)
        try "\(getpid())\n".write(toFile: dir + "/supervise.pid", atomically: true, encoding: .utf8)
        let s = try await ComponentCollector(components: ["server", "exporter", "alertd"], manager: .supervisor, pidDirectory: dir).collect()
        let server = ["component": "server"]
        #expect(s.value("warbler_component_up", server) == 1)
        #expect(s.value("warbler_component_info", ["component": "server", "manager": "supervisor", "state": "active", "sub_state": "running"]) == 1)
        #expect((s.value("warbler_component_resident_memory_bytes", server) ?? 0) > 1024.0 * 1024)
        #expect((s.value("warbler_component_cpu_seconds_total", server) ?? 0) > 0)
        #expect((s.value("warbler_component_open_fds", server) ?? 0) >= 3)
        // Nothing says exporter or alertd are installed under this supervisor.
        #expect(s.series("warbler_component_up").count == 1)
        // The supervisor does not count restarts where the exporter can read them.
        #expect(s.value("warbler_component_restarts_total", server) == nil)
    }

    @Test func aStalePIDFileIsDownAndASupervisorWaitingToRestartSaysSo() async throws {
        let dir = try Self.pidDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // PIDs above pid_max (4194304 at most) never exist.
        try "4194999\n".write(toFile: dir + "/server.pid", atomically: true, encoding: .utf8)
        var s = try await ComponentCollector(components: ["server"], manager: .supervisor, pidDirectory: dir).collect()
        #expect(s.value("warbler_component_up", ["component": "server"]) == 0)
        #expect(s.value("warbler_component_info", ["component": "server", "manager": "supervisor", "state": "inactive", "sub_state": "dead"]) == 1)

        try "\(getpid())\n".write(toFile: dir + "/supervise.pid", atomically: true, encoding: .utf8)
        s = try await ComponentCollector(components: ["server"], manager: .supervisor, pidDirectory: dir).collect()
        #expect(s.value("warbler_component_up", ["component": "server"]) == 0)
        #expect(s.value("warbler_component_info", ["component": "server", "manager": "supervisor", "state": "activating", "sub_state": "auto-restart"]) == 1)

        // No PID files at all: the server is still reported, down.
        try FileManager.default.removeItem(atPath: dir + "/server.pid")
        try FileManager.default.removeItem(atPath: dir + "/supervise.pid")
        s = try await ComponentCollector(components: ["server", "alertd"], manager: .supervisor, pidDirectory: dir).collect()
        #expect(s.series("warbler_component_up").map(\.value) == [0])
    }

    @Test func theRealRunnerRunsAProgram() async throws {
        let r = try await ProcessRunner().run(["echo", "ActiveState=active"])
        #expect(r.status == 0 && r.output == "ActiveState=active\n")
        let f = try await ProcessRunner().run(["/bin/sh", "-c", "echo oops >&2; exit 3"])
        #expect(f.status == 3 && f.output == "oops\n")
    }
}

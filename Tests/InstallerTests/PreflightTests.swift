import Foundation
import Installer
import Testing

@Suite struct PreflightTests {
    @Test func everyFailureIsReportedAtOnceWithAFixAndNothingChanges() throws {
        var host = try Host()
        host.probe.uid = 1000
        host.probe.takenPorts = [8443]
        host.probe.freeByPath = ["/var/lib": 200 * 1024 * 1024]
        let error = try #require(throws: PreflightFailed.self) { try host.install() }
        let failures = error.report.failures
        #expect(Set(failures.map(\.name)) == ["root", "ports", "disk"])
        #expect(failures.allSatisfy { $0.fix != nil })
        #expect(error.report.result("ports")?.message.contains("8443") == true)
        #expect(error.report.result("disk")?.message.contains("200 MiB") == true)
        #expect(error.report.results.map(\.name) == Preflight.checkNames, "every check ran and is reported")
        #expect(error.description.contains("sudo warbler install"))
        #expect(host.system.operations.isEmpty)
    }

    @Test func aSkippedCheckIsReportedAsSkippedAndNoLongerStopsTheInstall() throws {
        var host = try Host()
        host.probe.takenPorts = [9464]
        #expect(throws: PreflightFailed.self) { try host.install() }
        let outcome = try host.install(.with { $0.skipChecks = ["ports"] })
        #expect(outcome.preflight.result("ports")?.status == .skipped)
        #expect(throws: OptionsError.self) { try host.install(.with { $0.skipChecks = ["prots"] }) }
    }

    @Test func withoutSystemdTheBuiltinSupervisorIsChosenAndSaid() throws {
        var host = try Host()
        host.probe.systemd = false
        host.probe.pid1 = "bash"
        let outcome = try host.install(dryRun: true)
        #expect(outcome.initSystem == .builtin)
        #expect(outcome.preflight.result("init")?.status == .warn)
        #expect(outcome.preflight.result("init")?.message.contains("PID 1 is bash") == true)
        let forced = try #require(throws: PreflightFailed.self) { try host.install(.with { $0.initSystem = .systemd }) }
        #expect(forced.report.result("init")?.status == .fail)
    }

    @Test func portsHeldByTheInstalledServerDoNotStopAReinstall() throws {
        var host = try Host()
        try host.install()
        host.probe.takenPorts = [8443, 9464]
        #expect(try host.install().preflight.result("ports")?.status == .pass)
        // A different port that is taken is still refused.
        host.probe.takenPorts = [8443, 9464, 9000]
        #expect(throws: PreflightFailed.self) { try host.install(.with { $0.port = 9000 }) }
    }

    @Test func warningsDoNotStopTheInstall() throws {
        var host = try Host()
        host.probe.clock = false
        host.probe.nameResolves = false
        let outcome = try host.install()
        #expect(outcome.preflight.passed)
        #expect(Set(outcome.preflight.warnings.map(\.name)) == ["clock", "hostname"])
        #expect(outcome.preflight.render().contains("timedatectl set-ntp true"))
    }

    @Test func wrongPlatformAndLowMemoryFail() throws {
        var probe = FakeProbe()
        probe.arch = "aarch64"
        probe.mem = (1 << 30, 100 << 20)
        let report = Preflight.run(.init(settings: InstallSettings(), layout: Layout()), probe: probe)
        #expect(Set(report.failures.map(\.name)) == ["platform", "memory"])
    }

    @Test func aClusterMemberWithoutSystemdRunsUnderTheBuiltinSupervisor() throws {
        var probe = FakeProbe()
        probe.systemd = false
        probe.pid1 = "sh"
        var answers = InstallAnswers()
        answers.cluster = ClusterAnswers(founder: true, advertiseAddress: "10.0.0.5")
        let report = Preflight.run(.init(settings: try InstallSettings(answers, hostname: "h"), layout: Layout()), probe: probe)
        let check = try #require(report.result("init"))
        // Not refused: a warning that says the cluster's components run under the supervisor too.
        #expect(check.status == .warn && check.message.contains("the cluster's components too"), "\(check.message)")
        #expect(!report.failures.contains { $0.name == "init" })
        // `--init builtin` says so outright.
        answers.initSystem = .builtin
        let chosen = Preflight.run(.init(settings: try InstallSettings(answers, hostname: "h"), layout: Layout()), probe: probe)
        #expect(chosen.result("init")?.status == .pass)
        // A single node on the same host, as before.
        #expect(Preflight.run(.init(settings: InstallSettings(), layout: Layout()), probe: probe).result("init")?.status == .warn)
    }

    @Test func stagingSkipsTheChecksThatConcernTheRunningHost() throws {
        var probe = FakeProbe()
        probe.uid = 1000
        probe.takenPorts = [8443]
        let report = Preflight.run(.init(settings: InstallSettings(), layout: Layout(root: "/tmp/stage")), probe: probe)
        #expect(report.passed)
        #expect(report.result("root")?.status == .skipped)
        #expect(report.result("ports")?.status == .skipped)
    }
}

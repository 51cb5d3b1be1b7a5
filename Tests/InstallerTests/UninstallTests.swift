import Foundation
import Installer
import Testing

@Suite struct UninstallTests {
    let unit = Paths.serverUnitName

    @Test func underSystemdStopsDisablesRemovesAndKeepsTheData() throws {
        let host = try Host()
        try host.install()
        #expect(host.system.status(unit) == ServiceStatus(enabled: true, active: true))
        host.system.setNode("/var/lib/warbler/warbler.db", .file(Data("messages".utf8), mode: 0o600, owner: Owner("warbler", "warbler")))
        host.system.clearOperations()

        let uninstaller = Uninstaller(system: host.system, probe: host.probe)
        let plan = try uninstaller.plan(layout: Layout(), purge: false)
        #expect(plan.initSystem == .systemd)
        let timer = Paths.certRenewTimerName, backup = Paths.backupTimerName
        let (exporter, alertd) = (Paths.exporterUnitName, Paths.alertdUnitName)
        #expect(plan.steps == [
            .service(.stop(timer)), .service(.disable(timer)), .service(.stop(backup)), .service(.disable(backup)),
            .service(.stop(alertd)), .service(.disable(alertd)), .service(.stop(exporter)), .service(.disable(exporter)),
            .service(.stop(unit)), .service(.disable(unit)),
            .removeTree(Paths.unitFile(timer)), .removeTree(Paths.unitFile(Paths.certRenewServiceName)),
            .removeTree(Paths.unitFile(backup)), .removeTree(Paths.unitFile(Paths.backupServiceName)),
            .removeTree(Paths.unitFile(alertd)), .removeTree(Paths.unitFile(exporter)), .removeTree(Paths.serverUnit),
            .service(.daemonReload),
            .removeTree("/usr/local/bin/warbler"),
            .removeTree("/opt/warbler"), .removeTree("/etc/warbler"), .removeTree("/var/lib/warbler-install"),
        ])
        #expect(plan.kept == ["/var/lib/warbler"])
        #expect(host.system.operations.isEmpty, "planning changes nothing")

        try uninstaller.apply(plan)
        #expect(host.system.status(unit) == ServiceStatus(enabled: false, active: false))
        #expect(host.system.paths(under: "/opt/warbler").isEmpty)
        #expect(host.system.paths(under: "/etc/warbler").isEmpty)
        #expect(host.system.node(Paths.serverUnit) == nil)
        #expect(host.system.node(Paths.unitFile(timer)) == nil)
        #expect(host.system.paths(under: "/var/lib/warbler") == ["/var/lib/warbler", "/var/lib/warbler/alertd", "/var/lib/warbler/backups",
                                                                 "/var/lib/warbler/warbler.db"])
        #expect(host.system.userExists("warbler"), "the user owns the kept data")
        // The stops come before anything is removed, the timer's first.
        #expect(Array(host.system.operations.prefix(3)) == [.service(.stop(timer)), .service(.disable(timer)), .service(.stop(backup))])

        // A second run has nothing left to do.
        #expect(try uninstaller.plan(layout: Layout(), purge: false).steps.isEmpty)
    }

    @Test func theLinkOnPathGoesButSomeoneElsesWarblerThereStays() throws {
        let host = try Host()
        try host.install()
        #expect(host.system.node(Paths.binLink) == .link(Paths.binLinkTarget))
        let uninstaller = Uninstaller(system: host.system, probe: host.probe)
        try uninstaller.apply(try uninstaller.plan(layout: Layout(), purge: false))
        #expect(host.system.node(Paths.binLink) == nil)

        // Another program called warbler is neither replaced by the install nor removed by the uninstall.
        let other = RecordingSystem.Node.file(Data("#!/bin/sh\n".utf8), mode: 0o755, owner: .root)
        host.system.setNode(Paths.binLink, other)
        let outcome = try host.install()
        #expect(!outcome.plan.writtenPaths.contains(Paths.binLink))
        try uninstaller.apply(try uninstaller.plan(layout: Layout(), purge: false))
        #expect(host.system.node(Paths.binLink) == other)
    }

    @Test func purgeRemovesTheDataAndTheUserToo() throws {
        let host = try Host()
        try host.install()
        let uninstaller = Uninstaller(system: host.system, probe: host.probe)
        let plan = try uninstaller.plan(layout: Layout(), purge: true)
        #expect(plan.steps.contains(.removeTree("/var/lib/warbler")))
        #expect(plan.steps.last == .deleteUser("warbler"))
        #expect(plan.kept.isEmpty)
        try uninstaller.apply(plan)
        #expect(host.system.paths(under: "/var/lib/warbler").isEmpty)
        #expect(host.system.operations.contains(.run(["userdel", "warbler"], user: nil)))
    }

    @Test func underTheBuiltinSupervisorStopsWithoutSystemctlSteps() throws {
        var host = try Host()
        host.probe.systemd = false
        try host.install()
        #expect(host.system.status(unit).active)
        let plan = try Uninstaller(system: host.system, probe: host.probe).plan(layout: Layout(), purge: false)
        #expect(plan.initSystem == .builtin)
        #expect(plan.steps.filter { if case .service = $0 { true } else { false } }
                == [.service(.stop(Paths.alertdUnitName)), .service(.stop(Paths.exporterUnitName)), .service(.stop(unit))])
    }

    @Test func aFailedStopRemovesNothing() throws {
        let host = try Host()
        try host.install()
        host.system.failWhen { $0 == .service(.stop(Paths.serverUnitName)) }
        let uninstaller = Uninstaller(system: host.system, probe: host.probe)
        #expect(throws: SystemError.self) { try uninstaller.apply(try uninstaller.plan(layout: Layout(), purge: false)) }
        #expect(host.system.node("/etc/warbler/warbler.yaml") != nil)
        #expect(host.system.node(Paths.serverUnit) != nil)
    }
}

extension RootInstallTests {
    @Test func uninstallUnderRootLeavesOnlyTheData() throws {
        let stage = try Stage()
        defer { stage.remove() }
        _ = try stage.install()
        let uninstaller = Uninstaller(system: LocalSystem(), probe: LiveHostProbe())
        let plan = try uninstaller.plan(layout: Layout(root: stage.root), purge: false)
        #expect(plan.initSystem == InitSystem.none)
        #expect(!plan.steps.contains { if case .service = $0 { true } else { false } }, "nothing runs under --root")
        try uninstaller.apply(plan)
        let left = try stage.tree().filter { $0.contains("warbler") }
        #expect(left == ["/var/lib/warbler", "/var/lib/warbler/alertd", "/var/lib/warbler/backups"], "\(left)")

        try uninstaller.apply(try uninstaller.plan(layout: Layout(root: stage.root), purge: true))
        #expect(try stage.tree().filter { $0.contains("warbler") }.isEmpty)
    }
}

import Foundation
import Installer
import Testing

@Suite struct JournalTests {
    let unit = Paths.serverUnitName

    func journal(_ host: Host) throws -> Journal {
        try #require(try JournalStore(system: host.system, layout: Layout()).load())
    }

    @Test func anInterruptedInstallIsResumedWhereItStopped() throws {
        let host = try Host()
        host.system.failWhen { $0 == .write(Paths.serverUnit) }
        #expect(throws: ApplyError.self) { try host.install() }
        let failed = try journal(host)
        #expect(failed.state == .failed)
        #expect(failed.entries.first { $0.status == .failed }?.summary.hasPrefix("write \(Paths.serverUnit)") == true)
        let key = host.system.content(Paths.jwtKey)
        #expect(key != nil, "steps before the failure are done")

        host.system.failWhen(nil)
        host.system.clearOperations()
        let resumed = try host.install()
        #expect(resumed.resumed)
        #expect(resumed.preflight.result("existing-install")?.status == .warn)
        // Only what was left: the unit, the `current` link (links come after files), the services; nothing done
        // before is redone.
        let timer = Paths.certRenewTimerName, backup = Paths.backupTimerName
        let (exporter, alertd) = (Paths.exporterUnitName, Paths.alertdUnitName)
        #expect(resumed.plan.writtenPaths == [Paths.serverUnit, Paths.unitFile(exporter), Paths.unitFile(alertd), Paths.alertsConfig,
                                              Paths.unitFile(Paths.backupServiceName), Paths.unitFile(backup),
                                              Paths.unitFile(Paths.certRenewServiceName), Paths.unitFile(timer), Paths.current,
                                              Paths.binLink])
        #expect(resumed.plan.serviceActions == [.daemonReload, .enable(unit), .enable(exporter), .enable(alertd), .enable(backup), .enable(timer),
                                                .start(unit), .start(exporter), .start(alertd), .start(backup), .start(timer)])
        #expect(host.system.content(Paths.jwtKey) == key)
        #expect(try journal(host).state == .complete)
        #expect(try host.install().plan.isEmpty)
    }

    @Test func aRestartCutOffByTheInterruptionIsCarriedIntoTheNextRun() throws {
        let host = try Host()
        try host.install()
        host.system.failWhen { $0 == .service(.restart(Paths.serverUnitName)) }
        #expect(throws: ApplyError.self) { try host.install(.with { $0.port = 9443 }) }
        host.system.failWhen(nil)
        // The files are already right, so only the journal knows the server still runs the old config.
        let plan = try host.install(.with { $0.port = 9443 }).plan
        #expect(plan.writtenPaths.isEmpty)
        #expect(plan.serviceActions == [.restart(unit), .restart(Paths.exporterUnitName)])
        #expect(try host.install().plan.isEmpty)
    }

    @Test func undoRevertsAnInterruptedReconfiguration() throws {
        let host = try Host()
        try host.install()
        let config = host.system.content(Paths.config), unitFile = host.system.content(Paths.serverUnit)
        host.system.failWhen { $0 == .service(.restart(Paths.serverUnitName)) }
        #expect(throws: ApplyError.self) { try host.install(.with { $0.port = 9443 }) }
        #expect(host.system.content(Paths.config) != config)
        host.system.failWhen(nil)
        host.system.clearOperations()

        let report = try host.installer.undo(layout: Layout())
        #expect(host.system.content(Paths.config) == config)
        #expect(host.system.content(Paths.serverUnit) == unitFile)
        #expect(report.contains("restored \(Paths.config)"))
        #expect(host.system.serviceActions == [.daemonReload, .restart(unit)], "reload the restored unit, then restart onto the restored files")
        #expect(try journal(host).state == .undone)
        #expect(host.system.paths(under: Paths.journalBackups).filter { $0 != Paths.journalBackups }.allSatisfy {
            if case .directory? = host.system.node($0) { true } else { false }
        }, "the backups are consumed")
        // The next run starts from the answers before the undone run: nothing to do.
        let next = try host.install()
        #expect(next.settings.port == 8443)
        #expect(next.plan.isEmpty)
        #expect(throws: SystemError.self) { try host.installer.undo(layout: Layout()) }
    }

    @Test func undoOfAFreshInstallRemovesWhatItMadeAndKeepsTheUser() throws {
        let host = try Host()
        host.system.failWhen { $0 == .service(.start(Paths.serverUnitName)) }
        #expect(throws: ApplyError.self) { try host.install() }
        #expect(host.system.status(unit).enabled)
        host.system.failWhen(nil)

        let report = try host.installer.undo(layout: Layout())
        #expect(host.system.paths(under: "/etc/warbler").isEmpty)
        #expect(host.system.paths(under: "/opt/warbler").isEmpty)
        #expect(host.system.node(Paths.serverUnit) == nil)
        #expect(host.system.status(unit) == ServiceStatus(enabled: false, active: false))
        #expect(host.system.userExists("warbler"))
        #expect(report.contains { $0.hasPrefix("kept: the system user warbler") })
        // Root's state directory stays (it holds the journal), and so does the data directory, like uninstall keeps data.
        #expect(host.system.node(Paths.journal) != nil)
        #expect(host.system.node(Paths.binLink) == nil, "the link on PATH went with the run that made it")
    }

    @Test func theJournalHoldsNoSecrets() throws {
        let host = try Host()
        try host.install()
        try host.install(.with { $0.port = 9000 })
        let text = try #require(host.text(Paths.journal))
        for secret in [Paths.jwtKey, Paths.adminPassword, Paths.caKey, Paths.serverKey] {
            let value = try #require(host.text(secret)).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!text.contains(value), "\(secret) leaked into the journal")
        }
        #expect(host.system.node(Paths.journal).map(PlanTests.attributes) == "0600 root:root")
        #expect(try journal(host).inputs.port == 9000)
    }
}

import Foundation
import Installer
import Testing

@Suite struct PlanTests {
    let unit = Paths.serverUnitName

    @Test func freshInstallPlansUserDirectoriesFilesAndServicesInOrder() throws {
        let host = try Host()
        let plan = try host.install(dryRun: true).plan
        let steps = plan.steps
        #expect(steps.first == .createUser(name: "warbler", home: "/var/lib/warbler"))
        #expect(steps.contains(.createDirectory(path: "/etc/warbler/secrets", mode: 0o700, owner: Owner("warbler", "warbler"))))
        #expect(steps.contains(.createDirectory(path: "/var/lib/warbler", mode: 0o700, owner: Owner("warbler", "warbler"))))
        #expect(steps.contains(.createDirectory(path: "/etc/warbler/tls", mode: 0o750, owner: Owner("root", "warbler"))))
        #expect(Set(plan.writtenPaths) == [
            "/opt/warbler/releases/0.1.0/bin/warbler", "/opt/warbler/current", "/usr/local/bin/warbler",
            "/etc/warbler/secrets/jwt.key", "/etc/warbler/secrets/admin-password",
            "/etc/warbler/tls/ca.crt", "/etc/warbler/tls/ca.key", "/etc/warbler/tls/server.crt", "/etc/warbler/tls/server.key",
            "/etc/warbler/warbler.yaml", "/etc/systemd/system/warbler-server.service",
            "/etc/systemd/system/warbler-cert-renew.service", "/etc/systemd/system/warbler-cert-renew.timer",
            "/etc/systemd/system/warbler-exporter.service", "/etc/systemd/system/warbler-alertd.service", "/etc/warbler/alerts.yaml",
            "/etc/systemd/system/warbler-backup.service", "/etc/systemd/system/warbler-backup.timer",
        ])
        let timer = Paths.certRenewTimerName, backup = Paths.backupTimerName
        // Daemons in dependency order (the server, then what watches it), then the timers.
        #expect(plan.serviceActions == [.daemonReload, .enable(unit), .enable(Paths.exporterUnitName), .enable(Paths.alertdUnitName),
                                        .enable(backup), .enable(timer),
                                        .start(unit), .start(Paths.exporterUnitName), .start(Paths.alertdUnitName), .start(backup), .start(timer)])
        // Order: every filesystem step before the services; the admin is created before the first start.
        let firstService = try #require(steps.firstIndex { $0.serviceAction != nil })
        #expect(steps[..<firstService].allSatisfy { $0.serviceAction == nil })
        let admin = try #require(steps.firstIndex { if case .runOnce = $0 { true } else { false } })
        let start = try #require(steps.firstIndex(of: .service(.start(unit), reason: "not running")))
        #expect(admin < start && start == steps.count - 5, "the server starts first, then the exporter, alertd and the timers")
        #expect(host.system.operations.isEmpty, "a dry run changes nothing")
    }

    @Test func applyingTheFreshPlanLeavesTheHostAsPlanned() throws {
        let host = try Host()
        let outcome = try host.install()
        #expect(outcome.applied && outcome.initSystem == .systemd)
        let s = host.system
        #expect(s.userExists("warbler"))
        #expect(s.node("/etc/warbler/secrets/jwt.key").map(Self.attributes) == "0600 warbler:warbler")
        #expect(s.node("/etc/warbler/tls/ca.key").map(Self.attributes) == "0600 root:root")
        #expect(s.node("/etc/warbler/tls/server.key").map(Self.attributes) == "0600 warbler:warbler")
        #expect(s.node("/etc/warbler/warbler.yaml").map(Self.attributes) == "0640 root:warbler")
        #expect(s.node("/etc/systemd/system/warbler-server.service").map(Self.attributes) == "0644 root:root")
        #expect(s.node("/opt/warbler/current") == .link("releases/0.1.0"))
        #expect(s.node("/usr/local/bin/warbler") == .link("/opt/warbler/current/bin/warbler"), "warbler is on PATH")
        #expect(s.content("/opt/warbler/releases/0.1.0/bin/warbler") == s.content(Host.binary))
        #expect(s.status(unit) == ServiceStatus(enabled: true, active: true))
        #expect(s.operations.contains(.run(["/opt/warbler/current/bin/warbler", "user-add", "admin", "--admin", "--exists-ok",
                                            "--password-file", "/etc/warbler/secrets/admin-password", "--config", "/etc/warbler/warbler.yaml"],
                                           user: "warbler")))
        #expect(s.node(Paths.adminCreatedMarker) != nil)
        #expect(host.text(Paths.config)?.contains("port: 8443") == true)
    }

    @Test func rerunWithTheSameInputsPlansAndChangesNothing() throws {
        let host = try Host()
        try host.install(.with { $0.domains = ["chat.example.com"] })
        host.system.clearOperations()
        let again = try host.install(.with { $0.domains = ["chat.example.com"] })
        #expect(again.plan.isEmpty)
        #expect(host.system.operations.isEmpty, "re-running wrote or restarted: \(host.system.operations)")
        // And with no flags at all: the previous run's answers are inherited.
        let bare = try host.install()
        #expect(bare.plan.isEmpty)
        #expect(bare.settings.domains == ["chat.example.com"])
        #expect(host.system.operations.isEmpty)
    }

    @Test func changedPortRewritesOnlyConfigAndUnitAndRestartsOnlyTheServer() throws {
        let host = try Host()
        try host.install()
        let before = host.system.content(Paths.jwtKey)
        host.system.clearOperations()
        let outcome = try host.install(.with { $0.port = 9443 })
        #expect(Set(outcome.plan.writtenPaths) == [Paths.config, Paths.serverUnit])
        // The exporter reads warbler.yaml too; alertd (alerts.yaml) does not restart.
        #expect(outcome.plan.serviceActions == [.daemonReload, .restart(unit), .restart(Paths.exporterUnitName)])
        #expect(outcome.plan.steps.allSatisfy { if case .runOnce = $0 { false } else { true } })
        // Besides the install's own journal (and the backups it keeps for --undo while the run is open).
        let touched = Set(host.system.operations.compactMap(\.path).filter { !$0.hasPrefix(Paths.installState) })
        #expect(touched == [Paths.config, Paths.serverUnit], "touched \(touched)")
        #expect(host.system.serviceActions == [.daemonReload, .restart(unit), .restart(Paths.exporterUnitName)])
        #expect(host.text(Paths.config)?.contains("port: 9443") == true)
        #expect(host.text(Paths.serverUnit)?.contains("SocketBindAllow=tcp:9443") == true)
        #expect(host.system.content(Paths.jwtKey) == before)
        #expect(outcome.plan.steps.contains { $0.summary == "restart \(unit) (warbler.yaml, warbler-server.service changed)" })
    }

    @Test func restartsOnlyTheUnitsWhoseFilesChanged() throws {
        let system = RecordingSystem()
        func desired(_ a: String, _ b: String) -> DesiredState {
            var d = DesiredState()
            d.directories = [.init(path: "/etc/demo", mode: 0o755, owner: .root)]
            d.files = [
                .init(path: "/etc/demo/a.conf", content: .bytes(Data(a.utf8)), mode: 0o644, owner: .root, label: nil),
                .init(path: "/etc/demo/b.conf", content: .bytes(Data(b.utf8)), mode: 0o644, owner: .root, label: nil),
                .init(path: "/etc/systemd/system/a.service", content: .bytes(Data("[Service]\n".utf8)), mode: 0o644, owner: .root, label: nil),
                .init(path: "/etc/systemd/system/b.service", content: .bytes(Data("[Service]\n".utf8)), mode: 0o644, owner: .root, label: nil),
            ]
            d.services = [
                .init(unit: "a.service", unitFile: "/etc/systemd/system/a.service", restartOn: ["/etc/demo/a.conf"]),
                .init(unit: "b.service", unitFile: "/etc/systemd/system/b.service", restartOn: ["/etc/demo/b.conf"]),
            ]
            return d
        }
        let store = JournalStore(system: system, layout: Layout())
        let journal = Journal(runID: "t", version: "1", state: .running, startedAt: system.now(), inputs: InstallAnswers(), ports: [], entries: [])
        let first = try Planner.plan(desired("a1", "b1"), on: system)
        #expect(first.restartedUnits == ["a.service", "b.service"])
        _ = try Applier(system: system, store: store).apply(first, journal: journal)
        let second = try Planner.plan(desired("a1", "b2"), on: system)
        #expect(second.writtenPaths == ["/etc/demo/b.conf"])
        #expect(second.serviceActions == [.restart("b.service")], "no daemon-reload: no unit file changed")
    }

    @Test func aUnitThatRestartsFirstRestartsBeforeTheOthersButStartsInItsPlace() throws {
        // keepalived on a new release: the virtual IP must leave before HAProxy restarts under the clients on it.
        let system = RecordingSystem()
        func desired(_ release: String) -> DesiredState {
            var d = DesiredState()
            d.directories = [.init(path: "/etc/demo", mode: 0o755, owner: .root)]
            d.files = [.init(path: "/etc/demo/release", content: .bytes(Data(release.utf8)), mode: 0o644, owner: .root, label: nil)]
            for name in ["server", "haproxy", "keepalived"] {
                d.files.append(.init(path: "/etc/systemd/system/\(name).service", content: .bytes(Data("[Service]\n".utf8)), mode: 0o644, owner: .root, label: nil))
                d.services.append(.init(unit: "\(name).service", unitFile: "/etc/systemd/system/\(name).service", restartOn: ["/etc/demo/release"],
                                        restartsFirst: name == "keepalived"))
            }
            return d
        }
        let store = JournalStore(system: system, layout: Layout())
        let journal = Journal(runID: "t", version: "1", state: .running, startedAt: system.now(), inputs: InstallAnswers(), ports: [], entries: [])
        let first = try Planner.plan(desired("1"), on: system)
        #expect(first.restartedUnits == ["server.service", "haproxy.service", "keepalived.service"], "a first start keeps the order")
        _ = try Applier(system: system, store: store).apply(first, journal: journal)
        let upgrade = try Planner.plan(desired("2"), on: system)
        #expect(upgrade.serviceActions == [.restart("keepalived.service"), .restart("server.service"), .restart("haproxy.service")])
    }

    @Test func aUnitThatRestartsItselfIsReloadedNotRestartedWhenOnlyItsUnitChanges() throws {
        // The upgrade receiver runs the install that rewrites its unit: restarting it would end that install.
        let system = RecordingSystem()
        func desired(unit: String, cert: String) -> DesiredState {
            var d = DesiredState()
            d.directories = [.init(path: "/etc/demo", mode: 0o755, owner: .root)]
            d.files = [
                .init(path: "/etc/demo/cert.pem", content: .bytes(Data(cert.utf8)), mode: 0o644, owner: .root, label: nil),
                .init(path: "/etc/systemd/system/r.service", content: .bytes(Data(unit.utf8)), mode: 0o644, owner: .root, label: nil),
            ]
            d.services = [.init(unit: "r.service", unitFile: "/etc/systemd/system/r.service", restartOn: ["/etc/demo/cert.pem"], restartsItself: true)]
            return d
        }
        let store = JournalStore(system: system, layout: Layout())
        let journal = Journal(runID: "t", version: "1", state: .running, startedAt: system.now(), inputs: InstallAnswers(), ports: [], entries: [])
        let first = try Planner.plan(desired(unit: "[Service]\n", cert: "c1"), on: system)
        #expect(first.serviceActions.contains(.start("r.service")))
        _ = try Applier(system: system, store: store).apply(first, journal: journal)
        let unitChanged = try Planner.plan(desired(unit: "[Service]\nRestart=always\n", cert: "c1"), on: system)
        #expect(unitChanged.serviceActions == [.daemonReload])
        _ = try Applier(system: system, store: store).apply(unitChanged, journal: journal)
        let certChanged = try Planner.plan(desired(unit: "[Service]\nRestart=always\n", cert: "c2"), on: system)
        #expect(certChanged.serviceActions == [.restart("r.service")])
    }

    @Test func driftedModeIsRepairedWithoutARestart() throws {
        let host = try Host()
        try host.install()
        guard case .file(let d, _, let owner)? = host.system.node(Paths.config) else { Issue.record("no config"); return }
        host.system.setNode(Paths.config, .file(d, mode: 0o666, owner: owner))
        let plan = try host.install().plan
        #expect(plan.steps == [.setAttributes(path: Paths.config, mode: 0o640, owner: Owner("root", "warbler"))])
        #expect(host.system.node(Paths.config).map(Self.attributes) == "0640 root:warbler")
    }

    @Test func driftedOwnershipIsRepairedWithoutARestart() throws {
        let host = try Host()
        try host.install()
        guard case .file(let d, let mode, _)? = host.system.node(Paths.jwtKey) else { Issue.record("no key"); return }
        host.system.setNode(Paths.jwtKey, .file(d, mode: mode, owner: .root))
        let plan = try host.install().plan
        #expect(plan.steps == [.setAttributes(path: Paths.jwtKey, mode: 0o600, owner: Owner("warbler", "warbler"))])
        #expect(host.system.content(Paths.jwtKey) == d, "the key itself is kept")
    }

    @Test func aStoppedServerIsStartedAndNothingElseHappens() throws {
        let host = try Host()
        try host.install()
        host.system.setStatus(unit, ServiceStatus(enabled: true, active: false))
        let plan = try host.install().plan
        #expect(plan.steps == [.service(.start(unit), reason: "not running")])
    }

    @Test func newBinaryRewritesTheReleaseAndRestarts() throws {
        let host = try Host()
        try host.install()
        host.system.setNode(Host.binary, .file(Data("warbler binary, build 2".utf8), mode: 0o755, owner: .root))
        let plan = try host.install().plan
        #expect(plan.writtenPaths == ["/opt/warbler/releases/0.1.0/bin/warbler"])
        #expect(plan.serviceActions == [.restart(unit), .restart(Paths.exporterUnitName), .restart(Paths.alertdUnitName)])
    }

    @Test func aDirectoryWhereTheConfigGoesStopsThePlan() throws {
        let host = try Host()
        host.system.setNode("/etc/warbler", .directory(mode: 0o755, owner: .root))
        host.system.setNode(Paths.config, .directory(mode: 0o755, owner: .root))
        #expect(throws: PlanError.self) { try host.install() }
        #expect(host.system.operations.isEmpty)
    }

    @Test func underTheBuiltinSupervisorAUnitChangeAloneRestartsNothing() throws {
        var host = try Host()
        host.probe.systemd = false
        let fresh = try host.install()
        #expect(fresh.initSystem == .builtin)
        #expect(fresh.plan.serviceActions == [.start(unit), .start(Paths.exporterUnitName), .start(Paths.alertdUnitName)],
                "no daemon-reload, enable or timers without systemd")
        #expect(fresh.plan.writtenPaths.contains(Paths.serverUnit), "the unit is laid out all the same")
        #expect(host.system.paths(under: Paths.logs) == [Paths.logs])
        // Root opens the logs there: root's directory, the service user may only read.
        #expect(host.system.node(Paths.logs).map(Self.attributes) == "0750 root:warbler")
        // A unit file that differs (a newer template) is rewritten, and nothing restarts for it.
        host.system.setNode(Paths.serverUnit, .file(Data("old\n".utf8), mode: 0o644, owner: .root))
        let again = try host.install()
        #expect(again.plan.writtenPaths == [Paths.serverUnit])
        #expect(again.plan.serviceActions.isEmpty)
        // The config does restart it.
        #expect(try host.install(.with { $0.port = 9443 }).plan.serviceActions == [.restart(unit), .restart(Paths.exporterUnitName)])
    }

    @Test func initNoneLaysOutFilesAndStartsNothing() throws {
        let host = try Host()
        let outcome = try host.install(.with { $0.initSystem = InitSystem.none })
        #expect(outcome.plan.serviceActions.isEmpty)
        #expect(outcome.plan.steps.allSatisfy { if case .runOnce = $0 { false } else { true } })
        #expect(host.system.node(Paths.serverUnit) != nil)
    }

    static func attributes(_ node: RecordingSystem.Node) -> String {
        switch node {
        case .file(_, let mode, let owner), .directory(let mode, let owner):
            String(format: "%04o", mode) + " " + (owner?.description ?? "-")
        case .link(let t):
            "-> \(t)"
        }
    }
}

@Suite struct MonitoringWiringTests {
    @Test func alertdGetsTheReceiversTheAnswersNameAndTheServerKnowsWhereAlertdIs() throws {
        let host = try Host()
        let answers = try InstallAnswers.parse(yaml: """
            alert_webhooks: [https://hooks.example.com/warbler]
            alert_receivers:
              - name: ops-mail
                type: email
                email: {host: smtp.example.com, port: 587, from: warbler@example.com, to: [ops@example.com], password_file: /etc/warbler/smtp.pw}
            """, source: "answers.yaml")
        try host.install(answers)
        let alerts = try #require(host.text(Paths.alertsConfig))
        #expect(alerts.contains(#"  - {"email":{"from":"warbler@example.com","host":"smtp.example.com","password_file":"/etc/warbler/smtp.pw","port":587,"to":["ops@example.com"]},"name":"ops-mail","type":"email"}"#))
        #expect(alerts.contains(#"  - {"name":"webhook-1","type":"webhook","url":"https://hooks.example.com/warbler"}"#))
        #expect(alerts.contains(#"  - receivers: ["ops-mail", "webhook-1"]"#))
        #expect(alerts.contains("url: \"http://127.0.0.1:9101/metrics\"") && alerts.contains("url: \"http://127.0.0.1:9464/metrics\""))
        let config = try #require(host.text(Paths.config))
        #expect(config.contains("control_url: \"http://127.0.0.1:9102\""))
        // Inherited by the next run, like every other answer.
        #expect(try host.install().plan.isEmpty)
    }

    @Test func badReceiversAndPortClashesAreRefusedTogether() throws {
        var answers = InstallAnswers()
        answers.alertReceivers = [AlertReceiverAnswer(name: "x y", type: "pager"), AlertReceiverAnswer(name: "ok", type: "slack")]
        answers.port = 9101
        #expect { try InstallSettings(answers) } throws: { e in
            let text = "\(e)"
            return text.contains("'x y'") && text.contains("'ok' (slack) needs an http(s) url") && text.contains("port 9101 is the exporter's")
        }
    }
}

import Foundation
import Installer
import Testing

/// Root's own state (journal, upgrade record, first-admin marker) lives where only root writes, is believed only when
/// only root could have written it, and its undo actions stay inside the install.
@Suite struct RootStateTests {
    let warbler = Owner("warbler", "warbler")

    /// An install interrupted at the server's start: its journal has undo actions to take back.
    func interrupted() throws -> Host {
        let host = try Host()
        host.system.failWhen { $0 == .service(.start(Paths.serverUnitName)) }
        #expect(throws: ApplyError.self) { try host.install() }
        host.system.failWhen(nil)
        host.system.clearOperations()
        return host
    }

    static func encode(_ journal: Journal) throws -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(journal)
    }

    @Test func rootsStateLivesOutsideEveryTreeTheServiceUserCanWrite() throws {
        let host = try Host()
        try host.install()
        #expect(Paths.journal.hasPrefix(Paths.installState + "/") && Paths.upgradeRecord.hasPrefix(Paths.installState + "/")
                && Paths.adminCreatedMarker.hasPrefix(Paths.installState + "/"))
        #expect(!Paths.installState.hasPrefix(Paths.data + "/"))
        #expect(host.system.node(Paths.installState) == .directory(mode: 0o700, owner: .root))
        #expect(host.system.node(Paths.journal).map(PlanTests.attributes) == "0600 root:root")
        #expect(host.system.node(Paths.adminCreatedMarker) != nil)
        #expect(host.system.paths(under: Paths.legacyInstallState).isEmpty)
    }

    @Test func aJournalTheServiceUserPlantedInItsOwnTreeIsNotActedOn() throws {
        // The old place, /var/lib/warbler/install, is inside the service user's directory: it can rename root's
        // directory away and plant its own. Such a journal is neither undone nor inherited.
        let host = try interrupted()
        var forged = try #require(try JournalStore(system: host.system, layout: Layout()).load())
        let done = try #require(forged.entries.lastIndex { $0.status == .done })
        forged.entries[done].undo.append(.restoreAttributes(path: "/usr/bin/passwd-copy", mode: 0o4777, owner: .root))
        host.system.setNode(Paths.installState, nil)
        for p in host.system.paths(under: Paths.installState) { host.system.setNode(p, nil) }
        host.system.setNode("/usr/bin/passwd-copy", .file(Data("x".utf8), mode: 0o755, owner: .root))
        host.system.setNode(Paths.legacyInstallState, .directory(mode: 0o700, owner: warbler))
        host.system.setNode(Paths.legacyInstallState + "/journal.json", .file(try Self.encode(forged), mode: 0o600, owner: warbler))

        #expect(throws: SystemError.self) { try host.installer.undo(layout: Layout()) }
        #expect(host.system.node("/usr/bin/passwd-copy") == .file(Data("x".utf8), mode: 0o755, owner: .root))
        #expect(host.system.node(Paths.legacyInstallState + "/journal.json") != nil, "root leaves the service user's files alone")
        // Nor does a fresh install inherit its answers.
        host.system.setNode(Paths.legacyInstallState + "/journal.json",
                            .file(try Self.encode(Journal(runID: "x", version: "0.0.1", state: .complete, startedAt: Date(),
                                                          inputs: .with { $0.adminPasswordFile = "/etc/shadow" }, ports: [])),
                                  mode: 0o600, owner: warbler))
        let outcome = try host.install()
        #expect(outcome.settings.adminPasswordFile == nil)
    }

    @Test func aJournalRootDidNotWriteIsRefused() throws {
        for tamper in ["owner", "mode", "directory"] {
            let host = try interrupted()
            let before = host.system.node(Paths.config)
            switch tamper {
            case "owner":
                let data = try #require(host.system.content(Paths.journal))
                host.system.setNode(Paths.journal, .file(data, mode: 0o600, owner: warbler))
            case "mode":
                let data = try #require(host.system.content(Paths.journal))
                host.system.setNode(Paths.journal, .file(data, mode: 0o622, owner: .root))
            default:
                host.system.setNode(Paths.installState, .directory(mode: 0o770, owner: Owner("root", "warbler")))
            }
            let error = #expect(throws: SystemError.self, "\(tamper)") { try host.installer.undo(layout: Layout()) }
            #expect(error?.description.contains("refusing") == true, "\(tamper)")
            #expect(host.system.operations.filter { if case .service = $0 { true } else { $0.path != nil } }.isEmpty, "\(tamper): nothing changed")
            #expect(host.system.node(Paths.config) == before)
            #expect(throws: SystemError.self, "\(tamper): install refuses too") { try host.install() }
        }
    }

    @Test func undoActionsOutsideTheInstallOrWithSetuidBitsAreRefusedBeforeAnythingChanges() throws {
        let outside: [UndoAction] = [
            .remove(path: "/etc/passwd"),
            .restoreAttributes(path: "/usr/bin/passwd-copy", mode: 0o755, owner: .root),
            .restoreAttributes(path: Paths.config, mode: 0o4755, owner: .root),
            .restoreAttributes(path: Paths.config, mode: 0o640, owner: Owner("root", "shadow")),
            .restoreFile(path: Paths.config, backup: "/home/eve/config", mode: 0o640, owner: .root),
            .restoreFile(path: Paths.config, backup: Paths.journalBackups + "/../../../home/eve/config", mode: 0o640, owner: .root),
            .restoreLink(path: Paths.current, target: "/home/eve/release"),
            .restoreLink(path: Paths.current, target: "releases/../../../../home/eve"),
            .restoreFile(path: Paths.etc + "/../shadow", backup: Paths.journalBackups + "/1", mode: 0o600, owner: .root),
            .service(.stop("ssh.service")),
        ]
        for action in outside {
            let host = try interrupted()
            host.system.setNode("/etc/passwd", .file(Data("root:x:0:0".utf8), mode: 0o644, owner: .root))
            host.system.setNode("/usr/bin/passwd-copy", .file(Data("x".utf8), mode: 0o4755, owner: .root))
            var journal = try #require(try JournalStore(system: host.system, layout: Layout()).load())
            let i = try #require(journal.entries.lastIndex { $0.status == .done })
            journal.entries[i].undo.append(action)
            // Written as root would: the state checks pass, the content does not.
            try #require(try JournalStore(system: host.system, layout: Layout()).save(journal))
            host.system.clearOperations()
            let before = host.system.node(Paths.config)
            let error = #expect(throws: SystemError.self, "\(action)") { try host.installer.undo(layout: Layout()) }
            #expect(error?.description.contains("outside what Warbler installs") == true, "\(action)")
            #expect(host.system.operations.filter { $0.path != Paths.journal }.isEmpty, "\(action): nothing changed")
            #expect(host.system.node("/etc/passwd") != nil && host.system.node(Paths.config) == before)
        }
    }

    @Test func anExistingInstallsStateMovesOutOfTheDataDirectoryOnTheNextRun() throws {
        let host = try Host()
        try host.install(.with { $0.port = 9000 })
        // Lay the host out as an earlier release did: root's state in /var/lib/warbler/install (root 0700).
        host.system.setNode(Paths.legacyInstallState, .directory(mode: 0o700, owner: .root))
        for name in ["journal.json", "admin-created"] {
            host.system.setNode(Paths.legacyInstallState + "/" + name, host.system.node(Paths.installState + "/" + name))
        }
        for p in host.system.paths(under: Paths.installState).reversed() { host.system.setNode(p, nil) }
        host.system.clearOperations()

        let outcome = try host.install()
        #expect(outcome.settings.port == 9000, "the answers came along")
        #expect(outcome.plan.isEmpty, "nothing to change: the first admin is not created again")
        #expect(outcome.notes.contains { $0.contains("moved \(Paths.legacyInstallState)/journal.json") })
        #expect(host.system.node(Paths.journal).map(PlanTests.attributes) == "0600 root:root")
        #expect(host.system.node(Paths.adminCreatedMarker) != nil)
        #expect(host.system.paths(under: Paths.legacyInstallState).isEmpty)
    }

    @Test func anOldStateDirectoryTheServiceUserOwnsIsNotMovedOrTrusted() throws {
        let host = try Host()
        host.system.setNode(Paths.data, .directory(mode: 0o700, owner: warbler))
        host.system.setNode(Paths.legacyInstallState, .directory(mode: 0o700, owner: warbler))
        host.system.setNode(Paths.legacyInstallState + "/admin-created", .file(Data("done".utf8), mode: 0o600, owner: warbler))
        let outcome = try host.install()
        #expect(outcome.notes.contains { $0.contains("left \(Paths.legacyInstallState) alone") })
        #expect(outcome.plan.steps.contains { if case .runOnce = $0 { true } else { false } }, "its marker does not skip creating the admin")
        #expect(host.system.node(Paths.legacyInstallState + "/admin-created") != nil)
    }
}

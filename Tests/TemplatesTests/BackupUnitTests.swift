import Foundation
import Templates
import Testing

/// The daily backup job: a oneshot service and its timer.
@Suite struct BackupUnitTests {
    let templates: TemplateSet

    init() throws { templates = try TemplateSet(directory: Repo.templates) }

    @Test func theBackupServiceMatchesItsGoldenFile() throws {
        try expectGolden(try templates.renderBackupService(BackupUnitContext()), "warbler-backup.service")
    }

    @Test func theBackupTimerMatchesItsGoldenFile() throws {
        try expectGolden(try templates.renderBackupTimer(BackupUnitContext()), "warbler-backup.timer")
    }

    /// Issue 9, item 4: the unit handed the root-only CA key to the service user, whose archives the server's user reads.
    @Test func theBackupServiceGetsNoCAKeyEvenWhenTheInstallHasACA() throws {
        let c = BackupUnitContext()
        #expect(!c.caKeyPath.isEmpty)
        let service = try templates.renderBackupService(c)
        #expect(!service.contains("LoadCredential="))
        #expect(!service.contains("ca.key"))
    }

    @Test func aBackupDirectoryOutsideTheDataDirectoryIsMadeWritableAndNoCAMeansNoCredential() throws {
        var c = BackupUnitContext()
        c.backupDir = "/srv/backups/warbler"
        c.caKeyPath = ""
        c.onCalendar = "*-*-* 03:00"
        let service = try templates.renderBackupService(c)
        #expect(service.contains("ReadWritePaths=/var/lib/warbler\nReadWritePaths=/srv/backups/warbler\n"))
        #expect(!service.contains("LoadCredential="))
        #expect(try templates.renderBackupTimer(c).contains("OnCalendar=*-*-* 03:00\n"))
    }

    @Test func valuesThatWouldBreakAUnitAreRefused() throws {
        var c = BackupUnitContext()
        c.onCalendar = "daily\nExecStartPre=/bin/sh"
        #expect(throws: TemplateError.self) { try templates.renderBackupTimer(c) }
        c = BackupUnitContext()
        c.backupDir = "/var/lib/warbler/my backups"
        #expect(throws: TemplateError.self) { try templates.renderBackupService(c) }
        c = BackupUnitContext()
        c.unitName = "warbler-backup"
        #expect(throws: TemplateError.self) { try templates.renderBackupService(c) }
    }

    /// Issue 12: on a cluster member root takes the daily lock in etcd before the run (a skip, not a failure, when
    /// another member has it) and releases it after; a single host's unit has neither.
    @Test func aClusterMembersBackupServiceTakesAndReleasesTheDailyLockAsRoot() throws {
        var c = BackupUnitContext()
        c.cluster = true
        let service = try templates.renderBackupService(c)
        #expect(service.contains("\nExecCondition=+/opt/warbler/current/bin/warbler backup-lock acquire\nExecStart=/opt/warbler/current/bin/warbler backup --config /etc/warbler/warbler.yaml\n"))
        #expect(service.contains("\nExecStopPost=+/opt/warbler/current/bin/warbler backup-lock release\n"))
        #expect(service.contains("\nUser=warbler\n"), "the backup itself still runs as the service user")
        let single = try templates.renderBackupService(BackupUnitContext())
        #expect(!single.contains("backup-lock") && !single.contains("ExecCondition"))
        let (dir, path, timer) = try Self.renderUnits(cluster: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try SystemdAnalyzeTests.run(["verify", "--man=no", path, timer])
        let ours = r.output.split(separator: "\n").filter { $0.contains("warbler-backup") }
        #expect(r.status == 0 && ours.isEmpty, "systemd-analyze verify complained:\n\(r.output)")
    }

    /// Both units in one directory (verify checks that the timer's unit exists), ExecStart pointing at a real file.
    static func renderUnits(cluster: Bool = false) throws -> (dir: String, service: String, timer: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-backup-units-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/bin/warbler")
        var c = BackupUnitContext()
        c.binary = dir + "/bin/warbler"
        c.cluster = cluster
        let templates = try TemplateSet(directory: Repo.templates)
        let service = dir + "/" + c.unitName, timer = dir + "/" + c.timerName
        try templates.renderBackupService(c).write(toFile: service, atomically: true, encoding: .utf8)
        try templates.renderBackupTimer(c).write(toFile: timer, atomically: true, encoding: .utf8)
        return (dir, service, timer)
    }

    @Test func systemdAnalyzeVerifyAcceptsTheBackupUnits() throws {
        let (dir, service, timer) = try Self.renderUnits()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try SystemdAnalyzeTests.run(["verify", "--man=no", service, timer])
        #expect(r.status == 0, "systemd-analyze verify failed:\n\(r.output)")
        let ours = r.output.split(separator: "\n").filter { $0.contains("warbler-backup") }
        #expect(ours.isEmpty, "systemd-analyze verify complained:\n\(ours.joined(separator: "\n"))")
    }

    @Test func systemdAnalyzeSecurityRatesTheBackupServiceTwoOrLower() throws {
        let (dir, service, _) = try Self.renderUnits()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try SystemdAnalyzeTests.run(["security", "--offline=yes", "--threshold=20", "--no-pager", service])
        let line = r.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        print("systemd-analyze security, backup service: \(line.trimmingCharacters(in: .whitespaces))")
        #expect(r.status == 0, "rated above 2.0:\n\(r.output)")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        let value = try #require(score, "no exposure level in:\n\(r.output)")
        #expect(value <= 2.0)
    }
}

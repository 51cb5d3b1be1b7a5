import Foundation
import Installer
import Synchronization
import Testing
@testable import Upgrade

/// The fake host, with `stage` copying the file to where only root writes (as `LiveUpgradeHost` does).
struct StagingHost: UpgradeHost {
    let inner: FakeUpgradeHost
    static let staged = "/var/lib/warbler-install/upgrade/warbler"

    func stage(file: String) throws -> String {
        inner.log("stage \(file)")
        let info = try inner.releaseInfo(binary: file)
        inner.add(file: Self.staged, info)
        // After the copy, whoever could write the given path swaps in something else: nothing may use it now.
        inner.add(file: file, ReleaseInfo(version: "6.6.6", build: "evil", schema: 1))
        inner.state.withLock { _ = $0.tampered.insert(file) }
        return Self.staged
    }
    func removeStaged(_ path: String) { inner.log("unstage \(path)") }
    func verify(file: String) throws { try inner.verify(file: file) }
    func releaseInfo(binary: String) throws -> ReleaseInfo { try inner.releaseInfo(binary: binary) }
    func installed() throws -> InstalledReleases { try inner.installed() }
    func spaceProblems(newFile: String) throws -> [String] { try inner.spaceProblems(newFile: newFile) }
    func healthProblem() async -> String? { await inner.healthProblem() }
    func schemaVersion() async throws -> Int { try await inner.schemaVersion() }
    func backup(label: String) async throws -> String { try await inner.backup(label: label) }
    func restore(backup: String, using binary: String) async throws { try await inner.restore(backup: backup, using: binary) }
    func converge(binary: String) throws -> String { try inner.converge(binary: binary) }
    func selfCheck() async throws { try await inner.selfCheck() }
    func stopServer() throws { try inner.stopServer() }
    func startServer() throws { try inner.startServer() }
    func setPrevious(_ version: String?) throws { try inner.setPrevious(version) }
    func removeRelease(_ version: String) throws { try inner.removeRelease(version) }
    func pruneReleases(keep: Int, protecting: [String]) throws -> [String] { try inner.pruneReleases(keep: keep, protecting: protecting) }
    func save(_ record: UpgradeRecord) throws { try inner.save(record) }
    func lastRecord() throws -> UpgradeRecord? { try inner.lastRecord() }
    func now() -> Date { inner.now() }
}

@Suite struct StagedFileTests {
    @Test func theFileVerifiedIsTheFileRunItIsARootOnlyCopy() async throws {
        let fake = FakeUpgradeHost()
        fake.add(file: "/home/op/warbler-1.1.0", ReleaseInfo(version: "1.1.0", build: "bbb", schema: 1))
        let outcome = try await Upgrader(host: StagingHost(inner: fake)).upgrade(file: "/home/op/warbler-1.1.0")
        guard case .upgraded(_, let to, _, _) = outcome else { Issue.record("\(outcome)"); return }
        #expect(to == "1.1.0")
        let staged = StagingHost.staged
        #expect(fake.actions == ["stage /home/op/warbler-1.1.0", "verify \(staged)", "backup pre-upgrade-1.0.0-to-1.1.0",
                                 "converge \(staged)", "self-check 1.1.0", "previous 1.0.0", "unstage \(staged)"])
    }

    func tempRoot() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-stage-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func theLiveHostCopiesTheFileAndItsSignatureWhereOnlyRootWrites() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/given"
        try Data("release bytes".utf8).write(to: URL(fileURLWithPath: file))
        try Data("sig".utf8).write(to: URL(fileURLWithPath: file + ".sig"))
        let host = LiveUpgradeHost(layout: Layout(root: root + "/host"))
        let staged = try host.stage(file: file)
        #expect(staged == root + "/host" + Paths.installState + "/upgrade/warbler")
        try Data("swapped".utf8).write(to: URL(fileURLWithPath: file))
        #expect(FileManager.default.contents(atPath: staged) == Data("release bytes".utf8), "a copy, not a link")
        #expect(FileManager.default.contents(atPath: staged + ".sig") == Data("sig".utf8))
        let attrs = try FileManager.default.attributesOfItem(atPath: root + "/host" + Paths.installState + "/upgrade")
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o700)
        host.removeStaged(staged)
        #expect(!FileManager.default.fileExists(atPath: staged))
    }

    @Test func anUpgradeRecordOthersCouldWriteIsRefused() throws {
        let root = try tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let host = LiveUpgradeHost(layout: Layout(root: root))
        let record = UpgradeRecord(from: "1.0.0", to: "1.1.0", backup: "/var/lib/warbler/backups/x.tar.gz", schemaBefore: 1,
                                   startedAt: Date(timeIntervalSince1970: 1_800_000_000), outcome: .done)
        try host.save(record)
        #expect(try host.lastRecord() == record)
        #expect(LiveUpgradeHost.record == "/var/lib/warbler-install/upgrade.json")
        chmod(root + LiveUpgradeHost.record, 0o666)
        #expect(throws: SystemError.self) { try host.lastRecord() }
    }
}

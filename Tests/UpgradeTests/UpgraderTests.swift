import Foundation
import Synchronization
import Testing
import Upgrade

/// A host whose releases, schema and failures a test scripts; it records every action in order.
final class FakeUpgradeHost: UpgradeHost, @unchecked Sendable {
    struct State {
        var releases: [String: ReleaseInfo] = [:]      // binary path → info
        var current = "1.0.0"
        var previous: String?
        var all = ["1.0.0"]
        var schema = 1
        var healthy: String?
        var space: [String] = []
        var actions: [String] = []
        var record: UpgradeRecord?
        var failConverge: Set<String> = []             // binaries whose install fails
        var failSelfCheckOn: Set<String> = []           // releases whose self-check fails
        var tampered: Set<String> = []
        var backups = 0
        /// `releaseInfo` runs the file (`FILE version --json`), as the live host does.
        var execute = false
    }
    let state = Mutex(State())

    init() {
        state.withLock { $0.releases["/opt/warbler/releases/1.0.0/bin/warbler"] = ReleaseInfo(version: "1.0.0", build: "aaa", schema: 1) }
    }

    func add(file: String, _ info: ReleaseInfo) { state.withLock { $0.releases[file] = info } }
    var actions: [String] { state.withLock { $0.actions } }
    func log(_ a: String) { state.withLock { $0.actions.append(a) } }

    func verify(file: String) throws {
        if state.withLock({ $0.tampered.contains(file) }) { throw FakeError("the installer file is corrupt or was modified") }
        log("verify \(file)")
    }
    func releaseInfo(binary: String) throws -> ReleaseInfo {
        if state.withLock({ $0.execute }) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = ["version", "--json"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return try JSONDecoder().decode(ReleaseInfo.self, from: data)
        }
        guard let i = state.withLock({ $0.releases[binary] }) else { throw FakeError("no such binary \(binary)") }
        return i
    }
    func installed() throws -> InstalledReleases {
        state.withLock { s in InstalledReleases(current: s.current, currentBinary: "/opt/warbler/releases/\(s.current)/bin/warbler", previous: s.previous, all: s.all) }
    }
    func spaceProblems(newFile: String) throws -> [String] { state.withLock { $0.space } }
    func healthProblem() async -> String? { state.withLock { $0.healthy } }
    func schemaVersion() async throws -> Int { state.withLock { $0.schema } }
    func backup(label: String) async throws -> String {
        let n = state.withLock { s in s.backups += 1; return s.backups }
        log("backup \(label)")
        return "/var/lib/warbler/backups/\(label)-\(n).tar.gz"
    }
    func restore(backup: String, using binary: String) async throws {
        log("restore \(backup) with \(binary.split(separator: "/").dropLast(2).last ?? "")")
        state.withLock { $0.schema = 1 }
    }
    func converge(binary: String) throws -> String {
        log("converge \(binary)")
        let info = try releaseInfo(binary: binary)
        try state.withLock { s in
            // The new release is copied in and becomes current; its server migrates the schema as it starts.
            let installedBinary = "/opt/warbler/releases/\(info.version)/bin/warbler"
            s.releases[installedBinary] = info
            if !s.all.contains(info.version) { s.all.append(info.version) }
            s.current = info.version
            s.schema = max(s.schema, info.schema)
            if s.failConverge.contains(binary) { throw FakeError("start warbler-server.service failed: not ready") }
        }
        return "Applying:\n  - restart warbler-server.service\n"
    }
    func selfCheck() async throws {
        let current = state.withLock { $0.current }
        log("self-check \(current)")
        if state.withLock({ $0.failSelfCheckOn.contains(current) }) { throw FakeError("login failed: 500") }
    }
    func stopServer() throws { log("stop") }
    func startServer() throws { log("start") }
    func setPrevious(_ version: String?) throws { log("previous \(version ?? "-")"); state.withLock { $0.previous = version } }
    func removeRelease(_ version: String) throws { log("remove \(version)"); state.withLock { $0.all.removeAll { $0 == version } } }
    func pruneReleases(keep: Int, protecting: [String]) throws -> [String] {
        state.withLock { s in
            var removed: [String] = []
            while s.all.count > keep, let victim = s.all.first(where: { !protecting.contains($0) }) {
                s.all.removeAll { $0 == victim }; removed.append(victim)
            }
            return removed
        }
    }
    func save(_ record: UpgradeRecord) throws { state.withLock { $0.record = record } }
    func lastRecord() throws -> UpgradeRecord? { state.withLock { $0.record } }
    func now() -> Date { Date(timeIntervalSince1970: 1_800_000_000) }
}

struct FakeError: Error, CustomStringConvertible { var description: String; init(_ d: String) { description = d } }

@Suite struct UpgraderTests {
    @Test func aGoodUpgradeBacksUpFirstSwitchesChecksAndKeepsThePrevious() async throws {
        let host = FakeUpgradeHost()
        host.add(file: "/root/warbler-1.1.0", ReleaseInfo(version: "1.1.0", build: "bbb", schema: 2))
        let outcome = try await Upgrader(host: host).upgrade(file: "/root/warbler-1.1.0")
        guard case .upgraded(let from, let to, let backup, _) = outcome else { Issue.record("\(outcome)"); return }
        #expect(from == "1.0.0" && to == "1.1.0" && backup.contains("pre-upgrade-1.0.0-to-1.1.0"))
        #expect(host.actions == ["verify /root/warbler-1.1.0", "backup pre-upgrade-1.0.0-to-1.1.0", "converge /root/warbler-1.1.0",
                                 "self-check 1.1.0", "previous 1.0.0"])
        let record = try #require(try host.lastRecord())
        #expect(record.outcome == .done && record.schemaBefore == 1 && record.schemaAfter == 2)
    }

    @Test func aReleaseThatFailsReadinessIsRolledBackAndTheBackupRestoredWhenTheSchemaMoved() async throws {
        let host = FakeUpgradeHost()
        host.add(file: "/root/bad", ReleaseInfo(version: "1.1.0", build: "bbb", schema: 2))
        host.state.withLock { $0.failConverge = ["/root/bad"] }
        await #expect { try await Upgrader(host: host).upgrade(file: "/root/bad") } throws: { e in
            let u = e as? UpgradeError
            return u?.rolledBack == true && u?.restoredBackup == true && "\(e)".contains("not ready")
        }
        #expect(host.actions == ["verify /root/bad", "backup pre-upgrade-1.0.0-to-1.1.0", "converge /root/bad",
                                 "stop", "restore /var/lib/warbler/backups/pre-upgrade-1.0.0-to-1.1.0-1.tar.gz with 1.0.0",
                                 "converge /opt/warbler/releases/1.0.0/bin/warbler", "start", "self-check 1.0.0", "remove 1.1.0"])
        #expect(host.state.withLock { ($0.current, $0.schema, $0.all) } == ("1.0.0", 1, ["1.0.0"]))
        #expect(try host.lastRecord()?.outcome == .rolledBack)
    }

    @Test func aFailedSelfCheckWithoutASchemaChangeRollsBackWithoutTouchingData() async throws {
        let host = FakeUpgradeHost()
        host.add(file: "/root/f", ReleaseInfo(version: "1.0.1", build: "ccc", schema: 1))
        host.state.withLock { $0.failSelfCheckOn = ["1.0.1"] }
        await #expect { try await Upgrader(host: host).upgrade(file: "/root/f") } throws: { e in
            (e as? UpgradeError).map { $0.rolledBack && !$0.restoredBackup } ?? false
        }
        #expect(!host.actions.contains { $0.hasPrefix("restore") || $0 == "stop" })
        #expect(host.actions.suffix(4) == ["converge /opt/warbler/releases/1.0.0/bin/warbler", "start", "self-check 1.0.0", "remove 1.0.1"])
    }

    @Test func refusalsChangeNothing() async throws {
        let host = FakeUpgradeHost()
        host.add(file: "/root/old", ReleaseInfo(version: "0.9.0", build: "zzz", schema: 1))
        await #expect { try await Upgrader(host: host).upgrade(file: "/root/old") } throws: { "\($0)".contains("--allow-downgrade") }
        host.add(file: "/root/t", ReleaseInfo(version: "2.0.0", build: "t", schema: 1))
        host.state.withLock { $0.tampered = ["/root/t"] }
        await #expect { try await Upgrader(host: host).upgrade(file: "/root/t") } throws: { "\($0)".contains("corrupt or was modified") }
        host.add(file: "/root/n", ReleaseInfo(version: "2.0.0", build: "n", schema: 3))
        host.state.withLock { $0.healthy = "the server is not ready" }
        await #expect { try await Upgrader(host: host).upgrade(file: "/root/n") } throws: { "\($0)".contains("--force") }
        host.state.withLock { $0.healthy = nil; $0.space = ["/var/lib/warbler: 10 MB free, the backup needs 40 MB"] }
        await #expect { try await Upgrader(host: host).upgrade(file: "/root/n") } throws: { "\($0)".contains("backup needs") }
        // Another build of the installed version would be installed over the running one, leaving no way back.
        host.state.withLock { $0.space = [] }
        host.add(file: "/root/rebuild", ReleaseInfo(version: "1.0.0", build: "rebuilt", schema: 1))
        await #expect { try await Upgrader(host: host).upgrade(file: "/root/rebuild") } throws: { "\($0)".contains("a version of its own") }
        #expect(!host.actions.contains { !$0.hasPrefix("verify") }, "nothing but verification happened: \(host.actions)")
        // The same build again: nothing to do.
        host.add(file: "/root/same", ReleaseInfo(version: "1.0.0", build: "aaa", schema: 1))
        #expect(try await Upgrader(host: host).upgrade(file: "/root/same") == .alreadyCurrent("1.0.0"))
    }

    @Test func rollbackReturnsToPreviousAndRestoresOnlyWhenTheSchemaMoved() async throws {
        let host = FakeUpgradeHost()
        host.add(file: "/root/w", ReleaseInfo(version: "1.1.0", build: "bbb", schema: 2))
        _ = try await Upgrader(host: host).upgrade(file: "/root/w")
        let (from, to, restored) = try await Upgrader(host: host).rollback()
        #expect(from == "1.1.0" && to == "1.0.0" && restored)
        #expect(host.state.withLock { ($0.current, $0.previous, $0.schema) } == ("1.0.0", "1.1.0", 1))
        #expect(host.actions.suffix(6) == ["stop", "restore /var/lib/warbler/backups/pre-upgrade-1.0.0-to-1.1.0-1.tar.gz with 1.0.0",
                                           "converge /opt/warbler/releases/1.0.0/bin/warbler", "start", "self-check 1.0.0", "previous 1.1.0"])
    }

    @Test func releasesBeyondTheKeepCountArePrunedButNeverCurrentOrPrevious() async throws {
        let host = FakeUpgradeHost()
        var pruned: [String] = []
        for (i, v) in ["1.1.0", "1.2.0", "1.3.0", "1.4.0"].enumerated() {
            host.add(file: "/root/\(v)", ReleaseInfo(version: v, build: "b\(i)", schema: 1))
            if case .upgraded(_, _, _, let p) = try await Upgrader(host: host).upgrade(file: "/root/\(v)", options: UpgradeOptions(keepReleases: 3)) {
                pruned += p
            }
        }
        #expect(pruned == ["1.0.0", "1.1.0"])
        #expect(host.state.withLock { $0.all } == ["1.2.0", "1.3.0", "1.4.0"])
    }

    @Test func versionsOrderLikeSemanticVersioning() throws {
        func v(_ s: String) throws -> ReleaseVersion { try #require(ReleaseVersion(s)) }
        #expect(try v("0.1.10") > v("0.1.9"))
        #expect(try v("1.0.0-rc.1") < v("1.0.0"))
        #expect(try v("1.0.0-rc.2") > v("1.0.0-rc.1"))
        #expect(try v("1.0") == v("1.0.0"))
        #expect(try v("1.0.0+build.7") == v("1.0.0"))
        #expect(ReleaseVersion("banana") == nil)
    }
}

import Backup
import Crypto
import Foundation
import WarblerConfig
import IMStorage
import Installer
import Logging
import Operations
import Payload

/// The real host: files under a `Layout`, the installed binaries, the init system, the database.
public struct LiveUpgradeHost: UpgradeHost {
    public let layout: Layout
    let system: LocalSystem
    /// Restore a pre-upgrade backup that is not authenticated by the install's backup key (`warbler rollback
    /// --trust-unauthenticated`: one made by a release from before backups were authenticated).
    public var trustUnauthenticated: Bool
    /// Who reads the database's schema version (nil: this process's user); the service user on a real install.
    public var serviceUser: String?
    /// The executable whose `schema-version` the service user runs: this build's own (`/proc/self/exe`), which is the
    /// installed release's when `warbler upgrade` is run as documented.
    public var schemaExecutable: String

    public static let record = Paths.upgradeRecord
    /// Where `stage` copies the installer file (root 0700).
    public static let staging = Paths.installState + "/upgrade"
    public static let previous = "/opt/warbler/previous"

    public static let backups = "/var/lib/warbler/backups"

    public init(layout: Layout = Layout(), trustUnauthenticated: Bool = false) {
        self.layout = layout
        self.trustUnauthenticated = trustUnauthenticated
        self.serviceUser = layout.isStaging ? nil : Blueprint.user
        self.schemaExecutable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        self.system = LocalSystem()
        system.selectInit(installedInitSystem(layout: layout, system: system))
    }

    var rootOwner: Owner? { layout.isStaging ? nil : .root }

    public func stage(file: String) throws -> String {
        let state = layout.path(Paths.installState)
        if try system.info(state) == nil { try system.makeDirectory(state, mode: 0o700, owner: rootOwner) }
        let dir = layout.path(Self.staging)
        try system.removeTree(dir)
        try system.makeDirectory(dir, mode: 0o700, owner: rootOwner)
        try RootState(system: system, layout: layout).requireTrusted(dir, kind: .directory)
        let staged = dir + "/warbler"
        try system.copy(from: file, to: staged, mode: 0o700, owner: rootOwner)
        let sig = SelfContainedFile.signaturePath(for: file)
        if try system.info(sig) != nil {
            try system.copy(from: sig, to: SelfContainedFile.signaturePath(for: staged), mode: 0o600, owner: rootOwner)
        }
        return staged
    }

    public func removeStaged(_ path: String) {
        guard path.hasPrefix(layout.path(Self.staging) + "/") else { return }
        try? system.removeTree(layout.path(Self.staging))
    }

    public func verify(file: String) throws {
        try SelfContainedFile.verify(path: file)
        let keyPath = layout.path(Paths.releaseKey)
        guard FileManager.default.fileExists(atPath: keyPath) else { return }
        let text = try String(contentsOfFile: keyPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let raw = Data(base64Encoded: text), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw SystemError("\(keyPath) is not a base64 Ed25519 public key; put the key packaging/sign.sh printed there")
        }
        guard FileManager.default.fileExists(atPath: SelfContainedFile.signaturePath(for: file)) else {
            throw SystemError("this install accepts only signed releases (\(keyPath)), and \(SelfContainedFile.signaturePath(for: file)) is missing; put the .sig published with the file beside it")
        }
        try SelfContainedFile.verifySignature(fileAt: file, publicKey: key)
    }

    public func releaseInfo(binary: String) throws -> ReleaseInfo {
        let result = try system.run([binary, "version", "--json"], as: nil)
        guard result.status == 0, let json = result.output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let info = try? JSONDecoder().decode(ReleaseInfo.self, from: Data(json.utf8)) else {
            throw SystemError("\(binary) did not say what release it is (`version --json` exited \(result.status): \(result.output.prefix(200)))")
        }
        return info
    }

    public func installed() throws -> InstalledReleases {
        func target(_ link: String) -> String? {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: layout.path(link))).map { ($0 as NSString).lastPathComponent }
        }
        guard let current = target(Paths.current) else {
            throw SystemError("no Warbler install here (\(layout.path(Paths.current)) is missing); use `warbler install`")
        }
        let dir = layout.path(Paths.releases)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let dated = names.map { n -> (String, Date) in
            let d = (try? FileManager.default.attributesOfItem(atPath: dir + "/" + n)[.modificationDate] as? Date) ?? .distantPast
            return (n, d)
        }
        return InstalledReleases(current: current, currentBinary: layout.path(Paths.release(current) + "/bin/warbler"),
                                 previous: target(Self.previous), all: dated.sorted { $0.1 < $1.1 }.map(\.0))
    }

    public func spaceProblems(newFile: String) throws -> [String] {
        var problems: [String] = []
        let config = try? ServerConfig.load(path: layout.path(Paths.config))
        var dataBytes: UInt64 = 0
        if config?.storage.driver ?? "sqlite" == "sqlite" {
            let db = config?.storage.path ?? Paths.database
            for suffix in ["", "-wal"] { dataBytes += Self.size(of: layout.path(db + suffix)) }
        }
        dataBytes += Self.treeSize(layout.path((config?.dataDir ?? Paths.data) + "/attachments"))
        let needData = dataBytes + dataBytes / 10 + (16 << 20)
        if let free = Self.free(layout.path(Paths.data)), free < needData {
            problems.append("\(layout.path(Paths.data)) has \(free >> 20) MiB free; the backup needs about \(needData >> 20) MiB (free some space or move old backups away)")
        }
        let fileBytes = Self.size(of: newFile)
        let needRelease = fileBytes + fileBytes / 10
        if let free = Self.free(layout.path(Paths.releases)), free < needRelease {
            problems.append("\(layout.path(Paths.releases)) has \(free >> 20) MiB free; the new release needs about \(needRelease >> 20) MiB")
        }
        return problems
    }

    public func healthProblem() async -> String? {
        let report = await StatusCollector(probe: LiveStatusProbe(), layout: layout)
            .collect(manager: installedInitSystem(layout: layout, system: system), host: LiveHostProbe().hostname())
        // The release's own daemons: a member's etcd, Patroni and HAProxy are judged by the cluster upgrade's checks
        // (ClusterStatusCollector), as before `status` listed them.
        let cluster = Set(ClusterPaths.laidOutComponents.map(\.name))
        let problems = report.components.filter { !cluster.contains($0.name) }.flatMap(\.problems)
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// Read by the service user, never by root (see `SchemaProbe`): this build's own executable runs
    /// `schema-version` as `serviceUser` through the one command runner, and only its one JSON line is believed.
    /// When the service user cannot run this executable (`sudo ./warbler-NEW upgrade` from a directory only root can
    /// enter), the installed release's binary (under /opt/warbler, which anyone may run) does it, if it knows how.
    public func schemaVersion() async throws -> Int {
        var candidates = [schemaExecutable]
        if let installed = try? installed().currentBinary, installed != schemaExecutable { candidates.append(installed) }
        let who = serviceUser.map { "the service user \($0)" } ?? "this user"
        var tried: [String] = []
        for executable in candidates {
            var argv = [executable, "schema-version"]
            if layout.isStaging { argv += ["--root", layout.root] }
            let result = try system.run(argv, as: serviceUser)
            if result.status == 0 { return try SchemaProbe.parse(result.output) }
            let tail = result.output.split(separator: "\n").suffix(4).joined(separator: "\n")
            // 126/127: setpriv could not run it as that user; 64: a release from before `schema-version`.
            guard [126, 127, 64].contains(result.status) else {
                throw SystemError("cannot read the database's schema version as \(who) (`\(argv.joined(separator: " "))` exited \(result.status)): \(tail)\nRoot does not open the service user's database itself; check that \(who) can open it (`warbler status`, `journalctl -u warbler-server`)")
            }
            tried.append("\(executable) (exit \(result.status): \(tail))")
        }
        throw SystemError("cannot read the database's schema version as \(who): \(tried.joined(separator: "; ")).\nRoot does not open the service user's database itself, so \(who) must be able to run this warbler: put the file where it can (e.g. `install -m 0755 FILE /tmp/`) and run it from there, or run `sudo warbler upgrade FILE` with an installed warbler that has `schema-version`")
    }

    public func backup(label: String) async throws -> String {
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let path = layout.path("\(Self.backups)/warbler-\(label)-\(stamp).tar.gz")
        try run([try installed().currentBinary, "backup", "--output", path], what: "the backup")
        return path
    }

    /// Restores in this process, with this build's checks, whichever release `binary` is: an older release's own
    /// `warbler restore` may lack them, and root runs it. Without migrations: the backup is at the schema of the
    /// release being returned to, whose server brings it forward itself if it must.
    public func restore(backup: String, using binary: String) async throws {
        var logger = Logger(label: "warbler.restore")
        logger.logLevel = .warning
        do {
            _ = try await RestoreEngine(logger: logger).restore(RestoreRequest(
                layout: layout, file: backup, force: true, trustUnauthenticated: trustUnauthenticated, migrate: false))
        } catch let e as BackupError where e.code == .unauthenticated {
            throw SystemError("restoring \(backup): \(e.message). For `warbler rollback`, that option is `warbler rollback --trust-unauthenticated`")
        }
    }

    public func prunePreUpgradeBackups(keeping: String) throws -> [String] {
        try Retention.prunePreUpgrade(directory: layout.path(Self.backups), keeping: keeping)
    }

    func run(_ argv: [String], what: String) throws {
        var argv = argv
        if layout.isStaging { argv += ["--root", layout.root] }
        let result = try system.run(argv, as: nil)
        guard result.status == 0 else {
            throw SystemError("\(what) failed (`\(argv.joined(separator: " "))`):\n\(result.output.split(separator: "\n").suffix(6).joined(separator: "\n"))")
        }
    }

    public func converge(binary: String) throws -> String {
        var argv = [binary, "install", "--yes"]
        if layout.isStaging { argv += ["--root", layout.root] }
        let result = try system.run(argv, as: nil)
        guard result.status == 0 else {
            let tail = result.output.split(separator: "\n").suffix(8).joined(separator: "\n")
            throw SystemError("`\(binary) install` failed:\n\(tail)")
        }
        return result.output
    }

    public func selfCheck() async throws {
        try await SelfCheck(layout: layout, system: system).run()
    }

    public func stopServer() throws { try system.perform(.stop(Paths.serverUnitName)) }
    public func startServer() throws {
        if try !system.serviceStatus(Paths.serverUnitName).active { try system.perform(.start(Paths.serverUnitName)) }
    }

    public func setPrevious(_ version: String?) throws {
        let link = layout.path(Self.previous)
        guard let version else { try? system.remove(link); return }
        try system.symlink(link, to: "releases/\(version)")
    }

    public func removeRelease(_ version: String) throws {
        try system.removeTree(layout.path(Paths.release(version)))
    }

    public func pruneReleases(keep: Int, protecting: [String]) throws -> [String] {
        var all = try installed().all
        var removed: [String] = []
        while all.count > keep, let victim = all.first(where: { !protecting.contains($0) }) {
            try system.removeTree(layout.path(Paths.release(victim)))
            all.removeAll { $0 == victim }
            removed.append(victim)
        }
        return removed
    }

    public func save(_ record: UpgradeRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let state = layout.path(Paths.installState)
        if try system.info(state) == nil { try system.makeDirectory(state, mode: 0o700, owner: rootOwner) }
        try system.write(layout.path(Self.record), try encoder.encode(record), mode: 0o600, owner: rootOwner)
    }

    public func lastRecord() throws -> UpgradeRecord? {
        // Root restores the backup this names: only a record only root could have written counts.
        guard let data = try RootState(system: system, layout: layout).read(Self.record) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(UpgradeRecord.self, from: data)
    }

    public func now() -> Date { Date() }

    static func size(of path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    static func treeSize(_ dir: String) -> UInt64 {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return 0 }
        var total: UInt64 = 0
        while let p = e.nextObject() as? String { total += size(of: dir + "/" + p) }
        return total
    }

    static func free(_ path: String) -> UInt64? {
        var s = statvfs()
        var p = path
        while statvfs(p, &s) != 0 {
            guard p != "/" && !p.isEmpty else { return nil }
            p = (p as NSString).deletingLastPathComponent
        }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }
}

import Foundation
import Installer
import Templates

/// A host's facts, as a test wants them. Defaults: a healthy Debian x86_64 root shell with systemd.
struct FakeProbe: HostProbe {
    var uid: UInt32 = 0
    var kernel = "Linux"
    var arch = "x86_64"
    var systemd = true
    var pid1 = "systemd"
    var free: UInt64 = 50 * 1024 * 1024 * 1024
    var freeByPath: [String: UInt64] = [:]
    var mem: (total: UInt64, available: UInt64)? = (4 << 30, 3 << 30)
    var takenPorts: Set<Int> = []
    var clock: Bool? = true
    var name = "chat1"
    var nameResolves = true
    var ips: [IPAddress] = [IPAddress.parse("10.0.0.5")!]

    func effectiveUserID() -> UInt32 { uid }
    func kernelName() -> String { kernel }
    func machine() -> String { arch }
    func systemdIsRunning() -> Bool { systemd }
    func initProcessName() -> String? { pid1 }
    func freeBytes(at path: String) -> UInt64? { freeByPath[path] ?? free }
    func memory() -> (total: UInt64, available: UInt64)? { mem }
    func canBind(host: String, port: Int) -> Bool { !takenPorts.contains(port) }
    func clockSynchronized() -> Bool? { clock }
    func hostname() -> String { name }
    func resolves(_ n: String) -> Bool { nameResolves }
    func addresses() -> [IPAddress] { ips }
}

enum Repo {
    /// The repository's top directory (this file is Tests/InstallerTests/Fixtures.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let templates = root + "/templates"
}

/// A fake host with a warbler binary to install, and the repo's templates.
struct Host {
    let system = RecordingSystem()
    var probe = FakeProbe()
    let templates: TemplateSet
    static let binary = "/build/warbler"
    static let version = "0.1.0"

    init() throws {
        templates = try TemplateSet(directory: Repo.templates)
        system.setNode("/build", .directory(mode: 0o755, owner: .root))
        system.setNode(Self.binary, .file(Data("warbler binary, build 1".utf8), mode: 0o755, owner: .root))
    }

    var installer: Installer { Installer(system: system, probe: probe) }

    func request(_ answers: InstallAnswers = InstallAnswers(), root: String? = nil, dryRun: Bool = false) -> InstallRequest {
        InstallRequest(answers: answers, layout: Layout(root: root), release: BinaryRelease(version: Self.version, binaryPath: Self.binary),
                       templates: templates, dryRun: dryRun)
    }

    @discardableResult
    func install(_ answers: InstallAnswers = InstallAnswers(), dryRun: Bool = false) throws -> InstallOutcome {
        try installer.install(request(answers, dryRun: dryRun))
    }

    func text(_ path: String) -> String? { system.content(path).map { String(decoding: $0, as: UTF8.self) } }
}

extension InstallAnswers {
    static func with(_ change: (inout InstallAnswers) -> Void) -> InstallAnswers {
        var a = InstallAnswers()
        change(&a)
        return a
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Installer
import Testing

/// The real side effects, on a temporary directory of this host.
@Suite struct LocalSystemTests {
    let dir: String
    let system = LocalSystem()

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-local-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    @Test func anAtomicWriteSetsModeAndLeavesNoTemporaryFile() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try system.write(dir + "/a.conf", Data("one\n".utf8), mode: 0o640, owner: nil)
        try system.write(dir + "/a.conf", Data("two\n".utf8), mode: 0o600, owner: nil)
        #expect(try system.read(dir + "/a.conf") == Data("two\n".utf8))
        let info = try #require(try system.info(dir + "/a.conf"))
        #expect(info.kind == .file && info.mode == 0o600 && info.size == 4)
        #expect(try entries() == ["a.conf"])
    }

    @Test(.enabled(if: geteuid() == 0, "changing owners needs root"))
    func ownersAreSetAndReadBackByName() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let nobody = Owner("nobody", "nogroup")
        try system.write(dir + "/k", Data("x".utf8), mode: 0o600, owner: nobody)
        #expect(try system.info(dir + "/k")?.owner == nobody)
        try system.makeDirectory(dir + "/d/e", mode: 0o700, owner: nobody)
        #expect(try system.info(dir + "/d/e")?.owner == nobody)
        #expect(try system.info(dir + "/d")?.owner == .root, "parents belong to the installer")
        try system.setAttributes(dir + "/k", mode: 0o644, owner: .root)
        #expect(try system.info(dir + "/k") == FileInfo(kind: .file, mode: 0o644, owner: .root, size: 1))
        #expect(throws: SystemError.self) { try system.write(dir + "/z", Data(), mode: 0o600, owner: Owner("no-such-user-w", "root")) }
    }

    @Test func aCopyKeepsTheBytesAndTheHashAgrees() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try big.write(to: URL(fileURLWithPath: dir + "/src"))
        try system.copy(from: dir + "/src", to: dir + "/dst", mode: 0o755, owner: nil)
        #expect(try system.read(dir + "/dst") == big)
        #expect(try system.sha256(dir + "/dst") == system.sha256(dir + "/src"))
        #expect(try system.info(dir + "/dst")?.mode == 0o755)
    }

    @Test func directoriesLinksAndRemoval() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try system.makeDirectory(dir + "/x/y/z", mode: 0o750, owner: nil)
        #expect(try system.info(dir + "/x")?.mode == 0o755)
        #expect(try system.info(dir + "/x/y/z")?.mode == 0o750)
        try system.symlink(dir + "/current", to: "releases/1")
        try system.symlink(dir + "/current", to: "releases/2")
        #expect(try system.info(dir + "/current") == FileInfo(kind: .symlink, mode: 0o777, owner: .root, size: 10, linkTarget: "releases/2"))
        try system.remove(dir + "/current")
        try system.remove(dir + "/current")
        try system.remove(dir + "/x/y/z")
        #expect(try system.info(dir + "/x/y/z") == nil)
        #expect(throws: SystemError.self) { try system.remove(dir + "/x") }
    }

    @Test func commandsRunAndReportTheirExit() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try system.run(["sh", "-c", "echo hi; exit 3"], as: nil) == CommandResult(status: 3, output: "hi\n"))
    }

    @Test func aSecondInstallOnTheSameTargetIsTurnedAway() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/install.lock"
        do {
            let held = try InstallLock(path: path)
            #expect(throws: SystemError.self) { try InstallLock(path: path) }
            withExtendedLifetime(held) {}
        }
        // Released with its holder.
        _ = try InstallLock(path: path)
    }
}

@Suite struct LiveHostProbeTests {
    let probe = LiveHostProbe()

    @Test func aPortWithAListenerIsNotFreeAndIsAfterwards() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = in_addr_t(UInt32(0x7f00_0001).bigEndian)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        try #require(bound)
        let port = Int(UInt16(bigEndian: sa.sin_port))
        #expect(!probe.canBind(host: "0.0.0.0", port: port))
        #expect(!probe.canBind(host: "127.0.0.1", port: port))
        close(fd)
        #expect(probe.canBind(host: "127.0.0.1", port: port))
    }

    @Test func hostFactsAreRead() {
        #expect(probe.kernelName() == "Linux")
        #expect(probe.machine() == "x86_64")
        #expect((probe.freeBytes(at: "/var/lib/warbler-does-not-exist/x") ?? 0) > 0, "walks up to an existing parent")
        let mem = probe.memory()
        #expect(mem != nil && mem!.total >= mem!.available && mem!.available > 0)
        #expect(!probe.hostname().isEmpty)
        #expect(probe.resolves("localhost"))
        #expect(!probe.resolves("no-such-host.invalid"))
        #expect(probe.addresses().allSatisfy { !$0.description.hasPrefix("127.") && $0.description != "::1" })
        #expect(probe.clockSynchronized() != nil, "adjtimex answers")
    }
}

import Foundation
import Installer
import Testing

@Suite struct ReleaseWithWebTests {
    @Test func theWebClientIsInstalledBesideTheBinaryInTheRelease() throws {
        let host = try Host()
        host.system.setNode("/build/web", .directory(mode: 0o755, owner: .root))
        host.system.setNode("/build/web/js", .directory(mode: 0o755, owner: .root))
        host.system.setNode("/build/web/index.html", .file(Data("<!doctype html>".utf8), mode: 0o644, owner: .root))
        host.system.setNode("/build/web/js/chat.js", .file(Data("export {};\n".utf8), mode: 0o644, owner: .root))
        let release = ReleaseWithWeb(base: BinaryRelease(version: Host.version, binaryPath: Host.binary), webFiles: [
            .init(relativePath: "index.html", source: "/build/web/index.html"),
            .init(relativePath: "js/chat.js", source: "/build/web/js/chat.js"),
        ])
        var request = host.request(dryRun: true)
        request.release = release
        let plan = try host.installer.install(request).plan
        #expect(plan.writtenPaths.contains("/opt/warbler/releases/0.1.0/web/index.html"))
        #expect(plan.writtenPaths.contains("/opt/warbler/releases/0.1.0/web/js/chat.js"))
        #expect(plan.steps.contains { if case .createDirectory(let path, _, _) = $0 { path == "/opt/warbler/releases/0.1.0/web/js" } else { false } })

        request.dryRun = false
        _ = try host.installer.install(request)
        #expect(host.text("/opt/warbler/releases/0.1.0/web/js/chat.js") == "export {};\n")
        #expect(host.text("/opt/warbler/releases/0.1.0/web/index.html") == "<!doctype html>")
        // The rendered config points the server at the current release's web directory.
        #expect(host.text("/etc/warbler/warbler.yaml")?.contains("web_root: \"/opt/warbler/current/web\"") == true)
    }

    @Test func listingTakesPlainFilesOnlyAndAMissingDirectoryMeansNoWebClient() throws {
        let dir = NSTemporaryDirectory() + "warbler-web-list-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/js", withIntermediateDirectories: true)
        try "a".write(toFile: dir + "/index.html", atomically: true, encoding: .utf8)
        try "b".write(toFile: dir + "/js/chat.js", atomically: true, encoding: .utf8)
        try "c".write(toFile: dir + "/.hidden", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.txt", withDestinationPath: "/etc/hostname")
        #expect(try ReleaseWithWeb.listFiles(in: dir).map(\.relativePath) == ["index.html", "js/chat.js"])
        let base = BinaryRelease(version: "1", binaryPath: "/x")
        #expect(try ReleaseWithWeb.from(base: base, webDirectory: dir) is ReleaseWithWeb)
        #expect(try ReleaseWithWeb.from(base: base, webDirectory: dir + "/missing") is BinaryRelease)
        #expect(try ReleaseWithWeb.from(base: base, webDirectory: nil) is BinaryRelease)
    }
}

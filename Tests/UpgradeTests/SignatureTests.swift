import Crypto
import Foundation
import Installer
import Payload
import Testing
import Upgrade

/// `warbler upgrade` on an install with a release key accepts only files signed with it.
@Suite struct ReleaseSignatureTests {
    @Test func withAReleaseKeyOnlyFilesSignedWithItPass() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-sig-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/tree/templates", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/root/etc/warbler", withIntermediateDirectories: true)
        try "port: {{port}}\n".write(toFile: dir + "/tree/templates/warbler.yaml.mustache", atomically: true, encoding: .utf8)
        try PayloadArchive.pack(directory: dir + "/tree", to: dir + "/payload.tar.gz", release: "2.0.0")
        try SelfContainedFile.append(payload: dir + "/payload.tar.gz", to: "/bin/true", output: dir + "/warbler-2.0.0")
        let file = dir + "/warbler-2.0.0"
        let host = LiveUpgradeHost(layout: Layout(root: dir + "/root"))

        try host.verify(file: file)   // no key configured: the checksum is enough

        let key = Curve25519.Signing.PrivateKey()
        try (key.publicKey.rawRepresentation.base64EncodedString() + "\n")
            .write(toFile: dir + "/root" + Paths.releaseKey, atomically: true, encoding: .utf8)
        #expect { try host.verify(file: file) } throws: { "\($0)".contains("accepts only signed releases") }

        try SelfContainedFile.sign(fileAt: file, privateKey: Curve25519.Signing.PrivateKey())
        #expect { try host.verify(file: file) } throws: { "\($0)".contains("signed with another key") }

        try SelfContainedFile.sign(fileAt: file, privateKey: key)
        try host.verify(file: file)
    }
}

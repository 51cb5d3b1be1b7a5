import Crypto
import DurableFiles
import Foundation
import Glibc
import Testing
@testable import Payload

@Suite struct SelfContainedFileTests {
    /// A copy of a real executable, a payload packed from a small tree, and the two joined into an installer file.
    struct Installer {
        let scratch: Scratch
        var plain: String { scratch.file("plain") }
        var payload: String { scratch.file("payload.tar.gz") }
        var file: String { scratch.file("installer") }
        let manifest: Manifest

        init() throws {
            scratch = try Scratch()
            try FileManager.default.copyItem(atPath: "/bin/true", toPath: scratch.file("plain"))
            try makeDirectory(scratch.file("tree"))
            try makeDirectory(scratch.file("tree/templates"))
            try write(scratch.file("tree/templates/warbler.yaml.mustache"), "server:\n  port: {{port}}\n")
            try write(scratch.file("tree/templates/secret"), "0600 file", mode: 0o600)
            try makeSymlink(scratch.file("tree/current-template"), to: "templates/warbler.yaml.mustache")
            manifest = try PayloadArchive.pack(directory: scratch.file("tree"), to: scratch.file("payload.tar.gz"))
            try SelfContainedFile.append(payload: scratch.file("payload.tar.gz"), to: scratch.file("plain"), output: scratch.file("installer"))
        }

        func truncate(to size: Int) throws {
            try check(Glibc.truncate(file, off_t(size)) == 0, "truncate")
        }
    }

    @Test func trailerRoundTripsAndHasTheDocumentedLayout() throws {
        let hash = (0..<32).map { UInt8($0) }
        let trailer = Trailer(payloadOffset: 0x0102_0304_0506_0708, payloadLength: 42, payloadSHA256: hash)
        let bytes = trailer.encoded
        #expect(bytes.count == 64)
        #expect(Array(bytes[0..<16]) == Array("WARBLERPAYLOAD1\0".utf8))
        #expect(Array(bytes[16..<24]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[24..<32]) == [42, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[32..<64]) == hash)
        #expect(Trailer(decoding: bytes) == trailer)
        var bad = bytes
        bad[3] ^= 1
        #expect(Trailer(decoding: bad) == nil)
    }

    @Test func appendedExecutableStillRunsAndItsPayloadIsLocatedVerifiedAndExtracted() throws {
        let installer = try Installer()
        let plainSize = try readBytes(installer.plain).count
        let payloadBytes = try readBytes(installer.payload)
        let fileBytes = try readBytes(installer.file)
        #expect(fileBytes.count == plainSize + payloadBytes.count + Trailer.size)
        #expect(Array(fileBytes[0..<plainSize]) == (try readBytes(installer.plain)))

        // The executable still runs with the payload appended.
        #expect(try Subprocess.run([installer.file]).status == 0)

        let location = try SelfContainedFile.locate(path: installer.file)
        #expect(location.payloadRange == UInt64(plainSize)..<UInt64(plainSize + payloadBytes.count))
        #expect(location.expectedSHA256Hex == sha256Hex(payloadBytes))
        try SelfContainedFile.verify(location)

        let (_, inspected) = try SelfContainedFile.inspect(path: installer.file)
        #expect(inspected == installer.manifest)
        #expect(inspected.fileCount == 2)

        let extracted = try SelfContainedFile.extractPayload(from: installer.file, into: installer.scratch.file("release"))
        #expect(extracted == installer.manifest)
        #expect(try snapshot(installer.scratch.file("release"), excluding: [Manifest.fileName]) == (try snapshot(installer.scratch.file("tree"))))
    }

    @Test func aFileWithoutTrailerIsReportedAsCarryingNoPayload() throws {
        let installer = try Installer()
        let error = #expect(throws: PayloadError.self) { try SelfContainedFile.locate(path: installer.plain) }
        #expect(error?.code == .noPayload)
        #expect(error?.message == "this warbler binary carries no payload; build it with packaging/build.sh")
        // Not an executable at all: the same answer.
        try write(installer.scratch.file("text"), "just text\n")
        #expect(throws: PayloadError.self) { try SelfContainedFile.locate(path: installer.scratch.file("text")) }
    }

    @Test func aTruncatedFileIsReportedAsTruncated() throws {
        let installer = try Installer()
        let size = try readBytes(installer.file).count
        let plainSize = try readBytes(installer.plain).count
        // Cut inside the trailer, inside the payload, and inside the executable itself.
        for cut in [size - 10, size - Trailer.size - 100, plainSize - 1000] {
            try installer.truncate(to: cut)
            let error = #expect(throws: PayloadError.self, "cut at \(cut)") { try SelfContainedFile.locate(path: installer.file) }
            #expect(error?.code == .truncated, "cut at \(cut): \(String(describing: error))")
            #expect(error?.message.contains("download it again") == true)
        }
    }

    @Test func aTamperedPayloadByteIsDetectedBeforeAnythingIsWritten() throws {
        let installer = try Installer()
        let location = try SelfContainedFile.locate(path: installer.file)
        // A byte gzip would not even notice (the header's OS field) is still caught by the trailer's hash.
        for offset in [Int(location.payloadRange.lowerBound) + 9, Int(location.payloadRange.upperBound) - 1] {
            let pristine = try readBytes(installer.file)
            try flipByte(in: installer.file, at: offset)
            let error = #expect(throws: PayloadError.self) {
                try SelfContainedFile.extractPayload(from: installer.file, into: installer.scratch.file("release"))
            }
            #expect(error?.code == .checksumMismatch)
            #expect(error?.message.hasPrefix("the installer file is corrupt or was modified: expected \(location.expectedSHA256Hex), got ") == true, "\(String(describing: error))")
            #expect(error?.message.hasSuffix("; download it again") == true)
            #expect(FileIO.lstat(installer.scratch.file("release")) == nil)
            try Data(pristine).write(to: URL(fileURLWithPath: installer.file))
        }
        try SelfContainedFile.verify(path: installer.file)
    }

    @Test func appendingTwiceIsRefused() throws {
        let installer = try Installer()
        let error = #expect(throws: PayloadError.self) {
            try SelfContainedFile.append(payload: installer.payload, to: installer.file, output: installer.scratch.file("twice"))
        }
        #expect(error?.code == .unsupportedFile)
        #expect(FileIO.lstat(installer.scratch.file("twice")) == nil)
    }

    @Test func aReleaseStampedInThePayloadIsReadBackAndCanBeReplacedWithoutARebuild() throws {
        let installer = try Installer()
        #expect(SelfContainedFile.release(path: installer.file) == nil, "packed without a release")
        #expect(SelfContainedFile.release(path: installer.plain) == nil, "a plain build")
        let stamped = installer.scratch.file("payload-1.2.0.tar.gz")
        try PayloadArchive.pack(directory: installer.scratch.file("tree"), to: stamped, release: "1.2.0-rc.1")
        let restamped = installer.scratch.file("installer-1.2.0")
        try SelfContainedFile.append(payload: stamped, to: installer.file, output: restamped, replacing: true)
        #expect(SelfContainedFile.release(path: restamped) == "1.2.0-rc.1")
        try SelfContainedFile.verify(path: restamped)
        // The executable part is the original's, byte for byte.
        let exe = try SelfContainedFile.locate(path: restamped).payloadRange.lowerBound
        #expect(Array(try readBytes(restamped).prefix(Int(exe))) == (try readBytes(installer.plain)))
        #expect(throws: PayloadError.self) {
            try PayloadArchive.pack(directory: installer.scratch.file("tree"), to: installer.scratch.file("bad.tar.gz"), release: "../etc")
        }
    }

    @Test func signatureVerifiesOnlyTheSignedFileWithTheRightKey() throws {
        let installer = try Installer()
        let key = Curve25519.Signing.PrivateKey()
        let sigPath = try SelfContainedFile.sign(fileAt: installer.file, privateKey: key)
        #expect(sigPath == installer.file + ".sig")
        try SelfContainedFile.verifySignature(fileAt: installer.file, publicKey: key.publicKey)

        // Another key.
        var error = #expect(throws: PayloadError.self) {
            try SelfContainedFile.verifySignature(fileAt: installer.file, publicKey: Curve25519.Signing.PrivateKey().publicKey)
        }
        #expect(error?.code == .badSignature)

        // One byte of the executable part changed, payload untouched: the payload checksum still passes, the
        // signature does not.
        try flipByte(in: installer.file, at: 200)
        try SelfContainedFile.verify(path: installer.file)
        error = #expect(throws: PayloadError.self) { try SelfContainedFile.verifySignature(fileAt: installer.file, publicKey: key.publicKey) }
        #expect(error?.code == .badSignature)
        try flipByte(in: installer.file, at: 200)
        try SelfContainedFile.verifySignature(fileAt: installer.file, publicKey: key.publicKey)

        // A damaged signature file, then none.
        try write(sigPath, "warbler-signature-v1 ed25519 not-base64\n")
        error = #expect(throws: PayloadError.self) { try SelfContainedFile.verifySignature(fileAt: installer.file, publicKey: key.publicKey) }
        #expect(error?.code == .badSignature)
        try check(unlink(sigPath) == 0, "unlink")
        error = #expect(throws: PayloadError.self) { try SelfContainedFile.verifySignature(fileAt: installer.file, publicKey: key.publicKey) }
        #expect(error?.code == .badSignature)
    }

    @Test func signingRefusesAFileWhosePayloadIsDamaged() throws {
        let installer = try Installer()
        let location = try SelfContainedFile.locate(path: installer.file)
        try flipByte(in: installer.file, at: Int(location.payloadRange.lowerBound) + 20)
        let error = #expect(throws: PayloadError.self) {
            try SelfContainedFile.sign(fileAt: installer.file, privateKey: Curve25519.Signing.PrivateKey())
        }
        #expect(error?.code == .checksumMismatch)
        #expect(FileIO.lstat(installer.file + ".sig") == nil)
    }
}

import Foundation
import Glibc
import Testing
@testable import Payload

@Suite struct PayloadArchiveTests {
    /// A tree with nested directories, several modes (a read-only directory among them), an empty file, a file
    /// larger than one read chunk, a non-ASCII name and symlinks to a file and to a directory.
    static func makeTree(at root: String) throws {
        try makeDirectory(root)
        try write(root + "/README.md", "templates go here\n")
        try write(root + "/zero", "", mode: 0o640)
        try write(root + "/ünïcødé.txt", "naïve café\n")
        try makeDirectory(root + "/bin")
        try write(root + "/bin/tool.sh", "#!/bin/sh\necho hi\n", mode: 0o755)
        try makeDirectory(root + "/secret", mode: 0o700)
        try write(root + "/secret/key", "s3cr3t", mode: 0o600)
        try makeDirectory(root + "/nested")
        try makeDirectory(root + "/nested/deep")
        try makeDirectory(root + "/nested/deep/er", mode: 0o750)
        var big = [UInt8](repeating: 0, count: 300_000)
        for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        try write(root + "/nested/deep/er/blob.bin", big)
        try makeDirectory(root + "/nested/readonly")
        try write(root + "/nested/readonly/inside.txt", "in a read-only directory\n", mode: 0o444)
        try check(chmod(root + "/nested/readonly", 0o555) == 0, "chmod")
        try makeDirectory(root + "/empty", mode: 0o750)
        try makeSymlink(root + "/docs", to: "nested/deep")
        try makeSymlink(root + "/nested/deep/up", to: "../../README.md")
    }

    @Test func roundTripPreservesTreeModesAndSymlinks() throws {
        let scratch = try Scratch()
        let source = scratch.file("source")
        try Self.makeTree(at: source)

        let packed = try PayloadArchive.pack(directory: source, to: scratch.file("p.tar.gz"))
        let unpacked = try PayloadArchive.unpack(archive: scratch.file("p.tar.gz"), into: scratch.file("out"))

        let expected = try snapshot(source)
        #expect(expected.count == 16)
        #expect(try snapshot(scratch.file("out"), excluding: [Manifest.fileName]) == expected)
        #expect(packed == unpacked)
        #expect(unpacked.fileCount == 7)
        #expect(unpacked.entries["secret/key"] == .file(permissions: 0o600, size: 6, sha256: sha256Hex(Array("s3cr3t".utf8))))
        #expect(unpacked.entries["nested/readonly"] == .directory(permissions: 0o555))
        #expect(unpacked.entries["docs"] == .symlink(target: "nested/deep"))
        // The manifest stays in the tree, byte for byte what was packed.
        let kept = try Manifest.decode(Data(try readBytes(scratch.file("out/\(Manifest.fileName)"))))
        #expect(kept == packed)
        // The unpacked root is an ordinary directory and no temporary directory is left beside it.
        #expect(try scratch.listing() == ["out", "p.tar.gz", "source"])
    }

    @Test func packingIsDeterministicWhateverTheTimestamps() throws {
        let scratch = try Scratch()
        let source = scratch.file("source")
        try Self.makeTree(at: source)
        try PayloadArchive.pack(directory: source, to: scratch.file("one.tar.gz"))
        try PayloadArchive.pack(directory: source, to: scratch.file("two.tar.gz"))
        // Touch everything with another time: the archive must not change.
        for path in try snapshot(source).keys {
            var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 5), timespec(tv_sec: 1_000_000_000, tv_nsec: 5)]
            try check(utimensat(AT_FDCWD, source + "/" + path, &times, AT_SYMLINK_NOFOLLOW) == 0, "utimensat")
        }
        try PayloadArchive.pack(directory: source, to: scratch.file("three.tar.gz"))

        let one = try readBytes(scratch.file("one.tar.gz"))
        #expect(one.count > 1000)
        #expect(one == (try readBytes(scratch.file("two.tar.gz"))))
        #expect(one == (try readBytes(scratch.file("three.tar.gz"))))
    }

    @Test func packingRecordsSizesModesAndHashes() throws {
        let scratch = try Scratch()
        let source = scratch.file("source")
        try makeDirectory(source)
        try write(source + "/a", "abc", mode: 0o600)
        let manifest = try PayloadArchive.pack(directory: source, to: scratch.file("p.tar.gz"))
        // SHA-256("abc"), a published test vector.
        #expect(manifest.entries == ["a": .file(permissions: 0o600, size: 3, sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")])
        let json = String(decoding: try manifest.encoded(), as: UTF8.self)
        #expect(json.contains("\"mode\" : \"0600\""))
    }

    @Test func everyTamperedByteThatChangesTheContentsIsRefusedAndLeavesNothingBehind() throws {
        let scratch = try Scratch()
        try Self.makeTree(at: scratch.file("source"))
        let archive = scratch.file("p.tar.gz")
        try PayloadArchive.pack(directory: scratch.file("source"), to: archive)
        let pristine = try readBytes(archive)
        let contents = try #require(gunzip(pristine))
        var refused = 0
        for offset in pristine.indices {
            var bytes = pristine
            bytes[offset] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: archive))
            do {
                try PayloadArchive.check(archive: archive)
                // Accepted: then the flip must not have changed what the archive says. That happens for the gzip
                // header's time, flags and OS bytes and for spare bits of deflate's code tables; the installer's
                // trailer hash covers those bytes too.
                #expect(gunzip(bytes) == contents, "flipping a bit of byte \(offset) changed the contents and went unnoticed")
            } catch let error as PayloadError {
                refused += 1
                #expect(error.code == .corruptArchive || error.code == .manifestMismatch, "byte \(offset): \(error)")
            }
            // A sample also goes through a real unpack, which must leave nothing behind when it refuses.
            if offset % 97 == 0 || offset == pristine.count - 1 {
                _ = try? PayloadArchive.unpack(archive: archive, into: scratch.file("out"))
                let listing = try scratch.listing()
                #expect(listing == ["p.tar.gz", "source"] || listing == ["out", "p.tar.gz", "source"])
                if listing.contains("out") { FileIO.removeTree(scratch.file("out")) }
            }
        }
        #expect(refused > pristine.count * 9 / 10)
        try Data(pristine).write(to: URL(fileURLWithPath: archive))
        try PayloadArchive.unpack(archive: archive, into: scratch.file("out"))
    }

    @Test(arguments: [
        ("../evil", "a \"..\" path component"),
        ("a/../../evil", "a \"..\" path component"),
        ("/tmp/warbler-payload-evil", "an absolute path"),
        ("./../evil", "a \"..\" path component"),
    ])
    func pathTraversalEntriesAreRefused(name: String, reason: String) throws {
        let scratch = try Scratch()
        let archive = scratch.file("evil.tar.gz")
        try makeDirectory(scratch.file("a"))
        try HostileArchive.write(to: archive, entries: [
            .init(path: "a", type: S_IFDIR, mode: 0o755),
            .init(path: name, data: Array("pwned".utf8)),
        ])
        let error = #expect(throws: PayloadError.self) {
            try PayloadArchive.unpack(archive: archive, into: scratch.file("out"))
        }
        #expect(error?.code == .unsafeEntry)
        #expect(error?.message.contains(reason) == true, "\(String(describing: error))")
        #expect(try scratch.listing() == ["a", "evil.tar.gz"])
        #expect(FileIO.lstat("/tmp/warbler-payload-evil") == nil)
    }

    @Test func symlinksPointingOutsideAreRefused() throws {
        for target in ["/etc/passwd", "../outside", "sub/../../outside", "", "./x", "a//b"] {
            let scratch = try Scratch()
            let archive = scratch.file("evil.tar.gz")
            try HostileArchive.write(to: archive, entries: [.init(path: "link", type: S_IFLNK, mode: 0o777, symlink: target)])
            let error = #expect(throws: PayloadError.self, "symlink to \(target)") {
                try PayloadArchive.unpack(archive: archive, into: scratch.file("out"))
            }
            #expect(error?.code == .unsafeEntry)
            #expect(try scratch.listing() == ["evil.tar.gz"])
        }
    }

    @Test func aSymlinkClimbingThroughAnotherSymlinkIsRefused() throws {
        let scratch = try Scratch()
        let archive = scratch.file("evil.tar.gz")
        // "d/root/.." reads as the tree itself, but d/root -> .. is the tree's root, so it resolves to the parent.
        try HostileArchive.write(to: archive, entries: [
            .init(path: "d", type: S_IFDIR, mode: 0o755),
            .init(path: "d/root", type: S_IFLNK, mode: 0o777, symlink: ".."),
            .init(path: "escape", type: S_IFLNK, mode: 0o777, symlink: "d/root/.."),
        ])
        let error = #expect(throws: PayloadError.self) { try PayloadArchive.unpack(archive: archive, into: scratch.file("out")) }
        #expect(error?.code == .unsafeEntry)
        #expect(error?.message.contains("escape") == true)
        #expect(try scratch.listing() == ["evil.tar.gz"])
    }

    @Test func writingThroughASymlinkIsRefused() throws {
        let scratch = try Scratch()
        let archive = scratch.file("evil.tar.gz")
        // The link itself points inside, but a later entry uses it as a directory.
        try HostileArchive.write(to: archive, entries: [
            .init(path: "real", type: S_IFDIR, mode: 0o755),
            .init(path: "link", type: S_IFLNK, mode: 0o777, symlink: "real"),
            .init(path: "link/file", data: Array("x".utf8)),
        ])
        let error = #expect(throws: PayloadError.self) { try PayloadArchive.unpack(archive: archive, into: scratch.file("out")) }
        #expect(error?.code == .unsafeEntry)
        #expect(error?.message.contains("through the symlink") == true)
        #expect(try scratch.listing() == ["evil.tar.gz"])
    }

    @Test func deviceNodesFifosHardLinksAndSetuidAreRefused() throws {
        let cases: [(HostileArchive.Entry, String)] = [
            (.init(path: "null", type: S_IFCHR, mode: 0o666, device: 1 << 8 | 3), "a device node"),
            (.init(path: "disk", type: S_IFBLK, mode: 0o660, device: 8 << 8), "a device node"),
            (.init(path: "pipe", type: S_IFIFO, mode: 0o644), "a FIFO"),
            (.init(path: "hard", hardlink: "README.md"), "a hard link"),
            (.init(path: "suid", mode: 0o4755, data: Array("#!/bin/sh\n".utf8)), "setuid"),
            (.init(path: "sgid", mode: 0o2755, data: Array("#!/bin/sh\n".utf8)), "setuid, setgid"),
        ]
        for (entry, reason) in cases {
            let scratch = try Scratch()
            let archive = scratch.file("evil.tar.gz")
            try HostileArchive.write(to: archive, entries: [.init(path: "README.md", data: Array("hi".utf8)), entry])
            let error = #expect(throws: PayloadError.self, "\(entry.path)") {
                try PayloadArchive.unpack(archive: archive, into: scratch.file("out"))
            }
            #expect(error?.code == .unsafeEntry, "\(entry.path): \(String(describing: error))")
            #expect(error?.message.contains(reason) == true, "\(entry.path): \(String(describing: error))")
            #expect(try scratch.listing() == ["evil.tar.gz"])
        }
    }

    @Test func anArchiveThatDisagreesWithItsManifestIsRefused() throws {
        let scratch = try Scratch()
        let archive = scratch.file("p.tar.gz")
        // A manifest for one tree, then different contents: what re-packing a modified payload without updating the
        // manifest looks like.
        let vouched = [HostileArchive.Entry(path: "a.txt", data: Array("original".utf8))]
        let manifest = try HostileArchive.manifest(for: vouched)
        for entries in [
            [HostileArchive.Entry(path: "a.txt", data: Array("modified".utf8))],
            [HostileArchive.Entry(path: "a.txt", mode: 0o755, data: Array("original".utf8))],
            [HostileArchive.Entry(path: "a.txt", data: Array("original".utf8)), .init(path: "extra", data: [1])],
            [],
        ] {
            try HostileArchive.write(to: archive, entries: [.init(path: Manifest.fileName, data: manifest)] + entries, withManifest: false)
            let error = #expect(throws: PayloadError.self) { try PayloadArchive.unpack(archive: archive, into: scratch.file("out")) }
            #expect(error?.code == .manifestMismatch, "\(String(describing: error))")
            #expect(try scratch.listing() == ["p.tar.gz"])
        }
        // The same manifest with the vouched contents is accepted: the refusals above are about the differences.
        try HostileArchive.write(to: archive, entries: [.init(path: Manifest.fileName, data: manifest)] + vouched, withManifest: false)
        try PayloadArchive.unpack(archive: archive, into: scratch.file("out"))
        #expect(try String(contentsOfFile: scratch.file("out/a.txt"), encoding: .utf8) == "original")
    }

    @Test func anArchiveWithoutAManifestIsRefused() throws {
        let scratch = try Scratch()
        let archive = scratch.file("plain.tar.gz")
        try HostileArchive.write(to: archive, entries: [.init(path: "a.txt", data: [1, 2, 3])], withManifest: false)
        let error = #expect(throws: PayloadError.self) { try PayloadArchive.unpack(archive: archive, into: scratch.file("out")) }
        #expect(error?.code == .corruptArchive)
        #expect(error?.message.contains("does not start with its manifest") == true)
    }

    @Test func anExistingDestinationIsLeftAlone() throws {
        let scratch = try Scratch()
        try makeDirectory(scratch.file("source"))
        try write(scratch.file("source/a"), "new")
        try PayloadArchive.pack(directory: scratch.file("source"), to: scratch.file("p.tar.gz"))
        try makeDirectory(scratch.file("out"))
        try write(scratch.file("out/old"), "old")
        let error = #expect(throws: PayloadError.self) { try PayloadArchive.unpack(archive: scratch.file("p.tar.gz"), into: scratch.file("out")) }
        #expect(error?.code == .destinationExists)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("out")) == ["old"])
        #expect(try scratch.listing() == ["out", "p.tar.gz", "source"])
    }

    @Test func packingRefusesWhatUnpackingWouldRefuse() throws {
        let scratch = try Scratch()
        let source = scratch.file("source")
        try makeDirectory(source)
        try makeSymlink(source + "/escape", to: "../../etc/passwd")
        var error = #expect(throws: PayloadError.self) { try PayloadArchive.pack(directory: source, to: scratch.file("p.tar.gz")) }
        #expect(error?.code == .unsupportedFile)
        try check(unlink(source + "/escape") == 0, "unlink")

        try write(source + "/suid", "x", mode: 0o4755)
        error = #expect(throws: PayloadError.self) { try PayloadArchive.pack(directory: source, to: scratch.file("p.tar.gz")) }
        #expect(error?.code == .unsupportedFile)
        try check(unlink(source + "/suid") == 0, "unlink")

        try check(mkfifo(source + "/fifo", 0o644) == 0, "mkfifo")
        error = #expect(throws: PayloadError.self) { try PayloadArchive.pack(directory: source, to: scratch.file("p.tar.gz")) }
        #expect(error?.code == .unsupportedFile)
        try check(unlink(source + "/fifo") == 0, "unlink")

        try write(source + "/" + Manifest.fileName, "{}")
        error = #expect(throws: PayloadError.self) { try PayloadArchive.pack(directory: source, to: scratch.file("p.tar.gz")) }
        #expect(error?.code == .unsupportedFile)
        // Nothing was written for any of them.
        #expect(try scratch.listing() == ["source"])
    }
}

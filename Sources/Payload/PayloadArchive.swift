import Crypto
import Foundation
import Glibc

/// The payload's archive: a deterministic tar.gz of a directory with a manifest as its first entry, packed and
/// unpacked with libarchive.
///
/// Unpacking trusts nothing in the archive: every entry must be a regular file, directory or symlink at a relative
/// path without `..`, with no setuid, setgid or sticky bit, a symlink must point inside the tree, and everything must
/// match the manifest (hashes, sizes, modes, and no entry more or less). The tree is built in a temporary directory
/// beside the destination and renamed into place only when all of it checked out; on any failure it is removed.
public enum PayloadArchive {
    /// Packs `directory` into a tar.gz at `archive` and returns its manifest. Entries are sorted, owned by 0:0 and
    /// dated 1970, so packing the same tree twice gives identical bytes. The file appears only once complete.
    @discardableResult
    public static func pack(directory: String, to archive: String, release: String? = nil) throws -> Manifest {
        if let release, !Self.isValidRelease(release) {
            throw PayloadError(.unsupportedFile, "release '\(release)' is not a version: use digits, letters, '.', '-' and '+' (1-64 characters), like 1.2.0")
        }
        let tree = try SourceTree.scan(directory)
        var manifest = tree.manifest
        manifest.release = release
        let (fd, temporary) = try FileIO.temporaryFile(besides: archive)
        close(fd)
        do {
            let writer = try ArchiveWriter(path: temporary)
            let manifestData = try manifest.encoded()
            try writer.writeHeader(path: Manifest.fileName, kind: .file, permissions: 0o644, size: UInt64(manifestData.count))
            try manifestData.withUnsafeBytes { try writer.writeData($0) }
            for item in tree.items {
                let entry = item.entry
                try writer.writeHeader(path: item.path, kind: entry.kind, permissions: entry.permissions, size: entry.size ?? 0, target: entry.target)
                if entry.kind == .file {
                    try copyFile(item, into: writer)
                }
            }
            try writer.finish()
            chmod(temporary, 0o644)
            try FileIO.fsync(path: temporary)
            try FileIO.rename(temporary, to: archive)
        } catch {
            unlink(temporary)
            throw error
        }
        return manifest
    }

    /// Unpacks the tar.gz at `archive` (or the `byteRange` of that file holding it) into `destination`, which must
    /// not exist yet; returns the verified manifest. Either the whole tree appears at `destination`, or nothing does.
    @discardableResult
    public static func unpack(archive: String, byteRange: Range<UInt64>? = nil, into destination: String) throws -> Manifest {
        var destination = destination
        while destination.count > 1 && destination.hasSuffix("/") { destination.removeLast() }
        if FileIO.lstat(destination) != nil {
            throw PayloadError(.destinationExists, "\(destination) already exists; remove it or choose another directory")
        }
        let temporary = try FileIO.makeTemporaryDirectory(besides: destination)
        do {
            let extractor = Extractor(root: temporary)
            let manifest = try walk(archive: archive, byteRange: byteRange, extractor: extractor)
            try extractor.finish()
            try FileIO.rename(temporary, to: destination)
            try FileIO.fsync(path: (destination as NSString).deletingLastPathComponent.nonEmpty ?? ".")
            return manifest
        } catch {
            FileIO.removeTree(temporary)
            throw error
        }
    }

    /// A release name that can become a directory name and a URL path segment.
    public static func isValidRelease(_ s: String) -> Bool {
        (1...64).contains(s.count) && s.first?.isNumber == true
            && s.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ".-+".unicodeScalars.contains($0) }
    }

    /// Reads only the manifest, the archive's first entry (the rest is not checked: `check` or `unpack` do that).
    public static func manifest(archive: String, byteRange: Range<UInt64>? = nil) throws -> Manifest {
        try readManifest(try ArchiveReader(path: archive, range: byteRange)).0
    }

    /// Reads the whole archive and checks it against its manifest as `unpack` would, writing nothing.
    @discardableResult
    public static func check(archive: String, byteRange: Range<UInt64>? = nil) throws -> Manifest {
        try walk(archive: archive, byteRange: byteRange, extractor: nil)
    }

    // MARK: - Reading

    /// Reads every entry, checks it against the manifest and the safety rules, and hands it to `extractor` if any.
    private static func walk(archive: String, byteRange: Range<UInt64>?, extractor: Extractor?) throws -> Manifest {
        try checkCompression(archive: archive, byteRange: byteRange)
        let reader = try ArchiveReader(path: archive, range: byteRange)
        let (manifest, manifestData) = try readManifest(reader)
        // Kept in the unpacked tree, so what was installed can be checked against it later.
        try extractor?.createFile(Manifest.fileName, permissions: 0o644).writeAll(manifestData)
        var seen = Set<String>()
        while let header = try reader.next() {
            let path = try ArchivePath.normalize(header.path)
            guard path != Manifest.fileName else { throw mismatch("the archive holds a second \(Manifest.fileName)") }
            guard seen.insert(path).inserted else { throw mismatch("the archive holds \(path) twice") }
            guard header.hardlink == nil else { throw unsafe(path, "a hard link") }
            guard header.mode & 0o7000 == 0 else {
                throw unsafe(path, "setuid, setgid or sticky bits (mode \(octal(UInt16(header.mode))))")
            }
            guard let expected = manifest.entries[path] else { throw mismatch("\(path) is in the archive but not in its manifest") }

            switch header.fileType {
            case S_IFREG:
                try expect(expected.kind == .file, path, "a file, but the manifest says \(expected.kind)")
                try expect(UInt16(header.mode) == expected.permissions, path, "mode \(octal(UInt16(header.mode))), but the manifest says \(octal(expected.permissions))")
                try expect(header.size.map { $0 >= 0 && UInt64($0) == expected.size } ?? false, path, "\(header.size ?? -1) bytes in its header, but the manifest says \(expected.size.map(String.init) ?? "none")")
                let sink = try extractor?.createFile(path, permissions: expected.permissions)
                var hasher = SHA256()
                var count: UInt64 = 0
                do {
                    try reader.readData { chunk in
                        hasher.update(bufferPointer: chunk)
                        count += UInt64(chunk.count)
                        try sink?.write(chunk)
                    }
                    try expect(count == expected.size, path, "\(count) bytes, but the manifest says \(expected.size ?? 0)")
                    let digest = Array(hasher.finalize()).hex
                    try expect(digest == expected.sha256, path, "SHA-256 \(digest), but the manifest says \(expected.sha256 ?? "none")")
                    try sink?.finish()
                } catch {
                    sink?.abandon()
                    throw error
                }
            case S_IFDIR:
                try expect(expected.kind == .directory, path, "a directory, but the manifest says \(expected.kind)")
                try expect(UInt16(header.mode) == expected.permissions, path, "mode \(octal(UInt16(header.mode))), but the manifest says \(octal(expected.permissions))")
                try extractor?.createDirectory(path, permissions: expected.permissions)
            case S_IFLNK:
                guard let target = header.symlink, ArchivePath.symlinkStaysInside(link: path, target: target) else {
                    throw unsafe(path, "a symlink pointing outside the tree (to \(header.symlink ?? "nothing"))")
                }
                try expect(expected.kind == .symlink && expected.target == target, path, "a symlink to \(target), but the manifest says \(expected.target.map { "a symlink to \($0)" } ?? expected.kind.rawValue)")
                try extractor?.createSymlink(path, target: target)
            case S_IFCHR, S_IFBLK:
                throw unsafe(path, "a device node")
            case S_IFIFO:
                throw unsafe(path, "a FIFO")
            case S_IFSOCK:
                throw unsafe(path, "a socket")
            default:
                throw unsafe(path, "an entry of unknown type \(String(header.fileType, radix: 8))")
            }
        }
        let missing = Set(manifest.entries.keys).subtracting(seen)
        guard missing.isEmpty else {
            throw mismatch("the manifest lists \(missing.count) entries the archive does not hold, such as \(missing.sorted().first!)")
        }
        return manifest
    }

    private static func checkCompression(archive: String, byteRange: Range<UInt64>?) throws {
        let fd = try FileIO.open(archive, O_RDONLY)
        defer { close(fd) }
        let size = try FileIO.size(ofOpenFile: fd, path: archive)
        let range = byteRange ?? 0..<size
        guard range.upperBound <= size else {
            throw PayloadError(.truncated, "\(archive) is \(size) bytes, shorter than the payload it should hold (up to byte \(range.upperBound)); download it again")
        }
        try GzipIntegrity.verify(fd: fd, path: archive, range: range)
    }

    private static func readManifest(_ reader: ArchiveReader) throws -> (Manifest, Data) {
        guard let first = try reader.next(), first.path == Manifest.fileName || first.path == "./" + Manifest.fileName,
              first.fileType == S_IFREG
        else {
            throw PayloadError(.corruptArchive, "the payload archive does not start with its manifest (\(Manifest.fileName)); it was not made by warbler")
        }
        guard let size = first.size, size >= 0, size <= Int64(Manifest.maximumSize) else {
            throw PayloadError(.corruptArchive, "the payload's manifest is larger than \(Manifest.maximumSize) bytes")
        }
        var data = Data(capacity: Int(size))
        try reader.readData { data.append(contentsOf: $0) }
        guard data.count <= Manifest.maximumSize else {
            throw PayloadError(.corruptArchive, "the payload's manifest is larger than \(Manifest.maximumSize) bytes")
        }
        return (try Manifest.decode(data), data)
    }

    // MARK: - Packing

    private static func copyFile(_ item: SourceTree.Item, into writer: ArchiveWriter) throws {
        let fd = try FileIO.open(item.absolutePath, O_RDONLY | O_NOFOLLOW)
        defer { close(fd) }
        let size = item.entry.size ?? 0
        var hasher = SHA256()
        try FileIO.stream(fd: fd, path: item.absolutePath, range: 0..<size) { chunk in
            hasher.update(bufferPointer: chunk)
            try writer.writeData(chunk)
        }
        // The manifest was written from a first pass; a file edited since would make the archive lie.
        guard try FileIO.size(ofOpenFile: fd, path: item.absolutePath) == size, Array(hasher.finalize()).hex == item.entry.sha256 else {
            throw PayloadError(.unsupportedFile, "\(item.absolutePath) changed while it was being packed; pack again")
        }
    }

    private static func expect(_ condition: Bool, _ path: String, _ what: @autoclosure () -> String) throws {
        guard condition else { throw mismatch("\(path) is \(what())") }
    }

    private static func mismatch(_ what: String) -> PayloadError {
        PayloadError(.manifestMismatch, "the payload archive does not match its manifest: \(what); the file is corrupt or was modified, download it again")
    }

    private static func unsafe(_ path: String, _ what: String) -> PayloadError {
        PayloadError(.unsafeEntry, "refusing archive entry \"\(path.debugDescriptionWithoutQuotes)\": \(what)")
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}

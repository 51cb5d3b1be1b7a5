import Foundation
import Glibc

/// Writes checked entries under a fresh directory that only it writes to, so it knows every path's kind without
/// asking the filesystem: an entry is created only inside a directory the archive itself made, never through a
/// symlink, and never over anything (O_EXCL, O_NOFOLLOW).
final class Extractor {
    private let root: String
    private var kinds: [String: Manifest.Kind] = [:]
    /// In archive order (parents first), for the final modes.
    private var directories: [(path: String, permissions: UInt16)] = []

    init(root: String) {
        self.root = root
    }

    func createDirectory(_ path: String, permissions: UInt16) throws {
        let full = try place(path, as: .directory)
        // Owner-writable until `finish`, so a read-only directory in the archive can still be filled.
        guard mkdir(full, 0o700) == 0 else { throw PayloadError.io("cannot create directory", path: full) }
        directories.append((path, permissions))
    }

    func createFile(_ path: String, permissions: UInt16) throws -> FileSink {
        let full = try place(path, as: .file)
        let fd = try FileIO.open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        return FileSink(fd: fd, path: full, permissions: permissions)
    }

    func createSymlink(_ path: String, target: String) throws {
        let full = try place(path, as: .symlink)
        guard symlink(target, full) == 0 else { throw PayloadError.io("cannot create symlink", path: full) }
    }

    /// Gives directories their archived modes (deepest first) and makes everything durable before the rename.
    func finish() throws {
        for (path, permissions) in directories.reversed() {
            let full = root + "/" + path
            try FileIO.fsync(path: full)
            guard chmod(full, mode_t(permissions)) == 0 else { throw PayloadError.io("cannot set the mode of", path: full) }
        }
        guard chmod(root, 0o755) == 0 else { throw PayloadError.io("cannot set the mode of", path: root) }
        try FileIO.fsync(path: root)
    }

    private func place(_ path: String, as kind: Manifest.Kind) throws -> String {
        let parent = ArchivePath.parent(of: path)
        if !parent.isEmpty {
            switch kinds[parent] {
            case .directory?: break
            case .symlink?:
                throw PayloadError(.unsafeEntry, "refusing archive entry \"\(path.debugDescriptionWithoutQuotes)\": it would be written through the symlink \(parent)")
            default:
                throw PayloadError(.unsafeEntry, "refusing archive entry \"\(path.debugDescriptionWithoutQuotes)\": its directory \(parent) is not a directory earlier in the archive")
            }
        }
        kinds[path] = kind
        return root + "/" + path
    }
}

/// One file being extracted: it gets its mode and is synced only once its contents checked out.
final class FileSink {
    private let fd: Int32
    private let path: String
    private let permissions: UInt16
    private var open = true

    init(fd: Int32, path: String, permissions: UInt16) {
        self.fd = fd
        self.path = path
        self.permissions = permissions
    }

    deinit { if open { close(fd) } }

    func write(_ chunk: UnsafeRawBufferPointer) throws {
        try FileIO.writeAll(fd: fd, path: path, chunk)
    }

    func writeAll(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
        try finish()
    }

    func finish() throws {
        guard fchmod(fd, mode_t(permissions)) == 0 else { throw PayloadError.io("cannot set the mode of", path: path) }
        guard fsync(fd) == 0 else { throw PayloadError.io("cannot sync", path: path) }
        open = false
        guard close(fd) == 0 else { throw PayloadError.io("cannot close", path: path) }
    }

    /// Closes without finishing; the caller removes the whole temporary tree.
    func abandon() {
        if open { close(fd) }
        open = false
    }
}

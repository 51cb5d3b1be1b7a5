#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The one way Warbler replaces or creates a file: a temporary file beside the target created with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` and the final mode (never more open than asked, not even for an instant), written,
/// fsynced, renamed (or linked, for a file that must not exist yet) over the target, then the directory fsynced so
/// the rename itself survives a power cut. A crash leaves the old file or the new one, never a torn or empty one.
public enum AtomicFile {
    /// Replaces `path` with `data`.
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o600, owner: (uid: uid_t, gid: gid_t)? = nil) throws {
        try write(to: path, mode: mode, owner: owner) { fd, tmp in
            try data.withUnsafeBytes { try writeAll(fd, $0, path: tmp) }
        }
    }

    /// Replaces `path` with what `body` writes to the descriptor it is given (the temporary file's, and its path).
    public static func write(to path: String, mode: mode_t = 0o600, owner: (uid: uid_t, gid: gid_t)? = nil,
                             _ body: (Int32, String) throws -> Void) throws {
        try commit(path, mode: mode, owner: owner, body: body) { dir, tmpName, name in
            guard renameat(dir, tmpName, dir, name) == 0 else { throw AtomicFileError("cannot replace", path: path) }
        }
    }

    /// Replaces `name` inside the directory open as `dir` (see `RootFile.openDirectory`) with `data`; `path` only
    /// names it in errors. Nothing is resolved by path, so a directory swapped for a link meanwhile redirects nothing.
    public static func write(_ data: Data, named name: String, in dir: Int32, path: String, mode: mode_t = 0o600,
                             owner: (uid: uid_t, gid: gid_t)? = nil) throws {
        try commit(in: dir, dirPath: split(path).dir, name: name, mode: mode, owner: owner, body: { fd, tmp in
            try data.withUnsafeBytes { try writeAll(fd, $0, path: tmp) }
        }) { dir, tmpName, name in
            guard renameat(dir, tmpName, dir, name) == 0 else { throw AtomicFileError("cannot replace", path: path) }
        }
    }

    /// Creates `path`, which must not exist yet (not even as a dangling symlink), with `data`. Throws an error whose
    /// `exists` is true when something is already there.
    public static func create(_ data: Data, at path: String, mode: mode_t = 0o600, owner: (uid: uid_t, gid: gid_t)? = nil) throws {
        try commit(path, mode: mode, owner: owner, body: { fd, tmp in
            try data.withUnsafeBytes { try writeAll(fd, $0, path: tmp) }
        }) { dir, tmpName, name in
            // link(2) never replaces and never follows a symlink at the new name: the no-replace rename.
            guard linkat(dir, tmpName, dir, name, 0) == 0 else { throw AtomicFileError("cannot create", path: path) }
            unlinkat(dir, tmpName, 0)
        }
    }

    /// A new temporary file beside `path` (`O_EXCL|O_NOFOLLOW`, `mode` from creation on), for callers that write
    /// it themselves and then call `rename(_:to:)`.
    public static func createTemporary(besides path: String, mode: mode_t = 0o600) throws -> (fd: Int32, path: String) {
        let (dir, name) = split(path)
        for _ in 0..<16 {
            let tmp = "\(dir)/.\(name).\(String(UInt64.random(in: 0...UInt64.max), radix: 36)).tmp"
            let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 { return (fd, tmp) }
            if errno != EEXIST { throw AtomicFileError("cannot create a temporary file beside", path: path) }
        }
        throw AtomicFileError("cannot create a temporary file beside", path: path, code: EEXIST)
    }

    /// Renames `from` over `to` (same directory or filesystem) and fsyncs `to`'s directory.
    public static func rename(_ from: String, to: String) throws {
        guard renameat(AT_FDCWD, from, AT_FDCWD, to) == 0 else { throw AtomicFileError("cannot rename \(from) to", path: to) }
        try syncDirectory(split(to).dir)
    }

    /// fsyncs a directory, so that the names created, renamed or removed in it are durable.
    public static func syncDirectory(_ dir: String) throws {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFileError("cannot open the directory", path: dir) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw AtomicFileError("cannot sync the directory", path: dir) }
    }

    /// Writes all of `bytes`, retrying short writes and EINTR.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = systemWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 { if errno == EINTR { continue }; throw AtomicFileError("cannot write", path: path) }
            offset += n
        }
    }

    // MARK: -

    static func split(_ path: String) -> (dir: String, name: String) {
        let dir = (path as NSString).deletingLastPathComponent
        return (dir.isEmpty ? "." : dir, (path as NSString).lastPathComponent)
    }

    static func commit(_ path: String, mode: mode_t, owner: (uid: uid_t, gid: gid_t)?, body: (Int32, String) throws -> Void,
                       place: (_ dir: Int32, _ tmpName: String, _ name: String) throws -> Void) throws {
        let (dirPath, name) = split(path)
        let dir = open(dirPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw AtomicFileError("cannot open the directory of", path: path) }
        defer { close(dir) }
        try commit(in: dir, dirPath: dirPath, name: name, mode: mode, owner: owner, body: body, place: place)
    }

    static func commit(in dir: Int32, dirPath: String, name: String, mode: mode_t, owner: (uid: uid_t, gid: gid_t)?,
                       body: (Int32, String) throws -> Void,
                       place: (_ dir: Int32, _ tmpName: String, _ name: String) throws -> Void) throws {
        let path = "\(dirPath)/\(name)"
        var tmpName = ""
        var fd: Int32 = -1
        for _ in 0..<16 {
            tmpName = ".\(name).\(String(UInt64.random(in: 0...UInt64.max), radix: 36)).tmp"
            fd = openat(dir, tmpName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw AtomicFileError("cannot create a temporary file beside", path: path) }
        let tmp = "\(dirPath)/\(tmpName)"
        var placed = false
        defer {
            if fd >= 0 { close(fd) }
            if !placed { unlinkat(dir, tmpName, 0) }
        }
        try body(fd, tmp)
        // The umask may have narrowed the mode at creation: say exactly what was meant. Mode before owner: once the
        // file is given away, changing its mode needs CAP_FOWNER.
        guard fchmod(fd, mode) == 0 else { throw AtomicFileError("cannot set the mode of", path: tmp) }
        if let owner, fchown(fd, owner.uid, owner.gid) != 0 { throw AtomicFileError("cannot set the owner of", path: tmp) }
        guard fsync(fd) == 0 else { throw AtomicFileError("cannot sync", path: tmp) }
        guard close(fd) == 0 else { fd = -1; throw AtomicFileError("cannot write", path: tmp) }
        fd = -1
        try place(dir, tmpName, name)
        placed = true
        guard fsync(dir) == 0 else { throw AtomicFileError("cannot sync the directory", path: dirPath) }
    }
}

/// libc's write(2), which `AtomicFile.write` hides inside the enum.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, buffer, count) }

/// A file operation that failed: what, on which path, and the errno.
public struct AtomicFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public var operation: String
    public var path: String
    public var code: Int32

    public init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation; self.path = path; self.code = code
    }

    /// Something was already at the path (`create`).
    public var exists: Bool { code == EEXIST }

    public var description: String { code == 0 ? "\(path) \(operation)" : "\(operation) \(path): \(String(cString: strerror(code)))" }
}

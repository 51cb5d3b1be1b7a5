import Glibc
import Crypto
import DurableFiles
import Foundation

/// Small POSIX helpers: whole reads and writes, streaming hashes, and cleanup. Errors carry the path.
enum FileIO {
    static let chunkSize = 1 << 20

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw PayloadError.io("cannot open", path: path) }
        return fd
    }

    static func lstat(_ path: String) -> stat? {
        var st = stat()
        return Glibc.lstat(path, &st) == 0 ? st : nil
    }

    static func size(ofOpenFile fd: Int32, path: String) throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PayloadError.io("cannot stat", path: path) }
        return UInt64(st.st_size)
    }

    /// Reads exactly `count` bytes at `offset`, or throws `truncated` when the file ends first.
    static func read(fd: Int32, path: String, offset: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { buf in
                pread(fd, buf.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw PayloadError.io("cannot read", path: path)
            }
            if n == 0 { throw PayloadError(.truncated, "\(path) ends early: wanted \(count) bytes at offset \(offset)") }
            done += n
        }
        return bytes
    }

    static func writeAll(fd: Int32, path: String, _ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw PayloadError.io("cannot write", path: path)
            }
            done += n
        }
    }

    /// Streams `range` of the file through `body` in chunks, never holding more than one chunk.
    static func stream(fd: Int32, path: String, range: Range<UInt64>, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buffer.deallocate() }
        var offset = range.lowerBound
        while offset < range.upperBound {
            let want = Int(min(UInt64(chunkSize), range.upperBound - offset))
            let n = pread(fd, buffer.baseAddress!, want, off_t(offset))
            if n < 0 {
                if errno == EINTR { continue }
                throw PayloadError.io("cannot read", path: path)
            }
            if n == 0 {
                throw PayloadError(.truncated, "\(path) ends at byte \(offset), before the \(range.upperBound) bytes its trailer describes; download it again")
            }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            offset += UInt64(n)
        }
    }

    static func sha256(fd: Int32, path: String, range: Range<UInt64>) throws -> [UInt8] {
        var hasher = SHA256()
        try stream(fd: fd, path: path, range: range) { hasher.update(bufferPointer: $0) }
        return Array(hasher.finalize())
    }

    static func sha256(ofFile path: String) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        return try sha256(fd: fd, path: path, range: 0..<size(ofOpenFile: fd, path: path))
    }

    static func fsync(path: String) throws {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw PayloadError.io("cannot sync", path: path) }
    }

    /// Removes a tree we created, without following symlinks out of it. Best effort: used on failure paths.
    static func removeTree(_ path: String) {
        // Directories may have been left read-only by the archive's modes; open them up so their contents go too.
        if let st = lstat(path), st.st_mode & S_IFMT == S_IFDIR {
            chmod(path, 0o700)
            if let children = try? FileManager.default.contentsOfDirectory(atPath: path) {
                for child in children { removeTree(path + "/" + child) }
            }
            rmdir(path)
        } else {
            unlink(path)
        }
    }

    /// A new, empty directory beside `path` (same filesystem, so a rename moves it into place atomically).
    static func makeTemporaryDirectory(besides path: String) throws -> String {
        let parent = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        var template = Array("\(parent.isEmpty ? "." : parent)/.\(name).tmp-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw PayloadError.io("cannot create a temporary directory beside", path: path) }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// A new file beside `path` (`AtomicFile`: `O_EXCL|O_NOFOLLOW`, 0600 from creation), to be renamed over it once
    /// complete.
    static func temporaryFile(besides path: String) throws -> (fd: Int32, path: String) {
        do { return try AtomicFile.createTemporary(besides: path, mode: 0o600) } catch let error as AtomicFileError {
            throw PayloadError.io("cannot create a temporary file beside", path: path, errno: error.code)
        }
    }

    /// Renames `from` over `to` and syncs the directory (`AtomicFile.rename`), so the new name survives a power cut.
    static func rename(_ from: String, to: String) throws {
        do { try AtomicFile.rename(from, to: to) } catch let error as AtomicFileError {
            let code = error.code
            if code == ENOTEMPTY || code == EEXIST || code == EISDIR || code == ENOTDIR {
                throw PayloadError(.destinationExists, "\(to) already exists; remove it or choose another directory")
            }
            throw PayloadError.io("cannot rename \(from) to", path: to, errno: code)
        }
    }
}

extension Sequence<UInt8> {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}

import Crypto
import DurableFiles
import Foundation
import Glibc
import Installer

/// POSIX helpers for backups: tree walks with owners by name, streamed copies with hashes, atomic writes.
enum Files {
    struct Stat {
        var kind: BackupManifest.Entry.Kind?
        var mode: UInt16
        var uid: uid_t
        var gid: gid_t
        var size: UInt64
        /// Hard links to the file (a file root may act on has exactly one: another would be someone else's file).
        var links: UInt64 = 1
    }

    static func lstat(_ path: String) -> Stat? {
        var st = stat()
        guard Glibc.lstat(path, &st) == 0 else { return nil }
        let kind: BackupManifest.Entry.Kind?
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = nil
        }
        return Stat(kind: kind, mode: UInt16(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid, size: UInt64(st.st_size),
                    links: UInt64(st.st_nlink))
    }

    static func exists(_ path: String) -> Bool { lstat(path) != nil }

    static func userName(_ uid: uid_t) -> String {
        guard let pw = getpwuid(uid) else { return String(uid) }
        return String(cString: pw.pointee.pw_name)
    }

    static func groupName(_ gid: gid_t) -> String {
        guard let gr = getgrgid(gid) else { return String(gid) }
        return String(cString: gr.pointee.gr_name)
    }

    /// Every path under `root` (relative, sorted, parents before children), without following symlinks.
    static func walk(_ root: String) throws -> [String] {
        var out: [String] = []
        func visit(_ relative: String) throws {
            let dir = relative.isEmpty ? root : root + "/" + relative
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
                throw BackupError(.io, "cannot list \(dir): \(error.localizedDescription); run the backup as root")
            }
            for name in names.sorted() {
                let child = relative.isEmpty ? name : relative + "/" + name
                out.append(child)
                if lstat(root + "/" + child)?.kind == .directory { try visit(child) }
            }
        }
        try visit("")
        return out
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0) throws -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw BackupError.io("cannot open", path: path) }
        return fd
    }

    /// Streams exactly `size` bytes of `path` through `body` and returns their SHA-256; a file that changed size
    /// meanwhile is an error (a torn copy must never look like a good one).
    /// `beneath`: the tree `path` was found in and its path inside it. Then the file is opened from the tree's root
    /// one component at a time, following no link (`openBeneath`): the service user owns the attachments tree and
    /// could swap a directory on the way for a link after the walk saw it.
    static func stream(_ path: String, size: UInt64, beneath: (root: String, relative: String)? = nil,
                       _ body: (UnsafeRawBufferPointer) throws -> Void) throws -> String {
        // Never through a link: one swapped in since the walk's lstat would make a root-run backup read its target.
        let fd = try beneath.map { try openBeneath($0.root, $0.relative) } ?? open(path, O_RDONLY | O_NOFOLLOW)
        defer { close(fd) }
        var hasher = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done: UInt64 = 0
        while done < size {
            let want = Int(min(UInt64(buffer.count), size - done))
            let n = Glibc.read(fd, buffer.baseAddress!, want)
            if n < 0 {
                if errno == EINTR { continue }
                throw BackupError.io("cannot read", path: path)
            }
            if n == 0 { throw BackupError(.io, "\(path) shrank while it was being backed up; run the backup again") }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
            hasher.update(bufferPointer: chunk)
            try body(chunk)
            done += UInt64(n)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, UInt64(st.st_size) == size else {
            throw BackupError(.io, "\(path) changed size while it was being backed up; run the backup again")
        }
        return hasher.finalize().hex
    }

    /// The whole of a (small) file, opened as `stream` opens it.
    static func read(_ path: String, beneath: (root: String, relative: String)?) throws -> Data {
        let fd = try beneath.map { try openBeneath($0.root, $0.relative) } ?? open(path, O_RDONLY | O_NOFOLLOW)
        defer { close(fd) }
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw BackupError.io("cannot read", path: path) }
            if n == 0 { return out }
            out.append(contentsOf: buffer[0..<n])
        }
    }

    /// Opens the file `relative` inside the directory `root` for reading, every component without following a link.
    static func openBeneath(_ root: String, _ relative: String) throws -> Int32 {
        var dir = try openBackupDirectoryForReading(root)
        defer { close(dir) }
        let parts = relative.split(separator: "/").map(String.init)
        for (i, part) in parts.enumerated() {
            guard part != "..", part != "." else { throw BackupError(.io, "\(root)/\(relative): refusing a path with \(part)") }
            let last = i == parts.count - 1
            let fd = openat(dir, part, (last ? O_RDONLY | O_NONBLOCK : O_RDONLY | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else {
                throw BackupError.io("cannot open (following no link; was something swapped for a link while the backup ran?)", path: root + "/" + relative)
            }
            if last {
                var st = stat()
                guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                    close(fd)
                    throw BackupError(.io, "\(root)/\(relative) is no longer a regular file; run the backup again")
                }
                return fd
            }
            close(dir)
            dir = fd
        }
        throw BackupError(.io, "\(root)/\(relative): no file named")
    }

    /// A tree a backup reads (/etc/warbler, the attachments), opened from `/` without following a link anyone but
    /// root could have made; any owner (the attachments are the service user's, /etc/warbler root's).
    private static func openBackupDirectoryForReading(_ path: String) throws -> Int32 {
        do { return try RootFile.openDirectory(path, owners: nil) } catch let e as AtomicFileError {
            throw BackupError(.io, "cannot read \(path): \(e)")
        }
    }

    static func writeAll(fd: Int32, path: String, _ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw BackupError.io("cannot write", path: path)
            }
            done += n
        }
    }

    static func fsync(_ path: String) throws {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw BackupError.io("cannot sync", path: path) }
    }

    static func parent(_ path: String) -> String {
        let p = (path as NSString).deletingLastPathComponent
        return p.isEmpty ? "." : p
    }

    /// Replaces `path` with `data`: temporary file beside it, fsync, rename, fsync of the directory.
    static func writeAtomically(_ path: String, _ data: Data, mode: mode_t = 0o644) throws {
        do { try AtomicFile.write(data, to: path, mode: mode) } catch let error as AtomicFileError {
            throw BackupError.io(error.operation, path: error.path, errno: error.code)
        }
    }

    static func temporaryFile(besides path: String) throws -> (fd: Int32, path: String) {
        var template = Array("\(parent(path))/.\((path as NSString).lastPathComponent).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw BackupError.io("cannot create a temporary file beside", path: path) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return (fd, template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
    }

    /// A new, empty directory (0700) named after `path` with `tag`, beside it: same filesystem, so renames are atomic.
    static func temporaryDirectory(besides path: String, tag: String) throws -> String {
        var template = Array("\(parent(path))/.\((path as NSString).lastPathComponent).\(tag)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw BackupError.io("cannot create a temporary directory beside", path: path)
        }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw BackupError.io("cannot rename \(from) to", path: to) }
    }

    /// Who may own what a backup or restore reads or acts in: root, this process's user, the service user.
    static var trustedOwners: Set<uid_t> {
        var owners: Set<uid_t> = [0, geteuid()]
        if let pw = getpwnam(Blueprint.user) { owners.insert(pw.pointee.pw_uid) }
        return owners
    }

    /// The backup directory (or an archive's), opened for acting through the descriptor only: no link anywhere on
    /// the path, owned by root, this process's user or the service user, writable by no one else. Root writes and
    /// deletes in a directory the service user can write; by path, a link or a swap there would steer it elsewhere.
    static func openBackupDirectory(_ path: String) throws -> Int32 {
        do { return try RootFile.openDirectory(path, owners: trustedOwners) } catch let e as AtomicFileError {
            throw BackupError(.io, "refusing the backup directory: \(e); nothing was written or deleted there")
        }
    }

    /// A path that resolves through the open descriptor `fd` (`/proc/PID/fd/N`), for libraries and child processes
    /// that take only paths: whatever is renamed or linked meanwhile, it reaches what the descriptor holds.
    static func descriptorPath(_ fd: Int32) -> String { "/proc/\(getpid())/fd/\(fd)" }

    /// The path the directory open at `fd` has now, read back from the kernel: no link in it.
    static func realPath(of fd: Int32, shown: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(descriptorPath(fd), &buffer, buffer.count - 1)
        guard n > 0 else { throw BackupError.io("cannot read the path of", path: shown) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `path`, a directory, with no link in it: walked as `RootFile.openDirectory` walks (a link followed only where
    /// only root could have made it: /var on another disk), then read back from the descriptor. For SQLite's
    /// no-link open (`SQLITE_OPEN_NOFOLLOW`), which refuses every link, root's included.
    static func linkFreeDirectory(_ path: String) throws -> String {
        let fd: Int32
        do { fd = try RootFile.openDirectory(path, owners: nil) } catch {
            throw BackupError(.io, "\(path): \(error)")
        }
        defer { close(fd) }
        return try realPath(of: fd, shown: path)
    }

    /// The names in the directory open as `dir` (not `.` or `..`); `path` only names it in errors.
    static func names(in dir: Int32, path: String) throws -> [String] {
        let copy = dup(dir)
        guard copy >= 0, let stream = fdopendir(copy) else {
            if copy >= 0 { close(copy) }
            throw BackupError.io("cannot list the backup directory", path: path)
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Creates `path` and missing parents with `mode`.
    static func makeDirectories(_ path: String, mode: mode_t = 0o700) throws {
        if lstat(path)?.kind == .directory { return }
        let up = parent(path)
        if up != path && up != "/" && up != "." { try makeDirectories(up, mode: 0o755) }
        guard mkdir(path, mode) == 0 || errno == EEXIST else { throw BackupError.io("cannot create the directory", path: path) }
    }

    /// Removes a tree without following symlinks out of it. Best effort: used for cleanup.
    static func removeTree(_ path: String) {
        if lstat(path)?.kind == .directory {
            if let children = try? FileManager.default.contentsOfDirectory(atPath: path) {
                for child in children { removeTree(path + "/" + child) }
            }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

extension Sequence<UInt8> {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}

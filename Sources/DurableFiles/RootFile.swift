import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reading a file root acts on: opened without following a link, and refused unless it is a regular file owned by
/// root that no one else may write (a file a service user could write or swap would let it steer root).
public enum RootFile {
    /// `owners`: who may own it (default root alone); a file the service user keeps, read by root, allows that user
    /// too: it is then still opened without following a link, so it cannot point root at another file.
    public static func read(_ path: String, maxBytes: Int = 1 << 20, owners: Set<uid_t> = [0]) throws -> Data {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw AtomicFileError("cannot open (not following links)", path: path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw AtomicFileError("cannot stat", path: path) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw AtomicFileError("is not a regular file", path: path, code: 0) }
        guard owners.contains(st.st_uid), st.st_mode & 0o022 == 0 else {
            if owners == [0] {
                throw AtomicFileError("must be root's and writable by no one else (run `warbler install` again to fix it)", path: path, code: 0)
            }
            let allowed = owners.sorted().map(String.init).joined(separator: " or ")
            throw AtomicFileError("is owned by uid \(st.st_uid) with mode \(String(st.st_mode & 0o7777, radix: 8)); it must be owned by uid \(allowed) and writable by no one else (chown/chmod it)", path: path, code: 0)
        }
        guard Int(st.st_size) <= maxBytes else { throw AtomicFileError("is larger than \(maxBytes) bytes", path: path, code: 0) }
        var out = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw AtomicFileError("cannot read", path: path) }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
            if out.count > maxBytes { throw AtomicFileError("is larger than \(maxBytes) bytes", path: path, code: 0) }
        }
        return out
    }

    public static func readText(_ path: String, owners: Set<uid_t> = [0]) throws -> String {
        String(decoding: try read(path, owners: owners), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension RootFile {
    /// Opens the directory at `path` for a process that then acts only through the descriptor (`openat`,
    /// `unlinkat`, `AtomicFile.write(_:named:in:)`), so nothing done in it can be redirected by a link or a swap.
    /// The path is walked one component at a time with `O_NOFOLLOW`. A link is followed only where only root could
    /// have put it (root's link, in a directory only root can write: /var on another disk); a link anyone else could
    /// have made or swapped in is refused. The directory must be owned by one of `owners` and writable by no one
    /// else. The caller closes it.
    /// `owners` nil: any owner, any mode (a tree only read).
    public static func openDirectory(_ path: String, owners: Set<uid_t>?) throws -> Int32 {
        guard path.hasPrefix("/") else { throw AtomicFileError("is not an absolute path", path: path, code: 0) }
        var fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFileError("cannot open", path: "/") }
        var pending = path.split(separator: "/").map(String.init)
        var walked = ""
        var links = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component.isEmpty || component == "." { continue }
            walked += "/" + component
            let next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next >= 0 { close(fd); fd = next; continue }
            let code = errno
            var link = stat(), parent = stat()
            guard code == ELOOP || code == ENOTDIR, fstatat(fd, component, &link, AT_SYMLINK_NOFOLLOW) == 0,
                  link.st_mode & S_IFMT == S_IFLNK else {
                close(fd)
                throw AtomicFileError(code == ENOTDIR ? "is not a directory" : "cannot open (not following links)", path: walked, code: code == ENOTDIR ? 0 : code)
            }
            guard link.st_uid == 0, fstat(fd, &parent) == 0, parent.st_uid == 0, parent.st_mode & 0o022 == 0, links < 16 else {
                close(fd)
                throw AtomicFileError("is a link someone other than root could have made; root follows no such link (make it a real directory, or a link of root's in a directory only root can write)", path: walked, code: 0)
            }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlinkat(fd, component, &buffer, buffer.count - 1)
            guard n > 0 else { let e = AtomicFileError("cannot read the link", path: walked); close(fd); throw e }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            links += 1
            if target.hasPrefix("/") {
                close(fd)
                fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                guard fd >= 0 else { throw AtomicFileError("cannot open", path: "/") }
            }
            pending = target.split(separator: "/").map(String.init) + pending
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = AtomicFileError("cannot stat", path: path); close(fd); throw e }
        guard st.st_mode & S_IFMT == S_IFDIR else { close(fd); throw AtomicFileError("is not a directory", path: path, code: 0) }
        guard let owners else { return fd }
        guard owners.contains(st.st_uid), st.st_mode & 0o022 == 0 else {
            close(fd)
            let allowed = owners.sorted().map(String.init).joined(separator: " or ")
            throw AtomicFileError("is owned by uid \(st.st_uid) with mode \(String(st.st_mode & 0o7777, radix: 8)); it must be owned by uid \(allowed) and writable by no one else (chown/chmod it, or run `warbler install` again)", path: path, code: 0)
        }
        return fd
    }
}

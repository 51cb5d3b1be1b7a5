import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reading a file root acts on: opened without following a link, and refused unless it is a regular file owned by
/// root that no one else may write (a file a service user could write or swap would let it steer root).
public enum RootFile {
    public static func read(_ path: String, maxBytes: Int = 1 << 20) throws -> Data {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw AtomicFileError("cannot open (not following links)", path: path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw AtomicFileError("cannot stat", path: path) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw AtomicFileError("is not a regular file", path: path, code: 0) }
        guard st.st_uid == 0, st.st_mode & 0o022 == 0 else {
            throw AtomicFileError("must be root's and writable by no one else (run `warbler install` again to fix it)", path: path, code: 0)
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

    public static func readText(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

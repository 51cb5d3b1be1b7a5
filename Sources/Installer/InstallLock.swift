import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One install at a time per target: an exclusive `flock` held for the run.
public final class InstallLock: Sendable {
    private let fd: Int32
    public let path: String

    /// The lock for a target: /run/lock for the host, a file in /tmp named after the staging root otherwise.
    public static func path(for layout: Layout) -> String {
        guard layout.isStaging else { return "/run/lock/warbler-install.lock" }
        let hash = Digest.hex(Digest.sha256(Data(layout.root.utf8))).prefix(16)
        return "/tmp/warbler-install-\(hash).lock"
    }

    /// Takes the lock or fails at once, saying who to wait for.
    public init(path: String) throws {
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SystemError("cannot open the install lock \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw SystemError("another `warbler install` is running on this target (it holds \(path)); wait for it to finish")
        }
        self.fd = fd
        self.path = path
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}

import Foundation
import Glibc

/// A directory a restore made (mkdtemp, 0700) beside where its contents go, held open. Everything in it is created
/// relative to directory descriptors the restore itself made (`mkdirat`/`openat` with `O_NOFOLLOW`, `O_EXCL` for
/// files), so nothing is ever written through a link, even when the stage sits in a directory the service user
/// owns and could rename things in. Modes and owners are set on descriptors, never by path.
final class Stage {
    /// The stage's path, as made; valid only while `isInPlace`.
    let path: String
    private var directories: [String: Int32] = [:]
    private let device: dev_t
    private let inode: ino_t

    init(besides live: String, tag: String) throws {
        path = try Files.temporaryDirectory(besides: live, tag: tag)
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0, st.st_uid == geteuid() else {
            if fd >= 0 { close(fd) }
            throw BackupError.io("cannot open the directory this process made", path: path)
        }
        device = st.st_dev
        inode = st.st_ino
        directories[""] = fd
    }

    /// A path that reaches the stage through its descriptor (`/proc/PID/fd/N`, valid in children too), for tools that
    /// take only a path (SQLite's `VACUUM INTO`, pg_dump): the stage renamed and a link put in its place changes
    /// nothing it resolves to.
    var descriptorPath: String { Files.descriptorPath(directories[""]!) }

    /// The stage's path as it is now, with no link in it (for SQLite's no-link open).
    func realPath() throws -> String { try Files.realPath(of: directories[""]!, shown: path) }

    deinit {
        for fd in directories.values { close(fd) }
    }

    /// Whether `path` still names the directory this stage made (nobody renamed it away and put something else there).
    var isInPlace: Bool {
        var st = stat()
        return Glibc.lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_dev == device && st.st_ino == inode
    }

    func requireInPlace() throws {
        guard isInPlace else {
            throw BackupError(.io, "\(path), a directory this restore made, was replaced while the restore ran; nothing was changed. Check who else writes to \(Files.parent(path))")
        }
    }

    private func split(_ relative: String) throws -> (parent: Int32, name: String) {
        let parentPath = (relative as NSString).deletingLastPathComponent
        let name = (relative as NSString).lastPathComponent
        guard let parent = directories[parentPath], !name.isEmpty, name != ".", name != ".." else {
            throw BackupError(.invalidArchive, "\(relative) comes before its directory in the backup (or under something that is not a directory the restore made); refusing it")
        }
        return (parent, name)
    }

    func contains(_ relative: String) -> Bool {
        guard let (parent, name) = try? split(relative) else { return false }
        var st = stat()
        return fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// A new directory (0700) inside one this stage made.
    func makeDirectory(_ relative: String) throws {
        if relative.isEmpty { return }
        let (parent, name) = try split(relative)
        guard mkdirat(parent, name, 0o700) == 0 else { throw BackupError.io("cannot create", path: path + "/" + relative) }
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw BackupError.io("cannot open", path: path + "/" + relative) }
        directories[relative] = fd
    }

    /// A new file (0600, `O_EXCL`) inside a directory this stage made; the caller closes it.
    func createFile(_ relative: String) throws -> Int32 {
        let (parent, name) = try split(relative)
        let fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BackupError.io("cannot create", path: path + "/" + relative) }
        return fd
    }

    func remove(_ relative: String) throws {
        let (parent, name) = try split(relative)
        guard unlinkat(parent, name, 0) == 0 || errno == ENOENT else { throw BackupError.io("cannot remove", path: path + "/" + relative) }
    }

    /// Sets mode and owner on a file or directory this stage made, through a descriptor.
    func setAttributes(_ relative: String, mode: mode_t, owner: (uid: uid_t, gid: gid_t)?) throws {
        let fd: Int32
        var opened = false
        if let held = directories[relative] {
            fd = held
        } else {
            let (parent, name) = try split(relative)
            fd = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw BackupError.io("cannot open", path: path + "/" + relative) }
            opened = true
        }
        defer { if opened { close(fd) } }
        if let owner {
            guard fchown(fd, owner.uid, owner.gid) == 0 else { throw BackupError.io("cannot set the owner of", path: path + "/" + relative) }
        }
        guard fchmod(fd, mode) == 0 else { throw BackupError.io("cannot set the mode of", path: path + "/" + relative) }
    }

    /// Removes everything in the stage, through descriptors (a link put in it is removed, never followed), then
    /// the stage itself if it is still the one made. Best effort: used for cleanup.
    func destroy() {
        guard let root = directories[""] else { return }
        Self.removeContents(of: root)
        if isInPlace { rmdir(path) }
    }

    private static func removeContents(of dirfd: Int32) {
        let copy = dup(dirfd)
        guard copy >= 0, let dir = fdopendir(copy) else { if copy >= 0 { close(copy) }; return }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names where unlinkat(dirfd, name, 0) != 0 && (errno == EISDIR || errno == EPERM) {
            let sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard sub >= 0 else { continue }
            removeContents(of: sub)
            close(sub)
            unlinkat(dirfd, name, AT_REMOVEDIR)
        }
    }
}

import Crypto
import DurableFiles
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The host, through libc: atomic writes (`AtomicFile`: temporary file, fsync, rename, fsync of the directory), `useradd`,
/// and systemctl (or the built-in supervisor) for services.
public final class LocalSystem: System {
    private let initSystem = Mutex<InitSystem>(.none)

    public init() {}

    public func selectInit(_ initSystem: InitSystem) { self.initSystem.withLock { $0 = initSystem } }

    public func info(_ path: String) throws -> FileInfo? {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw SystemError("cannot inspect \(path): \(Self.errorText())")
        }
        let kind: FileInfo.Kind = switch st.st_mode & S_IFMT {
        case S_IFREG: .file
        case S_IFDIR: .directory
        case S_IFLNK: .symlink
        default: .other
        }
        var target: String?
        if kind == .symlink {
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(path, &buf, buf.count - 1)
            if n >= 0 { target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
        let user = getpwuid(st.st_uid).map { String(cString: $0.pointee.pw_name) }
        let group = getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) }
        let owner = user.flatMap { u in group.map { Owner(u, $0) } }
        return FileInfo(kind: kind, mode: UInt16(st.st_mode & 0o7777), owner: owner, size: UInt64(st.st_size), linkTarget: target)
    }

    public func read(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError("cannot read \(path): \(Self.errorText())")
        }
        return data
    }

    public func sha256(_ path: String) throws -> Data {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw SystemError("cannot read \(path): \(Self.errorText())") }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return Data(hasher.finalize())
    }

    public func write(_ path: String, _ data: Data, mode: UInt16, owner: Owner?) throws {
        try atomically(path, mode: mode, owner: owner) { fd in
            try data.withUnsafeBytes { try Self.writeAll(fd, $0, path: path) }
        }
    }

    public func copy(from source: String, to path: String, mode: UInt16, owner: Owner?) throws {
        let src = open(source, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { throw SystemError("cannot read \(source): \(Self.errorText())") }
        defer { close(src) }
        try atomically(path, mode: mode, owner: owner) { fd in
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buf.withUnsafeMutableBytes { Glibc.read(src, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw SystemError("cannot read \(source): \(Self.errorText())") }
                if n == 0 { break }
                try buf.withUnsafeBytes { try Self.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: path) }
            }
        }
    }

    public func makeDirectory(_ path: String, mode: UInt16, owner: Owner?) throws {
        var prefix = ""
        let parts = path.split(separator: "/")
        for (i, part) in parts.enumerated() {
            prefix += "/" + part
            let last = i == parts.count - 1
            if mkdir(prefix, last ? mode_t(mode) : 0o755) == 0 {
                // mkdir is subject to the umask; say exactly what was meant.
                chmod(prefix, last ? mode_t(mode) : 0o755)
            } else if errno != EEXIST {
                throw SystemError("cannot create directory \(prefix): \(Self.errorText())")
            }
        }
        try setAttributes(path, mode: mode, owner: owner)
    }

    public func setAttributes(_ path: String, mode: UInt16, owner: Owner?) throws {
        if let owner {
            let (uid, gid) = try Self.ids(owner)
            guard lchown(path, uid, gid) == 0 else { throw SystemError("cannot give \(path) to \(owner): \(Self.errorText())") }
        }
        guard chmod(path, mode_t(mode)) == 0 else { throw SystemError("cannot chmod \(path): \(Self.errorText())") }
    }

    public func symlink(_ path: String, to target: String) throws {
        let tmp = Self.temporaryName(for: path)
        unlink(tmp)
        guard Glibc.symlink(target, tmp) == 0 else { throw SystemError("cannot create link \(path): \(Self.errorText())") }
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw SystemError("cannot replace \(path): \(Self.errorText())")
        }
        Self.syncDirectory(of: path)
    }

    public func remove(_ path: String) throws {
        guard let info = try info(path) else { return }
        let rc = info.kind == .directory ? rmdir(path) : unlink(path)
        guard rc == 0 || errno == ENOENT else { throw SystemError("cannot remove \(path): \(Self.errorText())") }
    }

    public func removeTree(_ path: String) throws {
        guard try info(path) != nil else { return }
        do { try FileManager.default.removeItem(atPath: path) } catch {
            throw SystemError("cannot remove \(path): \(error.localizedDescription)")
        }
    }

    public func userExists(_ name: String) -> Bool { getpwnam(name) != nil }

    public func createSystemUser(_ name: String, home: String) throws {
        let result = try run(["useradd", "--system", "--user-group", "--home-dir", home, "--no-create-home",
                              "--shell", "/usr/sbin/nologin", "--comment", "Warbler", name], as: nil)
        guard result.status == 0 else { throw SystemError("useradd \(name) failed: \(result.output)") }
    }

    public func serviceStatus(_ unit: String) throws -> ServiceStatus {
        switch initSystem.withLock({ $0 }) {
        case .systemd:
            let enabled = try run(["systemctl", "is-enabled", unit], as: nil).output.trimmingCharacters(in: .whitespacesAndNewlines)
            let active = try run(["systemctl", "is-active", unit], as: nil).output.trimmingCharacters(in: .whitespacesAndNewlines)
            return ServiceStatus(enabled: enabled == "enabled", active: active == "active" || active == "reloading")
        case .builtin:
            return try BuiltinServices(system: self).status(unit)
        case .none:
            return ServiceStatus(enabled: false, active: false)
        }
    }

    public func perform(_ action: ServiceAction) throws {
        switch initSystem.withLock({ $0 }) {
        case .systemd:
            let argv: [String] = switch action {
            case .daemonReload: ["systemctl", "daemon-reload"]
            case .enable(let u): ["systemctl", "enable", "--quiet", u]
            case .disable(let u): ["systemctl", "disable", "--quiet", u]
            // Type=notify: start and restart return once the server said READY=1, or fail.
            case .start(let u): ["systemctl", "start", u]
            case .restart(let u): ["systemctl", "restart", u]
            case .stop(let u): ["systemctl", "stop", u]
            }
            // A unit restarted several times within systemd's start limit (5 in 10 s: a switch of release and the
            // return from it restart each component, and units bound to etcd or HAProxy restart with them) is
            // refused with "start request repeated too quickly"; an install's own start or restart clears the
            // counter first, as systemctl's message advises. Nothing to clear is no error.
            switch action {
            case .start(let u), .restart(let u): _ = try? run(["systemctl", "reset-failed", u], as: nil)
            default: break
            }
            let result = try run(argv, as: nil)
            guard result.status == 0 else {
                let hint = action.unit.map { "; see: journalctl -u \($0) -n 50" } ?? ""
                throw SystemError("systemctl \(argv.dropFirst().joined(separator: " ")) failed: \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))\(hint)")
            }
        case .builtin:
            try BuiltinServices(system: self).perform(action)
        case .none:
            throw SystemError("no init system manages services here (--init none): cannot \(action)")
        }
    }

    public func run(_ argv: [String], as user: String?) throws -> CommandResult {
        try run(argv, as: user, stdin: nil)
    }

    public func run(_ argv: [String], as user: String?, input: Data) throws -> CommandResult {
        try run(argv, as: user, stdin: input)
    }

    private func run(_ argv: [String], as user: String?, stdin: Data?) throws -> CommandResult {
        var full = argv
        if let user {
            // setpriv (util-linux, on every Debian) drops to the service user without a login session.
            full = ["setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "--"] + argv
        }
        // posix_spawn, not Foundation's Process (its run() can crash the process: DurableFiles/Subprocess.swift);
        // a bare name is found on the PATH given here.
        let r: Subprocess.Result
        do {
            r = try Subprocess.run(full, environment: ["PATH": Subprocess.defaultPath, "LANG": "C.UTF-8"], input: stdin)
        } catch { throw SystemError("cannot run \(full[0]): \(error)") }
        return CommandResult(status: r.status, output: r.text)
    }

    public func now() -> Date { Date() }

    // MARK: helpers

    private func atomically(_ path: String, mode: UInt16, owner: Owner?, body: (Int32) throws -> Void) throws {
        let ids = try owner.map { try Self.ids($0) }
        do {
            try AtomicFile.write(to: path, mode: mode_t(mode), owner: ids.map { (uid: $0.0, gid: $0.1) }) { fd, _ in try body(fd) }
        } catch let error as AtomicFileError {
            throw SystemError("cannot write \(path): \(error)")
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        do { try AtomicFile.writeAll(fd, bytes, path: path) } catch { throw SystemError("\(error)") }
    }

    static func temporaryName(for path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        return "\(dir)/.\((path as NSString).lastPathComponent).warbler-new"
    }

    static func syncDirectory(of path: String) {
        let fd = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    static func ids(_ owner: Owner) throws -> (uid_t, gid_t) {
        guard let pw = getpwnam(owner.user) else { throw SystemError("no user \(owner.user) on this host") }
        guard let gr = getgrnam(owner.group) else { throw SystemError("no group \(owner.group) on this host") }
        return (pw.pointee.pw_uid, gr.pointee.gr_gid)
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}

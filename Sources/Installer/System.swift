import Foundation

/// A file's owner by name (`warbler:warbler`), so plans read the same on every host.
public struct Owner: Sendable, Hashable, Codable, CustomStringConvertible {
    public var user: String
    public var group: String
    public init(_ user: String, _ group: String) { self.user = user; self.group = group }
    public static let root = Owner("root", "root")
    public var description: String { "\(user):\(group)" }
}

/// What `lstat` says about a path.
public struct FileInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case file, directory, symlink, other }
    public var kind: Kind
    /// Permission bits (07777).
    public var mode: UInt16
    /// nil when the uid or gid has no name on this host.
    public var owner: Owner?
    public var size: UInt64
    /// For symlinks: where it points, as stored.
    public var linkTarget: String?

    public init(kind: Kind, mode: UInt16, owner: Owner?, size: UInt64 = 0, linkTarget: String? = nil) {
        self.kind = kind; self.mode = mode; self.owner = owner; self.size = size; self.linkTarget = linkTarget
    }
}

/// Something the init system is asked to do with a unit.
public enum ServiceAction: Sendable, Hashable, Codable, CustomStringConvertible {
    case daemonReload
    case enable(String)
    case disable(String)
    case start(String)
    case restart(String)
    case stop(String)

    public var unit: String? {
        switch self {
        case .daemonReload: nil
        case .enable(let u), .disable(let u), .start(let u), .restart(let u), .stop(let u): u
        }
    }

    public var description: String {
        switch self {
        case .daemonReload: "daemon-reload"
        case .enable(let u): "enable \(u)"
        case .disable(let u): "disable \(u)"
        case .start(let u): "start \(u)"
        case .restart(let u): "restart \(u)"
        case .stop(let u): "stop \(u)"
        }
    }
}

/// Whether a unit is enabled at boot and running now.
public struct ServiceStatus: Sendable, Equatable {
    public var enabled: Bool
    public var active: Bool
    public init(enabled: Bool, active: Bool) { self.enabled = enabled; self.active = active }
}

/// What a command printed and how it ended.
public struct CommandResult: Sendable, Equatable {
    public var status: Int32
    public var output: String
    public init(status: Int32, output: String) { self.status = status; self.output = output }
}

/// Every side effect the installer has, so that a plan can be computed and applied against a recording fake in
/// tests and against the host (`LocalSystem`) for real. Paths are absolute paths as this process sees them (a
/// staging root is already applied by `Layout`).
public protocol System: Sendable {
    /// `lstat`: nil when nothing is there.
    func info(_ path: String) throws -> FileInfo?
    func read(_ path: String) throws -> Data
    /// SHA-256 of a file's bytes (large files: the release binary).
    func sha256(_ path: String) throws -> Data
    /// Replaces `path` atomically (temporary file, fsync, rename) with `data`, `mode` and, when given, `owner`.
    func write(_ path: String, _ data: Data, mode: UInt16, owner: Owner?) throws
    /// Copies `source` to `path` atomically, like `write`.
    func copy(from source: String, to path: String, mode: UInt16, owner: Owner?) throws
    /// Creates `path` and any missing parents (parents get 0755 and the current user).
    func makeDirectory(_ path: String, mode: UInt16, owner: Owner?) throws
    func setAttributes(_ path: String, mode: UInt16, owner: Owner?) throws
    /// Points `path` at `target`, replacing an existing link atomically.
    func symlink(_ path: String, to target: String) throws
    /// Removes a file, a link or an empty directory; nothing there is not an error.
    func remove(_ path: String) throws
    /// Removes `path` and everything under it (a link itself, not what it points to); nothing there is not an error.
    func removeTree(_ path: String) throws
    /// Which init system service actions go to (decided by the installer after its checks).
    func selectInit(_ initSystem: InitSystem)
    func userExists(_ name: String) -> Bool
    /// A system account with its own group, no login shell, `home` as home directory.
    func createSystemUser(_ name: String, home: String) throws
    func serviceStatus(_ unit: String) throws -> ServiceStatus
    func perform(_ action: ServiceAction) throws
    /// Runs a program, as `user` when given, and waits for it.
    func run(_ argv: [String], as user: String?) throws -> CommandResult
    /// Runs a program with `input` (a few KiB at most) as its standard input (etcdctl txn reads its operations
    /// there).
    func run(_ argv: [String], as user: String?, input: Data) throws -> CommandResult
    func now() -> Date
}

extension System {
    /// Systems that never feed a program its input (the installer's fakes) refuse it.
    public func run(_ argv: [String], as user: String?, input: Data) throws -> CommandResult {
        throw SystemError("cannot run \(argv.first ?? "?") with input on this system")
    }
}

/// A side effect that failed, with what to do about it.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

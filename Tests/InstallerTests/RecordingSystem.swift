import Crypto
import Foundation
import Installer
import Synchronization

/// An in-memory host for the installer: a filesystem of nodes with modes and owners, users, and units that
/// behave like systemd's when systemd is the selected init (a start needs the unit file, and a unit file changed
/// since the last daemon-reload refuses to start). Every side effect is recorded; any can be made to fail.
final class RecordingSystem: System {
    enum Node: Equatable {
        case file(Data, mode: UInt16, owner: Owner?)
        case directory(mode: UInt16, owner: Owner?)
        case link(String)
    }

    /// A side effect, as recorded.
    enum Operation: Equatable, CustomStringConvertible {
        case write(String)
        case copy(String)
        case makeDirectory(String)
        case setAttributes(String)
        case link(String)
        case remove(String)
        case removeTree(String)
        case createUser(String)
        case service(ServiceAction)
        case run([String], user: String?)

        var description: String {
            switch self {
            case .write(let p): "write \(p)"
            case .copy(let p): "copy \(p)"
            case .makeDirectory(let p): "mkdir \(p)"
            case .setAttributes(let p): "attrs \(p)"
            case .link(let p): "link \(p)"
            case .remove(let p): "remove \(p)"
            case .removeTree(let p): "remove -r \(p)"
            case .createUser(let u): "useradd \(u)"
            case .service(let a): "\(a)"
            case .run(let argv, let user): "run \(argv.joined(separator: " "))\(user.map { " as \($0)" } ?? "")"
            }
        }

        var path: String? {
            switch self {
            case .write(let p), .copy(let p), .makeDirectory(let p), .setAttributes(let p), .link(let p), .remove(let p), .removeTree(let p): p
            default: nil
            }
        }
    }

    struct State {
        var nodes: [String: Node] = ["/": .directory(mode: 0o755, owner: .root)]
        var users: Set<String> = ["root"]
        var services: [String: ServiceStatus] = [:]
        /// Unit file content as of the last daemon-reload.
        var loadedUnits: [String: Data] = [:]
        var operations: [Operation] = []
        var failWhen: (@Sendable (Operation) -> Bool)?
        var clock = Date(timeIntervalSince1970: 1_800_000_000)
        var initSystem: InitSystem = .none
        var unitDirectory = "/etc/systemd/system"
    }

    let state = Mutex(State())

    /// A fresh minimal Debian: the top directories exist.
    init() {
        for d in ["/etc", "/etc/systemd", "/etc/systemd/system", "/opt", "/var", "/var/lib", "/var/log", "/run", "/usr", "/usr/bin"] {
            state.withLock { $0.nodes[d] = .directory(mode: 0o755, owner: .root) }
        }
    }

    // MARK: test controls

    var operations: [Operation] { state.withLock { $0.operations } }
    var initSystem: InitSystem { state.withLock { $0.initSystem } }
    func clearOperations() { state.withLock { $0.operations = [] } }
    func failWhen(_ predicate: (@Sendable (Operation) -> Bool)?) { state.withLock { $0.failWhen = predicate } }
    func advanceClock(by seconds: TimeInterval) { state.withLock { $0.clock += seconds } }
    func node(_ path: String) -> Node? { state.withLock { $0.nodes[path] } }
    func setNode(_ path: String, _ node: Node?) { state.withLock { $0.nodes[path] = node } }
    func content(_ path: String) -> Data? {
        if case .file(let d, _, _)? = node(path) { return d }
        return nil
    }
    func attributes(_ path: String) -> (mode: UInt16, owner: Owner?)? {
        switch node(path) {
        case .file(_, let m, let o)?: (m, o)
        case .directory(let m, let o)?: (m, o)
        default: nil
        }
    }
    func status(_ unit: String) -> ServiceStatus { state.withLock { $0.services[unit] ?? ServiceStatus(enabled: false, active: false) } }
    func setStatus(_ unit: String, _ s: ServiceStatus) { state.withLock { $0.services[unit] = s } }
    /// Every path under `prefix`.
    func paths(under prefix: String) -> [String] {
        state.withLock { $0.nodes.keys.filter { $0 == prefix || $0.hasPrefix(prefix + "/") }.sorted() }
    }
    /// The service actions performed, in order.
    var serviceActions: [ServiceAction] {
        operations.compactMap { op -> ServiceAction? in
            if case .service(let a) = op { return a }
            return nil
        }
    }

    private func record(_ op: Operation) throws {
        try state.withLock { s in
            s.operations.append(op)
            if let f = s.failWhen, f(op) { throw SystemError("injected failure: \(op)") }
        }
    }

    private static func parent(_ path: String) -> String {
        let p = (path as NSString).deletingLastPathComponent
        return p.isEmpty ? "/" : p
    }

    private func requireParent(_ path: String) throws {
        guard case .directory? = node(Self.parent(path)) else {
            throw SystemError("\(Self.parent(path)) is not a directory (writing \(path))")
        }
    }

    private func check(_ owner: Owner?) throws {
        if let owner, !state.withLock({ $0.users.contains(owner.user) }) { throw SystemError("no user \(owner.user)") }
    }

    // MARK: System

    func selectInit(_ initSystem: InitSystem) { state.withLock { $0.initSystem = initSystem } }

    func info(_ path: String) throws -> FileInfo? {
        switch node(path) {
        case nil: nil
        case .file(let d, let mode, let owner)?: FileInfo(kind: .file, mode: mode, owner: owner ?? .root, size: UInt64(d.count))
        case .directory(let mode, let owner)?: FileInfo(kind: .directory, mode: mode, owner: owner ?? .root)
        case .link(let target)?: FileInfo(kind: .symlink, mode: 0o777, owner: .root, linkTarget: target)
        }
    }

    func read(_ path: String) throws -> Data {
        guard let d = content(path) else { throw SystemError("cannot read \(path)") }
        return d
    }

    func sha256(_ path: String) throws -> Data { Data(SHA256.hash(data: try read(path))) }

    func write(_ path: String, _ data: Data, mode: UInt16, owner: Owner?) throws {
        try record(.write(path))
        try requireParent(path)
        try check(owner)
        setNode(path, .file(data, mode: mode, owner: owner ?? .root))
    }

    func copy(from source: String, to path: String, mode: UInt16, owner: Owner?) throws {
        try record(.copy(path))
        try requireParent(path)
        try check(owner)
        setNode(path, .file(try read(source), mode: mode, owner: owner ?? .root))
    }

    func makeDirectory(_ path: String, mode: UInt16, owner: Owner?) throws {
        try record(.makeDirectory(path))
        try check(owner)
        var prefix = ""
        let parts = path.split(separator: "/")
        for (i, part) in parts.enumerated() {
            prefix += "/" + part
            switch node(prefix) {
            case nil: setNode(prefix, .directory(mode: i == parts.count - 1 ? mode : 0o755, owner: i == parts.count - 1 ? owner ?? .root : .root))
            case .directory(_, let old)?: if i == parts.count - 1 { setNode(prefix, .directory(mode: mode, owner: owner ?? old)) }
            default: throw SystemError("\(prefix) is not a directory")
            }
        }
    }

    func setAttributes(_ path: String, mode: UInt16, owner: Owner?) throws {
        try record(.setAttributes(path))
        try check(owner)
        switch node(path) {
        case .file(let d, _, let old)?: setNode(path, .file(d, mode: mode, owner: owner ?? old))
        case .directory(_, let old)?: setNode(path, .directory(mode: mode, owner: owner ?? old))
        default: throw SystemError("no such file \(path)")
        }
    }

    func symlink(_ path: String, to target: String) throws {
        try record(.link(path))
        try requireParent(path)
        setNode(path, .link(target))
    }

    func remove(_ path: String) throws {
        try record(.remove(path))
        if case .directory? = node(path), !paths(under: path).dropFirst().isEmpty {
            throw SystemError("\(path): directory not empty")
        }
        setNode(path, nil)
    }

    func removeTree(_ path: String) throws {
        try record(.removeTree(path))
        for p in paths(under: path) { setNode(p, nil) }
    }

    func userExists(_ name: String) -> Bool { state.withLock { $0.users.contains(name) } }

    func createSystemUser(_ name: String, home: String) throws {
        try record(.createUser(name))
        state.withLock { _ = $0.users.insert(name) }
    }

    func serviceStatus(_ unit: String) throws -> ServiceStatus { status(unit) }

    func perform(_ action: ServiceAction) throws {
        try record(.service(action))
        let unitDir = state.withLock { $0.unitDirectory }
        try state.withLock { s in
            func unitFile(_ u: String) throws -> Data {
                guard case .file(let d, _, _)? = s.nodes["\(unitDir)/\(u)"] else { throw SystemError("Unit \(u) not found.") }
                return d
            }
            switch action {
            case .daemonReload:
                for (path, node) in s.nodes where path.hasPrefix(unitDir + "/") {
                    if case .file(let d, _, _) = node { s.loadedUnits[(path as NSString).lastPathComponent] = d }
                }
            case .enable(let u):
                _ = try unitFile(u)
                s.services[u, default: ServiceStatus(enabled: false, active: false)].enabled = true
            case .disable(let u):
                s.services[u, default: ServiceStatus(enabled: false, active: false)].enabled = false
            case .start(let u), .restart(let u):
                // Only systemd reads unit files; the built-in supervisor runs the daemon directly.
                if s.initSystem != .systemd {
                    s.services[u, default: ServiceStatus(enabled: true, active: false)].active = true
                    return
                }
                let file = try unitFile(u)
                guard s.loadedUnits[u] == file else {
                    throw SystemError("\(u) changed on disk; run 'systemctl daemon-reload' (the fake's systemd refuses stale units)")
                }
                s.services[u, default: ServiceStatus(enabled: false, active: false)].active = true
            case .stop(let u):
                s.services[u, default: ServiceStatus(enabled: false, active: false)].active = false
            }
        }
    }

    func run(_ argv: [String], as user: String?) throws -> CommandResult {
        try record(.run(argv, user: user))
        // The tree step's copy and rename, as the real commands would leave the nodes.
        if argv.first == "cp", let dest = argv.last {
            state.withLock { $0.nodes[dest] = .directory(mode: 0o755, owner: .root) }
            return CommandResult(status: 0, output: "")
        }
        if argv.first == "mv", argv.count == 4, argv[1] == "-T" {
            let (from, to) = (argv[2], argv[3])
            state.withLock { s in
                for (k, v) in s.nodes where k == from || k.hasPrefix(from + "/") {
                    s.nodes[k] = nil
                    s.nodes[to + k.dropFirst(from.count)] = v
                }
            }
            return CommandResult(status: 0, output: "")
        }
        return CommandResult(status: 0, output: "created admin user \(argv.count > 2 ? argv[2] : "?")\n")
    }

    func now() -> Date { state.withLock { $0.clock } }
}

import Foundation

/// One idempotent change to the host.
public enum Step: Sendable, Equatable {
    case createUser(name: String, home: String)
    case createDirectory(path: String, mode: UInt16, owner: Owner?)
    /// `replacing`: a different file was there.
    case writeFile(path: String, content: FileContent, mode: UInt16, owner: Owner?, label: String?, replacing: Bool)
    /// The content is right; mode or owner is not.
    case setAttributes(path: String, mode: UInt16, owner: Owner?)
    case link(path: String, target: String, replacing: Bool)
    case service(ServiceAction, reason: String)
    case runOnce(DesiredState.OneTimeCommand)
    case installTree(DesiredState.Tree)

    /// The path a filesystem step changes.
    public var path: String? {
        switch self {
        case .createDirectory(let p, _, _), .writeFile(let p, _, _, _, _, _), .setAttributes(let p, _, _), .link(let p, _, _): p
        case .installTree(let t): t.path
        case .createUser, .service, .runOnce: nil
        }
    }

    /// The service action, for service steps.
    public var serviceAction: ServiceAction? {
        if case .service(let a, _) = self { return a }
        return nil
    }

    /// What the step does, in one line an operator reads.
    public var summary: String {
        switch self {
        case .createUser(let name, let home):
            return "create system user \(name) (home \(home))"
        case .createDirectory(let path, let mode, let owner):
            return "create directory \(path) (\(Self.attributes(mode, owner)))"
        case .writeFile(let path, _, let mode, let owner, let label, let replacing):
            return "\(replacing ? "update" : "write") \(path)\(label.map { " (\($0))" } ?? "") (\(Self.attributes(mode, owner)))"
        case .setAttributes(let path, let mode, let owner):
            return "set \(path) to \(Self.attributes(mode, owner))"
        case .link(let path, let target, let replacing):
            return "\(replacing ? "repoint" : "link") \(path) -> \(target)"
        case .service(let action, let reason):
            return "\(action)\(reason.isEmpty ? "" : " (\(reason))")"
        case .runOnce(let command):
            return command.name
        case .installTree(let tree):
            return "install \(tree.label) in \(tree.path)"
        }
    }

    static func attributes(_ mode: UInt16, _ owner: Owner?) -> String {
        let m = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - m.count)) + m + (owner.map { " \($0)" } ?? "")
    }
}

/// The steps that take the host from what it is to what it should be; empty when it already is.
public struct Plan: Sendable, Equatable {
    public var steps: [Step]

    public init(steps: [Step]) { self.steps = steps }

    public var isEmpty: Bool { steps.isEmpty }

    /// Files and links the plan writes (not attribute fixes).
    public var writtenPaths: [String] {
        steps.compactMap { step in
            switch step {
            case .writeFile(let p, _, _, _, _, _), .link(let p, _, _): p
            case .installTree(let t): t.path + "/" + DesiredState.Tree.markerName
            default: nil
            }
        }
    }

    public var serviceActions: [ServiceAction] { steps.compactMap(\.serviceAction) }

    /// Units the plan starts or restarts.
    public var restartedUnits: [String] {
        serviceActions.compactMap { a in
            switch a {
            case .restart(let u), .start(let u): u
            default: nil
            }
        }
    }

    public func render() -> String {
        isEmpty ? "  nothing to change\n" : steps.enumerated().map { "  \($0.offset + 1). \($0.element.summary)\n" }.joined()
    }
}

/// Work an interrupted run left undone that the file comparison cannot see (the files are already written).
public struct PendingWork: Sendable, Equatable {
    public var daemonReload = false
    /// Units whose restart (or start) had not happened.
    public var restarts: Set<String> = []
    public init(daemonReload: Bool = false, restarts: Set<String> = []) { self.daemonReload = daemonReload; self.restarts = restarts }
}

/// Compares a desired state with the host.
public enum Planner {
    public static func plan(_ desired: DesiredState, on system: any System, pending: PendingWork = PendingWork()) throws -> Plan {
        var steps: [Step] = []
        var written = Set<String>()

        for user in desired.users where !system.userExists(user.name) {
            steps.append(.createUser(name: user.name, home: user.home))
        }

        for dir in desired.directories.sorted(by: { depth($0.path) < depth($1.path) }) {
            guard let info = try system.info(dir.path) else {
                steps.append(.createDirectory(path: dir.path, mode: dir.mode, owner: dir.owner))
                continue
            }
            switch info.kind {
            case .directory:
                if needsAttributes(info, mode: dir.mode, owner: dir.owner) {
                    steps.append(.setAttributes(path: dir.path, mode: dir.mode, owner: dir.owner))
                }
            case .symlink:
                // An operator who moved a directory elsewhere and linked it keeps that arrangement.
                continue
            case .file, .other:
                throw PlanError("\(dir.path) exists and is not a directory; move it away and run the install again")
            }
        }

        for file in desired.files {
            let info = try system.info(file.path)
            switch info?.kind {
            case nil:
                steps.append(.writeFile(path: file.path, content: file.content, mode: file.mode, owner: file.owner, label: file.label, replacing: false))
                written.insert(file.path)
            case .file?:
                if try !sameContent(file.content, at: file.path, size: info!.size, on: system) {
                    steps.append(.writeFile(path: file.path, content: file.content, mode: file.mode, owner: file.owner, label: file.label, replacing: true))
                    written.insert(file.path)
                } else if needsAttributes(info!, mode: file.mode, owner: file.owner) {
                    steps.append(.setAttributes(path: file.path, mode: file.mode, owner: file.owner))
                }
            case .directory?, .symlink?, .other?:
                throw PlanError("\(file.path) exists and is not a regular file; move it away and run the install again")
            }
        }

        for link in desired.links {
            let info = try system.info(link.path)
            switch info?.kind {
            case nil:
                steps.append(.link(path: link.path, target: link.target, replacing: false))
                written.insert(link.path)
            case .symlink?:
                if info?.linkTarget != link.target {
                    steps.append(.link(path: link.path, target: link.target, replacing: true))
                    written.insert(link.path)
                }
            default:
                throw PlanError("\(link.path) exists and is not a symlink; move it away and run the install again")
            }
        }

        for tree in desired.trees {
            let marker = tree.path + "/" + DesiredState.Tree.markerName
            let current = try system.info(marker).map { _ in String(decoding: try system.read(marker), as: UTF8.self) }
            if current?.trimmingCharacters(in: .whitespacesAndNewlines) != tree.digest {
                steps.append(.installTree(tree))
                written.insert(marker)
            }
        }

        guard !desired.services.isEmpty else { return Plan(steps: steps) }

        let unitsChanged = desired.systemdUnits
            ? desired.services.filter { s in ([s.unitFile] + s.companionUnitFiles).contains(where: written.contains) } : []
        if !unitsChanged.isEmpty || (pending.daemonReload && desired.systemdUnits) {
            let reason = unitsChanged.isEmpty ? "left pending by the interrupted run" : "\(unitsChanged.map(\.unit).joined(separator: ", ")) changed"
            steps.append(.service(.daemonReload, reason: reason))
        }
        var statuses: [String: ServiceStatus] = [:]
        for s in desired.services {
            let status = try system.serviceStatus(s.unit)
            statuses[s.unit] = status
            if desired.systemdUnits && !status.enabled { steps.append(.service(.enable(s.unit), reason: "start at boot")) }
        }
        let pendingCommands = try desired.oneTime.filter { try system.info($0.marker) == nil }
        for command in pendingCommands where command.beforeUnit == nil {
            steps.append(.runOnce(command))
        }
        // Each service's action, decided once; a restart of a service that restarts first (the virtual IP's
        // keepalived) goes before every other service's step, the rest keep their order.
        let actions: [(service: DesiredState.Service, step: Step?)] = desired.services.map { s in
            let changed = (s.restartOn + (desired.systemdUnits && !s.restartsItself ? [s.unitFile] : [])).filter(written.contains)
            if statuses[s.unit]?.active != true {
                return (s, .service(.start(s.unit), reason: "not running"))
            } else if !changed.isEmpty {
                return (s, .service(.restart(s.unit), reason: "\(changed.map { ($0 as NSString).lastPathComponent }.joined(separator: ", ")) changed"))
            } else if pending.restarts.contains(s.unit) && !s.restartsItself {
                return (s, .service(.restart(s.unit), reason: "left pending by the interrupted run"))
            }
            return (s, nil)
        }
        func restartsFirst(_ a: (service: DesiredState.Service, step: Step?)) -> Bool {
            guard a.service.restartsFirst, case .service(.restart, _)? = a.step else { return false }
            return true
        }
        for a in actions.filter(restartsFirst) + actions.filter({ !restartsFirst($0) }) {
            for command in pendingCommands where command.beforeUnit == a.service.unit { steps.append(.runOnce(command)) }
            if let step = a.step { steps.append(step) }
        }
        return Plan(steps: steps)
    }

    static func depth(_ path: String) -> Int { path.split(separator: "/").count }

    static func needsAttributes(_ info: FileInfo, mode: UInt16, owner: Owner?) -> Bool {
        info.mode != mode || (owner != nil && info.owner != owner)
    }

    static func sameContent(_ content: FileContent, at path: String, size: UInt64, on system: any System) throws -> Bool {
        switch content {
        case .bytes(let data):
            guard UInt64(data.count) == size else { return false }
            return try system.read(path) == data
        case .copy(_, let hash):
            return try system.sha256(path) == hash
        }
    }
}

/// The host is in a state the installer will not overwrite by itself.
public struct PlanError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

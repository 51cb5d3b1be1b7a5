import Foundation

/// One step of `warbler uninstall`.
public enum UninstallStep: Sendable, Equatable, CustomStringConvertible {
    case service(ServiceAction)
    case removeTree(String)
    case deleteUser(String)

    public var description: String {
        switch self {
        case .service(let a): "\(a)"
        case .removeTree(let p): "remove \(p)"
        case .deleteUser(let u): "delete the system user \(u)"
        }
    }
}

/// What `warbler uninstall` will do and what it keeps.
public struct UninstallPlan: Sendable, Equatable {
    public var initSystem: InitSystem
    public var steps: [UninstallStep]
    /// Paths left in place (the data, unless --purge).
    public var kept: [String]

    public func render() -> String {
        var out = steps.map { "  - \($0)\n" }.joined()
        for k in kept { out += "  kept: \(k) (remove it with --purge)\n" }
        return out
    }
}

/// Takes an install off the host: stops and disables the server (systemd unit or built-in supervisor), removes the
/// unit, the releases and links (`/usr/local/bin/warbler` too), the config, root's install state and the PID files; keeps /var/lib/warbler unless
/// `purge`, which also removes the data, the logs and the system user.
public struct Uninstaller: Sendable {
    public let system: any System
    public let probe: any HostProbe

    public init(system: any System, probe: any HostProbe) { self.system = system; self.probe = probe }

    /// The init system the install used: the journal's answer, else what runs here (nothing under --root).
    public func initSystem(layout: Layout) throws -> InitSystem {
        if layout.isStaging { return .none }
        return installedInitSystem(layout: layout, system: system, probe: probe)
    }

    public func plan(layout: Layout, purge: Bool) throws -> UninstallPlan {
        let initSystem = try initSystem(layout: layout)
        var steps: [UninstallStep] = []
        // The server always; the other units where their files are.
        let units = try Paths.unitNames.filter { unit in
            let present = try system.info(layout.path(Paths.unitFile(unit))) != nil
            return unit == Paths.serverUnitName || present
        }
        switch initSystem {
        case .systemd:
            system.selectInit(.systemd)
            for unit in units {
                let status = try system.serviceStatus(unit)
                if status.active { steps.append(.service(.stop(unit))) }
                if status.enabled { steps.append(.service(.disable(unit))) }
            }
        case .builtin:
            system.selectInit(.builtin)
            // Alerting, the exporter and the server first, then a member's components (keepalived first: the address
            // goes before HAProxy does; etcd last).
            for unit in units where try BuiltinServices.units.contains(unit) && system.serviceStatus(unit).active {
                steps.append(.service(.stop(unit)))
            }
        case .none:
            break
        }
        var removedUnit = false
        for unit in units where try system.info(layout.path(Paths.unitFile(unit))) != nil {
            steps.append(.removeTree(layout.path(Paths.unitFile(unit))))
            removedUnit = true
        }
        if removedUnit && initSystem == .systemd { steps.append(.service(.daemonReload)) }
        // `warbler` on PATH goes first, while it still points into /opt/warbler; a link or file someone else put
        // there stays.
        if let link = try system.info(layout.path(Paths.binLink)), link.kind == .symlink, link.linkTarget == Paths.binLinkTarget {
            steps.append(.removeTree(layout.path(Paths.binLink)))
        }
        var trees = [Paths.opt, Paths.etc, Paths.installState, Paths.run]
        // An earlier release's state directory, where it is still root's.
        if let old = try system.info(layout.path(Paths.legacyInstallState)), old.kind == .directory,
           layout.isStaging || old.owner?.user == "root" {
            trees.append(Paths.legacyInstallState)
        }
        // A cluster member's etcd data is the cluster's (the member has left it), HAProxy's state is this host's;
        // a PostgreSQL copy stays like the data unless purged.
        trees += [ClusterPaths.etcdData, ClusterPaths.haproxyState]
        if purge { trees += [Paths.data, Paths.logs, ClusterPaths.postgresHome] }
        for t in trees where try system.info(layout.path(t)) != nil { steps.append(.removeTree(layout.path(t))) }
        if purge && !layout.isStaging {
            for user in [Blueprint.user, ClusterPaths.etcdUser, ClusterPaths.postgresUser, ClusterPaths.haproxyUser] where system.userExists(user) {
                steps.append(.deleteUser(user))
            }
        }
        let kept = purge ? [] : [layout.path(Paths.data), layout.path(ClusterPaths.postgresHome)].filter { (try? system.info($0)) != nil }
        return UninstallPlan(initSystem: initSystem, steps: steps, kept: kept)
    }

    /// Applies `plan`, reporting each step. A failed stop ends the run before anything is removed.
    public func apply(_ plan: UninstallPlan, progress: (String) -> Void = { _ in }) throws {
        for step in plan.steps {
            progress(step.description)
            switch step {
            case .service(let action): try system.perform(action)
            case .removeTree(let path): try system.removeTree(path)
            case .deleteUser(let user):
                let result = try system.run(["userdel", user], as: nil)
                guard result.status == 0 else { throw SystemError("userdel \(user) failed: \(result.output)") }
            }
        }
    }
}

/// Which manager runs the services of the install at `layout`: the install's own answer (`--init`), else systemd when
/// it is PID 1 here, else the built-in supervisor.
public func installedInitSystem(layout: Layout, system: any System = LocalSystem(), probe: any HostProbe = LiveHostProbe()) -> InitSystem {
    let journal = try? JournalStore(system: system, layout: layout).load()
    if let chosen = journal?.inputs.initSystem { return chosen }
    return probe.systemdIsRunning() ? .systemd : .builtin
}

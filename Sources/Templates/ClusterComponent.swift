import Foundation

/// One cluster component as it is run: its command line, the steps around it, its user, environment and
/// directories. The component's systemd unit is rendered from it and the built-in supervisor (`warbler supervise
/// --unit UNIT`, on hosts without systemd as PID 1) runs the same description, so the two cannot drift apart.
public struct ClusterComponent: Sendable, Equatable {
    /// A directory the manager makes before the component starts (systemd's StateDirectory/RuntimeDirectory): under
    /// /var/lib or /run, owned by the component's user, with this mode.
    public struct Directory: Sendable, Equatable {
        public var path: String
        public var mode: UInt16
        public init(path: String, mode: UInt16) { self.path = path; self.mode = mode }
    }

    /// The short name: the log is /var/log/warbler/NAME.log under the built-in supervisor.
    public var name: String
    /// The systemd unit, e.g. `warbler-etcd.service`.
    public var unit: String
    public var execStart: [String]
    /// Commands run (as `user`) before each start; one failing fails the start (ExecStartPre).
    public var execStartPre: [[String]] = []
    /// Commands run (as `user`) after the component ended, however it ended (ExecStopPost).
    public var execStopPost: [[String]] = []
    /// nil: root.
    public var user: String?
    /// NAME=VALUE, in order.
    public var environment: [String] = []
    public var stateDirectory: Directory?
    public var runtimeDirectory: Directory?
    /// Whether a clean exit (status 0) is restarted too (systemd's Restart=always) or only a failure (on-failure).
    public var restart: Restart = .always
    /// The signal that asks it to stop (Patroni: SIGINT, a fast shutdown of PostgreSQL).
    public var stopSignal: Signal = .term
    /// Seconds it gets to stop before it is killed; nil: the manager's default.
    public var stopTimeout: Int?
    /// The IPv4 listener whose accepting connections means it is up, if it has one.
    public var readyAddress: String?
    public var readyPort: Int?

    public enum Restart: String, Sendable, Equatable {
        case always, onFailure = "on-failure"
    }

    public enum Signal: String, Sendable, Equatable {
        case term = "SIGTERM", int = "SIGINT"
    }

    public init(name: String, unit: String, execStart: [String]) {
        self.name = name; self.unit = unit; self.execStart = execStart
    }

    /// What the unit template reads (command lines are joined with spaces: every value was checked to hold none).
    func view() -> [String: Any] {
        func dir(_ d: Directory?, under base: String) -> String? { d.map { String($0.path.dropFirst(base.count)) } }
        func mode(_ m: UInt16) -> String { let o = String(m, radix: 8); return String(repeating: "0", count: max(0, 4 - o.count)) + o }
        var v: [String: Any] = [
            "execStart": execStart.joined(separator: " "),
            "execStartPre": execStartPre.map { $0.joined(separator: " ") },
            "execStopPost": execStopPost.map { $0.joined(separator: " ") },
            "environment": environment,
            "killSignal": stopSignal.rawValue,
            "restart": restart.rawValue,
        ]
        if let user { v["user"] = user }
        if let s = stateDirectory { v["stateDirectory"] = dir(s, under: "/var/lib/"); v["stateDirectoryMode"] = mode(s.mode) }
        if let r = runtimeDirectory { v["runtimeDirectory"] = dir(r, under: "/run/"); v["runtimeDirectoryMode"] = mode(r.mode) }
        if let t = stopTimeout { v["stopTimeout"] = "\(t)s" }
        return v
    }
}

extension ClusterContext {
    /// etcd: the quorum. Its client port on loopback means it is up.
    public var etcdComponent: ClusterComponent {
        var c = ClusterComponent(name: "etcd", unit: "warbler-etcd.service", execStart: ["\(etcdBin)/etcd", "--config-file", etcdConfig])
        c.user = etcdUser
        c.restart = .onFailure
        c.stateDirectory = .init(path: etcdData, mode: 0o700)
        c.stopTimeout = 30
        c.readyAddress = "127.0.0.1"; c.readyPort = etcdClientPort
        return c
    }

    /// Patroni, which runs PostgreSQL. Its REST API on the advertised address means it is up.
    public var patroniComponent: ClusterComponent {
        var c = ClusterComponent(name: "patroni", unit: "warbler-patroni.service", execStart: [python, patroniScript, patroniConfig])
        c.user = postgresUser
        c.restart = .onFailure
        c.stateDirectory = .init(path: postgresHome, mode: 0o700)
        c.runtimeDirectory = .init(path: postgresSocketDir, mode: 0o755)
        // Python's bytecode cache would be written beside the release's read-only files.
        c.environment = ["PYTHONDONTWRITEBYTECODE=1", "LC_ALL=C.UTF-8"]
        c.stopSignal = .int
        c.stopTimeout = 60
        c.readyAddress = advertise; c.readyPort = patroniPort
        return c
    }

    /// HAProxy: the public frontend and the local listener for the PostgreSQL primary. Its monitor listener on
    /// loopback means it is up.
    public var haproxyComponent: ClusterComponent {
        var c = ClusterComponent(name: "haproxy", unit: "warbler-haproxy.service",
                                 execStart: [haproxyBin, "-Ws", "-f", haproxyConfig, "-p", "\(haproxyState)/haproxy.pid"])
        c.execStartPre = [[haproxyBin, "-c", "-q", "-f", haproxyConfig]]
        c.user = haproxyUser
        c.stateDirectory = .init(path: haproxyState, mode: 0o700)
        c.runtimeDirectory = .init(path: (haproxySocket as NSString).deletingLastPathComponent, mode: 0o700)
        c.readyAddress = "127.0.0.1"; c.readyPort = haproxyMonitorPort
        return c
    }

    /// The member agent: fills HAProxy's server slots from the members in etcd (HAProxy's user: it speaks to HAProxy's
    /// admin socket).
    public var agentComponent: ClusterComponent {
        var c = ClusterComponent(name: "cluster-agent", unit: "warbler-cluster-agent.service", execStart: [warblerBinary, "cluster", "agent"])
        c.user = haproxyUser
        c.runtimeDirectory = .init(path: agentRuntime, mode: 0o755)
        return c
    }

    /// The VIP agent (root): writes keepalived's config from the members in etcd.
    public var vipAgentComponent: ClusterComponent {
        var c = ClusterComponent(name: "vip-agent", unit: "warbler-vip-agent.service", execStart: [warblerBinary, "cluster", "vip-agent"])
        c.stateDirectory = .init(path: keepalivedState, mode: 0o700)
        return c
    }

    /// keepalived (root): holds the virtual IP. Before it starts, the VIP agent's config and the peers must be in
    /// place; however it ends, the address is taken off this host.
    public var keepalivedComponent: ClusterComponent {
        var c = ClusterComponent(name: "keepalived", unit: "warbler-keepalived.service",
                                 execStart: [keepalivedBin, "--dont-fork", "--log-console", "--log-detail", "--vrrp", "--use-file", keepalivedConfig,
                                             "--pid", "\(keepalivedRuntime)/keepalived.pid", "--vrrp_pid", "\(keepalivedRuntime)/vrrp.pid"])
        c.execStartPre = [[warblerBinary, "cluster", "vip-wait"]]
        c.execStopPost = [[warblerBinary, "cluster", "vip-release"]]
        c.runtimeDirectory = .init(path: keepalivedRuntime, mode: 0o700)
        return c
    }

    /// The upgrade receiver (root): a cluster upgrade's orders to this member. Under systemd its unit comes from a
    /// template of its own (warbler-upgrade-receiver.service: its confinement differs from the components'); this
    /// description is what the built-in supervisor runs. It stops by itself after each switch that changed the
    /// release and is started again (restart always) on the release now current. Its listener on the advertised
    /// address means it is up.
    public var upgradeReceiverComponent: ClusterComponent {
        var c = ClusterComponent(name: "upgrade-receiver", unit: "warbler-upgrade-receiver.service",
                                 execStart: [warblerBinary, "cluster", "upgrade-receiver"])
        c.readyAddress = advertise; c.readyPort = upgradeReceiverPort
        return c
    }

    /// The components a member runs, in starting order: etcd with the etcd role, Patroni with the database role,
    /// HAProxy and the member agent everywhere, the VIP agent and keepalived with a virtual IP.
    public func components(etcd: Bool, database: Bool) -> [ClusterComponent] {
        var list: [ClusterComponent] = []
        if etcd { list.append(etcdComponent) }
        if database { list.append(patroniComponent) }
        list += [haproxyComponent, agentComponent]
        if !vip.isEmpty { list += [vipAgentComponent, keepalivedComponent] }
        return list
    }

    /// Every component description by unit, whatever this member runs (what the unit templates render from, the
    /// upgrade receiver's excepted).
    public var allComponents: [ClusterComponent] {
        [etcdComponent, patroniComponent, haproxyComponent, agentComponent, vipAgentComponent, keepalivedComponent, upgradeReceiverComponent]
    }
}

import Foundation
import Installer

/// One component's state as `warbler status` shows it.
public struct ComponentStatus: Sendable, Equatable, Codable {
    public var name: String
    /// systemd, builtin or none.
    public var manager: String
    /// For systemd `ActiveState/SubState` (active/running); for the supervisor running, restarting or stopped.
    public var state: String
    public var active: Bool
    public var pid: Int?
    public var uptimeSeconds: Double?
    public var restarts: Int?
    public var version: String?
    /// nil when not asked (the service is down).
    public var ready: Bool?
    public var readyDetail: String?
    public var listen: [String]
    public var connections: Double?
    /// Acknowledged sends per minute, from two scrapes of warbler_sends_total.
    public var messagesPerMinute: Double?
    public var databaseBytes: UInt64?
    public var certificateDaysLeft: Int?
    /// What makes it unhealthy; empty when healthy.
    public var problems: [String]
    /// Worth knowing, not unhealthy.
    public var warnings: [String]

    public init(name: String, manager: String, state: String, active: Bool) {
        self.name = name; self.manager = manager; self.state = state; self.active = active
        listen = []; problems = []; warnings = []
    }
}

/// Every component of this node, and whether all is well.
public struct StatusReport: Sendable, Equatable, Codable {
    public var host: String
    public var components: [ComponentStatus]
    /// What alertd says is firing now (nil: alertd not installed or not asked). Firing alerts are news, not a
    /// failed component: they do not make the report unhealthy.
    public var firingAlerts: [String]?
    public var healthy: Bool { components.allSatisfy { $0.problems.isEmpty } }

    public init(host: String, components: [ComponentStatus]) { self.host = host; self.components = components }

    enum CodingKeys: String, CodingKey { case host, components, healthy, firingAlerts }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(host, forKey: .host)
        try c.encode(components, forKey: .components)
        try c.encode(healthy, forKey: .healthy)
        try c.encodeIfPresent(firingAlerts, forKey: .firingAlerts)
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        host = try c.decode(String.self, forKey: .host)
        components = try c.decode([ComponentStatus].self, forKey: .components)
        firingAlerts = try c.decodeIfPresent([String].self, forKey: .firingAlerts)
    }

    public func json() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(self), as: UTF8.self) + "\n"
    }

    /// The table for people.
    public func render() -> String {
        var out = "Warbler on \(host): \(healthy ? "healthy" : "UNHEALTHY")\n"
        let header = ["COMPONENT", "MANAGER", "STATE", "PID", "UPTIME", "VERSION", "READY"]
        var rows = [header]
        for c in components {
            rows.append([c.name, c.manager, c.state, c.pid.map(String.init) ?? "-", c.uptimeSeconds.map(Self.duration) ?? "-",
                         c.version ?? "-", c.ready.map { $0 ? "yes" : "no" } ?? "-"])
        }
        let widths = header.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        for r in rows {
            out += r.indices.map { i in i == r.count - 1 ? r[i] : r[i].padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "\n"
        }
        for c in components {
            var facts: [String] = []
            if !c.listen.isEmpty { facts.append("listen \(c.listen.joined(separator: ", "))") }
            if let n = c.connections { facts.append("connections \(Int(n))") }
            if let m = c.messagesPerMinute { facts.append("messages/min \(Int(m.rounded()))") }
            if let d = c.databaseBytes { facts.append("database \(Self.bytes(d))") }
            if let days = c.certificateDaysLeft { facts.append("certificate expires in \(days) days") }
            if let r = c.restarts, r > 0 { facts.append("restarts \(r)") }
            if !facts.isEmpty { out += "\(c.name): \(facts.joined(separator: "; "))\n" }
            for p in c.problems { out += "\(c.name): PROBLEM: \(p)\n" }
            for w in c.warnings { out += "\(c.name): warning: \(w)\n" }
        }
        if let firing = firingAlerts {
            out += firing.isEmpty ? "alerts: none firing\n" : "alerts firing (\(firing.count)):\n" + firing.map { "  \($0)\n" }.joined()
        }
        return out
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s)
        if t >= 86400 { return "\(t / 86400)d\((t % 86400) / 3600)h" }
        if t >= 3600 { return "\(t / 3600)h\((t % 3600) / 60)m" }
        if t >= 60 { return "\(t / 60)m\(t % 60)s" }
        return "\(t)s"
    }

    static func bytes(_ b: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(b), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(b) B" : "\(String(format: "%.1f", v)) \(units[i])"
    }
}

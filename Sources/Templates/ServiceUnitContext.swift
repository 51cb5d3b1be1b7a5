/// What a daemon's systemd unit is rendered from.
public struct ServiceUnitContext: Sendable, Equatable {
    public var unitName = "warbler-server.service"
    /// The executable as the host sees it (never under a staging root).
    public var binary = "/opt/warbler/current/bin/warbler"
    public var configPath = "/etc/warbler/warbler.yaml"
    public var configDir = "/etc/warbler"
    public var user = "warbler"
    public var group = "warbler"
    /// The only directory the service writes; under /var/lib it also becomes the unit's StateDirectory=.
    public var dataDir = "/var/lib/warbler"
    /// Every TCP port the daemon binds; a port below 1024 grants CAP_NET_BIND_SERVICE and nothing else.
    public var ports: [Int] = [8443, 9464]
    /// Units this one starts after (a cluster member's server waits for HAProxy, its way to the database).
    public var after: [String] = []

    public init() {}

    /// The exporter's unit: `warbler-exporter.service`, binding only the exporter's port (9101 by default).
    public static var exporter: ServiceUnitContext {
        var c = ServiceUnitContext()
        c.unitName = "warbler-exporter.service"
        c.ports = [9101]
        return c
    }

    func view() throws -> [String: Any] {
        for a in after { try Self.checkUnitValue(a, what: "unit to start after") }
        for (what, value) in [("unit name", unitName), ("binary", binary), ("config path", configPath),
                              ("config directory", configDir), ("user", user), ("group", group), ("data directory", dataDir)] {
            try Self.checkUnitValue(value, what: what)
        }
        for p in ports where !(1...65535).contains(p) {
            throw TemplateError("port \(p) cannot go into a unit: ports are 1-65535")
        }
        guard dataDir.hasPrefix("/var/lib/"), dataDir.count > "/var/lib/".count else {
            throw TemplateError("the data directory \(dataDir) must be under /var/lib/ (systemd's StateDirectory=)")
        }
        let sorted = Array(Set(ports)).sorted()
        let privileged = sorted.filter { $0 < 1024 }
        return [
            "unitName": unitName,
            "binary": binary,
            "configPath": configPath,
            "configDir": configDir,
            "user": user,
            "group": group,
            "dataDir": dataDir,
            "stateDirectoryName": String(dataDir.dropFirst("/var/lib/".count)),
            "bindsPrivilegedPort": !privileged.isEmpty,
            "privilegedPortList": privileged.map(String.init).joined(separator: ", "),
            "bindPorts": sorted.map(String.init),
            "after": after,
        ]
    }

    /// Unit files give meaning to spaces, quotes, backslashes, `%` specifiers and `;`: the installer's paths and
    /// names never need them, so a value holding one is refused rather than escaped.
    static func checkUnitValue(_ value: String, what: String) throws {
        let bad = value.unicodeScalars.first { s in
            s.value <= 0x20 || s.value == 0x7f || "%\"'\\;$`".unicodeScalars.contains(s)
        }
        if value.isEmpty || bad != nil {
            throw TemplateError("the \(what) '\(value)' cannot go into a systemd unit: use a value without spaces, quotes, %, ; or $")
        }
    }
}

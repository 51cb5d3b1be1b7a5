import DurableFiles
import Foundation
import Glibc
import Installer

/// Tells whether a Warbler server is running on the target, and how it knows. A restore refuses a running server.
public protocol ServerActivityProbe: Sendable {
    /// nil when no server is running; otherwise what shows one is (the unit state, a PID, a listening port).
    func runningEvidence() -> String?
}

/// The host's evidence: the systemd unit's state (on the host itself, when systemd is PID 1), the built-in
/// supervisor's PID files, and a TCP connect to the server's port on 127.0.0.1.
public struct LiveServerActivity: ServerActivityProbe {
    public var layout: Layout
    /// Ports to try on 127.0.0.1 (the configured server port); empty skips the port check.
    public var ports: [Int]

    public init(layout: Layout, ports: [Int]) {
        self.layout = layout
        self.ports = ports
    }

    public func runningEvidence() -> String? {
        if !layout.isStaging, Files.exists("/run/systemd/system"), let state = unitState(Paths.serverUnitName),
           ["active", "activating", "reloading", "deactivating"].contains(state) {
            return "the unit \(Paths.serverUnitName) is \(state)"
        }
        for file in [Paths.serverPID, Paths.supervisorPID] {
            let path = layout.path(file)
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
               kill(pid, 0) == 0 || errno == EPERM {
                return "process \(pid) from \(path) is alive"
            }
        }
        for port in ports where (1...65535).contains(port) && Self.accepts(port: port) {
            return "something accepts connections on 127.0.0.1:\(port), the server's port"
        }
        return nil
    }

    private func unitState(_ unit: String) -> String? {
        guard let r = try? Subprocess.run(["/bin/sh", "-c", "exec /bin/systemctl show --property=ActiveState --value \"$0\" 2>/dev/null", unit]),
              r.status == 0 else { return nil }
        return r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return result == 0
    }
}

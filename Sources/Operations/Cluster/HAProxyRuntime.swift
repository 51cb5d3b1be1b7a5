import Foundation
import Installer

/// HAProxy's runtime API over its admin socket: one command per connection.
public struct HAProxyRuntime: Sendable {
    public var socketPath: String
    public init(socketPath: String = ClusterPaths.haproxySocket) { self.socketPath = socketPath }

    public func send(_ command: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClusterOpsError("cannot open a socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw ClusterOpsError("socket path too long: \(socketPath)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.enumerated() { raw[i] = b }
            raw[path.count] = 0
        }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { throw ClusterOpsError("cannot reach HAProxy's admin socket \(socketPath): \(String(cString: strerror(errno)))") }
        let line = Array((command + "\n").utf8)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw ClusterOpsError("cannot write to HAProxy's admin socket")
        }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw ClusterOpsError("reading HAProxy's answer failed: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// One server slot as HAProxy has it now.
    public struct Slot: Sendable, Equatable {
        public var backend: String
        public var name: String
        public var address: String
        public var port: Int
        /// In maintenance (an empty slot, or a member taken out).
        public var maintenance: Bool
        /// Drained: no new connections, existing ones stay.
        public var draining: Bool = false
        /// The health check's verdict: up (2), down (0), starting/other.
        public var operational: Int
    }

    /// `show servers state BACKEND`: one line per server (format version 1).
    public func slots(backend: String) throws -> [Slot] {
        let text = try send("show servers state \(backend)")
        return Self.parseState(text)
    }

    static func parseState(_ text: String) -> [Slot] {
        text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#") else { return nil }
            let f = line.split(separator: " ").map(String.init)
            // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state … srv_port (index 18)
            guard f.count >= 19, let op = Int(f[5]), let admin = Int(f[6]), let port = Int(f[18]) else { return nil }
            // srv_admin_state bits: forced/inherited/resolution/hostname maintenance 0x01 0x02 0x20 0x40, forced/inherited
            // drain 0x08 0x10. 0x04 (the config's `disabled`) stays set after `state ready` and means nothing then.
            return Slot(backend: f[1], name: f[3], address: f[4], port: port, maintenance: admin & 0x63 != 0, draining: admin & 0x18 != 0,
                        operational: op)
        }
    }

    public func set(backend: String, server: String, address: String, port: Int) throws {
        let r = try send("set server \(backend)/\(server) addr \(address) port \(port)")
        guard !r.lowercased().contains("no such") else { throw ClusterOpsError("HAProxy: \(r.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    public func state(backend: String, server: String, _ state: String) throws {
        let r = try send("set server \(backend)/\(server) state \(state)")
        guard r.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ClusterOpsError("HAProxy: \(r.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}

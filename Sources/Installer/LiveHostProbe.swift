import CHostShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads the host's facts through libc and /proc.
public struct LiveHostProbe: HostProbe {
    public init() {}

    public func effectiveUserID() -> UInt32 { geteuid() }

    public func kernelName() -> String { uname().sysname }
    public func machine() -> String { uname().machine }

    private func uname() -> (sysname: String, machine: String) {
        var u = utsname()
        guard Glibc.uname(&u) == 0 else { return ("?", "?") }
        func field<T>(_ v: inout T) -> String {
            withUnsafeBytes(of: &v) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return (field(&u.sysname), field(&u.machine))
    }

    public func systemdIsRunning() -> Bool {
        var st = stat()
        return lstat("/run/systemd/system", &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public func initProcessName() -> String? {
        (try? String(contentsOfFile: "/proc/1/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func freeBytes(at path: String) -> UInt64? {
        var p = path
        while true {
            var s = statvfs()
            if statvfs(p, &s) == 0 { return UInt64(s.f_bavail) * UInt64(s.f_frsize) }
            guard errno == ENOENT || errno == ENOTDIR, p != "/" else { return nil }
            p = (p as NSString).deletingLastPathComponent
            if p.isEmpty { p = "/" }
        }
    }

    public func memory() -> (total: UInt64, available: UInt64)? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            if parts.count >= 2, let kb = UInt64(parts[1]) { values[String(parts[0])] = kb * 1024 }
        }
        guard let total = values["MemTotal"] else { return nil }
        return (total, values["MemAvailable"] ?? values["MemFree"] ?? 0)
    }

    public func canBind(host: String, port: Int) -> Bool {
        guard let address = IPAddress.parse(host), (0...65535).contains(port) else { return false }
        let fd = socket(address.isIPv4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        // The server sets SO_REUSEADDR too, so a socket in TIME_WAIT does not count as taken.
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var result: Int32
        if address.isIPv4 {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: address.bytes) }
            result = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        } else {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: address.bytes) }
            result = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        }
        // Binding is not enough: a port bound but not yet listening elsewhere would still collide at listen().
        return result == 0 && listen(fd, 1) == 0
    }

    public func clockSynchronized() -> Bool? {
        // timedatectl's NTPSynchronized is this same adjtimex reading; asking the kernel works without D-Bus.
        switch warbler_clock_synchronized() {
        case 1: return true
        case 0: return false
        default: return nil
        }
    }

    public func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count) == 0 else { return "localhost" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func resolves(_ name: String) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, nil, &hints, &res)
        if let res { freeaddrinfo(res) }
        return rc == 0
    }

    public func addresses() -> [IPAddress] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(head) }
        var out: [IPAddress] = []
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = cursor {
            defer { cursor = ifa.pointee.ifa_next }
            guard let sa = ifa.pointee.ifa_addr, (ifa.pointee.ifa_flags & UInt32(IFF_LOOPBACK)) == 0 else { continue }
            var address: IPAddress?
            if Int32(sa.pointee.sa_family) == AF_INET {
                address = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    var a = p.pointee.sin_addr
                    return IPAddress(bytes: withUnsafeBytes(of: &a) { Array($0) })
                }
            } else if Int32(sa.pointee.sa_family) == AF_INET6 {
                address = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    var a = p.pointee.sin6_addr
                    return IPAddress(bytes: withUnsafeBytes(of: &a) { Array($0) })
                }
            }
            // Link-local IPv6 (fe80::/10) needs a zone and is useless in a certificate.
            if let a = address, !(a.bytes.count == 16 && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80), !out.contains(a) {
                out.append(a)
            }
        }
        return out
    }
}

import DurableFiles
import Foundation
import Installer
#if canImport(Glibc)
import Glibc
#endif

/// keepalived's config for the cluster's virtual IP. Pure: the VIP agent fills it from the members in etcd and the
/// interface that carries this member's advertise address.
///
/// Every member is BACKUP with the same priority and `nopreempt`: the address stays where it is until its holder
/// fails (a returning member does not take it back, which would cut every client twice). VRRP adverts go to the
/// other members only (unicast; `check_unicast_src` drops any other sender). The track script asks this member's
/// HAProxy whether it runs and answers; when it does not, the member goes to FAULT and
/// another takes the address.
public struct KeepalivedConfig: Sendable, Equatable {
    public var nodeName: String
    public var advertise: String
    public var vip: String
    /// The prefix length of the advertise address's network (the VIP is added with it).
    public var prefixLength: Int
    public var interface: String
    /// The other members' addresses.
    public var peers: [String]
    public var checkCommand: String

    public init(nodeName: String, advertise: String, vip: String, prefixLength: Int, interface: String, peers: [String], checkCommand: String) {
        self.nodeName = nodeName; self.advertise = advertise; self.vip = vip; self.prefixLength = prefixLength
        self.interface = interface; self.peers = peers.filter { $0 != advertise }.sorted(); self.checkCommand = checkCommand
    }

    /// The VRRP router id, the same on every member: from the VIP's last octet (two clusters on one network have
    /// different VIPs).
    public var virtualRouterID: Int { (Int(vip.split(separator: ".").last ?? "0") ?? 0) % 254 + 1 }

    public func render() -> String {
        var out = """
        # keepalived for the Warbler cluster's virtual IP, written by warbler-vip-agent.service from the members in
        # etcd; it is rewritten when they change. VRRP decides only who answers on \(vip); never anything about the
        # database (Patroni and etcd do).
        global_defs {
            router_id \(nodeName)
            enable_script_security
            script_user root
            # A new holder announces the address at once and again every 10 s (switches forget).
            vrrp_garp_master_delay 1
            vrrp_garp_master_refresh 10
        }

        vrrp_script haproxy_health {
            script "\(checkCommand)"
            interval 1
            timeout 2
            fall 2
            rise 2
        }

        vrrp_instance warbler {
            state BACKUP
            nopreempt
            interface \(interface)
            virtual_router_id \(virtualRouterID)
            priority 100
            advert_int 1

        """
        // Without peers (a founder alone) keepalived would fall back to multicast: it then has no one to tell.
        if !peers.isEmpty {
            out += "    unicast_src_ip \(advertise)\n    unicast_peer {\n" + peers.map { "        \($0)\n" }.joined() + "    }\n    check_unicast_src\n"
        }
        out += """
            virtual_ipaddress {
                \(vip)/\(prefixLength) dev \(interface)
            }
            track_script {
                haproxy_health
            }
        }

        """
        return out
    }
}

/// The host's IPv4 addresses by interface (getifaddrs).
public enum NetworkInterfaces {
    public struct Entry: Sendable, Equatable {
        public var interface: String
        public var address: String
        public var prefixLength: Int
    }

    public static func ipv4() -> [Entry] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(head) }
        var out: [Entry] = []
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = cursor {
            defer { cursor = ifa.pointee.ifa_next }
            guard let sa = ifa.pointee.ifa_addr, Int32(sa.pointee.sa_family) == AF_INET else { continue }
            func text(_ p: UnsafeMutablePointer<sockaddr>?) -> (String, UInt32)? {
                guard let p else { return nil }
                return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                    var a = s.pointee.sin_addr
                    var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                    guard inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count)) != nil else { return nil }
                    return (String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), UInt32(bigEndian: a.s_addr))
                }
            }
            guard let (address, _) = text(sa) else { continue }
            let mask = text(ifa.pointee.ifa_netmask)?.1 ?? 0xffff_ffff
            out.append(Entry(interface: String(cString: ifa.pointee.ifa_name), address: address, prefixLength: mask.nonzeroBitCount))
        }
        return out
    }
}

/// One plain-HTTP GET on a member's private endpoints (HAProxy's monitor and stats on loopback, Patroni's
/// read-only REST API, etcd's metrics listener), blocking, with a short timeout: for the track script, which runs
/// every second in a process of its own, and the exporter's cluster collector.
public enum PlainHTTP {
    public static func get(_ host: String, _ port: Int, _ path: String, timeout: Int = 2, limit: Int = 1 << 20) -> (status: Int, body: String)? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &sa.sin_addr) == 1 else { return nil }
        let connected = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 16384)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return parse(out)
    }

    /// A whole HTTP/1.x response: its status and body, de-chunked when the server sent it chunked (HAProxy does,
    /// even to an HTTP/1.0 request). Works on bytes: in a Swift string "\r\n" is one character, so splitting text
    /// on "\n" would leave each chunk-size line glued to the line after it.
    public static func parse(_ response: [UInt8]) -> (status: Int, body: String)? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard response.count >= separator.count,
              let end = (0...(response.count - separator.count)).first(where: { response[$0..<($0 + separator.count)].elementsEqual(separator) })
        else { return nil }
        let head = String(decoding: response[..<end], as: UTF8.self)
        guard head.hasPrefix("HTTP/1."), let status = Int(head.dropFirst(9).prefix(3)) else { return nil }
        let raw = Array(response[(end + separator.count)...])
        let chunked = head.split(separator: "\r\n").dropFirst().contains { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            return parts.count == 2 && parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "transfer-encoding"
                && parts[1].lowercased().contains("chunked")
        }
        guard chunked else { return (status, String(decoding: raw, as: UTF8.self)) }
        var body: [UInt8] = []
        var i = 0
        while i < raw.count {
            guard i + 1 < raw.count, let lineEnd = (i..<(raw.count - 1)).first(where: { raw[$0] == 13 && raw[$0 + 1] == 10 }) else { return nil }
            let sizeText = String(decoding: raw[i..<lineEnd], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
            if size == 0 { return (status, String(decoding: body, as: UTF8.self)) }
            let start = lineEnd + 2
            guard start + size <= raw.count else { return nil }   // cut short
            body += raw[start..<(start + size)]
            i = start + size + 2   // the CRLF after the chunk
        }
        return nil   // no last chunk: the response was cut short
    }
}

/// HAProxy's own verdict on loopback (its `monitor-uri`): 200 while it runs and answers. keepalived's track script
/// (`warbler cluster vip-check`) asks it every second.
public enum HAProxyHealth {
    public static func ok(port: Int = ClusterPaths.haproxyMonitorPort, path: String = ClusterPaths.haproxyMonitorPath) -> Bool {
        PlainHTTP.get("127.0.0.1", port, path, timeout: 1, limit: 4096)?.status == 200
    }
}

/// `warbler cluster vip-agent` (root, warbler-vip-agent.service): every few seconds, renders keepalived's config
/// from the members in etcd, reloads keepalived when it changed, and publishes the peers this member's keepalived
/// has (`/warbler/vip/NAME`), which a joining member's keepalived waits for before it starts.
public struct VIPAgent: Sendable {
    public var member: MemberFile
    public var etcd: Etcdctl
    public var configPath: String
    public var interval: Double
    public var system: any System

    public init(member: MemberFile, etcd: Etcdctl, configPath: String = ClusterPaths.keepalivedConfig, interval: Double = 3,
                system: any System = LocalSystem()) {
        self.member = member; self.etcd = etcd; self.configPath = configPath; self.interval = interval; self.system = system
    }

    /// The config for these members, on the interface that carries this member's advertise address.
    public static func config(member: MemberFile, members: [ClusterMember], interfaces: [NetworkInterfaces.Entry]) throws -> KeepalivedConfig {
        guard let vip = member.vip else { throw ClusterOpsError("this cluster has no virtual IP (install --cluster-init --vip ADDR)") }
        let me = member.member.address
        guard let nic = interfaces.first(where: { $0.address == me }) else {
            throw ClusterOpsError("no interface carries this member's advertise address \(me); keepalived cannot hold \(vip)")
        }
        let peers = Set(members.map(\.address) + [me]).subtracting([me])
        return KeepalivedConfig(nodeName: member.member.name, advertise: me, vip: vip, prefixLength: nic.prefixLength, interface: nic.interface,
                                peers: Array(peers), checkCommand: "\(Paths.currentBinary) cluster vip-check")
    }

    /// One pass; what changed, for the log.
    public func reconcile() throws -> [String] {
        let (members, rejected) = try MemberRegistry.load(etcd)
        var notes = rejected.map { "ignored a member record: \($0)" }
        let wanted = try Self.config(member: member, members: members, interfaces: NetworkInterfaces.ipv4())
        let text = wanted.render()
        let current = (try? system.read(configPath)).map { String(decoding: $0, as: UTF8.self) }
        if current != text {
            try AtomicFile.write(Data(text.utf8), to: configPath, mode: 0o600)
            notes.append("keepalived's peers: \(wanted.peers.isEmpty ? "none yet" : wanted.peers.joined(separator: ", "))")
            if current != nil {
                // A running keepalived rereads it; the VRRP state (who holds the address) is kept.
                if installedInitSystem(layout: Layout(), system: system) == .builtin {
                    do { try reloadSupervised(ClusterPaths.keepalivedUnit) } catch { notes.append("reloading keepalived failed: \(error)") }
                } else {
                    let r = try system.run(["systemctl", "reload", ClusterPaths.keepalivedUnit], as: nil)
                    if r.status != 0 { notes.append("reloading keepalived failed: \(r.output.trimmingCharacters(in: .whitespacesAndNewlines))") }
                }
            }
        }
        let published = try etcd.get(prefix: ClusterPaths.vipPeersPrefix + member.member.name).first.map { String(decoding: $0.value, as: UTF8.self) }
        let mine = wanted.peers.joined(separator: ",")
        if published != mine { try etcd.put(ClusterPaths.vipPeersPrefix + member.member.name, mine) }
        return notes
    }

    public func run(log: @Sendable (String) -> Void) async {
        await AgentLoop.run(every: interval, failing: "cannot bring keepalived in step with the members yet", log: log) { try reconcile() }
    }

    /// The members whose keepalived does not yet send to `address` (they published peers without it). A member
    /// that published nothing has no keepalived running yet: it learns every member when it starts.
    public static func notYetSending(to address: String, members: [ClusterMember], published: [String: String]) -> [String] {
        members.filter { m in
            guard m.address != address, let peers = published[m.name] else { return false }
            return !peers.split(separator: ",").contains(Substring(address))
        }.map(\.name).sorted()
    }

    /// `warbler cluster vip-wait` (keepalived's ExecStartPre): the config exists, and every other member's
    /// keepalived already sends to this host, or `seconds` passed (a member that is down holds no address).
    public func waitForPeers(seconds: Double, log: @Sendable (String) -> Void) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while (try? system.info(configPath)).flatMap({ $0 }) == nil {
            guard Date() < deadline else { throw ClusterOpsError("\(configPath) was not written within \(Int(seconds)) s: see journalctl -u \(ClusterPaths.vipAgentUnit) (under the built-in supervisor: \(Paths.logs)/vip-agent.log)") }
            try await Task.sleep(for: .milliseconds(500))
        }
        var waiting: [String] = []
        while Date() < deadline {
            do {
                let (members, _) = try MemberRegistry.load(etcd)
                var published: [String: String] = [:]
                for (key, value) in try etcd.get(prefix: ClusterPaths.vipPeersPrefix) {
                    published[String(key.dropFirst(ClusterPaths.vipPeersPrefix.count))] = String(decoding: value, as: UTF8.self)
                }
                waiting = Self.notYetSending(to: member.member.address, members: members, published: published)
                if waiting.isEmpty { return }
            } catch {
                waiting = ["etcd: \(error)"]
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        log("starting keepalived although \(waiting.joined(separator: ", ")) do not send to this host yet (down, or their VIP agent is)")
    }

    /// `warbler cluster vip-release` (keepalived's ExecStopPost): the VIP off every interface of this host.
    public static func release(vip: String, system: any System = LocalSystem()) throws -> [String] {
        var removed: [String] = []
        for e in NetworkInterfaces.ipv4() where e.address == vip {
            let r = try system.run(["ip", "-4", "addr", "del", "\(vip)/\(e.prefixLength)", "dev", e.interface], as: nil)
            guard r.status == 0 else {
                throw ClusterOpsError("cannot remove \(vip) from \(e.interface): \(r.output.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            removed.append(e.interface)
        }
        return removed
    }
}

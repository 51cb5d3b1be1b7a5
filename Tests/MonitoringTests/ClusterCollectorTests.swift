import Foundation
import Installer
@testable import Monitoring
import Operations
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The cluster collector reads HAProxy's stats CSV and Patroni's /cluster the way a booted member serves them
/// (recorded on the e2e cluster's host 1): HAProxy answers chunked even to HTTP/1.0, and a member's address is in
/// the CSV only with `stats show-legends`. Before, every per-member series (IM server up, primary, standby
/// streaming) was silently missing on real hosts, so ClusterNodeDown and StandbyNotStreaming could never fire.
@Suite struct ClusterCollectorTests {
    static let dir = Repo.fixtures + "/cluster"

    /// One response on a loopback port, as many times as asked; returns the port.
    static func serve(_ response: [UInt8]) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 8) == 0 else { close(fd); throw MonitoringError("cannot listen on loopback") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        Thread.detachNewThread {
            while true {
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }
                var buf = [UInt8](repeating: 0, count: 4096)
                _ = recv(c, &buf, buf.count, 0)
                // In pieces, so that the reader has to gather them.
                var at = 0
                while at < response.count {
                    let n = min(1000, response.count - at)
                    _ = response[at..<(at + n)].withUnsafeBytes { send(c, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }
                    at += n
                }
                close(c)
            }
        }
        return Int(UInt16(bigEndian: sa.sin_port))
    }

    /// `body` sent chunked in `size`-byte chunks (so chunk boundaries fall inside CSV rows).
    static func chunked(_ body: String, size: Int) -> [UInt8] {
        var out = Array("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".utf8)
        let bytes = Array(body.utf8)
        var at = 0
        while at < bytes.count {
            let n = min(size, bytes.count - at)
            out += Array((String(n, radix: 16, uppercase: true) + "\r\n").utf8) + bytes[at..<(at + n)] + Array("\r\n".utf8)
            at += n
        }
        return out + Array("0\r\n\r\n".utf8)
    }

    func collect(haproxy: [UInt8]) async throws -> MetricSet {
        let root = NSTemporaryDirectory() + "warbler-cluster-collector-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root + "/etc/warbler/cluster", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.copyItem(atPath: Self.dir + "/member.json", toPath: root + ClusterPaths.memberFile)
        let stats = try Self.serve(haproxy)
        let patroni = try String(contentsOfFile: Self.dir + "/patroni-cluster.json", encoding: .utf8)
        let collector = ClusterCollector(files: HostFiles(root: root), get: { host, port, path in
            if port == ClusterPaths.haproxyMonitorPort { return PlainHTTP.get("127.0.0.1", stats, path) }
            if port == ClusterSettings.Port.patroni, path == "/cluster", host == "10.232.0.11" { return (200, patroni) }
            return nil
        }, interfaces: { [] })
        return try await collector.collect()
    }

    @Test func aMembersViewComesFromHAProxysChunkedStatsAndPatroni() async throws {
        let recorded = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.dir + "/haproxy-stats-response.bin")))
        let body = try #require(PlainHTTP.parse(recorded)).body
        #expect(!body.contains("\r\n"), "chunk framing left in the body")
        for response in [recorded, Self.chunked(body, size: 700), Self.chunked(body, size: 1)] {
            let set = try await collect(haproxy: response)
            for address in ["10.232.0.11", "10.232.0.12", "10.232.0.13"] {
                #expect(set.value("warbler_cluster_im_server_up", ["member": address]) == 1, "\(address) in \(set.render())")
            }
            #expect(set.value("warbler_cluster_patroni_up") == 1)
            #expect(set.value("warbler_cluster_postgres_primary", ["member": "warbler-1"]) == 1)
            #expect(set.value("warbler_cluster_postgres_timeline") == 1)
            // The standby whose disk filled: "start failed", not streaming.
            #expect(set.value("warbler_cluster_postgres_standby_streaming", ["member": "warbler-2"]) == 0)
        }
    }

    @Test func aResponseCutShortOrNotHTTPIsNothing() {
        let body = "# pxname,svname,status,addr\nim,m1,UP,10.0.0.1:8444\n"
        let whole = Self.chunked(body, size: 10)
        #expect(PlainHTTP.parse(whole)?.body == body)
        #expect(PlainHTTP.parse(Array(whole.dropLast(5))) == nil, "no last chunk")
        #expect(PlainHTTP.parse(Array("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".utf8))?.body == "ok")
        #expect(PlainHTTP.parse(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)) == nil)
        #expect(PlainHTTP.parse([]) == nil)
    }
}

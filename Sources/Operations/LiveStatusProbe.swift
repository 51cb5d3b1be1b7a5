import AsyncHTTPClient
import DurableFiles
import Foundation
import Installer
import NIOCore
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// The host: systemctl, /proc, the files, and HTTP through AsyncHTTPClient (trusting only the internal CA for https).
public struct LiveStatusProbe: StatusProbe {
    public init() {}

    public func systemdService(_ unit: String) async -> ServiceFacts? {
        guard let result = try? LocalSystem().run(["systemctl", "show", unit, "-p", "ActiveState,SubState,MainPID,ActiveEnterTimestampMonotonic,NRestarts"], as: nil),
              result.status == 0 else { return nil }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return StatusParsing.systemctlShow(result.output, monotonicNowMicroseconds: UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000)
    }

    public func supervisedService(supervisorPIDFile: String, childPIDFile: String) async -> ServiceFacts? {
        guard let supervisor = Self.pid(supervisorPIDFile), kill(pid_t(supervisor), 0) == 0 else {
            return ServiceFacts(activeState: "inactive", subState: "dead")
        }
        guard let child = Self.pid(childPIDFile), kill(pid_t(child), 0) == 0 else {
            // The supervisor is up and waiting to restart its child.
            return ServiceFacts(activeState: "activating", subState: "auto-restart")
        }
        var facts = ServiceFacts(activeState: "active", subState: "running", pid: child)
        if let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
           let start = StatusParsing.processStartSeconds(stat: stat, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK)))),
           let uptime = (try? String(contentsOfFile: "/proc/uptime", encoding: .utf8))?.split(separator: " ").first.flatMap({ Double($0) }) {
            facts.uptimeSeconds = max(0, uptime - start)
        }
        return facts
    }

    static func pid(_ file: String) -> Int? {
        (try? String(contentsOfFile: file, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    public func readFile(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    public func fileSize(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : nil
    }

    public func linkTarget(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }

    public func get(_ url: String, caFile: String?) async throws -> HTTPAnswer {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            tls.trustRoots = .file(caFile)
            // The chain is checked against the internal CA; the name is not, since we dial the loopback address.
            tls.certificateVerification = .noHostnameVerification
            // A cluster member's IM server admits only holders of a cluster certificate: root's copy answers.
            if getuid() == 0 { try? tls.presentClusterIdentity() }
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(3), read: .seconds(5))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
            let body = try await response.body.collect(upTo: 4 << 20)
            try await client.shutdown()
            return HTTPAnswer(status: Int(response.status.code), body: String(buffer: body))
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    public func sleep(seconds: Double) async { try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9)) }

    public func now() -> Date { Date() }
}

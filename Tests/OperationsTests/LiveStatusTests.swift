import Foundation
import IMServer
import Installer
import Logging
import Operations
import Testing

/// The live probe's HTTP and file reading, with the service state given (no systemd here).
struct ServiceGivenProbe: StatusProbe {
    let live = LiveStatusProbe()
    let facts: ServiceFacts
    func systemdService(_ unit: String) async -> ServiceFacts? { facts }
    func supervisedService(supervisorPIDFile: String, childPIDFile: String) async -> ServiceFacts? { facts }
    func readFile(_ path: String) -> Data? { live.readFile(path) }
    func fileSize(_ path: String) -> UInt64? { live.fileSize(path) }
    func linkTarget(_ path: String) -> String? { live.linkTarget(path) }
    func get(_ url: String, caFile: String?) async throws -> HTTPAnswer { try await live.get(url, caFile: caFile) }
    func sleep(seconds: Double) async { await live.sleep(seconds: seconds) }
    func now() -> Date { live.now() }
}

@Suite struct LiveStatusTests {
    /// A real server with TLS from the internal CA, in process on loopback, its config written where status reads it.
    @Test func statusOfARealTLSServer() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-live-status-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        for d in ["/etc/warbler/tls", "/var/lib/warbler"] {
            try FileManager.default.createDirectory(atPath: root + d, withIntermediateDirectories: true)
        }
        let tls = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                     names: CertificateNames(dns: ["localhost"], ips: []), now: Date())
        try (tls.caCertificatePEM ?? "").write(toFile: root + Paths.caCert, atomically: true, encoding: .utf8)
        try tls.serverCertificatePEM.write(toFile: root + Paths.serverCert, atomically: true, encoding: .utf8)
        try tls.serverKeyPEM.write(toFile: root + Paths.serverKey, atomically: true, encoding: .utf8)

        var config = ServerConfig()
        config.server.host = "127.0.0.1"
        config.server.port = 0
        config.server.drainSeconds = 1
        config.server.tlsCert = root + Paths.serverCert
        config.server.tlsKey = root + Paths.serverKey
        config.metrics.port = 0
        config.storage.path = root + Paths.database
        config.dataDir = root + Paths.data
        config.auth.jwtKeyFile = root + "/jwt.key"
        config.auth.bcryptCost = 4
        var logger = Logger(label: "test.status")
        logger.logLevel = .critical
        let runtime = try await ServerRuntime.open(config: config, logger: logger)
        let task = Task { try await runtime.run(handleSignals: false) }
        defer { task.cancel() }
        let port = try await runtime.waitUntilListening()
        let metricsPort = try #require(runtime.metricsPort)

        // The config as status reads it: host paths, which the staging root prefixes.
        try """
            server:
              host: 127.0.0.1
              port: \(port)
              tls_cert: \(Paths.serverCert)
              tls_key: \(Paths.serverKey)
            metrics:
              port: \(metricsPort)
            storage:
              path: \(Paths.database)
            """.write(toFile: root + Paths.config, atomically: true, encoding: .utf8)

        let probe = ServiceGivenProbe(facts: ServiceFacts(activeState: "active", subState: "running", pid: Int(getpid()), uptimeSeconds: 1))
        let report = await StatusCollector(probe: probe, layout: Layout(root: root), scrapeInterval: 0.2).collect(manager: .systemd, host: "test")
        let s = try #require(report.components.first)
        #expect(s.ready == true, "\(s.readyDetail ?? "")")
        #expect(report.healthy, "\(s.problems) \(s.warnings)")
        #expect(s.connections == 0)
        #expect(s.messagesPerMinute == 0)
        #expect((s.databaseBytes ?? 0) > 0)
        #expect((395...397).contains(s.certificateDaysLeft ?? 0))

        // Another CA's certificate does not vouch for this server: the https check is real.
        let other = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                       names: CertificateNames(dns: ["localhost"], ips: []), now: Date())
        try (other.caCertificatePEM ?? "").write(toFile: root + Paths.caCert, atomically: true, encoding: .utf8)
        let untrusted = await StatusCollector(probe: probe, layout: Layout(root: root), scrapeInterval: 0.2).collect(manager: .systemd, host: "test")
        #expect(untrusted.components[0].ready == false)
        #expect(!untrusted.healthy)

        await runtime.shutdown()
        _ = try? await task.value
    }
}

import Foundation
import IMClient
import IMCore
import IMServer
import Installer
import Logging
@testable import Operations
import Testing

/// The cluster agent's reader against a real IM server in process, serving TLS and admitting only clients with a
/// certificate from the cluster CA, as a member's cluster listener does.
@Suite(.timeLimit(.minutes(1))) struct MemberVersionReaderTests {
    @Test func theAgentsCertificateReadsAMembersReleaseAndASilentMemberIsLeftOut() async throws {
        let dir = NSTemporaryDirectory() + "member-version-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The cluster CA and a member certificate for 127.0.0.1 (server and client, as a member's is).
        let tls = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                     names: CertificateNames(dns: ["localhost"], ips: [try #require(IPAddress.parse("127.0.0.1"))]), now: Date())
        try (tls.caCertificatePEM ?? "").write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
        try tls.serverCertificatePEM.write(toFile: dir + "/member.crt", atomically: true, encoding: .utf8)
        try tls.serverKeyPEM.write(toFile: dir + "/member.key", atomically: true, encoding: .utf8)

        var config = ServerConfig()
        config.server.host = "127.0.0.1"; config.server.port = 0; config.server.drainSeconds = 1
        config.server.tlsCert = dir + "/member.crt"; config.server.tlsKey = dir + "/member.key"
        config.server.clientCaFile = dir + "/ca.crt"
        config.metrics.port = -1
        config.storage.path = dir + "/warbler.db"; config.dataDir = dir
        config.auth.jwtKeyFile = dir + "/jwt.key"
        var logger = Logger(label: "test.member-version")
        logger.logLevel = .critical
        let runtime = try await ServerRuntime.open(config: config, logger: logger)
        let task = Task { try await runtime.run(handleSignals: false) }
        defer { task.cancel() }
        let port = try await runtime.waitUntilListening()

        let members = [ClusterMember(name: "one", address: "127.0.0.1", roles: []), ClusterMember(name: "gone", address: "127.0.0.2", roles: [])]
        let reader = MemberVersionReader(caFile: dir + "/ca.crt", certFile: dir + "/member.crt", keyFile: dir + "/member.key", port: port)
        // 127.0.0.2 is loopback too but the server listens on 127.0.0.1 only: that member does not answer.
        #expect(try await reader.versions(of: members) == ["one": WarblerVersion.version])

        // Without a cluster certificate the listener admits nobody: why the exporter cannot ask itself.
        let stranger = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                          names: CertificateNames(dns: ["localhost"], ips: []), now: Date())
        try stranger.serverCertificatePEM.write(toFile: dir + "/stranger.crt", atomically: true, encoding: .utf8)
        try stranger.serverKeyPEM.write(toFile: dir + "/stranger.key", atomically: true, encoding: .utf8)
        let outsider = MemberVersionReader(caFile: dir + "/ca.crt", certFile: dir + "/stranger.crt", keyFile: dir + "/stranger.key", port: port)
        #expect(try await outsider.versions(of: members).isEmpty)

        // An unreadable key is an error that says which files, not an empty answer.
        let missing = MemberVersionReader(caFile: dir + "/ca.crt", certFile: dir + "/member.crt", keyFile: dir + "/absent.key", port: port)
        let error = await #expect(throws: ClusterOpsError.self) { try await missing.versions(of: members) }
        #expect(error?.description.contains(dir + "/absent.key") == true)

        // The SDK presents a client certificate when given one: how the upgrade's self-check logs in and sends on a
        // member (on booted hosts, without it the self-check was refused, CERTIFICATE_REQUIRED, and rolled back).
        _ = try await runtime.createUser(username: "checker", password: "password-123", displayName: nil, admin: false)
        func client(cert: String?, key: String?) throws -> IMClient {
            try IMClient(configuration: IMClientConfiguration(baseURL: "https://127.0.0.1:\(port)", trustedCACertificatePath: dir + "/ca.crt",
                                                              clientCertificatePath: cert, clientKeyPath: key))
        }
        let member = try client(cert: dir + "/member.crt", key: dir + "/member.key")
        _ = try await member.login(username: "checker", password: "password-123")
        let group = try await member.createGroup(name: "check", members: [])
        let connection = member.makeConnection()
        try await connection.connect()
        let ack = try await connection.send(conversation: group.id, text: "over mutual TLS")
        #expect(ack.seq > 0)
        await connection.close()
        try await member.shutdown()
        let anonymous = try client(cert: nil, key: nil)
        await #expect(throws: IMError.self) { _ = try await anonymous.login(username: "checker", password: "password-123") }
        try await anonymous.shutdown()
        #expect(throws: IMError.self) { _ = try client(cert: dir + "/member.crt", key: nil) }

        await runtime.shutdown()
        _ = try? await task.value
    }
}

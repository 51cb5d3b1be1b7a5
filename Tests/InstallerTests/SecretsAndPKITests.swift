import Crypto
import Foundation
import Installer
import NIOSSL
import SwiftASN1
import Testing
@_spi(FixedExpiryValidationTime) import X509

@Suite struct SecretsAndPKITests {
    @Test func theJWTKeyIsInTheServersFormatAndOwnedByTheServer() throws {
        let host = try Host()
        try host.install()
        let text = try #require(host.text(Paths.jwtKey))
        let raw = try #require(Data(base64Encoded: text), "base64, as TokenService.loadOrCreateKey reads it")
        _ = try Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        #expect(host.system.node(Paths.jwtKey).map(PlanTests.attributes) == "0600 warbler:warbler")
        let password = try #require(host.text(Paths.adminPassword))
        #expect(password.hasSuffix("\n") && password.count == 25)
        #expect(host.system.node(Paths.adminPassword).map(PlanTests.attributes) == "0600 warbler:warbler")
    }

    @Test func secretsAreGeneratedOnceAndKept() throws {
        let host = try Host()
        let first = try host.install()
        #expect(first.facts.adminPasswordGenerated)
        let before = [Paths.jwtKey, Paths.adminPassword, Paths.caKey, Paths.caCert, Paths.serverKey, Paths.serverCert].map(host.system.content)
        let second = try host.install(.with { $0.port = 9000 })
        #expect(!second.facts.adminPasswordGenerated)
        let after = [Paths.jwtKey, Paths.adminPassword, Paths.caKey, Paths.caCert, Paths.serverKey, Paths.serverCert].map(host.system.content)
        #expect(before == after)
    }

    @Test func anUnreadableJWTKeyIsRefusedNotReplaced() throws {
        let host = try Host()
        try host.install()
        host.system.setNode(Paths.jwtKey, .file(Data("not a key".utf8), mode: 0o600, owner: Owner("warbler", "warbler")))
        #expect(throws: SecretsError.self) { try host.install() }
        #expect(host.text(Paths.jwtKey) == "not a key")
    }

    @Test func aGivenAdminPasswordIsUsedUntilTheAdminExists() throws {
        let host = try Host()
        host.system.setNode("/root", .directory(mode: 0o700, owner: .root))
        host.system.setNode("/root/pw", .file(Data("correct horse battery\n".utf8), mode: 0o600, owner: .root))
        let out = try host.install(.with { $0.adminPasswordFile = "/root/pw" })
        #expect(!out.facts.adminPasswordGenerated)
        #expect(host.text(Paths.adminPassword) == "correct horse battery\n")
        host.system.setNode("/root/pw", .file(Data("another password\n".utf8), mode: 0o600, owner: .root))
        let later = try host.install(.with { $0.adminPasswordFile = "/root/pw" })
        #expect(later.facts.adminPasswordIgnored)
        #expect(later.plan.isEmpty)
        let fresh = try Host()
        fresh.system.setNode("/root", .directory(mode: 0o700, owner: .root))
        fresh.system.setNode("/root/short", .file(Data("short\n".utf8), mode: 0o600, owner: .root))
        #expect(throws: SecretsError.self) { try fresh.install(.with { $0.adminPasswordFile = "/root/short" }) }
    }

    func certificates(_ host: Host) throws -> (ca: Certificate, server: Certificate) {
        (try Certificate(pemEncoded: try #require(host.text(Paths.caCert))),
         try Certificate(pemEncoded: try #require(host.text(Paths.serverCert))))
    }

    @Test func theInternalCAIssuesAServerCertificateForTheHostsNames() async throws {
        var host = try Host()
        host.probe.ips = [IPAddress.parse("10.0.0.5")!, IPAddress.parse("fd00::5")!]
        let outcome = try host.install(.with { $0.domains = ["chat.example.com", "192.168.7.9"] })
        let (ca, server) = try certificates(host)
        let sans = try PKI.sans(of: server)
        #expect(Set(sans.dns) == ["chat1", "chat.example.com"])
        #expect(Set(sans.ips.map(\.description)) == ["10.0.0.5", "fd00::5", "192.168.7.9"])
        #expect(server.publicKey == Certificate.PublicKey(try P256.Signing.PrivateKey(pemRepresentation: try #require(host.text(Paths.serverKey))).publicKey))
        #expect(try ca.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(try server.extensions.extendedKeyUsage?.contains(.serverAuth) == true)

        // The chain verifies as a TLS client would check it, for each name.
        var verifier = Verifier(rootCertificates: CertificateStore([ca])) {
            RFC5280Policy(fixedExpiryValidationTime: host.system.now())
            ServerIdentityPolicy(serverHostname: "chat.example.com", serverIP: nil)
        }
        guard case .validCertificate = await verifier.validate(leaf: server, intermediates: CertificateStore()) else {
            Issue.record("the server certificate does not verify against the internal CA"); return
        }
        var wrongName = Verifier(rootCertificates: CertificateStore([ca])) {
            RFC5280Policy(fixedExpiryValidationTime: host.system.now())
            ServerIdentityPolicy(serverHostname: "evil.example.com", serverIP: nil)
        }
        if case .validCertificate = await wrongName.validate(leaf: server, intermediates: CertificateStore()) {
            Issue.record("a name the certificate does not cover verified")
        }

        // The fingerprint is the SHA-256 of the CA's DER, as openssl prints it.
        var der = DER.Serializer()
        try der.serialize(ca)
        let expected = SHA256.hash(data: der.serializedBytes).map { String(format: "%02X", $0) }.joined(separator: ":")
        #expect(outcome.tls?.fingerprint == expected)
        #expect(outcome.render().contains(expected))

        // The files load the way the server loads them (NIOSSL, PEM).
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(try #require(host.system.content(Paths.serverCert))))
        let key = try NIOSSLPrivateKey(bytes: Array(try #require(host.system.content(Paths.serverKey))), format: .pem)
        _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)))
    }

    @Test func aNewDomainReissuesTheServerCertificateAndKeepsTheCAKey() throws {
        let host = try Host()
        try host.install()
        let (ca1, server1) = try certificates(host)
        let caKey = host.system.content(Paths.caKey)
        let outcome = try host.install(.with { $0.domains = ["im.example.org"] })
        let (ca2, server2) = try certificates(host)
        // The CA may issue only for the install's names: a new name gets it a new certificate, same key and subject.
        #expect(ca1.publicKey == ca2.publicKey && ca1.subject == ca2.subject && host.system.content(Paths.caKey) == caKey)
        #expect(try ca2.extensions.nameConstraints?.permittedDNSDomains.contains("im.example.org") == true)
        #expect(server1 != server2)
        #expect(try PKI.sans(of: server2).dns.contains("im.example.org"))
        #expect(Set(outcome.plan.writtenPaths) == [Paths.caCert, Paths.serverCert, Paths.serverKey])
        #expect(outcome.plan.serviceActions == [.restart(Paths.serverUnitName)])
    }

    @Test func aServerCertificateNearItsEndIsRenewed() throws {
        let host = try Host()
        try host.install()
        let (_, server1) = try certificates(host)
        host.system.advanceClock(by: 300 * 24 * 3600)
        #expect(try host.install().plan.isEmpty, "300 days in: still valid for longer than the renewal window")
        host.system.advanceClock(by: 80 * 24 * 3600)
        let outcome = try host.install()
        let (_, server2) = try certificates(host)
        #expect(server2 != server1)
        #expect(server2.notValidAfter > host.system.now() + 300 * 24 * 3600)
        #expect(outcome.plan.serviceActions == [.restart(Paths.serverUnitName)])
    }

    @Test func anOperatorsCertificateIsInstalledAsGivenAndAMismatchedKeyRefused() throws {
        let host = try Host()
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("chat.corp.example") }
        let cert = try Certificate(version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                                   notValidBefore: host.system.now() - 60, notValidAfter: host.system.now() + 86400 * 90,
                                   issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                                   extensions: try Certificate.Extensions { SubjectAlternativeNames([.dnsName("chat.corp.example")]) },
                                   issuerPrivateKey: .init(key))
        let pem = try cert.serializeAsPEM().pemString + "\n"
        host.system.setNode("/root", .directory(mode: 0o700, owner: .root))
        host.system.setNode("/root/tls.crt", .file(Data(pem.utf8), mode: 0o644, owner: .root))
        host.system.setNode("/root/tls.key", .file(Data(key.pemRepresentation.utf8), mode: 0o600, owner: .root))
        host.system.setNode("/root/other.key", .file(Data(P256.Signing.PrivateKey().pemRepresentation.utf8), mode: 0o600, owner: .root))

        #expect(throws: PKIError.self) { try host.install(.with { $0.tlsCert = "/root/tls.crt"; $0.tlsKey = "/root/other.key" }) }
        let outcome = try host.install(.with { $0.tlsCert = "/root/tls.crt"; $0.tlsKey = "/root/tls.key" })
        #expect(host.text(Paths.serverCert) == pem)
        #expect(host.system.node(Paths.caKey) == nil, "no internal CA when the operator brings a certificate")
        #expect(outcome.tls?.caCertificatePEM == nil)
        #expect(outcome.tls?.names == ["chat.corp.example"])
    }
}

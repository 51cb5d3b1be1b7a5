import Crypto
import Foundation
import Installer
import SwiftASN1
import Testing
@_spi(FixedExpiryValidationTime) import X509

/// Issue 9, item 4: whoever holds the internal CA's key could mint a certificate for any name that every client
/// trusting the CA accepts. The CA is now limited to the install's names and lives three years, not ten.
@Suite struct CANameConstraintsTests {
    let names = CertificateNames(hostname: "chat1", domains: ["chat.example.com"], addresses: [IPAddress.parse("10.0.0.5")!])
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func leaf(for name: String, caKey: P256.Signing.PrivateKey, ca: Certificate) throws -> Certificate {
        let key = P256.Signing.PrivateKey()
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 60, notValidAfter: now + 86_400,
            issuer: ca.subject, subject: try DistinguishedName { CommonName(name) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName(name)])
            },
            issuerPrivateKey: .init(caKey))
    }

    func verifies(_ leaf: Certificate, ca: Certificate, name: String) async -> Bool {
        var verifier = Verifier(rootCertificates: CertificateStore([ca])) {
            RFC5280Policy(fixedExpiryValidationTime: now)
            ServerIdentityPolicy(serverHostname: name, serverIP: nil)
        }
        if case .validCertificate = await verifier.validate(leaf: leaf, intermediates: CertificateStore()) { return true }
        return false
    }

    @Test func theCAMayIssueOnlyForTheInstallsNamesAndLivesThreeYears() async throws {
        let m = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil, names: names, now: now)
        let ca = try Certificate(pemEncoded: try #require(m.caCertificatePEM))
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: try #require(m.caKeyPEM))
        let constraints = try #require(try ca.extensions.nameConstraints)
        #expect(Set(constraints.permittedDNSDomains) == ["chat1", "chat.example.com"])
        #expect(ca.extensions[oid: .X509ExtensionID.nameConstraints]?.critical == true)
        #expect(ca.notValidAfter <= now + 3 * 366 * 86_400)
        #expect(ca.notValidAfter >= now + 397 * 86_400 + 30 * 86_400, "the CA must outlive a server certificate and its renewal window")

        // The install's own certificate verifies; one the CA's key mints for any other name does not.
        let server = try Certificate(pemEncoded: m.serverCertificatePEM)
        #expect(await verifies(server, ca: ca, name: "chat.example.com"))
        #expect(await verifies(try leaf(for: "im.chat.example.com", caKey: caKey, ca: ca), ca: ca, name: "im.chat.example.com"))
        #expect(!(await verifies(try leaf(for: "login.bank.example", caKey: caKey, ca: ca), ca: ca, name: "login.bank.example")),
                "the CA's key minted a trusted certificate for a name outside the install")
    }

    @Test func anUnconstrainedOrExpiringCAGetsANewCertificateForTheSameKey() throws {
        // A CA from before: no name constraints, ten years.
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { OrganizationName("Warbler"); CommonName("Warbler internal CA (chat1)") }
        let old = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 3600, notValidAfter: now + 10 * 365 * 86_400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
        let m = try PKI.internalCA(caCert: try old.serializeAsPEM().pemString, caKey: key.pemRepresentation, serverCert: nil, serverKey: nil,
                                   names: names, now: now)
        let renewed = try Certificate(pemEncoded: try #require(m.caCertificatePEM))
        #expect(renewed.publicKey == old.publicKey && renewed.subject == old.subject)
        #expect(try renewed.extensions.nameConstraints != nil)
        // Kept as it is while it is constrained for these names and far from its end.
        let again = try PKI.internalCA(caCert: m.caCertificatePEM, caKey: m.caKeyPEM, serverCert: m.serverCertificatePEM, serverKey: m.serverKeyPEM,
                                       names: names, now: now + 86_400)
        #expect(again.caCertificatePEM == m.caCertificatePEM && !again.issued)
        // Near its end: a new certificate, same key.
        let late = try PKI.internalCA(caCert: m.caCertificatePEM, caKey: m.caKeyPEM, serverCert: nil, serverKey: nil,
                                      names: names, now: renewed.notValidAfter - 400 * 86_400)
        let lateCA = try Certificate(pemEncoded: try #require(late.caCertificatePEM))
        #expect(lateCA.notValidAfter > renewed.notValidAfter && lateCA.publicKey == renewed.publicKey)
    }
}

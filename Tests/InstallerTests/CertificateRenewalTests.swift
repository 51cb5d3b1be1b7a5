import Crypto
import Foundation
import Installer
import Testing
import X509

@Suite struct CertificateRenewalTests {
    func pair(_ host: Host) throws -> (ca: Certificate, server: Certificate, key: P256.Signing.PrivateKey) {
        (try Certificate(pemEncoded: try #require(host.text(Paths.caCert))),
         try Certificate(pemEncoded: try #require(host.text(Paths.serverCert))),
         try P256.Signing.PrivateKey(pemRepresentation: try #require(host.text(Paths.serverKey))))
    }

    @Test func renewsOnlyInsideTheWindowWithTheSameNamesCAAndOwners() throws {
        let host = try Host()
        try host.install(.with { $0.domains = ["im.example.org"] })
        let before = try pair(host)
        let renewal = CertificateRenewal(system: host.system, layout: Layout())

        host.system.clearOperations()
        guard case .current(let notAfter) = try renewal.run() else { Issue.record("a fresh certificate was renewed"); return }
        #expect(notAfter == before.server.notValidAfter)
        #expect(host.system.operations.isEmpty, "nothing due, nothing written")

        host.system.advanceClock(by: 380 * 24 * 3600)
        guard case .renewed(let previous, let newEnd, let names) = try renewal.run() else { Issue.record("not renewed 17 days before the end"); return }
        let after = try pair(host)
        #expect(previous == before.server.notValidAfter)
        #expect(newEnd == after.server.notValidAfter && newEnd > host.system.now() + 300 * 24 * 3600)
        #expect(names.contains("im.example.org") && names.contains("chat1"))
        #expect(try PKI.sans(of: after.server) == PKI.sans(of: before.server))
        #expect(after.ca == before.ca, "the CA clients trust stays")
        #expect(before.ca.publicKey.isValidSignature(after.server.signature, for: after.server))
        #expect(after.server.publicKey == Certificate.PublicKey(after.key.publicKey), "the new key is the new certificate's")
        #expect(after.key.rawRepresentation != before.key.rawRepresentation, "a new key, not only a new certificate")
        #expect(host.system.node(Paths.serverKey).map(PlanTests.attributes) == "0600 warbler:warbler")
        #expect(host.system.node(Paths.serverCert).map(PlanTests.attributes) == "0644 root:root")

        guard case .current = try renewal.run() else { Issue.record("renewed twice"); return }
        // The installer agrees: nothing left to do.
        #expect(try host.install().plan.writtenPaths.isEmpty)
    }

    /// The job's sandbox gives root no right to read the server's key: deciding and renewing must not need it.
    @Test func neitherTheCheckNorTheRenewalReadsTheServersKey() throws {
        let host = try Host()
        try host.install()
        host.system.setNode(Paths.serverKey, nil)
        let renewal = CertificateRenewal(system: host.system, layout: Layout())
        guard case .current = try renewal.run() else { Issue.record("the check needed the key"); return }
        host.system.advanceClock(by: 380 * 24 * 3600)
        guard case .renewed = try renewal.run() else { Issue.record("the renewal needed the old key"); return }
        #expect(try pair(host).server.publicKey == Certificate.PublicKey(try pair(host).key.publicKey))
    }

    @Test func forceRenewsAtOnce() throws {
        let host = try Host()
        try host.install()
        let before = try pair(host)
        guard case .renewed = try CertificateRenewal(system: host.system, layout: Layout()).run(force: true) else {
            Issue.record("--force did not renew"); return
        }
        #expect(try pair(host).server != before.server)
    }

    @Test func withoutTheInternalCAItLeavesTheCertificateToWhoeverOwnsIt() throws {
        let plain = try Host()
        try plain.install(.with { $0.tls = false })
        #expect(try CertificateRenewal(system: plain.system, layout: Layout()).run() == .noTLS)

        let own = try Host()
        try own.install()
        own.system.setNode(Paths.caKey, nil)
        guard case .operatorCertificate(let notAfter) = try CertificateRenewal(system: own.system, layout: Layout()).run() else {
            Issue.record("an operator's certificate was touched"); return
        }
        #expect(notAfter != nil)
    }

    @Test func aMissingCACertificateSaysWhatToDo() throws {
        let host = try Host()
        try host.install()
        host.system.setNode(Paths.caCert, nil)
        #expect {
            try CertificateRenewal(system: host.system, layout: Layout()).run()
        } throws: { ($0 as? PKIError)?.description.contains("restore it from a backup") == true }
    }

    @Test func systemdInstallsRunTheRenewalDailyFromATimer() throws {
        let host = try Host()
        let outcome = try host.install()
        let timer = Paths.certRenewTimerName
        #expect(outcome.plan.serviceActions.contains(.enable(timer)) && outcome.plan.serviceActions.last == .start(timer))
        let service = try #require(host.text(Paths.unitFile(Paths.certRenewServiceName)))
        #expect(service.contains("ExecStart=/opt/warbler/current/bin/warbler certs renew"))
        #expect(service.contains("ConditionPathExists=/etc/warbler/tls/ca.key"))
        #expect(service.contains("ReadWritePaths=/etc/warbler/tls\n"))
        #expect(try #require(host.text(Paths.unitFile(timer))).contains("OnCalendar=daily"))
        // No internal CA, no timer.
        let plain = try Host()
        #expect(!(try plain.install(.with { $0.tls = false }).plan.serviceActions.contains(.enable(timer))))
        #expect(plain.text(Paths.unitFile(timer)) == nil)
    }
}

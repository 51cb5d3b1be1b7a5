import Foundation
import X509

/// Renews the server certificate the internal CA issued, before it expires (`warbler certs renew`, run daily by
/// the warbler-cert-renew timer or the built-in supervisor). The new certificate covers the same names as the old
/// one; the server reads the new pair within `server.tls_reload_seconds` without a restart.
public struct CertificateRenewal: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// Nothing to do: the certificate is good until `notAfter` and outside the renewal window.
        case current(notAfter: Date)
        /// A new certificate was written.
        case renewed(previous: Date?, notAfter: Date, names: [String])
        /// TLS is off on this install.
        case noTLS
        /// The certificate is the operator's own (`--tls-cert`): they renew it.
        case operatorCertificate(notAfter: Date?)
    }

    public let system: any System
    public let layout: Layout

    public init(system: any System, layout: Layout) { self.system = system; self.layout = layout }

    /// Renews when the certificate is within `PKI.renewBefore` of its end, is unreadable, or `force`.
    public func run(force: Bool = false) throws -> Outcome {
        let caCertPath = layout.path(Paths.caCert), caKeyPath = layout.path(Paths.caKey)
        let certPath = layout.path(Paths.serverCert), keyPath = layout.path(Paths.serverKey)
        let existingCert = try read(certPath)
        guard try system.info(caKeyPath) != nil else {
            guard let existingCert else { return .noTLS }
            return .operatorCertificate(notAfter: (try? Certificate(pemEncoded: existingCert))?.notValidAfter)
        }
        guard let caCert = try read(caCertPath), let caKey = try read(caKeyPath) else {
            throw PKIError("\(Paths.caCert) is missing beside \(Paths.caKey); restore it from a backup, then run `warbler certs renew` again")
        }
        guard let existingCert, let leaf = try? Certificate(pemEncoded: existingCert), let names = try? PKI.sans(of: leaf),
              !(names.dns.isEmpty && names.ips.isEmpty) else {
            throw PKIError("cannot read the names of the server certificate \(Paths.serverCert); run `warbler install` to issue a new one for this host's names")
        }
        let now = system.now()
        // Decided from the certificate alone: the job may not read the server's key (it is the server's, and the
        // job's sandbox gives root no right to read other users' files).
        if !force, let ca = try? Certificate(pemEncoded: caCert), leaf.issuer == ca.subject,
           ca.publicKey.isValidSignature(leaf.signature, for: leaf),
           leaf.notValidBefore <= now, leaf.notValidAfter > now + PKI.renewBefore {
            return .current(notAfter: leaf.notValidAfter)
        }
        let material = try PKI.internalCA(caCert: caCert, caKey: caKey, serverCert: nil, serverKey: nil, names: names, now: now)

        // Key first, then certificate, each written atomically: the server refuses a pair whose key is not the
        // certificate's, so between the two renames it keeps serving the old pair.
        let keyOwner = try system.info(keyPath)?.owner ?? (layout.isStaging ? nil : Owner(Blueprint.user, Blueprint.user))
        let certOwner = try system.info(certPath)?.owner ?? (layout.isStaging ? nil : .root)
        try system.write(keyPath, Data(material.serverKeyPEM.utf8), mode: 0o600, owner: layout.isStaging ? nil : keyOwner)
        try system.write(certPath, Data(material.serverCertificatePEM.utf8), mode: 0o644, owner: layout.isStaging ? nil : certOwner)
        return .renewed(previous: leaf.notValidAfter, notAfter: material.notAfter, names: names.all)
    }

    func read(_ path: String) throws -> String? {
        guard try system.info(path)?.kind == .file else { return nil }
        return String(decoding: try system.read(path), as: UTF8.self)
    }
}

extension CertificateRenewal.Outcome {
    public func render(reloadSeconds: Int = 30) -> String {
        let f = ISO8601DateFormatter()
        switch self {
        case .current(let notAfter):
            let days = Int(notAfter.timeIntervalSinceNow / 86_400)
            return "The server certificate is valid until \(f.string(from: notAfter)) (\(days) days); it is renewed \(Int(PKI.renewBefore / 86_400)) days before that. Nothing to do.\n"
        case .renewed(let previous, let notAfter, let names):
            return """
                Renewed the server certificate for \(names.joined(separator: ", ")): valid until \(f.string(from: notAfter))\
                \(previous.map { " (was \(f.string(from: $0)))" } ?? "").
                The server uses it for new connections within \(reloadSeconds) s, without a restart.

                """
        case .noTLS:
            return "TLS is off on this install (--no-tls); there is no certificate to renew.\n"
        case .operatorCertificate(let notAfter):
            return "The server certificate is your own (--tls-cert)\(notAfter.map { ", valid until \(f.string(from: $0))" } ?? ""); renew it with its issuer and replace \(Paths.serverCert) and \(Paths.serverKey) (or run `warbler install --tls-cert … --tls-key …` again). The server loads the new pair without a restart.\n"
        }
    }
}

import Crypto
import Foundation
import SwiftASN1
import X509

/// The names a server certificate must cover.
public struct CertificateNames: Sendable, Equatable {
    public var dns: [String]
    public var ips: [IPAddress]

    /// The hostname and `--domain` names (lower case, once each, in order) and the host's addresses plus any
    /// address given as a domain.
    public init(hostname: String, domains: [String], addresses: [IPAddress]) {
        var dns: [String] = [], ips: [IPAddress] = []
        for name in [hostname] + domains {
            if let ip = IPAddress.parse(name) {
                if !ips.contains(ip) { ips.append(ip) }
            } else if !name.isEmpty, !dns.contains(name.lowercased()) {
                dns.append(name.lowercased())
            }
        }
        for a in addresses where !ips.contains(a) { ips.append(a) }
        self.dns = dns
        self.ips = ips
    }

    public init(dns: [String], ips: [IPAddress]) { self.dns = dns; self.ips = ips }

    var generalNames: [GeneralName] {
        dns.map { .dnsName($0) } + ips.map { .ipAddress(ASN1OctetString(contentBytes: ArraySlice($0.bytes))) }
    }

    /// Order-free comparison (a certificate's SAN order carries no meaning).
    func sameSet(as other: CertificateNames) -> Bool {
        Set(dns) == Set(other.dns) && Set(ips) == Set(other.ips)
    }

    public var all: [String] { dns + ips.map(\.description) }
}

/// The PEM files the server's TLS runs on, and what to tell the operator about them.
public struct TLSMaterial: Sendable, Equatable {
    /// The internal CA (nil for an operator's certificate).
    public var caCertificatePEM: String?
    public var caKeyPEM: String?
    public var serverCertificatePEM: String
    public var serverKeyPEM: String
    /// SHA-256 of the certificate clients should trust: the internal CA's, or the operator's leaf.
    public var fingerprint: String
    public var names: [String]
    public var notAfter: Date
    /// The server certificate was (re)issued by this run.
    public var issued: Bool
}

/// The internal CA: a P-256 root made once per install, and server certificates it issues for the host's names.
public enum PKI {
    /// A server certificate closer than this to its end is reissued by the next install run.
    public static let renewBefore: TimeInterval = 30 * 24 * 3600
    /// Three years: long enough that clients rarely re-import it, short enough that a stolen key dies. Its
    /// certificate (same key, so clients' trust holds) is reissued by `warbler install` once less than one server
    /// certificate's life and the renewal window remain, or when the install's names outgrow its constraints.
    static let caLifetime: TimeInterval = 3 * 365 * 24 * 3600
    static let serverLifetime: TimeInterval = 397 * 24 * 3600
    static let caRenewBefore: TimeInterval = serverLifetime + renewBefore

    /// Keeps what is there and still right; makes what is missing; reissues the server certificate when its names
    /// changed, it is not from this CA, or it is near its end.
    public static func internalCA(caCert: String?, caKey: String?, serverCert: String?, serverKey: String?,
                                  names: CertificateNames, now: Date) throws -> TLSMaterial {
        let ca: (cert: Certificate, key: P256.Signing.PrivateKey, certPEM: String, keyPEM: String)
        switch (caCert, caKey) {
        case (let certPEM?, let keyPEM?):
            let cert: Certificate, key: P256.Signing.PrivateKey
            do {
                cert = try Certificate(pemEncoded: certPEM)
                key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
            } catch {
                throw PKIError("the internal CA (\(Paths.caCert), \(Paths.caKey)) is unreadable: \(error); restore both from a backup, or move both away to make a new CA (clients must then trust the new one)")
            }
            guard cert.publicKey == Certificate.PublicKey(key.publicKey) else {
                throw PKIError("\(Paths.caKey) is not the key of \(Paths.caCert); restore the pair from a backup")
            }
            if cert.notValidAfter <= now + caRenewBefore || !constraintsCover(cert, names) {
                // Same key and subject: certificates it issued still chain, and clients that trust the old
                // certificate keep working until it ends; the new one carries this install's names as constraints.
                let renewed = try makeCA(key: key, subject: cert.subject, names: names, now: now)
                ca = (renewed, key, try renewed.serializeAsPEM().pemString + "\n", keyPEM)
            } else {
                ca = (cert, key, certPEM, keyPEM)
            }
        case (nil, nil):
            let key = P256.Signing.PrivateKey()
            let cert = try makeCA(key: key, subject: try caSubject(hostname: names.dns.first ?? "warbler"), names: names, now: now)
            ca = (cert, key, try cert.serializeAsPEM().pemString + "\n", key.pemRepresentation + "\n")
        default:
            throw PKIError("only one of \(Paths.caCert) and \(Paths.caKey) exists; restore the other from a backup, or move both away to make a new CA")
        }

        if let serverCert, let serverKey,
           let cert = try? Certificate(pemEncoded: serverCert),
           let key = try? P256.Signing.PrivateKey(pemRepresentation: serverKey),
           cert.publicKey == Certificate.PublicKey(key.publicKey),
           ca.cert.publicKey.isValidSignature(cert.signature, for: cert),
           cert.issuer == ca.cert.subject,
           let existing = try? sans(of: cert), existing.sameSet(as: names),
           cert.notValidBefore <= now, cert.notValidAfter > now + renewBefore {
            return TLSMaterial(caCertificatePEM: ca.certPEM, caKeyPEM: ca.keyPEM, serverCertificatePEM: serverCert, serverKeyPEM: serverKey,
                               fingerprint: try fingerprint(ca.cert), names: names.all, notAfter: cert.notValidAfter, issued: false)
        }
        let key = P256.Signing.PrivateKey()
        let cert = try issueServerCertificate(names: names, key: key, caCert: ca.cert, caKey: ca.key, now: now)
        return TLSMaterial(caCertificatePEM: ca.certPEM, caKeyPEM: ca.keyPEM,
                           serverCertificatePEM: try cert.serializeAsPEM().pemString + "\n", serverKeyPEM: key.pemRepresentation + "\n",
                           fingerprint: try fingerprint(ca.cert), names: names.all, notAfter: cert.notValidAfter, issued: true)
    }

    /// The operator's chain and key (`--tls-cert`, `--tls-key`), checked: they parse, the key is the leaf's, the
    /// leaf is within its validity.
    public static func provided(certificatePEM: String, keyPEM: String, certPath: String, keyPath: String, now: Date) throws -> TLSMaterial {
        let chain: [Certificate]
        do {
            chain = try PEMDocument.parseMultiple(pemString: certificatePEM)
                .filter { $0.discriminator == "CERTIFICATE" }
                .map { try Certificate(pemDocument: $0) }
        } catch {
            throw PKIError("\(certPath) is not a PEM certificate chain: \(error)")
        }
        guard let leaf = chain.first else { throw PKIError("\(certPath) holds no PEM certificate") }
        let key: Certificate.PrivateKey
        do { key = try Certificate.PrivateKey(pemEncoded: keyPEM) } catch {
            throw PKIError("\(keyPath) is not a PEM private key (PKCS#8, EC or RSA): \(error)")
        }
        guard key.publicKey == leaf.publicKey else {
            throw PKIError("\(keyPath) is not the key of the first certificate in \(certPath)")
        }
        guard leaf.notValidAfter > now else { throw PKIError("the certificate in \(certPath) expired on \(leaf.notValidAfter)") }
        guard leaf.notValidBefore <= now else { throw PKIError("the certificate in \(certPath) is not valid before \(leaf.notValidBefore)") }
        let names = (try? sans(of: leaf))?.all ?? []
        return TLSMaterial(caCertificatePEM: nil, caKeyPEM: nil, serverCertificatePEM: certificatePEM, serverKeyPEM: keyPEM,
                           fingerprint: try fingerprint(leaf), names: names, notAfter: leaf.notValidAfter, issued: false)
    }

    static func caSubject(hostname: String) throws -> DistinguishedName {
        try DistinguishedName {
            OrganizationName("Warbler")
            CommonName("Warbler internal CA (\(hostname))")
        }
    }

    /// The CA may issue only for the install's DNS names (and names under them). Addresses are left unconstrained:
    /// BoringSSL, the TLS stack of the server, the SDK and `warbler bench`, refuses every chain whose CA carries
    /// iPAddress constraints (a handshake test, TLSHandshakeTests, showed it with constraints that OpenSSL accepts),
    /// so constraining addresses would lock every client out. With no DNS name there is nothing to constrain.
    static func nameConstraints(_ names: CertificateNames) -> NameConstraints {
        NameConstraints(permittedDNSDomains: names.dns, excludedDNSDomains: [], permittedIPRanges: [], excludedIPRanges: [])
    }

    /// Whether the CA's name constraints are exactly the ones for `names` (a CA without any is not constrained enough).
    static func constraintsCover(_ cert: Certificate, _ names: CertificateNames) -> Bool {
        guard !names.dns.isEmpty else { return ((try? cert.extensions.nameConstraints) ?? nil) == nil }
        guard let existing = try? cert.extensions.nameConstraints else { return false }
        let wanted = nameConstraints(names)
        return Set(existing.permittedSubtrees.map { "\($0)" }) == Set(wanted.permittedSubtrees.map { "\($0)" })
            && Set(existing.excludedSubtrees.map { "\($0)" }) == Set(wanted.excludedSubtrees.map { "\($0)" })
    }

    static func makeCA(key: P256.Signing.PrivateKey, subject name: DistinguishedName, names: CertificateNames, now: Date) throws -> Certificate {
        let publicKey = Certificate.PublicKey(key.publicKey)
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - 3600, notValidAfter: now + caLifetime,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                if !names.dns.isEmpty { Critical(nameConstraints(names)) }
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
    }

    /// A short-lived certificate and key from the CA's PEM pair (a joining host's first etcd client identity,
    /// before its install issues its own).
    public static func issuePair(caCertPEM: String, caKeyPEM: String, names: CertificateNames, now: Date) throws -> (certPEM: String, keyPEM: String) {
        let caCert = try Certificate(pemEncoded: caCertPEM)
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: caKeyPEM)
        let key = P256.Signing.PrivateKey()
        let cert = try issueServerCertificate(names: names, key: key, caCert: caCert, caKey: caKey, now: now)
        return (try cert.serializeAsPEM().pemString + "\n", key.pemRepresentation + "\n")
    }

    static func issueServerCertificate(names: CertificateNames, key: P256.Signing.PrivateKey, caCert: Certificate,
                                       caKey: P256.Signing.PrivateKey, now: Date) throws -> Certificate {
        let publicKey = Certificate.PublicKey(key.publicKey)
        let subject = try DistinguishedName {
            OrganizationName("Warbler")
            CommonName(names.dns.first ?? names.ips.first?.description ?? "warbler")
        }
        let caKeyID = (try? caCert.extensions.subjectKeyIdentifier)??.keyIdentifier
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - 3600, notValidAfter: min(now + serverLifetime, caCert.notValidAfter),
            issuer: caCert.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                // clientAuth too: cluster members authenticate to each other (etcd peers, HAProxy to the IM servers) with it.
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names.generalNames)
                SubjectKeyIdentifier(hash: publicKey)
                if let caKeyID { AuthorityKeyIdentifier(keyIdentifier: caKeyID) }
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
    }

    /// The names in a certificate's subjectAltName.
    public static func sans(of cert: Certificate) throws -> CertificateNames {
        var dns: [String] = [], ips: [IPAddress] = []
        for name in try cert.extensions.subjectAlternativeNames ?? SubjectAlternativeNames([]) {
            switch name {
            case .dnsName(let d): dns.append(d)
            case .ipAddress(let octets): if let ip = IPAddress(bytes: Array(octets.bytes)) { ips.append(ip) }
            default: break
            }
        }
        return CertificateNames(dns: dns, ips: ips)
    }

    /// `AB:CD:…`, the SHA-256 of the DER certificate (what `openssl x509 -fingerprint -sha256` prints).
    public static func fingerprint(_ cert: Certificate) throws -> String {
        var serializer = DER.Serializer()
        try serializer.serialize(cert)
        return Digest.hex(Digest.sha256(Data(serializer.serializedBytes)), separator: ":").uppercased()
    }
}

public struct PKIError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

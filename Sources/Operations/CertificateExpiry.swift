import Foundation
import X509

/// When a PEM certificate stops being valid: what `status` and the exporter both read.
public enum CertificateExpiry {
    /// The notAfter of the first certificate in `pem` (a chain's leaf comes first).
    public static func notValidAfter(pem: String) throws -> Date {
        // Certificate(pemEncoded:) wants one PEM block: take the first of a chain.
        let end = "-----END CERTIFICATE-----"
        let first = pem.range(of: end).map { String(pem[..<$0.upperBound]) } ?? pem
        return try Certificate(pemEncoded: first).notValidAfter
    }

    /// Reads `path` and returns its first certificate's notAfter; the error names the file.
    public static func notValidAfter(file path: String) throws -> Date {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CertificateFileError("cannot read the certificate \(path); check that it exists and this user may read it")
        }
        do { return try notValidAfter(pem: String(decoding: data, as: UTF8.self)) } catch {
            throw CertificateFileError("\(path) does not hold a PEM certificate: \(error)")
        }
    }
}

/// A certificate file that cannot be read or parsed.
public struct CertificateFileError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

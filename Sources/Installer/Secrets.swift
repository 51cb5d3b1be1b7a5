import Crypto
import Foundation

/// The install's generated secrets. Each is generated once and kept: a re-run reads it back and changes nothing.
public enum Secrets {
    /// The server's token signing key in its own format (TokenService.loadOrCreateKey): the base64 of a raw
    /// Ed25519 private key, no newline. An existing key is kept; one the server could not read is refused,
    /// because replacing it would log everyone out.
    public static func jwtKey(existing: Data?, path: String) throws -> Data {
        if let existing {
            let text = String(decoding: existing, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let raw = Data(base64Encoded: text), (try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)) != nil else {
                throw SecretsError("\(path) is not a base64 Ed25519 key; restore it from a backup, or delete it to issue a new key (everyone will have to log in again)")
            }
            return existing
        }
        return Data(Curve25519.Signing.PrivateKey().rawRepresentation.base64EncodedString().utf8)
    }

    /// The first admin's password file: kept when there; else the operator's (`--admin-password-file`), else
    /// 24 random letters and digits. The first line is the password (what `warbler user-add --password-file` reads).
    public static func adminPassword(existing: Data?, given: Data?, source: String?) throws -> (content: Data, generated: Bool) {
        if let existing { return (existing, false) }
        if let given {
            let line = String(decoding: given, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            guard line.count >= 8 else {
                throw SecretsError("the admin password in \(source ?? "the given file") is shorter than 8 characters; the server refuses it")
            }
            return (Data((line + "\n").utf8), false)
        }
        return (Data((randomPassword(length: 24) + "\n").utf8), true)
    }

    /// Letters and digits without the look-alikes (0/O, 1/l/I), from the system's CSPRNG.
    public static func randomPassword(length: Int) -> String {
        let alphabet = Array("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in alphabet[Int(rng.next(upperBound: UInt64(alphabet.count)))] })
    }
}

public struct SecretsError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

import Crypto
import Foundation
import SwiftASN1
import X509

/// A cluster join token, k3s's design: `W10<sha256 of the cluster CA's public key>::<id>.<secret>`.
/// The joining host fetches the CA without verification, checks its key's hash against the token (so a man in the
/// middle is caught), then talks verified TLS only. The server keeps only a hash of the proof the secret derives,
/// and the join bundle it hands out is sealed with a key only the secret derives: the IM server that stores and
/// serves it can neither read it nor forge a token.
public struct JoinToken: Sendable, Equatable, CustomStringConvertible {
    public static let prefix = "W10"
    public var caKeyHash: String
    public var id: String
    public var secret: String

    public init(caKeyHash: String, id: String, secret: String) { self.caKeyHash = caKeyHash; self.id = id; self.secret = secret }

    /// A fresh token for the CA whose certificate is `caPEM`.
    public static func generate(caPEM: String) throws -> JoinToken {
        JoinToken(caKeyHash: try caKeyHash(pem: caPEM), id: Secrets.randomPassword(length: 10).lowercased(),
                  secret: Secrets.randomPassword(length: 32))
    }

    public var description: String { "\(Self.prefix)\(caKeyHash)::\(id).\(secret)" }

    public static func parse(_ text: String) throws -> JoinToken {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard t.hasPrefix(prefix) else {
            throw JoinError("the token must start with \(prefix) and carry the cluster CA's hash (`warbler cluster token` prints one); a token without the hash could not tell the real cluster from an impostor")
        }
        let body = t.dropFirst(prefix.count)
        let halves = body.components(separatedBy: "::")
        guard halves.count == 2, halves[0].count == 64, halves[0].allSatisfy(\.isHexDigit) else {
            throw JoinError("the token is not W10<64 hex digits>::<id>.<secret>; copy it again from `warbler cluster token`")
        }
        let creds = halves[1].split(separator: ".", maxSplits: 1).map(String.init)
        guard creds.count == 2, isID(creds[0]), creds[1].count >= 16, creds[1].allSatisfy({ $0.isLetter || $0.isNumber }) else {
            throw JoinError("the token's credentials are not <id>.<secret>; copy it again from `warbler cluster token`")
        }
        return JoinToken(caKeyHash: halves[0].lowercased(), id: creds[0], secret: creds[1])
    }

    static func isID(_ s: String) -> Bool {
        (6...32).contains(s.count) && s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) }
    }

    /// SHA-256 of the CA certificate's SubjectPublicKeyInfo, hex (kubeadm's pin: a reissued CA keeps it).
    public static func caKeyHash(pem: String) throws -> String {
        let cert: Certificate
        do { cert = try Certificate(pemEncoded: pem) } catch { throw JoinError("the cluster CA certificate does not parse: \(error)") }
        var serializer = DER.Serializer()
        try serializer.serialize(cert.publicKey)
        return Digest.hex(Digest.sha256(Data(serializer.serializedBytes)))
    }

    /// What the joining host sends to prove it holds the secret (never the secret itself).
    public var proof: String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("warbler join proof v1|\(id)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return Digest.hex(Data(mac))
    }

    /// What the server stores to check a proof.
    public static func proofHash(_ proof: String) -> String {
        Digest.hex(Digest.sha256(Data(proof.utf8)))
    }

    var bundleKey: SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: Data(secret.utf8)), salt: Data(id.utf8),
                               info: Data("warbler join bundle v1".utf8), outputByteCount: 32)
    }

    /// The bundle sealed for this token (AES-256-GCM, base64).
    public func seal(_ bundle: ClusterBundle) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let sealed = try AES.GCM.seal(try e.encode(bundle), using: bundleKey, authenticating: Data(id.utf8))
        guard let combined = sealed.combined else { throw JoinError("cannot seal the join bundle") }
        return combined.base64EncodedString()
    }

    public func open(_ sealed: String) throws -> ClusterBundle {
        guard let data = Data(base64Encoded: sealed) else { throw JoinError("the cluster sent a join bundle that is not base64") }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            return try JSONDecoder().decode(ClusterBundle.self, from: try AES.GCM.open(box, using: bundleKey, authenticating: Data(id.utf8)))
        } catch {
            throw JoinError("the join bundle does not open with this token (a token from another cluster, or a tampered reply)")
        }
    }
}

/// What a new member needs from the cluster: its CA (so every member's certificate is trusted everywhere), the
/// token signing key, PostgreSQL's credentials, and the settings every member shares.
public struct ClusterBundle: Codable, Sendable, Equatable {
    public var caCert: String
    public var caKey: String
    public var jwtKey: String
    public var superuserPassword: String
    public var replicationPassword: String
    public var rewindPassword: String
    public var patroniAPIPassword: String
    public var appPassword: String
    public var domains: [String]
    public var port: Int
    public var balance: String
    public var registration: String
    /// The members when the token was made: the joining host reaches etcd through any of them.
    public var members: [ClusterMember]
    /// A cluster on the site's PostgreSQL: its URL (no password; that is `appPassword`) and CA, if one was given.
    public var databaseURL: String? = nil
    public var databaseCA: String? = nil
    /// The cluster's virtual IP (`--vip`), if it has one: every member runs keepalived for it.
    public var vip: String? = nil

    public init(caCert: String, caKey: String, jwtKey: String, superuserPassword: String, replicationPassword: String,
                rewindPassword: String, patroniAPIPassword: String, appPassword: String, domains: [String], port: Int,
                balance: String, registration: String, members: [ClusterMember]) {
        self.caCert = caCert; self.caKey = caKey; self.jwtKey = jwtKey; self.superuserPassword = superuserPassword
        self.replicationPassword = replicationPassword; self.rewindPassword = rewindPassword
        self.patroniAPIPassword = patroniAPIPassword; self.appPassword = appPassword; self.domains = domains
        self.port = port; self.balance = balance; self.registration = registration; self.members = members
    }
}

public struct JoinError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A token's lifetime from `--ttl` (`30m`, `24h`, `7d`).
public enum TokenTTL {
    public static func parse(_ s: String) throws -> TimeInterval {
        guard let unit = s.last, let n = Double(s.dropLast()), n > 0, n.isFinite else {
            throw JoinError("--ttl must be a number and a unit (m, h or d), such as 24h, not '\(s)'")
        }
        switch unit {
        case "m": return n * 60
        case "h": return n * 3600
        case "d": return n * 86400
        default: throw JoinError("--ttl must end in m, h or d (such as 24h), not '\(s)'")
        }
    }
}

import Crypto
import DurableFiles
import Foundation
import IMCore

/// What a verified access token says.
public struct AccessClaims: Sendable, Codable, Hashable {
    public var sub: UserID
    public var adm: Bool
    /// The refresh-token family (login session) this token belongs to.
    public var sid: String
    public var iat: Int64
    public var exp: Int64
    public var iss: String
    /// The user's token generation when issued; a token below the user's current one was revoked.
    /// Absent in tokens issued before generations existed (read as 0).
    public var gen: Int64?
    /// Set only for a caller that presented a bot token (never part of a JWT): what the token allows.
    public var scopes: [BotScope]?

    /// Whether the caller is a bot, authenticated by a bot token.
    public var isBot: Bool { scopes != nil }
}

/// Signs and verifies EdDSA (Ed25519) JWT access tokens, and makes refresh tokens.
public struct TokenService: Sendable {
    public typealias Key = Curve25519.Signing.PrivateKey
    let key: Curve25519.Signing.PrivateKey
    public let accessTTL: Int
    public let refreshTTL: Int
    static let issuer = "warbler"

    public init(key: Curve25519.Signing.PrivateKey, accessTTL: Int, refreshTTL: Int) {
        self.key = key; self.accessTTL = accessTTL; self.refreshTTL = refreshTTL
    }

    /// Reads the key from `path`, creating it (mode 0600) if it doesn't exist.
    public static func loadOrCreateKey(path: String) throws -> Curve25519.Signing.PrivateKey {
        if FileManager.default.fileExists(atPath: path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)),
                  let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
                throw ConfigError("the JWT key file \(path) is unreadable or not a base64 Ed25519 key; restore it from backup or delete it to issue a new key (everyone will have to log in again)")
            }
            return key
        }
        let key = Curve25519.Signing.PrivateKey()
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            // 0600 from creation on, and never over anything (a file or a link) that appeared meanwhile.
            try AtomicFile.create(Data(key.rawRepresentation.base64EncodedString().utf8), at: path, mode: 0o600)
        } catch {
            throw ConfigError("cannot create the JWT key file \(path): \(error); create \(dir) writable by this user or set auth.jwt_key_file")
        }
        return key
    }

    public func issueAccess(user: UserID, admin: Bool, session: String, generation: Int64 = 0, now: Int64) -> String {
        // `exp` rounds up so a token lives at least `accessTTL` seconds (rounding down left a 1 s token 1 ms at worst).
        let claims = AccessClaims(sub: user, adm: admin, sid: session, iat: now / 1000, exp: (now + 999) / 1000 + Int64(accessTTL),
                                  iss: Self.issuer, gen: generation)
        let header = #"{"alg":"EdDSA","typ":"JWT"}"#
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let payload = (try? encoder.encode(claims)) ?? Data()
        let signingInput = Base64URL.encode(Data(header.utf8)) + "." + Base64URL.encode(payload)
        let signature = (try? key.signature(for: Data(signingInput.utf8))) ?? Data()
        return signingInput + "." + Base64URL.encode(signature)
    }

    /// Verifies signature, algorithm, issuer and expiry.
    public func verifyAccess(_ token: String, now: Int64) -> Result<AccessClaims, IMError> {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Base64URL.decode(String(parts[0])),
              let payload = Base64URL.decode(String(parts[1])), let sig = Base64URL.decode(String(parts[2])) else {
            return .failure(IMError(.unauthorized, "malformed access token"))
        }
        guard let header = try? JSONDecoder().decode([String: String].self, from: headerData), header["alg"] == "EdDSA" else {
            return .failure(IMError(.unauthorized, "unsupported token algorithm"))
        }
        guard key.publicKey.isValidSignature(sig, for: Data((parts[0] + "." + parts[1]).utf8)) else {
            return .failure(IMError(.unauthorized, "invalid token signature"))
        }
        guard let claims = try? JSONDecoder().decode(AccessClaims.self, from: payload), claims.iss == Self.issuer else {
            return .failure(IMError(.unauthorized, "invalid token claims"))
        }
        guard claims.exp > now / 1000 else {
            return .failure(IMError(.unauthorized, "access token expired; refresh it"))
        }
        return .success(claims)
    }

    /// A new opaque refresh token and the hash under which it is stored.
    public static func newRefreshToken() -> (token: String, hash: String) {
        let token = randomToken(bytes: 32)
        return (token, hashRefreshToken(token))
    }

    public static func hashRefreshToken(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public static func randomToken(bytes: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return Base64URL.encode(Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &g) }))
    }
}

enum Base64URL {
    static func encode(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    static func decode(_ s: String) -> Data? {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b.count % 4 != 0 { b += "=" }
        return Data(base64Encoded: b)
    }
}

import Crypto
import Foundation

/// A short-lived order to one IM server from whoever holds the token signing key (root on a cluster member, through
/// its own copy of the key; the server itself): "reconnect your clients", "say how many sessions you hold". The
/// cluster's HAProxy forwards end users' requests to the IM server with its own client certificate, so the
/// certificate alone cannot tell root from a user; this signature can. Nothing a user holds is one: the signed text
/// starts with a domain prefix an access token's never does, and the token is not JWT-shaped.
///
/// Form: `wco1.<base64url JSON claims>.<base64url Ed25519 signature of "warbler-cluster-op/1\n" + claims JSON>`.
public struct ClusterOperationToken: Sendable, Equatable, Codable {
    public enum Operation: String, Sendable, Codable { case reconnect, sessions }

    public var op: Operation
    /// The IM server the order is for (its `cluster.node_id`; empty on a server without one): a token for one node
    /// does nothing on another.
    public var node: String
    /// Unix seconds.
    public var iat: Int64
    public var exp: Int64

    /// How long a token lives: long enough for one request, short enough that a copy is soon worthless.
    public static let lifetime: Int64 = 60
    static let prefix = "wco1."
    static let domain = "warbler-cluster-op/1\n"

    public init(op: Operation, node: String, now: Date = Date()) {
        self.op = op; self.node = node
        iat = Int64(now.timeIntervalSince1970)
        exp = iat + Self.lifetime
    }

    public func signed(with key: Curve25519.Signing.PrivateKey) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let claims = try encoder.encode(self)
        let signature = try key.signature(for: Data(Self.domain.utf8) + claims)
        return Self.prefix + Self.base64url(claims) + "." + Self.base64url(signature)
    }

    public struct Refusal: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The token's claims when its signature is `key`'s, it is for `op` on `node` and it has not expired.
    public static func verify(_ token: String, key: Curve25519.Signing.PublicKey, op: Operation, node: String, now: Date = Date()) throws -> ClusterOperationToken {
        guard token.hasPrefix(prefix) else { throw Refusal(description: "not a cluster operation token") }
        let parts = token.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let claims = unbase64url(String(parts[0])), let signature = unbase64url(String(parts[1])) else {
            throw Refusal(description: "malformed cluster operation token")
        }
        guard key.isValidSignature(signature, for: Data(domain.utf8) + claims) else {
            throw Refusal(description: "the cluster operation token is not signed with this server's key")
        }
        guard let t = try? JSONDecoder().decode(ClusterOperationToken.self, from: claims) else {
            throw Refusal(description: "the cluster operation token's claims are unreadable")
        }
        guard t.op == op else { throw Refusal(description: "the token is for '\(t.op.rawValue)', not '\(op.rawValue)'") }
        guard t.node == node else { throw Refusal(description: "the token is for node '\(t.node)', this is '\(node)'") }
        let seconds = Int64(now.timeIntervalSince1970)
        guard seconds < t.exp, t.iat <= seconds + 30 else {
            throw Refusal(description: "the cluster operation token has expired (or the clocks differ by more than 30 s)")
        }
        return t
    }

    /// The key file's text as `TokenService` writes it: the raw Ed25519 key in base64.
    public static func key(fromFile text: String) throws -> Curve25519.Signing.PrivateKey {
        guard let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw Refusal(description: "the token signing key is not a base64 Ed25519 key")
        }
        return key
    }

    static func base64url(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func unbase64url(_ s: String) -> Data? {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b.count % 4 != 0 { b += "=" }
        return Data(base64Encoded: b)
    }
}

import Crypto
import Foundation
import IMCore
import NIOPosix

/// Signs webhook bodies the way Stripe does: `X-Warbler-Signature: t=TIMESTAMP,v1=HEX(HMAC-SHA256(secret, "TIMESTAMP.BODY"))`.
enum WebhookSignature {
    static func header(secret: String, timestamp: Int64, body: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(timestamp).\(body)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(timestamp),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    static func newSecret() -> String { "whsec_" + TokenService.randomToken(bytes: 32) }
}

/// Exponential backoff with jitter: attempt n waits between half and all of min(max, base·2^(n-1)).
enum WebhookBackoff {
    static func delay(afterAttempt n: Int64, baseSeconds: Double, maxSeconds: Double, random: Double = Double.random(in: 0...1)) -> Double {
        let full = min(maxSeconds, baseSeconds * pow(2, Double(max(0, min(n - 1, 40)))))
        return full / 2 + full / 2 * random
    }
}

/// Where a webhook may be sent: not to private, loopback, link-local or otherwise special addresses (a webhook must
/// not be a way into the operator's network) unless the operator allows their networks, and over http only to
/// loopback unless allowed.
struct WebhookTargetPolicy: Sendable {
    typealias Network = IPNetwork

    let allowed: [Network]
    let allowHTTP: Bool

    /// Addresses no webhook goes to unless allowed: private, shared (CGNAT), loopback, link-local, unspecified,
    /// multicast, reserved, and IPv6 unique-local; IPv4-mapped IPv6 addresses are judged as IPv4.
    static let special: [Network] = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                                     "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
                                     "::/128", "::1/128", "fe80::/10", "fc00::/7", "ff00::/8"].compactMap(Network.init)
    static let loopback: [Network] = ["127.0.0.0/8", "::1/128"].compactMap(Network.init)

    /// `allowedNetworks` are checked by `validate` when the config is loaded; here an unparsable one is ignored.
    init(allowedNetworks: [String], allowHTTP: Bool) {
        allowed = allowedNetworks.compactMap(Network.init)
        self.allowHTTP = allowHTTP
    }

    static func parseIP(_ text: String) -> [UInt8]? { IPNetwork.parseIP(text) }

    /// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
    static func canonical(_ a: [UInt8]) -> [UInt8] {
        if a.count == 16, a[0..<10].allSatisfy({ $0 == 0 }), a[10] == 0xFF, a[11] == 0xFF { return Array(a[12..<16]) }
        return a
    }

    /// Why a URL may not be subscribed to, or nil: it must be http(s) with a host, and http only to loopback
    /// (unless `allow_http`).
    func checkURL(_ text: String) -> IMError? {
        guard text.utf8.count <= 2048, let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            return IMError.invalid("the webhook URL must be an absolute https URL such as https://hooks.example.com/warbler")
        }
        guard scheme == "https" || scheme == "http" else { return IMError.invalid("the webhook URL must be https (or http to loopback)") }
        if url.user != nil || url.password != nil { return IMError.invalid("the webhook URL must not carry a user or password") }
        if scheme == "http" && !allowHTTP && !Self.isLoopbackName(host) {
            return IMError.invalid("http webhooks go only to loopback; use https, or ask the operator to set webhooks.allow_http")
        }
        return nil
    }

    static func isLoopbackName(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" { return true }
        guard let a = parseIP(h) else { return false }
        return loopback.contains { $0.contains(canonical(a)) }
    }

    /// Why `address` may not be sent to, or nil.
    func refusal(_ address: [UInt8]) -> String? {
        let a = Self.canonical(address)
        if allowed.contains(where: { $0.contains(a) }) { return nil }
        if Self.special.contains(where: { $0.contains(a) }) {
            return "\(Self.format(a)) is a private, loopback, link-local or reserved address; the operator may allow it in webhooks.allowed_networks"
        }
        return nil
    }

    static func format(_ a: [UInt8]) -> String {
        if a.count == 4 { return a.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: a.count, by: 2).map { String(format: "%x", UInt16(a[$0]) << 8 | UInt16(a[$0 + 1])) }.joined(separator: ":")
    }

    /// Resolves `host` (off the event loops) and refuses it when any of its addresses is refused.
    func checkHost(_ host: String) async throws {
        let name = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let addresses: [[UInt8]]
        if let literal = Self.parseIP(name) {
            addresses = [literal]
        } else {
            addresses = try await NIOThreadPool.singleton.runIfActive { Self.resolve(name) }
        }
        guard !addresses.isEmpty else { throw IMError(.unavailable, "\(name) does not resolve") }
        for a in addresses {
            if let why = refusal(a) { throw IMError.forbidden(why) }
        }
    }

    static func resolve(_ name: String) -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &res) == 0 else { return [] }
        defer { freeaddrinfo(res) }
        var out: [[UInt8]] = []
        var cursor = res
        while let ai = cursor {
            defer { cursor = ai.pointee.ai_next }
            guard let sa = ai.pointee.ai_addr else { continue }
            if ai.pointee.ai_family == AF_INET {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    var a = p.pointee.sin_addr
                    out.append(withUnsafeBytes(of: &a) { Array($0) })
                }
            } else if ai.pointee.ai_family == AF_INET6 {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    var a = p.pointee.sin6_addr
                    out.append(withUnsafeBytes(of: &a) { Array($0) })
                }
            }
        }
        return out
    }
}

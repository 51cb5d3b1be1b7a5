import Crypto
import Foundation

/// One order to a member's upgrade receiver (docs/architecture.md, "Copying the release and switching another
/// node"): what the member running a cluster upgrade asks another member's root to do, signed with the cluster CA's
/// private key, which only root holds on each member.
public struct UpgradeRequest: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable, CaseIterable {
        /// The body is the installer file: stage it (and verify it) under root's incoming directory.
        case receive
        /// Install the staged file named by `sha256` with the single-host upgrader.
        case `switch`
        /// Go back to the previous release (`/opt/warbler/previous`), which must be `version`.
        case `return`
    }

    /// The member this is for (its name in its own member file).
    public var node: String
    public var action: Action
    public var version: String
    /// The release's build; empty for `return` (the initiator knows the previous release by version only).
    public var build: String
    /// SHA-256 of the installer file, 64 lower-case hex characters; empty for `return`.
    public var sha256: String
    /// The file's length in bytes; 0 for `return`.
    public var length: Int64
    /// The release signature (`FILE.sig`'s bytes, base64) when the cluster's releases are signed.
    public var releaseSignature: String?
    /// Random, hex; a receiver refuses one it has seen within the time window.
    public var nonce: String
    /// Seconds since 1970 when it was made.
    public var time: Int64

    public init(node: String, action: Action, version: String, build: String = "", sha256: String = "", length: Int64 = 0,
                releaseSignature: String? = nil, nonce: String = UpgradeRequest.makeNonce(), time: Date = Date()) {
        self.node = node; self.action = action; self.version = version; self.build = build; self.sha256 = sha256
        self.length = length; self.releaseSignature = releaseSignature; self.nonce = nonce
        self.time = Int64(time.timeIntervalSince1970.rounded(.down))
    }

    public static func makeNonce() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// The request's header (base64 of its JSON) and that header's signature (base64 of a DER ECDSA P-256
    /// signature over the header's bytes).
    public func signed(with key: P256.Signing.PrivateKey) throws -> SignedUpgradeRequest {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let header = try encoder.encode(self).base64EncodedString()
        let signature = try key.signature(for: Data(header.utf8)).derRepresentation.base64EncodedString()
        return SignedUpgradeRequest(header: header, signature: signature)
    }
}

/// A request as it travels: two HTTP headers.
public struct SignedUpgradeRequest: Sendable, Equatable {
    public static let requestHeader = "Warbler-Upgrade-Request"
    public static let signatureHeader = "Warbler-Upgrade-Signature"
    public var header: String
    public var signature: String
    public init(header: String, signature: String) { self.header = header; self.signature = signature }
}

/// Why a receiver refused a request. The codes are for tests and logs; `message` is for the operator.
public struct UpgradeRequestRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case missing, malformed, badSignature = "bad-signature", otherNode = "other-node", wrongAction = "wrong-action"
        case stale, replayed, invalid
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { message }
}

/// The nonces a receiver has accepted, each until its request's time leaves the window: a captured request
/// cannot be sent again. Kept by the receiver across restarts (root's file), since it restarts after a switch.
public struct NonceWindow: Codable, Sendable, Equatable {
    /// nonce → the time (seconds since 1970) after which it is forgotten.
    public var until: [String: Int64] = [:]
    /// The most remembered at once: only holders of the CA key can add one, so this bounds a mistake, not an attack.
    public static let capacity = 100_000
    public init() {}

    mutating func prune(now: Int64) { until = until.filter { $0.value >= now } }
}

/// The receiver's check of a request, a pure function of its headers, the CA's public key, this member's name,
/// the action the route stands for, the time and the nonces already seen.
public enum UpgradeRequestCheck {
    /// Requests older or newer than this (seconds) are refused.
    public static let window: Int64 = 300
    /// The largest installer file a receiver takes (8 GiB).
    public static let maxLength: Int64 = 8 << 30

    /// Returns the request when it is well-formed, signed by `caKey`, for `node`, for `action`, within the window
    /// and not seen before (its nonce is then remembered in `nonces`); otherwise the refusal.
    public static func check(header: String?, signature: String?, caKey: P256.Signing.PublicKey, node: String,
                             action: UpgradeRequest.Action, now: Date, nonces: inout NonceWindow) -> Result<UpgradeRequest, UpgradeRequestRefusal> {
        func refuse(_ c: UpgradeRequestRefusal.Code, _ m: String) -> Result<UpgradeRequest, UpgradeRequestRefusal> { .failure(.init(c, m)) }
        guard let header, let signature, !header.isEmpty, !signature.isEmpty else {
            return refuse(.missing, "the request has no \(SignedUpgradeRequest.requestHeader) or \(SignedUpgradeRequest.signatureHeader) header")
        }
        guard header.utf8.count <= 16_384, signature.utf8.count <= 512,
              let der = Data(base64Encoded: signature), let ecdsa = try? P256.Signing.ECDSASignature(derRepresentation: der) else {
            return refuse(.malformed, "the request's signature is not base64 DER ECDSA")
        }
        // The signature first: nothing in an unsigned header is read.
        guard caKey.isValidSignature(ecdsa, for: Data(header.utf8)) else {
            return refuse(.badSignature, "the request is not signed by this cluster's CA key")
        }
        guard let json = Data(base64Encoded: header), let request = try? JSONDecoder().decode(UpgradeRequest.self, from: json) else {
            return refuse(.malformed, "the request header is not base64 of the request's JSON")
        }
        guard request.node == node else {
            return refuse(.otherNode, "the request is for \(request.node), and this member is \(node)")
        }
        guard request.action == action else {
            return refuse(.wrongAction, "the request is for `\(request.action.rawValue)`, sent to `\(action.rawValue)`")
        }
        if let why = invalidFields(request) { return refuse(.invalid, why) }
        let t = Int64(now.timeIntervalSince1970.rounded(.down))
        guard abs(request.time - t) <= window else {
            return refuse(.stale, "the request was made at \(request.time), \(request.time - t) s from this member's clock (more than \(window) s apart: check both clocks)")
        }
        nonces.prune(now: t)
        guard nonces.until[request.nonce] == nil else { return refuse(.replayed, "the request was already received once (its nonce repeats)") }
        guard nonces.until.count < NonceWindow.capacity else { return refuse(.replayed, "too many requests within \(window) s") }
        nonces.until[request.nonce] = request.time + window
        return .success(request)
    }

    /// Fields that name files or releases: what a request may hold at all.
    static func invalidFields(_ r: UpgradeRequest) -> String? {
        guard isReleaseName(r.version) else { return "the version '\(r.version.prefix(64))' is not a release name" }
        guard r.nonce.count >= 16, r.nonce.count <= 64, r.nonce.allSatisfy(\.isHexDigit) else { return "the nonce is not 16 to 64 hex characters" }
        switch r.action {
        case .receive, .switch:
            guard isDigest(r.sha256) else { return "sha256 must be 64 lower-case hex characters" }
            guard r.length > 0, r.length <= maxLength else { return "the length \(r.length) is out of range" }
            guard isReleaseName(r.build) else { return "the build '\(r.build.prefix(64))' is not a build name" }
        case .return:
            guard r.sha256.isEmpty, r.length == 0 else { return "a `return` names no file" }
        }
        if let sig = r.releaseSignature, sig.utf8.count > 4096 || Data(base64Encoded: sig) == nil {
            return "the release signature is not base64 of at most 3 KiB"
        }
        return nil
    }

    public static func isDigest(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// A version or build as a directory name may hold one: letters, digits, `.`, `-`, `+`, `_`, not starting with `.`.
    public static func isReleaseName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 64, !s.hasPrefix(".") else { return false }
        return s.utf8.allSatisfy { c in
            (0x30...0x39).contains(c) || (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) || [0x2e, 0x2d, 0x2b, 0x5f].contains(c)
        }
    }
}

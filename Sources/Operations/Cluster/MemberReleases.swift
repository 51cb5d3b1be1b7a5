import AsyncHTTPClient
import Foundation
import Installer
import NIOSSL

/// Which release each member's IM server said it runs, as this member's cluster agent last read it
/// (`ClusterPaths.memberReleases`). The agent (HAProxy's user, holding the member's cluster client certificate) writes
/// it; the exporter (the service user, no cluster certificate) only reads it. Nothing root runs reads it.
public struct MemberReleases: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var name: String
        public var address: String
        /// nil: its IM server did not answer `/v1/version`.
        public var version: String?
        public init(name: String, address: String, version: String?) { self.name = name; self.address = address; self.version = version }
    }

    /// When the agent read them.
    public var at: Date
    public var members: [Member]

    /// How often the agent reads the members' releases.
    public static let interval: Double = 30
    /// A file older than this is not trusted (the agent stopped or cannot read etcd): its series are dropped.
    public static let maxAge: Double = 300

    public init(at: Date, members: [Member]) { self.at = at; self.members = members }

    /// The distinct releases the members that answered run, sorted.
    public var releases: [String] { Array(Set(members.compactMap(\.version))).sorted() }

    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return try e.encode(self) + Data("\n".utf8)
    }

    /// The file's content, or an error naming the file and what to do.
    public static func decode(_ data: Data, path: String) throws -> MemberReleases {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        do {
            return try d.decode(MemberReleases.self, from: data)
        } catch {
            throw ClusterOpsError("\(path) is not the cluster agent's release record (\(Self.reason(error))); it is rewritten every \(Int(interval)) s: "
                + "check `systemctl status warbler-cluster-agent` and `journalctl -u warbler-cluster-agent` (under the built-in supervisor: \(Paths.logs)/cluster-agent.log)")
        }
    }

    static func reason(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.codingPath.isEmpty ? "not JSON" : "bad \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.keyNotFound(let k, _): return "no \(k.stringValue)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c): return "bad \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        default: return "\(error)"
        }
    }
}

/// Reads each member's release (a test gives recorded answers).
public protocol MemberVersionReading: Sendable {
    /// The release each member's IM server says it runs, by member name; a member that does not answer is absent.
    /// Throws only when it cannot ask at all (its certificate is unreadable).
    func versions(of members: [ClusterMember]) async throws -> [String: String]
}

/// Asks each member's IM server for `/v1/version` on the cluster listener, presenting `certFile`/`keyFile` (a
/// certificate from the cluster CA, which that listener requires) and verifying the member's certificate in full.
public struct MemberVersionReader: MemberVersionReading {
    public var caFile: String
    public var certFile: String
    public var keyFile: String
    /// The members' cluster listener.
    public var port: Int

    public init(caFile: String = ClusterPaths.caCert, certFile: String = ClusterPaths.tls + "/agent.crt", keyFile: String = ClusterPaths.tls + "/agent.key",
                port: Int = ClusterSettings.Port.im) {
        self.caFile = caFile; self.certFile = certFile; self.keyFile = keyFile; self.port = port
    }

    public func versions(of members: [ClusterMember]) async throws -> [String: String] {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(caFile)
        let chain: [NIOSSLCertificate], key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certFile)
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw ClusterOpsError("cannot load the member's cluster client certificate (\(certFile), \(keyFile)): \(error); `warbler install` rewrites them")
        }
        tls.certificateChain = chain.map { .certificate($0) }
        tls.privateKey = .privateKey(key)
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.timeout = .init(connect: .seconds(2), read: .seconds(3))
        config.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        // All at once: a member that does not answer costs its timeout once, not once per member after it.
        let out = await withTaskGroup(of: (String, String?).self) { group in
            for m in members {
                let url = "https://\(m.address.contains(":") ? "[\(m.address)]" : m.address):\(port)/v1/version"
                group.addTask {
                    guard let r = try? await client.execute(HTTPClientRequest(url: url), timeout: .seconds(4)), r.status == .ok,
                          let body = try? await r.body.collect(upTo: 1 << 16),
                          let obj = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any],
                          let version = obj["version"] as? String, !version.isEmpty else { return (m.name, nil) }
                    return (m.name, version)
                }
            }
            var found: [String: String] = [:]
            for await (name, version) in group { if let version { found[name] = version } }
            return found
        }
        try? await client.shutdown()
        return out
    }
}

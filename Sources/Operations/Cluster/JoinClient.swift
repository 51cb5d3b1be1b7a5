import AsyncHTTPClient
import Foundation
import IMCore
import Installer
import NIOCore
import NIOSSL
import Payload

/// The joining host's side of `warbler join`: fetch the cluster CA without verification, check its key's hash
/// against the token, then ask for the sealed bundle over TLS verified against that CA only.
public struct JoinClient: Sendable {
    public var server: String

    /// `server` is `https://ADDR:PORT` (a member's HAProxy).
    public init(server: String) throws {
        guard let url = URL(string: server), url.scheme == "https", url.host != nil, url.path.isEmpty || url.path == "/" else {
            throw JoinError("--server must be https://ADDRESS:PORT of a cluster member (as `warbler cluster token` prints it), not '\(server)'")
        }
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
    }

    func request(_ req: HTTPClientRequest, tls: TLSConfiguration, what: String) async throws -> (Int, Data) {
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(15))
        configuration.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let response = try await client.execute(req, timeout: .seconds(20))
            let body = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            return (Int(response.status.code), Data(buffer: body))
        } catch {
            try? await client.shutdown()
            throw JoinError("cannot \(what) at \(server): \(error); check the address and that the member's HAProxy is up")
        }
    }

    /// The cluster CA, checked against the token's hash (a mismatch is an impostor or the wrong cluster).
    public func fetchCA(token: JoinToken, patience: Double = 90) async throws -> String {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none   // not yet trusted: the hash decides
        // A member that has just started (its HAProxy checks its IM server twice before sending it anyone) answers
        // 503 or refuses for a few seconds: ask again for a while before giving up.
        let deadline = Date().addingTimeInterval(patience)
        var answer: (Int, Data)?
        var lastError: (any Error)?
        while answer == nil || answer?.0 == 503 {
            do { answer = try await request(HTTPClientRequest(url: server + "/v1/cluster/ca"), tls: tls, what: "fetch the cluster CA") } catch {
                lastError = error
            }
            if let a = answer, a.0 != 503 { break }
            guard Date() < deadline else { break }
            try await Task.sleep(for: .seconds(2))
        }
        guard let (status, body) = answer else { throw lastError ?? JoinError("no answer from \(server)") }
        if status == 503 { throw JoinError("\(server) has no IM server ready behind its HAProxy (503 for \(Int(patience)) s); check `warbler cluster status` on that member") }
        guard status == 200 else { throw JoinError("\(server) answered \(status) for the cluster CA: it is not a cluster member") }
        let pem = String(decoding: body, as: UTF8.self)
        let hash = try JoinToken.caKeyHash(pem: pem)
        guard hash == token.caKeyHash else {
            throw JoinError("the CA at \(server) is not the one the token names (its key hashes to \(hash.prefix(16))…, the token says \(token.caKeyHash.prefix(16))…): a different cluster, or someone in between; nothing was sent")
        }
        return pem
    }

    /// The bundle, opened with the token.
    public func join(token: JoinToken, caPEM: String) async throws -> ClusterBundle {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        var req = HTTPClientRequest(url: server + "/v1/cluster/join")
        req.method = .POST
        req.headers.add(name: "content-type", value: "application/json")
        req.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(API.ClusterJoin(tokenId: token.id, proof: token.proof))))
        let (status, body) = try await request(req, tls: tls, what: "join")
        guard status == 200 else {
            let message = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["message"] as? String
            throw JoinError("the cluster refused the join (\(status)): \(message ?? String(decoding: body.prefix(300), as: UTF8.self))")
        }
        guard let obj = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let sealed = obj["bundle"] as? String else {
            throw JoinError("the cluster's join answer holds no bundle")
        }
        return try token.open(sealed)
    }
}

/// The embedded components an installer file carries (`components/NAME.tar.gz` in its payload), unpacked and
/// verified against their manifests into a private directory for the install to copy in.
public enum ComponentUnpacker {
    public static func unpack(payloadDirectory: String, names: [String], into directory: String) throws -> [String: ComponentSource] {
        var out: [String: ComponentSource] = [:]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for name in names {
            let archive = "\(payloadDirectory)/components/\(name).tar.gz"
            guard FileManager.default.fileExists(atPath: archive) else {
                throw JoinError("this installer file carries no \(name) component (built with WARBLER_NO_COMPONENTS=1?); use a full build of packaging/build.sh")
            }
            let dest = "\(directory)/\(name)"
            _ = try PayloadArchive.unpack(archive: archive, into: dest)
            let digest = Digest.hex(try LocalSystem().sha256(archive))
            out[name] = ComponentSource(directory: dest, digest: digest)
        }
        return out
    }
}

import AsyncHTTPClient
import Crypto
import DurableFiles
import Foundation
import IMCore
import Installer
import NIOCore
import NIOSSL
import WarblerConfig

/// Root's orders to one member's IM server (docs/protocol.md, "Cluster operations"): reconnect its clients, count its
/// sessions. Each request carries a cluster operation token signed with root's copy of the token signing key and is
/// sent to the member's own address (not through HAProxy) with root's cluster client certificate, as
/// `ClusterStatusCollector` reads `/v1/version`.
public struct NodeSessions: Sendable {
    /// The IM server's base URL, e.g. `https://10.0.0.2:8444`.
    public var baseURL: String
    /// The server's `cluster.node_id` (the member's name).
    public var node: String
    public var key: Curve25519.Signing.PrivateKey
    public var tls: TLSConfiguration

    public init(baseURL: String, node: String, key: Curve25519.Signing.PrivateKey, tls: TLSConfiguration) {
        self.baseURL = baseURL; self.node = node; self.key = key; self.tls = tls
    }

    /// For `member` of this cluster, from root's own files (the key root's copy, the certificate root's).
    public static func forMember(_ member: ClusterMember) throws -> NodeSessions {
        let key = try ClusterOperationToken.key(fromFile: try RootFile.readText(ClusterPaths.jwtKeyRootCopy))
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(Paths.caCert)
        try tls.presentClusterIdentity()
        return NodeSessions(baseURL: "https://\(member.address):\(ClusterSettings.Port.im)", node: member.name, key: key, tls: tls)
    }

    /// Asks the server to tell its clients to reconnect, spread over `window`; returns how many it will close, or
    /// nil when its release predates cluster operations (404: its clients are told when it stops, as at a restart).
    public func reconnect(window: Duration) async throws -> Int? {
        let seconds = window.inSeconds
        let body = try JSONEncoder().encode(API.ClusterReconnect(windowSeconds: seconds))
        return try await call(post: true, "/v1/cluster/reconnect", .reconnect, body: body)?.sessions
    }

    /// The server's open WebSocket sessions now, or nil when its release predates cluster operations.
    public func sessions() async throws -> Int? { try await call(post: false, "/v1/cluster/sessions", .sessions, body: nil)?.sessions }

    /// Polls `sessions()` until none is left or `timeout` has passed; returns how many are left (nil: the release
    /// cannot say).
    public func waitUntilEmpty(timeout: Duration, poll: Duration = .milliseconds(500)) async throws -> Int? {
        let deadline = ContinuousClock.now + timeout
        while true {
            guard let left = try await sessions() else { return nil }
            if left == 0 || ContinuousClock.now >= deadline { return left }
            try await Task.sleep(for: poll)
        }
    }

    func call(post: Bool, _ path: String, _ op: ClusterOperationToken.Operation, body: Data?) async throws -> API.ClusterSessions? {
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.timeout = .init(connect: .seconds(3), read: .seconds(5))
        config.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = post ? .POST : .GET
        let method = post ? "POST" : "GET"
        request.headers.add(name: "Authorization", value: "Bearer " + (try ClusterOperationToken(op: op, node: node).signed(with: key)))
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response: HTTPClientResponse
        let data: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .seconds(6))
            data = try await response.body.collect(upTo: 1 << 16)
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw ClusterOpsError("\(node)'s IM server (\(baseURL)) does not answer \(method) \(path): \(error)")
        }
        // An older release: no such route (a release with it answers 401 to a bad token, never 404).
        if response.status.code == 404 { return nil }
        guard (200..<300).contains(response.status.code), let answer = try? JSONDecoder().decode(API.ClusterSessions.self, from: Data(buffer: data)) else {
            let text = String(buffer: data).prefix(300)
            throw ClusterOpsError("\(node)'s IM server refused \(method) \(path): \(response.status.code) \(text)")
        }
        return answer
    }
}

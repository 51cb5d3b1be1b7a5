import Foundation
import IMServer
import Logging
import NIOSSL
@testable import Operations
import Testing

/// Root's client for one IM server's cluster operations, against a real server in process.
@Suite(.timeLimit(.minutes(1))) struct NodeSessionsTests {
    @Test func rootsClientOrdersTheServerAndAnOlderReleaseIsToldApart() async throws {
        let dir = NSTemporaryDirectory() + "node-sessions-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = ServerConfig()
        config.server.host = "127.0.0.1"; config.server.port = 0; config.server.drainSeconds = 1
        config.metrics.port = -1
        config.storage.path = dir + "/warbler.db"; config.dataDir = dir
        config.auth.jwtKeyFile = dir + "/jwt.key"
        config.cluster.nodeId = "two"
        var logger = Logger(label: "test.node-sessions")
        logger.logLevel = .critical
        let runtime = try await ServerRuntime.open(config: config, logger: logger)
        let task = Task { try await runtime.run(handleSignals: false) }
        defer { task.cancel() }
        let port = try await runtime.waitUntilListening()
        let key = try ClusterOperationToken.key(fromFile: String(contentsOfFile: dir + "/jwt.key", encoding: .utf8))
        let tls = TLSConfiguration.makeClientConfiguration()

        let two = NodeSessions(baseURL: "http://127.0.0.1:\(port)", node: "two", key: key, tls: tls)
        #expect(try await two.reconnect(window: .seconds(1)) == 0)
        #expect(try await two.sessions() == 0)
        #expect(try await two.waitUntilEmpty(timeout: .seconds(1)) == 0)
        // Signed for another node, or with another key: refused, with the server's reason.
        await #expect(throws: ClusterOpsError.self) { try await NodeSessions(baseURL: two.baseURL, node: "three", key: key, tls: tls).sessions() }
        do {
            _ = try await NodeSessions(baseURL: two.baseURL, node: "two", key: .init(), tls: tls).sessions()
            Issue.record("a token signed with another key was obeyed")
        } catch let error as ClusterOpsError {
            #expect(error.description.contains("401") && error.description.contains("not signed with this server's key"), "\(error)")
        }
        // A release without the routes answers 404: nil (it cannot say), not an error.
        let older = NodeSessions(baseURL: "http://127.0.0.1:\(port)/older", node: "two", key: key, tls: tls)
        #expect(try await older.reconnect(window: .seconds(1)) == nil)
        #expect(try await older.waitUntilEmpty(timeout: .seconds(1)) == nil)
        await runtime.shutdown()
        _ = try? await task.value
    }
}

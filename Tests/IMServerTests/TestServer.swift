import Foundation
import IMServer
import Logging
import WarblerTestSupport

/// Which storage a test server runs on.
enum Backend: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite, postgres
    var description: String { rawValue }
}

/// A real Warbler server, in process, on a free loopback port, with its own data directory.
final class TestServer: Sendable {
    let runtime: ServerRuntime
    let task: Task<Void, any Error>
    let directory: String
    let port: Int

    var baseURL: String { "http://127.0.0.1:\(port)" }
    var metricsURL: String { "http://127.0.0.1:\(runtime.metricsPort ?? 0)/metrics" }

    static func makeConfig(directory: String, _ configure: (inout ServerConfig) -> Void = { _ in }) -> ServerConfig {
        var c = ServerConfig()
        c.server.host = "127.0.0.1"
        c.server.port = 0
        c.server.drainSeconds = 1
        c.metrics.port = 0
        c.storage.path = directory + "/warbler.db"
        c.dataDir = directory
        c.auth.jwtKeyFile = directory + "/jwt.key"
        c.auth.bcryptCost = 4   // production is 12+; tests hash hundreds of passwords
        c.auth.loginPerMinutePerAccount = 1000
        c.auth.loginPerMinutePerAddress = 1000
        c.auth.registerPerHourPerAddress = 100_000   // every test user registers from 127.0.0.1
        c.auth.passwordChangesPerHourPerAddress = 1000
        configure(&c)
        return c
    }

    /// A PostgreSQL database several test servers share (a cluster's nodes).
    struct SharedDatabase: Sendable {
        let port: Int
        let name: String
        static func fresh() async throws -> SharedDatabase {
            let (port, name) = try await PostgresTestServer.shared.freshDatabase()
            return SharedDatabase(port: port, name: name)
        }
    }

    init(_ backend: Backend = .sqlite, _ configure: (inout ServerConfig) -> Void = { _ in }, directory: String? = nil,
         joining shared: SharedDatabase? = nil, logger custom: Logger? = nil) async throws {
        let dir = directory ?? NSTemporaryDirectory() + "warbler-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.directory = dir
        var logger = Logger(label: "test.server")
        logger.logLevel = ProcessInfo.processInfo.environment["WARBLER_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        if let custom { logger = custom }
        var config = Self.makeConfig(directory: dir, configure)
        if backend == .postgres {
            let (port, database) = if let shared { (shared.port, shared.name) } else { try await PostgresTestServer.shared.freshDatabase() }
            config.storage.driver = "postgres"
            config.storage.postgresHost = PostgresTestServer.host
            config.storage.postgresPort = port
            config.storage.postgresUser = PostgresTestServer.user
            config.storage.postgresDatabase = database
        }
        let runtime = try await ServerRuntime.open(config: config, logger: logger)
        self.runtime = runtime
        task = Task { try await runtime.run(handleSignals: false) }
        port = try await runtime.waitUntilListening()
    }

    /// Graceful stop (as SIGTERM); keeps the directory unless `remove`.
    func stop(remove: Bool = true) async {
        await runtime.shutdown()
        _ = try? await task.value
        if remove { try? FileManager.default.removeItem(atPath: directory) }
    }
}

/// Runs `body` against a fresh server and always stops it.
func withServer<T>(_ backend: Backend = .sqlite, _ configure: (inout ServerConfig) -> Void = { _ in }, logger: Logger? = nil,
                   _ body: (TestServer) async throws -> T) async throws -> T {
    let server = try await TestServer(backend, configure, logger: logger)
    do {
        let r = try await body(server)
        await server.stop()
        return r
    } catch {
        await server.stop()
        throw error
    }
}

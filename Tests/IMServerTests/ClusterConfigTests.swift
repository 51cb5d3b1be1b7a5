import Foundation
import IMServer
import Testing

/// The cluster settings: off by default, on only over PostgreSQL, and checked before the server starts.
@Suite struct ClusterConfigTests {
    func load(_ env: [String: String]) throws -> ServerConfig { try ServerConfig.load(path: nil, environment: env) }

    @Test func offByDefault() throws {
        let c = try load([:])
        #expect(c.cluster.enabled == false)
        #expect(c.cluster.catchUpSeconds == 1)
    }

    @Test func onWithPostgres() throws {
        let c = try load(["WARBLER_CLUSTER_ENABLED": "true", "WARBLER_STORAGE_DRIVER": "postgres", "WARBLER_CLUSTER_NODE_ID": "host-1.a_b"])
        #expect(c.cluster.enabled && c.cluster.nodeId == "host-1.a_b")
    }

    @Test func refusedOnSQLiteAndWithBadValues() throws {
        #expect(throws: ConfigError.self) { try load(["WARBLER_CLUSTER_ENABLED": "true"]) }
        do {
            _ = try load(["WARBLER_CLUSTER_ENABLED": "true", "WARBLER_STORAGE_DRIVER": "sqlite"])
        } catch let e as ConfigError {
            #expect(e.description.contains("storage.driver: postgres"), "\(e)")
        }
        #expect(throws: ConfigError.self) { try load(["WARBLER_STORAGE_DRIVER": "postgres", "WARBLER_CLUSTER_NODE_ID": "a b"]) }
        #expect(throws: ConfigError.self) { try load(["WARBLER_CLUSTER_NODE_ID": String(repeating: "x", count: 65)]) }
        #expect(throws: ConfigError.self) { try load(["WARBLER_CLUSTER_CATCH_UP_SECONDS": "0"]) }
    }
}

import Foundation
import IMServer
import Testing

@Suite struct ServerConfigTests {
    func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaultsWorkWithoutAFile() throws {
        let c = try ServerConfig.load(path: nil, environment: [:])
        #expect(c == ServerConfig())
        #expect(c.auth.bcryptCost >= 12)
        #expect(c.storage.driver == "sqlite")
    }

    @Test func yamlOverridesDefaults() throws {
        let path = try write("""
            server:
              port: 9000
              allowed_origins: [https://chat.example]
            storage:
              path: /tmp/x.db
            limits:
              sends_per_second: 5
            log_level: debug
            """)
        let c = try ServerConfig.load(path: path, environment: [:])
        #expect(c.server.port == 9000)
        #expect(c.server.allowedOrigins == ["https://chat.example"])
        #expect(c.storage.path == "/tmp/x.db")
        #expect(c.limits.sendsPerSecond == 5)
        #expect(c.logLevel == "debug")
        #expect(c.server.host == "0.0.0.0")
    }

    @Test func environmentOverridesFile() throws {
        let path = try write("server:\n  port: 9000\n")
        let c = try ServerConfig.load(path: path, environment: [
            "WARBLER_SERVER_PORT": "9100", "WARBLER_STORAGE_POSTGRES_TLS": "yes", "WARBLER_LIMITS_ATTACHMENT_TYPES": "image/png, text/plain",
            "WARBLER_DATA_DIR": "/srv/w",
        ])
        #expect(c.server.port == 9100)
        #expect(c.storage.postgresTls)
        #expect(c.limits.attachmentTypes == ["image/png", "text/plain"])
        #expect(c.dataDir == "/srv/w")
    }

    @Test func unknownSettingIsRefusedByName() throws {
        let path = try write("server:\n  prot: 9000\n")
        #expect { try ServerConfig.load(path: path, environment: [:]) } throws: { "\($0)".contains("server.prot") }
    }

    @Test func wrongTypeIsRefusedByName() throws {
        let path = try write("server:\n  port: lots\n")
        #expect { try ServerConfig.load(path: path, environment: [:]) } throws: { "\($0)".contains("server.port") }
        #expect { try ServerConfig.load(path: nil, environment: ["WARBLER_STORAGE_POSTGRES_TLS": "maybe"]) } throws: {
            "\($0)".contains("WARBLER_STORAGE_POSTGRES_TLS")
        }
    }

    @Test func invalidValuesAreExplained() throws {
        #expect { try ServerConfig.load(path: nil, environment: ["WARBLER_STORAGE_DRIVER": "mysql"]) } throws: { "\($0)".contains("sqlite or postgres") }
        #expect { try ServerConfig.load(path: nil, environment: ["WARBLER_SERVER_TLS_CERT": "/a.pem"]) } throws: { "\($0)".contains("tls_key") }
        #expect { try ServerConfig.load(path: "/nonexistent/w.yaml", environment: [:]) } throws: { "\($0)".contains("cannot read") }
    }
}

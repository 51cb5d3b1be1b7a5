import Foundation
import WarblerConfig
import Templates
import Testing

enum Repo {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let templates = root + "/templates"
    static let golden = root + "/Tests/TemplatesTests/Golden"
}

/// Compares `text` with Golden/`name`; `WARBLER_UPDATE_GOLDEN=1` rewrites the file instead (then review the diff).
func expectGolden(_ text: String, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let path = Repo.golden + "/" + name
    if ProcessInfo.processInfo.environment["WARBLER_UPDATE_GOLDEN"] == "1" {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return
    }
    let golden = try String(contentsOfFile: path, encoding: .utf8)
    if golden != text {
        let a = golden.split(separator: "\n", omittingEmptySubsequences: false), b = text.split(separator: "\n", omittingEmptySubsequences: false)
        let line = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
        Issue.record("\(name) differs from its golden file at line \(line + 1):\n golden: \(line < a.count ? a[line] : "<end>")\n    got: \(line < b.count ? b[line] : "<end>")",
                     sourceLocation: sourceLocation)
    }
}

@Suite struct TemplatesTests {
    let templates: TemplateSet

    init() throws { templates = try TemplateSet(directory: Repo.templates) }

    static var tlsConfig: ServerConfigContext {
        var c = ServerConfigContext()
        c.tlsCertFile = "/etc/warbler/tls/server.crt"
        c.tlsKeyFile = "/etc/warbler/tls/server.key"
        return c
    }

    @Test func theDefaultServerConfigMatchesItsGoldenFile() throws {
        try expectGolden(try templates.renderServerConfig(Self.tlsConfig), "warbler.yaml")
    }

    @Test func aPlainHTTPConfigWithOriginsMatchesItsGoldenFile() throws {
        var c = ServerConfigContext()
        c.port = 8080
        c.metricsPort = -1
        c.allowedOrigins = ["https://chat.example.com", "https://intranet.example.com"]
        c.registration = "admin"
        c.logLevel = "debug"
        try expectGolden(try templates.renderServerConfig(c), "warbler-plain.yaml")
    }

    @Test func theServerUnitMatchesItsGoldenFile() throws {
        try expectGolden(try templates.renderServerUnit(ServiceUnitContext()), "warbler-server.service")
    }

    @Test func theServerUnitRaisesTheDescriptorLimitForFiftyThousandConnections() throws {
        let unit = try TemplateSet(directory: Repo.templates).renderServerUnit(ServiceUnitContext())
        let limits = unit.split(separator: "\n").filter { $0.hasPrefix("LimitNOFILE=") }
        #expect(limits.count == 1)
        let value = limits.first.flatMap { Int($0.dropFirst("LimitNOFILE=".count)) }
        #expect((value ?? 0) >= 50_000 + 1024, "50,000 connections and room for the rest")
    }

    @Test func theExporterUnitMatchesItsGoldenFile() throws {
        try expectGolden(try templates.renderExporterUnit(ServiceUnitContext.exporter), "warbler-exporter.service")
    }

    @Test func theExporterUnitKeepsProcWholeAndMayReadTheClock() throws {
        let unit = try templates.renderExporterUnit(ServiceUnitContext.exporter)
        #expect(unit.contains("\nExecStart=/opt/warbler/current/bin/warbler exporter --config /etc/warbler/warbler.yaml\n"))
        #expect(unit.contains("\nType=notify\n") && unit.contains("\nWatchdogSec=30s\n"))
        #expect(!unit.contains("\nProcSubset="))
        #expect(unit.contains("\nSystemCallFilter=adjtimex\n"))
        #expect(unit.contains("\nSocketBindAllow=tcp:9101\n"))
        #expect(!unit.contains("\nReadWritePaths=") && !unit.contains("\nStateDirectory="))
    }

    @Test func theLowPortUnitMatchesItsGoldenFile() throws {
        var u = ServiceUnitContext()
        u.ports = [443, 9464]
        try expectGolden(try templates.renderServerUnit(u), "warbler-server-443.service")
    }

    /// The server refuses unknown keys, so a key the template gets wrong fails here.
    @Test func theRenderedConfigLoadsInTheServerWithEveryValue() throws {
        var c = Self.tlsConfig
        c.host = "127.0.0.1"
        c.port = 9443
        c.metricsPort = 9100
        c.allowedOrigins = ["https://a.example", "odd \"quoted\" # not a comment: x\\y"]
        c.registration = "admin"
        c.databasePath = "/var/lib/warbler/other.db"
        c.jwtKeyFile = "/etc/warbler/secrets/jwt.key"
        c.dataDir = "/var/lib/warbler"
        c.logLevel = "warning"
        c.exporterHost = "127.0.0.1"
        c.webRoot = "/srv/warbler web/"
        c.alertsControlURL = "http://127.0.0.1:9102"
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-\(UUID().uuidString).yaml").path
        try templates.renderServerConfig(c).write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let loaded = try ServerConfig.load(path: path, environment: [:])
        #expect(loaded.server.host == "127.0.0.1")
        #expect(loaded.server.port == 9443)
        #expect(loaded.server.tlsCert == "/etc/warbler/tls/server.crt" && loaded.server.tlsKey == "/etc/warbler/tls/server.key")
        #expect(loaded.server.allowedOrigins == c.allowedOrigins)
        #expect(loaded.metrics.port == 9100)
        #expect(loaded.storage.driver == "sqlite" && loaded.storage.path == "/var/lib/warbler/other.db")
        #expect(loaded.auth.registration == "admin" && loaded.auth.jwtKeyFile == "/etc/warbler/secrets/jwt.key")
        #expect(loaded.dataDir == "/var/lib/warbler" && loaded.logLevel == "warning")
        #expect(loaded.exporter.host == "127.0.0.1" && loaded.exporter.port == 9101)
        #expect(loaded.exporter.components == ["server", "exporter", "alertd"])
        #expect(loaded.server.webRoot == "/srv/warbler web/" && loaded.alerts.controlUrl == "http://127.0.0.1:9102")

        // Without TLS the keys are there, empty, and the server reads that as TLS off.
        let plain = ServerConfigContext()
        try templates.renderServerConfig(plain).write(toFile: path, atomically: true, encoding: .utf8)
        let p = try ServerConfig.load(path: path, environment: [:])
        #expect(p.server.tlsCert.isEmpty && p.server.tlsKey.isEmpty && p.server.port == 8443)
    }

    @Test func onlyAPortBelow1024GrantsTheBindCapability() throws {
        let high = try templates.renderServerUnit(ServiceUnitContext())
        #expect(high.contains("\nCapabilityBoundingSet=\n"))
        #expect(high.contains("\nPrivateUsers=yes\n"))
        #expect(!high.contains("CAP_NET_BIND_SERVICE"))
        var u = ServiceUnitContext()
        u.ports = [80, 9464]
        let low = try templates.renderServerUnit(u)
        #expect(low.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"))
        #expect(low.contains("\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"))
        #expect(low.contains("\nPrivateUsers=no\n"))
        #expect(low.contains("\nSocketBindAllow=tcp:80\nSocketBindAllow=tcp:9464\n"))
    }

    @Test func valuesAUnitWouldMisreadAreRefused() throws {
        var u = ServiceUnitContext()
        u.binary = "/opt/my warbler/bin/warbler"
        #expect(throws: TemplateError.self) { try templates.renderServerUnit(u) }
        u = ServiceUnitContext()
        u.configPath = "/etc/%n.yaml"
        #expect(throws: TemplateError.self) { try templates.renderServerUnit(u) }
        u = ServiceUnitContext()
        u.dataDir = "/srv/warbler"
        #expect(throws: TemplateError.self) { try templates.renderServerUnit(u) }
    }

    @Test func aTemplateSetMissingATemplateIsRefusedWhenLoaded() throws {
        let e = try #require(throws: TemplateError.self) { try TemplateSet(sources: ["warbler.yaml": "x: 1\n"]) }
        #expect(e.description.contains("warbler-server.service.mustache"))
        #expect(throws: TemplateError.self) { try TemplateSet(directory: "/nonexistent/templates") }
    }
}

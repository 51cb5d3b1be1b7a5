import Foundation
import IMServer
import Logging
@testable import Monitoring
import Operations
import Testing

struct FailingCollector: Collector {
    let name = "broken"
    func collect() async throws -> MetricSet { throw MonitoringError("cannot read /nowhere") }
}

struct SlowCollector: Collector {
    let name = "slow"
    func collect() async throws -> MetricSet {
        // A call that hangs and ignores cancellation (statvfs on a dead NFS server, say), off the concurrency pool
        // as the real collectors do it: the scrape must not wait for it.
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + 20) { c.resume() }
        }
        return MetricSet()
    }
}

@Suite struct ExporterTests {
    static func config() -> ServerConfig {
        var c = ServerConfig()
        c.exporter.host = "127.0.0.1"
        c.exporter.port = 0
        c.exporter.collectorTimeoutSeconds = 0.5
        return c
    }

    /// Starts the exporter in-process on a free port, runs `body` with its base URL, and stops it.
    static func withExporter(_ config: ServerConfig, _ collectors: [any Collector], _ body: (String) async throws -> Void) async throws {
        let runtime = ExporterRuntime(config: config, collectors: collectors, logger: Logger(label: "test.exporter"))
        let running = Task { try await runtime.run(handleSignals: false) }
        do {
            let port = try await runtime.waitUntilListening()
            try await body("http://127.0.0.1:\(port)")
        } catch {
            await runtime.shutdown()
            _ = try? await running.value
            throw error
        }
        await runtime.shutdown()
        try await running.value
    }

    @Test func scrapesOverHTTPWithFailingAndSlowCollectorsReportedDown() async throws {
        let host = HostFiles(root: Repo.fixtures + "/host1")
        let collectors: [any Collector] = [LoadCollector(files: host), CPUCollector(files: host, ticksPerSecond: 100), FailingCollector(), SlowCollector()]
        try await Self.withExporter(Self.config(), collectors) { base in
            let probe = LiveStatusProbe()
            let start = ContinuousClock.now
            let answer = try await probe.get(base + "/metrics", caFile: nil)
            // Far below the slow collector's 20 s, with room for a loaded machine.
            #expect(ContinuousClock.now - start < .seconds(10), "the slow collector held up the scrape")
            #expect(answer.status == 200)
            let text = answer.body
            MetricSetTests.checkExposition(text)
            #expect(text.contains("# TYPE node_load1 gauge\nnode_load1 0.52\n"))
            #expect(text.contains(#"warbler_exporter_collector_up{collector="loadavg"} 1"#))
            #expect(text.contains(#"warbler_exporter_collector_up{collector="cpu"} 1"#))
            #expect(text.contains(#"warbler_exporter_collector_up{collector="broken"} 0"#))
            #expect(text.contains(#"warbler_exporter_collector_up{collector="slow"} 0"#))
            #expect(text.contains(#"warbler_exporter_build_info{version="\#(WarblerVersion.version)"} 1"#))
            #expect(text.contains(#"node_cpu_seconds_total{cpu="0",mode="user"} 13932.8"#))

            let health = try await probe.get(base + "/healthz", caFile: nil)
            #expect(health.status == 200 && health.body == "ok\n")
            #expect(try await probe.get(base + "/nope", caFile: nil).status == 404)
        }
    }

    /// The real collectors on this machine, where no Warbler server runs: the exporter answers, the server is down.
    @Test func keepsAnsweringWithTheLiveCollectorsWhileTheServerIsDown() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-exp-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = Self.config()
        config.exporter.collectorTimeoutSeconds = 5
        config.exporter.manager = "supervisor"
        config.storage.path = dir + "/warbler.db"
        config.exporter.backupMarker = dir + "/last-success.json"
        let collectors = ExporterRuntime.liveCollectors(config: config, logger: Logger(label: "test"))
        try await Self.withExporter(config, collectors) { base in
            let answer = try await LiveStatusProbe().get(base + "/metrics", caFile: nil)
            #expect(answer.status == 200)
            MetricSetTests.checkExposition(answer.body)
            let up = { (c: String) in answer.body.contains(#"warbler_exporter_collector_up{collector="\#(c)"} 1"#) }
            for c in ["cpu", "loadavg", "meminfo", "filesystem", "diskstats", "netdev", "filefd", "uptime", "components", "tls", "backup"] {
                #expect(up(c), "collector \(c) is not up")
            }
            // No database file yet: that collector is down, the scrape still answers.
            #expect(answer.body.contains(#"warbler_exporter_collector_up{collector="database"} 0"#))
            #expect(answer.body.contains(#"warbler_component_up{component="server"} 0"#))
            #expect(answer.body.contains("warbler_backup_present 0\n"))
            // Every family the exporter emitted is catalogued (and so documented).
            for line in answer.body.split(separator: "\n") where line.hasPrefix("# TYPE ") {
                let name = String(line.split(separator: " ")[2])
                #expect(Catalog.contains(name), "\(name) is not in Catalog")
            }
            // Each scrape collects afresh: the clock moves between two.
            try await Task.sleep(for: .milliseconds(1100))
            let again = try await LiveStatusProbe().get(base + "/metrics", caFile: nil)
            #expect(StatusParsing.metric("node_time_seconds", in: again.body)! > StatusParsing.metric("node_time_seconds", in: answer.body)!)
        }
    }

    @Test func aBusyPortIsAClearError() async throws {
        try await Self.withExporter(Self.config(), []) { base in
            var second = Self.config()
            second.exporter.port = Int(base.split(separator: ":").last!)!
            let runtime = ExporterRuntime(config: second, collectors: [], logger: Logger(label: "test"))
            await #expect(throws: (any Error).self) { try await runtime.run(handleSignals: false) }
        }
    }
}

@Suite struct ExporterConfigTests {
    static func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func theExporterSectionHasDefaultsAndLoadsFromYAMLAndEnvironment() throws {
        let d = ServerConfig()
        #expect(d.exporter.host == "127.0.0.1" && d.exporter.port == 9101 && d.exporter.manager == "auto")
        #expect(d.exporter.components == ["server", "exporter", "alertd"])
        #expect(d.exporter.backupMarker == "/var/lib/warbler/backups/last-success.json")
        let path = try Self.write("""
            exporter:
              host: 0.0.0.0
              port: 9200
              components: [server]
              manager: supervisor
              backup_marker: /srv/backups/last-success.json
              collector_timeout_seconds: 2.5
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try ServerConfig.load(path: path, environment: ["WARBLER_EXPORTER_PORT": "9300", "WARBLER_EXPORTER_COMPONENTS": "server,alertd"])
        #expect(c.exporter.host == "0.0.0.0")
        #expect(c.exporter.port == 9300)
        #expect(c.exporter.components == ["server", "alertd"])
        #expect(c.exporter.manager == "supervisor")
        #expect(c.exporter.backupMarker == "/srv/backups/last-success.json")
        #expect(c.exporter.collectorTimeoutSeconds == 2.5)
    }

    @Test func badExporterSettingsAreRefusedSayingWhatToDo() throws {
        for (yaml, words) in [("exporter:\n  manager: runit\n", "auto, systemd or supervisor"),
                              ("exporter:\n  port: 70000\n", "exporter.port"),
                              ("exporter:\n  components: [\"Server X\"]\n", "component name"),
                              ("exporter:\n  collector_timeout_seconds: 0\n", "above 0"),
                              ("exporter:\n  listen: x\n", "unknown setting 'exporter.listen'")] {
            let path = try Self.write(yaml)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let e = #expect(throws: ConfigError.self) { try ServerConfig.load(path: path, environment: [:]) }
            #expect(e?.description.contains(words) == true, "\(e?.description ?? "") lacks \(words)")
        }
    }
}

@Suite struct ExporterPackagingTests {
    /// Metric names the server's /metrics emits, with histogram series suffixes.
    static func serverNames() -> Set<String> {
        var names: Set<String> = []
        for line in ServerMetrics().render().split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let f = line.split(separator: " ")
            let name = String(f[2])
            names.insert(name)
            if f[3] == "histogram" { for s in ["_bucket", "_sum", "_count"] { names.insert(name + s) } }
        }
        return names
    }

    static func expressions(_ any: Any) -> [String] {
        if let d = any as? [String: Any] {
            return d.flatMap { k, v in k == "expr" ? [(v as? String) ?? ""] : expressions(v) }
        }
        if let a = any as? [Any] { return a.flatMap(expressions) }
        return []
    }

    @Test func theGrafanaDashboardIsValidJSONAndReadsOnlyMetricsWeExport() throws {
        let path = Repo.root + "/packaging/grafana/warbler-dashboard.json"
        let data = try #require(FileManager.default.contents(atPath: path), "no \(path)")
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let inputs = try #require(json["__inputs"] as? [[String: Any]])
        #expect(inputs.contains { $0["name"] as? String == "DS_PROMETHEUS" && $0["pluginId"] as? String == "prometheus" })
        let panels = try #require(json["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        let server = Self.serverNames()
        #expect(server.contains("warbler_sends_total") && server.contains("warbler_send_to_ack_seconds_bucket"))
        let exprs = Self.expressions(json)
        #expect(exprs.count >= 15)
        var referenced: Set<String> = []
        for e in exprs {
            var token = ""
            for ch in e + " " {
                if ch.isLetter || ch.isNumber || ch == "_" || ch == ":" { token.append(ch); continue }
                if token.hasPrefix("node_") || token.hasPrefix("warbler_") { referenced.insert(token) }
                token = ""
            }
        }
        for name in referenced.sorted() {
            #expect(Catalog.contains(name) || server.contains(name), "the dashboard reads \(name), which nothing exports")
        }
        // Server and exporter figures both appear.
        #expect(referenced.contains("warbler_sends_total") && referenced.contains("node_cpu_seconds_total") && referenced.contains("warbler_component_up"))
        // Every panel's datasource is the input, so the import asks which Prometheus to use.
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("${DS_PROMETHEUS}"))
        for p in panels where p["type"] as? String != "row" {
            let ds = p["datasource"] as? [String: Any]
            #expect(ds?["uid"] as? String == "${DS_PROMETHEUS}", "panel \(p["title"] ?? "?") has another datasource")
        }
    }

    @Test func operationsDocListsEveryMetricAndSetting() throws {
        let doc = try String(contentsOfFile: Repo.root + "/docs/operations.md", encoding: .utf8)
        for d in Catalog.all { #expect(doc.contains("`\(d.name)`"), "docs/operations.md does not list \(d.name)") }
        for key in ["host", "port", "components", "manager", "backup_marker", "collector_timeout_seconds"] {
            #expect(doc.contains("exporter.\(key)"), "docs/operations.md does not describe exporter.\(key)")
        }
    }
}

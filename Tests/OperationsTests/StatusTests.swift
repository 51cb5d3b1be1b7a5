import Foundation
import Installer
import Operations
import Synchronization
import Testing

/// The host as `status` sees it: service facts and HTTP answers given by the test; files from a staging root on disk.
final class FakeStatusProbe: StatusProbe {
    struct State {
        var systemd: ServiceFacts?
        var supervised: ServiceFacts?
        /// The supervisor's view by its PID file (a file's name, as `supervise-etcd.pid`), over `supervised`.
        var supervisedByPIDFile: [String: ServiceFacts] = [:]
        var supervisedAsked: [(supervisor: String, child: String)] = []
        /// Answers per URL, served in order (the last one repeats); a URL with none fails to connect.
        var answers: [String: [HTTPAnswer]] = [:]
        var requests: [(url: String, caFile: String?)] = []
        var slept: [Double] = []
    }
    let state = Mutex(State())
    let clock: Date

    init(now: Date = Date(timeIntervalSince1970: 1_800_000_000)) { clock = now }

    func systemdService(_ unit: String) async -> ServiceFacts? { state.withLock { $0.systemd } }
    func supervisedService(supervisorPIDFile: String, childPIDFile: String) async -> ServiceFacts? {
        state.withLock {
            $0.supervisedAsked.append((supervisorPIDFile, childPIDFile))
            return $0.supervisedByPIDFile[(supervisorPIDFile as NSString).lastPathComponent] ?? $0.supervised
        }
    }
    func readFile(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }
    func fileSize(_ path: String) -> UInt64? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value
    }
    func linkTarget(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }
    struct Refused: Error, CustomStringConvertible { var description: String { "connection refused" } }
    func get(_ url: String, caFile: String?) async throws -> HTTPAnswer {
        try state.withLock { s in
            s.requests.append((url, caFile))
            guard var queue = s.answers[url], !queue.isEmpty else { throw Refused() }
            let answer = queue.count > 1 ? queue.removeFirst() : queue[0]
            s.answers[url] = queue
            return answer
        }
    }
    func sleep(seconds: Double) async { state.withLock { $0.slept.append(seconds) } }
    func now() -> Date { clock }
}

/// An installed-looking staging root: config, certificates, release link, database.
struct StatusFixture {
    let root: String
    let probe: FakeStatusProbe
    static let readyz = "https://127.0.0.1:8443/readyz"
    static let metrics = "http://127.0.0.1:9464/metrics"

    init(certificateDaysLeft: Double = 100, config: String? = nil) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-status-\(UUID().uuidString)").path
        probe = FakeStatusProbe()
        let fm = FileManager.default
        for d in ["/etc/warbler/tls", "/opt/warbler/releases/0.2.0", "/var/lib/warbler"] {
            try fm.createDirectory(atPath: root + d, withIntermediateDirectories: true)
        }
        try (config ?? """
            server:
              host: 0.0.0.0
              port: 8443
              tls_cert: /etc/warbler/tls/server.crt
              tls_key: /etc/warbler/tls/server.key
            metrics:
              port: 9464
            storage:
              path: /var/lib/warbler/warbler.db
            """).write(toFile: root + "/etc/warbler/warbler.yaml", atomically: true, encoding: .utf8)
        // The internal CA issues for 397 days; issue "in the past" to get the days left wanted.
        let issued = probe.now().addingTimeInterval((certificateDaysLeft - 397) * 86400 + 3600)
        let tls = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                     names: CertificateNames(dns: ["chat1"], ips: []), now: issued)
        try tls.serverCertificatePEM.write(toFile: root + "/etc/warbler/tls/server.crt", atomically: true, encoding: .utf8)
        try tls.serverKeyPEM.write(toFile: root + "/etc/warbler/tls/server.key", atomically: true, encoding: .utf8)
        try (tls.caCertificatePEM ?? "").write(toFile: root + "/etc/warbler/tls/ca.crt", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: root + "/opt/warbler/current", withDestinationPath: "releases/0.2.0")
        try Data(count: 4096).write(to: URL(fileURLWithPath: root + "/var/lib/warbler/warbler.db"))
        try Data(count: 1000).write(to: URL(fileURLWithPath: root + "/var/lib/warbler/warbler.db-wal"))
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    func healthyServer() {
        probe.state.withLock {
            $0.systemd = ServiceFacts(activeState: "active", subState: "running", pid: 4242, uptimeSeconds: 3725, restarts: 1)
            $0.answers[Self.readyz] = [HTTPAnswer(status: 200, body: "{\"status\":\"ready\"}")]
            $0.answers[Self.metrics] = [
                HTTPAnswer(status: 200, body: "# TYPE warbler_connections gauge\nwarbler_connections 5\nwarbler_sends_total 100\n"),
                HTTPAnswer(status: 200, body: "warbler_connections 7\nwarbler_sends_total{node=\"a\"} 104\nwarbler_sends_total{node=\"b\"} 6\n"),
            ]
        }
    }

    func collect(_ manager: InitSystem = .systemd) async -> StatusReport {
        await StatusCollector(probe: probe, layout: Layout(root: root)).collect(manager: manager, host: "chat1")
    }
}

@Suite struct StatusTests {
    @Test func aHealthyServerUnderSystemdWithItsFigures() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        f.healthyServer()
        let report = await f.collect()
        #expect(report.healthy)
        let s = try #require(report.components.first)
        #expect(s.state == "active/running" && s.pid == 4242 && s.restarts == 1)
        #expect(s.version == "0.2.0")
        #expect(s.ready == true)
        #expect(s.connections == 7)
        #expect(s.messagesPerMinute == 600, "10 sends in the 1 s between scrapes")
        #expect(s.databaseBytes == 5096, "the database and its WAL")
        #expect(s.certificateDaysLeft == 100)
        #expect(s.listen == ["https://0.0.0.0:8443", "metrics http://127.0.0.1:9464"])
        let requests = f.probe.state.withLock { $0.requests }
        #expect(requests.first?.url == StatusFixture.readyz)
        #expect(requests.first?.caFile == f.root + "/etc/warbler/tls/ca.crt", "https is checked against the internal CA")
        #expect(f.probe.state.withLock { $0.slept } == [1])

        let table = report.render()
        #expect(table.hasPrefix("Warbler on chat1: healthy\n"))
        #expect(table.contains("COMPONENT  MANAGER  STATE           PID   UPTIME  VERSION  READY\n"))
        #expect(table.contains("server     systemd  active/running  4242  1h2m    0.2.0    yes\n"))
        #expect(table.contains("connections 7; messages/min 600; database 5.0 KiB; certificate expires in 100 days; restarts 1"))
        #expect(!table.contains("PROBLEM"))

        let json = try report.json()
        let decoded = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(decoded?["healthy"] as? Bool == true)
        let component = (decoded?["components"] as? [[String: Any]])?.first
        #expect(component?["pid"] as? Int == 4242)
        #expect(component?["messagesPerMinute"] as? Double == 600)
    }

    @Test func theExporterAndAlertdAreComponentsAndFiringAlertsAreListed() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        f.healthyServer()
        try FileManager.default.createDirectory(atPath: f.root + "/etc/systemd/system", withIntermediateDirectories: true)
        for unit in [Paths.exporterUnitName, Paths.alertdUnitName] {
            try "[Service]\n".write(toFile: f.root + Paths.unitFile(unit), atomically: true, encoding: .utf8)
        }
        try "global:\n  listen: \"127.0.0.1:9202\"\n".write(toFile: f.root + Paths.alertsConfig, atomically: true, encoding: .utf8)
        f.probe.state.withLock {
            $0.answers["http://127.0.0.1:9101/healthz"] = [HTTPAnswer(status: 200, body: "ok")]
            $0.answers["http://127.0.0.1:9202/-/healthy"] = [HTTPAnswer(status: 200, body: "ok")]
            $0.answers["http://127.0.0.1:9202/api/v1/alerts"] = [HTTPAnswer(status: 200, body: """
                [{"name":"DiskAlmostFull","severity":"critical","state":"firing","labels":{"alertname":"DiskAlmostFull","mountpoint":"/"},
                  "annotations":{"summary":"/ is 91% full"}},
                 {"name":"ComponentDown","severity":"critical","state":"pending","labels":{}},
                 {"name":"BackupStale","severity":"warning","state":"suppressed","labels":{}}]
                """)]
        }
        let report = await f.collect()
        #expect(report.components.map(\.name) == ["server", "exporter", "alertd"])
        #expect(report.healthy, "firing alerts are news, not a broken component")
        #expect(report.firingAlerts == ["DiskAlmostFull (critical) {mountpoint=/}: / is 91% full", "BackupStale (warning) [silenced]"])
        let table = report.render()
        #expect(table.contains("alerts firing (2):\n  DiskAlmostFull (critical) {mountpoint=/}: / is 91% full\n"))
        #expect(table.contains("alertd: listen control http://127.0.0.1:9202"))

        // alertd down: a problem of its own, and no alert list.
        f.probe.state.withLock { $0.answers["http://127.0.0.1:9202/-/healthy"] = nil }
        let down = await f.collect()
        #expect(!down.healthy)
        #expect(down.components.last?.problems.first?.contains("not ready") == true)
    }

    @Test func notReadyIsUnhealthy() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        f.healthyServer()
        f.probe.state.withLock { $0.answers[StatusFixture.readyz] = [HTTPAnswer(status: 503, body: "{\"status\":\"storage unavailable\"}")] }
        let report = await f.collect()
        #expect(!report.healthy)
        #expect(report.components[0].ready == false)
        #expect(report.render().contains("PROBLEM: not ready: GET /readyz answered 503"))
        #expect(report.render().hasPrefix("Warbler on chat1: UNHEALTHY"))
    }

    @Test func aStoppedServerIsUnhealthyAndNotProbed() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        f.probe.state.withLock { $0.systemd = ServiceFacts(activeState: "failed", subState: "failed", restarts: 5) }
        let report = await f.collect()
        #expect(!report.healthy)
        #expect(report.components[0].problems == ["the server is not running (failed/failed)"])
        #expect(report.components[0].ready == nil)
        #expect(f.probe.state.withLock { $0.requests.isEmpty })
    }

    @Test func theSupervisorsStateIsUsedWithoutSystemd() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        f.healthyServer()
        f.probe.state.withLock { $0.supervised = ServiceFacts(activeState: "activating", subState: "auto-restart") }
        let report = await f.collect(.builtin)
        #expect(report.components[0].manager == "builtin")
        #expect(report.components[0].state == "activating/auto-restart")
        #expect(!report.healthy)
    }

    @Test func aClusterMembersComponentsShowUnderTheSupervisorLikeTheServer() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        f.healthyServer()
        try FileManager.default.createDirectory(atPath: f.root + "/etc/systemd/system", withIntermediateDirectories: true)
        for unit in [ClusterPaths.etcdUnit, ClusterPaths.patroniUnit, ClusterPaths.haproxyUnit, ClusterPaths.agentUnit] {
            try "[Service]\n".write(toFile: f.root + Paths.unitFile(unit), atomically: true, encoding: .utf8)
        }
        f.probe.state.withLock {
            $0.supervised = ServiceFacts(activeState: "active", subState: "running", pid: 77)
            $0.supervisedByPIDFile["supervise-patroni.pid"] = ServiceFacts(activeState: "activating", subState: "auto-restart")
        }
        let report = await f.collect(.builtin)
        #expect(report.components.map(\.name) == ["server", "etcd", "patroni", "haproxy", "cluster-agent"])
        let etcd = try #require(report.components.first { $0.name == "etcd" })
        #expect(etcd.manager == "builtin" && etcd.state == "active/running" && etcd.active && etcd.problems.isEmpty)
        // Each is asked about by its own supervisor's PID files under the install's root.
        let asked = f.probe.state.withLock { $0.supervisedAsked }
        #expect(asked.contains { $0.supervisor == f.root + "/run/warbler/supervise-etcd.pid" && $0.child == f.root + "/run/warbler/etcd.pid" })
        // Patroni waiting to be restarted makes the host unhealthy.
        let patroni = try #require(report.components.first { $0.name == "patroni" })
        #expect(patroni.problems == ["patroni is not running (activating/auto-restart)"])
        #expect(!report.healthy)
    }

    @Test func aCertificateAboutToExpireIsUnhealthy() async throws {
        let f = try StatusFixture(certificateDaysLeft: 2)
        defer { f.remove() }
        f.healthyServer()
        let report = await f.collect()
        #expect(report.components[0].certificateDaysLeft == 2)
        #expect(!report.healthy)
        #expect(report.components[0].problems.contains { $0.contains("expires in 2 days") })
    }

    @Test func unreachableMetricsAreAWarningOnly() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        f.healthyServer()
        f.probe.state.withLock { $0.answers[StatusFixture.metrics] = nil }
        let report = await f.collect()
        #expect(report.healthy)
        #expect(report.components[0].connections == nil)
        #expect(report.components[0].warnings.contains { $0.contains("connection refused") })
    }

    @Test func plainHTTPInstallsAreProbedWithoutACA() async throws {
        let f = try StatusFixture(config: "server:\n  host: 10.0.0.5\n  port: 8080\nmetrics:\n  port: -1\n")
        defer { f.remove() }
        f.probe.state.withLock {
            $0.systemd = ServiceFacts(activeState: "active", subState: "running", pid: 7)
            $0.answers["http://10.0.0.5:8080/readyz"] = [HTTPAnswer(status: 200, body: "")]
        }
        let report = await f.collect()
        #expect(report.healthy)
        #expect(report.components[0].listen == ["http://10.0.0.5:8080"])
        #expect(report.components[0].certificateDaysLeft == nil)
        #expect(f.probe.state.withLock { $0.requests.map(\.url) } == ["http://10.0.0.5:8080/readyz"], "metrics off: not scraped")
    }

    @Test func noInstallIsUnhealthy() async throws {
        let f = try StatusFixture()
        defer { f.remove() }
        try FileManager.default.removeItem(atPath: f.root + "/etc/warbler/warbler.yaml")
        let report = await f.collect()
        #expect(!report.healthy)
        #expect(report.components[0].problems.first?.contains("is Warbler installed?") == true)
    }
}

@Suite struct StatusParsingTests {
    @Test func systemctlShowGivesStatePIDUptimeAndRestarts() {
        let text = "ActiveState=active\nSubState=running\nMainPID=812\nActiveEnterTimestampMonotonic=5000000\nNRestarts=2\n"
        let facts = StatusParsing.systemctlShow(text, monotonicNowMicroseconds: 95_000_000)
        #expect(facts == ServiceFacts(activeState: "active", subState: "running", pid: 812, uptimeSeconds: 90, restarts: 2))
        let dead = StatusParsing.systemctlShow("ActiveState=inactive\nSubState=dead\nMainPID=0\nActiveEnterTimestampMonotonic=0\nNRestarts=0\n",
                                               monotonicNowMicroseconds: 1)
        #expect(dead == ServiceFacts(activeState: "inactive", subState: "dead", restarts: 0))
        #expect(StatusParsing.systemctlShow("garbage", monotonicNowMicroseconds: 1) == nil)
    }

    @Test func procStatStartTimeCountsFieldsAfterTheCommandName() {
        // Field 22 (starttime) is 12345 ticks; the command name holds spaces and a parenthesis.
        let fields = (3...21).map { "\($0)" }.joined(separator: " ")
        let stat = "4242 (my (odd) name) " + fields.replacingOccurrences(of: "3 ", with: "S ", options: .anchored) + " 12345 999 0"
        #expect(StatusParsing.processStartSeconds(stat: stat, ticksPerSecond: 100) == 123.45)
        #expect(StatusParsing.processStartSeconds(stat: "4242 (x) S 1", ticksPerSecond: 100) == nil)
    }

    @Test func metricsAreSummedOverLabelsAndCommentsIgnored() {
        let text = "# HELP warbler_sends_total x\nwarbler_sends_total{a=\"1\"} 3\nwarbler_sends_total{a=\"2\"} 4.5\nwarbler_sends_total_other 100\n"
        #expect(StatusParsing.metric("warbler_sends_total", in: text) == 7.5)
        #expect(StatusParsing.metric("warbler_connections", in: text) == nil)
    }
}

import AlertReceivers
import Alerting
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import Testing

/// A real receiver that keeps what it is sent.
final class RecordingReceiver: AlertReceiver {
    let name: String
    private let box = NIOLockedValueBox<[AlertNotification]>([])

    init(name: String) { self.name = name }

    func send(_ notification: AlertNotification) async throws {
        box.withLockedValue { $0.append(notification) }
    }

    var received: [AlertNotification] { box.withLockedValue { $0 } }
}

/// An HTTP endpoint on 127.0.0.1 serving whatever exposition text the test sets.
final class MetricsTarget: Sendable {
    let text = NIOLockedValueBox("")
    let port = NIOLockedValueBox<Int?>(nil)
    let task = NIOLockedValueBox<Task<Void, any Error>?>(nil)

    func start() async throws -> Int {
        let router = Router()
        let text = self.text
        router.get("/metrics") { _, _ in text.withLockedValue { $0 } }
        let port = self.port
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in port.withLockedValue { $0 = channel.localAddress?.port } },
                              logger: Logger(label: "test.target"))
        task.withLockedValue { $0 = Task { try await app.runService(gracefulShutdownSignals: []) } }
        return try await waitFor("the metrics target to listen") { port.withLockedValue { $0 } }
    }

    func stop() async {
        let t = task.withLockedValue { $0 }
        t?.cancel()
        _ = try? await t?.value
    }
}

/// Polls `check` every 20 ms until it returns a value or `seconds` pass.
func waitFor<T>(_ what: String, seconds: Double = 15, _ check: () async throws -> T?) async throws -> T {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let v = try await check() { return v }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw StateError("timed out waiting for \(what)")
}

func tempDir() -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("alertd-test-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// Runs alertd in-process on port 0 for `body`, then shuts it down.
func withDaemon(_ yaml: String, receiver: RecordingReceiver, _ body: (AlertDaemon, AlertsClient) async throws -> Void) async throws {
    let config = try AlertsConfig.parse(yaml)
    let daemon = try AlertDaemon(config: config, deliver: { n, _ in try? await receiver.send(n) }, logger: Logger(label: "test.alertd"))
    let task = Task { try await daemon.run(handleSignals: false) }
    do {
        let port = try await daemon.waitUntilListening()
        try await body(daemon, AlertsClient(baseURL: "http://127.0.0.1:\(port)", token: daemon.controlToken))
    } catch {
        await daemon.shutdown()
        _ = try? await task.value
        throw error
    }
    await daemon.shutdown()
    try await task.value
}

@Suite(.serialized) struct DaemonTests {
    @Test func theControlAPIListsAlertsAndCreatesAndDeletesSilences() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Nothing listens on port 1: the target is down and up == 0 fires. (AsyncHTTPClient retries a refused
        // connection until the deadline, so a short scrape timeout makes the failure quick.) A 1 s scrape interval
        // gives a 3 s lookback: with 100 ms (1.2 s) a scrape loop starved by a loaded machine let the series go
        // stale and the alert flapped between firing and resolved.
        let yaml = """
        global:
          scrape_interval: 1s
          scrape_timeout: 300ms
          evaluation_interval: 100ms
          state_file: \(dir)/state.json
          listen: 127.0.0.1:0
        targets:
          - job: node
            url: http://127.0.0.1:1/metrics
        rules:
          - name: TargetDown
            expr: up == 0
            severity: critical
            summary: "{{ $labels.job }} at {{ $labels.instance }} is unreachable"
        routes:
          - receivers: [rec]
            group_wait: 0s
        receivers:
          - name: rec
            type: webhook
            url: http://127.0.0.1:1/unused
        """
        let rec = RecordingReceiver(name: "rec")
        try await withDaemon(yaml, receiver: rec) { _, client in
            let alerts = try await waitFor("TargetDown to fire") { try await client.alerts().first { $0.state == "firing" }.map { [$0] } }
            #expect(alerts[0].name == "TargetDown" && alerts[0].labels["instance"] == "127.0.0.1:1" && alerts[0].labels["job"] == "node")
            #expect(alerts[0].annotations["summary"] == "node at 127.0.0.1:1 is unreachable")
            #expect(try await client.firingAlerts().map(\.name) == ["TargetDown"])
            #expect(AlertsTable.alerts(alerts).contains("firing  critical  TargetDown"))

            let s = try await client.silence(matchers: ["alertname=TargetDown", "job=~\"no.*\""], duration: 7200, comment: "drill", createdBy: "tester")
            #expect(s.matchers.count == 2 && s.endsAt.timeIntervalSince(s.startsAt) == 7200)
            #expect(try await client.silences().map(\.id) == [s.id])
            let suppressed = try await client.alerts()
            #expect(suppressed.first?.state == "suppressed" && suppressed.first?.silencedBy == [s.id])
            #expect(try await client.firingAlerts().count == 1, "status still shows a silenced alert as firing")

            await #expect(throws: AlertsClientError.self) { _ = try await client.silence(matchers: ["nonsense"], duration: 60, comment: "x", createdBy: "t") }
            await #expect(throws: AlertsClientError.self) { _ = try await client.silence(matchers: ["a=b"], duration: 60, comment: " ", createdBy: "t") }
            try await client.unsilence(s.id)
            #expect(try await client.silences().isEmpty)
            do {
                try await client.unsilence(s.id)
                Issue.record("removed a silence twice")
            } catch let e as AlertsClientError {
                #expect(e.description.contains("no silence with id"))
            }
            #expect(try await client.alerts().first?.state == "firing")
        }
        // One firing notification reached the receiver; the state file remembers the alert.
        #expect(rec.received.map(\.status) == ["firing"])
        let saved = try StateStore(path: dir + "/state.json").load()
        #expect(saved.alerts.values.map(\.rule) == ["TargetDown"])
        // A client with nobody listening explains itself.
        await #expect(throws: AlertsClientError.self) { _ = try await AlertsClient(baseURL: "http://127.0.0.1:1").alerts() }
    }

    @Test func endToEndAScrapedMetricFlipsAndTheReceiverSeesFiringThenResolvedAcrossARestart() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = MetricsTarget()
        target.text.withLockedValue { $0 = "# TYPE flip_value gauge\nflip_value{side=\"a\"} 0\n" }
        let port = try await target.start()
        let yaml = """
        global:
          scrape_interval: 100ms
          evaluation_interval: 100ms
          state_file: \(dir)/state.json
          listen: 127.0.0.1:0
        targets:
          - job: fake
            url: http://127.0.0.1:\(port)/metrics
        rules:
          - name: FlipHigh
            expr: flip_value > 0
            for: 300ms
            severity: critical
            summary: "flip on {{ $labels.side }} is {{ $value }}"
        routes:
          - receivers: [rec]
            group_wait: 0s
        receivers:
          - name: rec
            type: webhook
            url: http://127.0.0.1:1/unused
        """
        let rec = RecordingReceiver(name: "rec")
        try await withDaemon(yaml, receiver: rec) { _, client in
            try await Task.sleep(for: .milliseconds(600))
            #expect(rec.received.isEmpty)
            target.text.withLockedValue { $0 = "flip_value{side=\"a\"} 7\n" }
            _ = try await waitFor("the firing notification") { rec.received.isEmpty ? nil : true }
        }
        // A restarted alertd (same state file, empty history) neither announces the alert again nor forgets it.
        try await withDaemon(yaml, receiver: rec) { _, client in
            _ = try await waitFor("the restarted alertd to list the alert") { try await client.alerts().isEmpty ? nil : true }
            try await Task.sleep(for: .milliseconds(800))
            #expect(rec.received.count == 1)
            #expect(try await client.alerts().map(\.state) == ["firing"])
            target.text.withLockedValue { $0 = "flip_value{side=\"a\"} 0\n" }
            _ = try await waitFor("the resolved notification") { rec.received.count >= 2 ? true : nil }
            #expect(try await client.alerts().isEmpty)
        }
        await target.stop()
        let got = rec.received
        #expect(got.map(\.status) == ["firing", "resolved"])
        let alert = try #require(got.first?.alerts.first)
        #expect(alert.labels == ["alertname": "FlipHigh", "severity": "critical", "side": "a", "job": "fake", "instance": "127.0.0.1:\(port)"])
        #expect(alert.annotations["summary"] == "flip on a is 7")
        #expect(got.last?.alerts.first?.endsAt != nil)
    }
}

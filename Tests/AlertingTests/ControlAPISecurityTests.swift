import AlertReceivers
@testable import Alerting
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Testing

/// The control API: silences only with the control token, a cap on silences, and answers that are always the JSON
/// they promise (an empty list is `[]`, an infinite value does not turn the list into `{}`).
@Suite(.serialized) struct ControlAPISecurityTests {
    static func yaml(_ dir: String, target: Int? = nil) -> String {
        """
        global:
          scrape_interval: 100ms
          scrape_timeout: 300ms
          evaluation_interval: 100ms
          state_file: \(dir)/state.json
          listen: 127.0.0.1:0
        targets:
        \(target.map { "  - job: fake\n    url: http://127.0.0.1:\($0)/metrics" } ?? "  []")
        rules:
          - name: BackupTooOld
            expr: backup_age_seconds / 3600 > 26
            severity: warning
            summary: "no recent backup"
        routes:
          - receivers: [rec]
            group_wait: 0s
        receivers:
          - name: rec
            type: webhook
            url: http://127.0.0.1:1/unused
        """
    }

    static func raw(_ url: String, method: String = "GET", authorization: String? = nil) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        if method == "POST" {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: #"{"matchers":["a=b"],"durationSeconds":60,"comment":"x","createdBy":"t"}"#))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    @Test func silencesNeedTheControlTokenWhichOnlyItsOwnerCanRead() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await withDaemon(Self.yaml(dir), receiver: RecordingReceiver(name: "rec")) { _, client in
            let base = client.baseURL
            for (method, path) in [("GET", "/api/v1/silences"), ("POST", "/api/v1/silences"), ("DELETE", "/api/v1/silences/x")] {
                let (without, _) = try await Self.raw(base + path, method: method)
                #expect(without == 401, "\(method) \(path) without a token")
                let (wrong, _) = try await Self.raw(base + path, method: method, authorization: "Bearer wrong")
                #expect(wrong == 401, "\(method) \(path) with a wrong token")
            }
            await #expect(throws: AlertsClientError.self) { _ = try await AlertsClient(baseURL: base).silence(matchers: ["a=b"], duration: 60, comment: "x", createdBy: "t") }
            await #expect(throws: AlertsClientError.self) { _ = try await AlertsClient(baseURL: base).silences() }
            let listed = try await client.silences()
            #expect(listed.isEmpty, "with the token it works")
        }
        var st = stat()
        #expect(stat(dir + "/control.token", &st) == 0 && st.st_mode & 0o777 == 0o600, "the token file is its owner's alone")
    }

    @Test func theAlertListStaysOpenAndAnEmptyListIsAnEmptyArray() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await withDaemon(Self.yaml(dir), receiver: RecordingReceiver(name: "rec")) { _, client in
            let (status, body) = try await Self.raw(client.baseURL + "/api/v1/alerts")
            #expect(status == 200 && body == "[]")
            #expect(try StatusCompatible.isArray(body))
        }
    }

    @Test func anInfiniteValueLeavesTheAlertListAJSONArray() async throws {
        // Before the first backup the exporter reports its age as +Inf; the alert it makes has that value.
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = MetricsTarget()
        target.text.withLockedValue { $0 = "# TYPE backup_age_seconds gauge\nbackup_age_seconds +Inf\n" }
        let port = try await target.start()
        try await withDaemon(Self.yaml(dir, target: port), receiver: RecordingReceiver(name: "rec")) { _, client in
            let alerts = try await waitFor("the alert") { try await client.alerts().first { $0.name == "BackupTooOld" } }
            #expect(alerts.value == .infinity)
            let (status, body) = try await Self.raw(client.baseURL + "/api/v1/alerts")
            #expect(status == 200 && body.hasPrefix("[") && body.contains(#""value":"+Inf""#))
        }
        await target.stop()
        let saved = try StateStore(path: dir + "/state.json").load()
        #expect(saved.alerts.values.map(\.value) == [.infinity], "the state file keeps it too")
    }

    @Test func silencesAreCappedCountingOnlyActiveOnes() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try AlertsConfig.parse(Self.yaml(dir))
        let service = try AlertService(config: config, deliver: { _, _ in }, logger: Logger(label: "test"))
        let now = Date()
        func silence(ending: Date) -> Silence {
            Silence(matchers: try! Matchers.parse(["a=b"]), startsAt: now.addingTimeInterval(-100_000), endsAt: ending, comment: "c", createdBy: "t")
        }
        #expect(await service.addSilence(silence(ending: now.addingTimeInterval(-200_000)), limit: 2, now: now))
        #expect(await service.addSilence(silence(ending: now.addingTimeInterval(60)), limit: 2, now: now))
        #expect(await service.addSilence(silence(ending: now.addingTimeInterval(60)), limit: 2, now: now))
        #expect(await service.addSilence(silence(ending: now.addingTimeInterval(60)), limit: 2, now: now) == false)
        let kept = await service.silences().count
        #expect(kept == 2, "the long-ended one was dropped")
        #expect(ControlAPI.maxSilences <= 10_000)
    }
}

/// What `warbler status` does with the answer: it must be a JSON array.
enum StatusCompatible {
    static func isArray(_ text: String) throws -> Bool {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) is [Any]
    }
}

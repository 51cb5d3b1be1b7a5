import Foundation
@testable import Alerting
import Testing

/// `warbler alerts list --json` prints what the control API sends, +Inf values included: BackupStale's value is
/// +Inf before the first backup, and a plain JSONEncoder refused it, so `--json` failed on every fresh install
/// (drill 6 read nothing from it while DiskAlmostFull was firing).
@Suite struct AlertsTableJSONTests {
    @Test func anInfiniteValueIsPrintedAsPrometheusSpellsIt() throws {
        let view = AlertView(fingerprint: "f1", name: "BackupStale", severity: .warning, state: "pending", labels: ["job": "exporter"],
                             annotations: [:], value: .infinity, activeAt: Date(timeIntervalSince1970: 0), firedAt: nil,
                             silencedBy: [], inhibited: false)
        let disk = AlertView(fingerprint: "f2", name: "DiskAlmostFull", severity: .critical, state: "firing", labels: ["mountpoint": "/var/lib/warbler-postgresql"],
                             annotations: [:], value: 100, activeAt: Date(timeIntervalSince1970: 0), firedAt: Date(timeIntervalSince1970: 120),
                             silencedBy: [], inhibited: false)
        let text = try AlertsTable.json([view, disk])
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        #expect(decoded.map { $0["name"] as? String } == ["BackupStale", "DiskAlmostFull"])
        #expect(decoded.first?["value"] as? String == "+Inf")
        #expect(decoded.last?["state"] as? String == "firing")
    }
}

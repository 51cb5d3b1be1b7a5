import Foundation
import Templates
import Testing

/// alertd's rules file and unit: golden files, and the unit checked by systemd-analyze like the server's.
@Suite struct AlertdTemplatesTests {
    static func alertdUnit(binary: String = "/opt/warbler/current/bin/warbler") -> ServiceUnitContext {
        var u = ServiceUnitContext()
        u.unitName = "warbler-alertd.service"
        u.binary = binary
        u.configPath = "/etc/warbler/alerts.yaml"
        u.ports = [9102]
        return u
    }

    @Test func theDefaultAlertsFileMatchesItsGoldenFile() throws {
        try expectGolden(try TemplateSet(directory: Repo.templates).renderAlertsConfig(AlertsConfigContext()), "alerts.yaml")
    }

    @Test func anAlertsFileWithReceiversMatchesItsGoldenFile() throws {
        var c = AlertsConfigContext()
        c.receivers = [.init(name: "ops", type: "webhook", url: "https://hooks.example.com/warbler?token=\"x\"")]
        c.scrapeInterval = "30s"
        try expectGolden(try TemplateSet(directory: Repo.templates).renderAlertsConfig(c), "alerts-receivers.yaml")
    }

    @Test func theAlertdUnitMatchesItsGoldenFile() throws {
        try expectGolden(try TemplateSet(directory: Repo.templates).renderAlertdUnit(Self.alertdUnit()), "warbler-alertd.service")
    }

    @Test func systemdAnalyzeVerifiesTheAlertdUnitAndRatesItTwoOrLower() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-alertd-unit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/bin/warbler")
        let unit = dir + "/warbler-alertd.service"
        try TemplateSet(directory: Repo.templates).renderAlertdUnit(Self.alertdUnit(binary: dir + "/bin/warbler"))
            .write(toFile: unit, atomically: true, encoding: .utf8)
        let verify = try SystemdAnalyzeTests.run(["verify", "--man=no", unit])
        #expect(verify.status == 0, "systemd-analyze verify failed:\n\(verify.output)")
        let ours = verify.output.split(separator: "\n").filter { $0.contains("warbler-alertd.service") }
        #expect(ours.isEmpty, "systemd-analyze verify complained:\n\(ours.joined(separator: "\n"))")
        let r = try SystemdAnalyzeTests.run(["security", "--offline=yes", "--threshold=20", "--no-pager", unit])
        let line = r.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        print("systemd-analyze security, warbler-alertd.service: \(line.trimmingCharacters(in: .whitespaces))")
        #expect(r.status == 0, "rated above 2.0:\n\(r.output)")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        #expect(try #require(score, "no exposure level in:\n\(r.output)") <= 2.0)
    }
}

import DurableFiles
import Foundation
import Templates
import Testing

/// The rendered units, checked by systemd's own tools (systemd-analyze from the host's systemd).
@Suite struct SystemdAnalyzeTests {
    struct Result {
        var status: Int32
        var output: String
    }

    static func run(_ args: [String]) throws -> Result {
        let r = try Subprocess.run(["/usr/bin/systemd-analyze"] + args)
        return Result(status: r.status, output: r.text)
    }

    /// Renders the unit into a fresh directory, with ExecStart pointing at a real executable there
    /// (verify refuses a unit whose binary is missing).
    static func renderUnit(ports: [Int]) throws -> (dir: String, unit: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-units-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/bin/warbler")
        var u = ServiceUnitContext()
        u.binary = dir + "/bin/warbler"
        u.ports = ports
        let unit = dir + "/" + u.unitName
        try TemplateSet(directory: Repo.templates).renderServerUnit(u).write(toFile: unit, atomically: true, encoding: .utf8)
        return (dir, unit)
    }

    /// The exporter's unit, rendered the same way.
    static func renderExporterUnit(port: Int) throws -> (dir: String, unit: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-units-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/bin/warbler")
        var u = ServiceUnitContext.exporter
        u.binary = dir + "/bin/warbler"
        u.ports = [port]
        let unit = dir + "/" + u.unitName
        try TemplateSet(directory: Repo.templates).renderExporterUnit(u).write(toFile: unit, atomically: true, encoding: .utf8)
        return (dir, unit)
    }

    @Test(arguments: [9101, 910])
    func systemdAnalyzeVerifyAcceptsTheExporterUnit(port: Int) throws {
        let (dir, unit) = try Self.renderExporterUnit(port: port)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Self.run(["verify", "--man=no", unit])
        #expect(r.status == 0, "systemd-analyze verify failed:\n\(r.output)")
        let ours = r.output.split(separator: "\n").filter { $0.contains("warbler-exporter.service") }
        #expect(ours.isEmpty, "systemd-analyze verify complained:\n\(ours.joined(separator: "\n"))")
    }

    /// hardening.md's gate for the exporter too, although it keeps /proc whole and may read the clock discipline.
    @Test(arguments: [9101, 910])
    func systemdAnalyzeSecurityRatesTheExporterUnitTwoOrLower(port: Int) throws {
        let (dir, unit) = try Self.renderExporterUnit(port: port)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Self.run(["security", "--offline=yes", "--threshold=20", "--no-pager", unit])
        let line = r.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        print("systemd-analyze security, exporter port \(port): \(line.trimmingCharacters(in: .whitespaces))")
        #expect(r.status == 0, "rated above 2.0:\n\(r.output)")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        let value = try #require(score, "no exposure level in:\n\(r.output)")
        #expect(value <= 2.0)
    }

    @Test(arguments: [[8443, 9464], [443, 9464]])
    func systemdAnalyzeVerifyAcceptsTheRenderedUnit(ports: [Int]) throws {
        let (dir, unit) = try Self.renderUnit(ports: ports)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Self.run(["verify", "--man=no", unit])
        #expect(r.status == 0, "systemd-analyze verify failed:\n\(r.output)")
        // Warnings about our unit (an unknown directive, a bad value) do not fail verify: look for them too.
        let ours = r.output.split(separator: "\n").filter { $0.contains("warbler-server.service") }
        #expect(ours.isEmpty, "systemd-analyze verify complained:\n\(ours.joined(separator: "\n"))")
    }

    /// The gate from hardening.md: exit 0 means an exposure of 2.0 or lower ("OK").
    @Test(arguments: [[8443, 9464], [443, 9464]])
    func systemdAnalyzeSecurityRatesTheUnitTwoOrLower(ports: [Int]) throws {
        let (dir, unit) = try Self.renderUnit(ports: ports)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try Self.run(["security", "--offline=yes", "--threshold=20", "--no-pager", unit])
        let line = r.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        print("systemd-analyze security, ports \(ports): \(line.trimmingCharacters(in: .whitespaces))")
        #expect(r.status == 0, "rated above 2.0:\n\(r.output)")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        let value = try #require(score, "no exposure level in:\n\(r.output)")
        #expect(value <= 2.0)
    }

    /// The certificate-renewal job and its timer: verify accepts both; the job rates 2.0 or lower too.
    @Test func theCertificateRenewalJobVerifiesAndRatesTwoOrLower() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-units-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/bin/warbler")
        var job = CertRenewUnitContext()
        job.binary = dir + "/bin/warbler"
        let templates = try TemplateSet(directory: Repo.templates)
        let service = dir + "/" + TemplateSet.certRenewService, timer = dir + "/" + TemplateSet.certRenewTimer
        try templates.renderCertRenewService(job).write(toFile: service, atomically: true, encoding: .utf8)
        try templates.renderCertRenewTimer(job).write(toFile: timer, atomically: true, encoding: .utf8)
        let verify = try Self.run(["verify", "--man=no", service, timer])
        #expect(verify.status == 0, "systemd-analyze verify failed:\n\(verify.output)")
        let ours = verify.output.split(separator: "\n").filter { $0.contains("warbler-cert-renew") }
        #expect(ours.isEmpty, "systemd-analyze verify complained:\n\(ours.joined(separator: "\n"))")
        let r = try Self.run(["security", "--offline=yes", "--threshold=20", "--no-pager", service])
        let line = r.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        print("systemd-analyze security, warbler-cert-renew.service: \(line.trimmingCharacters(in: .whitespaces))")
        #expect(r.status == 0, "rated above 2.0:\n\(r.output)")
    }
}

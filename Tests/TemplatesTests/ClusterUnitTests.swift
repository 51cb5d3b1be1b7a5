import Foundation
import Templates
import Testing

/// The cluster's component units: systemd-analyze verifies each and rates its exposure.
@Suite struct ClusterUnitTests {
    /// `systemd-analyze security` ratings each unit must stay within (measured: etcd, HAProxy and the agent 1.1,
    /// Patroni 1.2, with @resources and /proc/stat left to it, as its unit says why).
    static let ceilings: [String: Double] = [
        "warbler-etcd.service": 2.0, "warbler-haproxy.service": 2.0, "warbler-cluster-agent.service": 2.0, "warbler-patroni.service": 2.0,
    ]

    @Test(arguments: ["warbler-etcd.service", "warbler-patroni.service", "warbler-haproxy.service", "warbler-cluster-agent.service"])
    func clusterUnitsVerifyAndRateWithinTheirCeiling(_ name: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-cluster-units-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
        for b in ["etcd", "python3.11", "haproxy", "warbler"] { try FileManager.default.copyItem(atPath: "/bin/true", toPath: dir + "/bin/" + b) }
        var c = ClusterContext()
        c.nodeName = "one"; c.advertise = "10.0.0.1"
        c.etcdBin = dir + "/bin"; c.etcdConfig = dir + "/etcd.yaml"
        c.python = dir + "/bin/python3.11"; c.patroniScript = dir + "/patroni"; c.patroniConfig = dir + "/patroni.yml"
        c.haproxyBin = dir + "/bin/haproxy"; c.haproxyConfig = dir + "/haproxy.cfg"; c.warblerBinary = dir + "/bin/warbler"
        let unit = dir + "/" + name
        try TemplateSet(directory: Repo.templates).renderCluster(name, c).write(toFile: unit, atomically: true, encoding: .utf8)
        let verify = try SystemdAnalyzeTests.run(["verify", "--man=no", unit])
        let ours = verify.output.split(separator: "\n").filter { $0.contains(name) && !$0.contains("not found") && !$0.contains("User") && !$0.contains("Group") }
        #expect(ours.isEmpty, "systemd-analyze verify complained:\n\(ours.joined(separator: "\n"))")
        let r = try SystemdAnalyzeTests.run(["security", "--offline=yes", "--no-pager", unit])
        let line = r.output.split(separator: "\n").first { $0.contains("Overall exposure level") }.map(String.init) ?? ""
        print("systemd-analyze security, \(name): \(line.trimmingCharacters(in: .whitespaces))")
        let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        #expect(try #require(score, "no exposure level in:\n\(r.output)") <= Self.ceilings[name]!)
    }
}

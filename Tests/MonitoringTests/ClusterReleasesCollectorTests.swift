import Foundation
import Installer
import Logging
@testable import Monitoring
import Operations
import Testing

/// The exporter's view of each member's release, from the record the cluster agent writes (the exporter holds no
/// cluster certificate, so it cannot ask the members). The records here are in the agent's own format, written
/// at 14:00:00; the collector is run as if it were `age` seconds later.
@Suite struct ClusterReleasesCollectorTests {
    static let written = ISO8601DateFormatter().date(from: "2026-12-05T14:00:00Z")!

    /// Runs the collector over a host root holding `content` (nil: no record) as the agent's file.
    func collect(_ content: String?, age: Double = 40) async throws -> MetricSet {
        let root = NSTemporaryDirectory() + "warbler-releases-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + ClusterPaths.agentRuntime, withIntermediateDirectories: true)
        if let content { try content.write(toFile: root + ClusterPaths.memberReleases, atomically: true, encoding: .utf8) }
        let now = Self.written.addingTimeInterval(age)
        return try await ClusterReleasesCollector(files: HostFiles(root: root), now: { now }).collect()
    }

    func fixture(_ name: String) throws -> String {
        try String(contentsOfFile: Repo.fixtures + "/cluster/" + name, encoding: .utf8)
    }

    @Test func oneReleaseOnEveryMemberIsOneRelease() async throws {
        let set = try await collect(try fixture("releases-one.json"))
        #expect(set.value("warbler_cluster_releases") == 1)
        for m in ["warbler-1", "warbler-2", "warbler-3"] {
            #expect(set.value("warbler_cluster_member_release_info", ["member": m, "version": "0.9.0"]) == 1)
        }
        #expect(set.value("warbler_cluster_releases_fresh") == 1)
        #expect(set.value("warbler_cluster_releases_age_seconds") == 40)
        #expect(set.problems.isEmpty)
    }

    @Test func twoReleasesAreCountedAndAMemberThatDidNotAnswerIsInNone() async throws {
        let set = try await collect(try fixture("releases-two.json"))
        #expect(set.value("warbler_cluster_releases") == 2)
        #expect(set.value("warbler_cluster_member_release_info", ["member": "warbler-1", "version": "0.10.0"]) == 1)
        #expect(set.value("warbler_cluster_member_release_info", ["member": "warbler-2", "version": "0.9.0"]) == 1)
        #expect(!set.render().contains("member=\"warbler-3\""), "a member that did not answer has no release series")
        #expect(set.value("warbler_cluster_releases_fresh") == 1)
    }

    @Test func aStaleRecordDropsTheReleaseSeriesAndSaysSo() async throws {
        let set = try await collect(try fixture("releases-two.json"), age: MemberReleases.maxAge + 1)
        #expect(set.value("warbler_cluster_releases_fresh") == 0)
        #expect(set.value("warbler_cluster_releases_age_seconds") == MemberReleases.maxAge + 1)
        #expect(set.value("warbler_cluster_releases") == nil, "ClusterMixedVersions must not fire on an old record")
        #expect(!set.names.contains("warbler_cluster_member_release_info"))
        // Just inside the limit it is still trusted.
        #expect(try await collect(try fixture("releases-two.json"), age: MemberReleases.maxAge).value("warbler_cluster_releases") == 2)
    }

    @Test func noRecordYetIsNotFresh() async throws {
        let set = try await collect(nil)
        #expect(set.value("warbler_cluster_releases_fresh") == 0)
        #expect(set.names == ["warbler_cluster_releases_fresh"])
    }

    @Test(arguments: ["", "{\"at\":\"2026-12-05T14:00:00Z\",\"memb", "{\"members\":[]}", "{\"at\":\"yesterday\",\"members\":[]}",
                      "{\"at\":\"2026-12-05T14:00:00Z\",\"members\":[{\"name\":\"a\"}]}"])
    func aMalformedRecordFailsTheCollectorWithAnErrorNamingTheFileAndTheAgent(_ content: String) async throws {
        let error = await #expect(throws: ClusterOpsError.self) { try await collect(content) }
        let text = error?.description ?? ""
        #expect(text.contains(ClusterPaths.memberReleases) && text.contains("warbler-cluster-agent"), "\(text)")
    }

    @Test func aMalformedRecordTurnsOnlyThisCollectorDown() async throws {
        let root = NSTemporaryDirectory() + "warbler-releases-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + ClusterPaths.agentRuntime, withIntermediateDirectories: true)
        try "not json".write(toFile: root + ClusterPaths.memberReleases, atomically: true, encoding: .utf8)
        let set = await Scraper(collectors: [ClusterReleasesCollector(files: HostFiles(root: root))], logger: .init(label: "test")).scrape()
        #expect(set.value("warbler_exporter_collector_up", ["collector": "cluster_releases"]) == 0)
    }

    /// What the agent writes is what the exporter reads: the agent's pass over a fake version reader, then the
    /// collector over the file it left.
    @Test func theAgentsRecordIsWhatTheCollectorReads() async throws {
        let root = NSTemporaryDirectory() + "warbler-releases-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + ClusterPaths.agentRuntime, withIntermediateDirectories: true)
        struct Answers: MemberVersionReading {
            func versions(of members: [ClusterMember]) async throws -> [String: String] { ["a": "1.4.0", "b": "1.5.0"] }
        }
        let agent = ClusterAgent(etcd: Etcdctl(endpoints: ["127.0.0.1"]), member: "a", releasesFile: root + ClusterPaths.memberReleases, versions: Answers())
        let now = Date()
        try await agent.recordReleases(members: [.init(name: "b", address: "10.0.0.2", roles: []), .init(name: "a", address: "10.0.0.1", roles: [])], at: now)
        let set = try await ClusterReleasesCollector(files: HostFiles(root: root), now: { now.addingTimeInterval(5) }).collect()
        #expect(set.value("warbler_cluster_releases") == 2)
        #expect(set.value("warbler_cluster_member_release_info", ["member": "b", "version": "1.5.0"]) == 1)
    }
}

import DurableFiles
import Foundation
import Installer
@testable import Operations
import Synchronization
import Testing

/// The cluster agent's record of each member's release, which the exporter turns into ClusterMixedVersions.
@Suite struct MemberReleasesTests {
    /// Recorded answers per pass; throws when `failing` (as the real reader does when its certificate is unreadable).
    final class Answers: MemberVersionReading {
        let next = Mutex<[String: String]>([:])
        let failing = Mutex(false)
        let asked = Mutex<[[String]]>([])
        func versions(of members: [ClusterMember]) async throws -> [String: String] {
            asked.withLock { $0.append(members.map(\.name)) }
            if failing.withLock({ $0 }) { throw ClusterOpsError("cannot load the member's cluster client certificate") }
            return next.withLock { $0 }
        }
    }

    static let members = [ClusterMember(name: "warbler-2", address: "10.0.0.2", roles: [.database]),
                          ClusterMember(name: "warbler-1", address: "10.0.0.1", roles: [.database, .etcd]),
                          ClusterMember(name: "warbler-3", address: "10.0.0.3", roles: [.etcd])]

    func agent(_ answers: Answers, file: String) -> ClusterAgent {
        ClusterAgent(etcd: Etcdctl(endpoints: ["127.0.0.1"]), member: "warbler-1", releasesFile: file, versions: answers)
    }

    func tempFile() throws -> (dir: String, file: String) {
        let dir = NSTemporaryDirectory() + "warbler-agent-releases-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (dir, dir + "/releases.json")
    }

    @Test func aPassRecordsEveryMembersReleaseWorldReadable() async throws {
        let (dir, file) = try tempFile()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let answers = Answers()
        answers.next.withLock { $0 = ["warbler-1": "0.10.0", "warbler-2": "0.9.0"] }
        let at = Date(timeIntervalSince1970: 1_796_479_200)
        try await agent(answers, file: file).recordReleases(members: Self.members, at: at)

        let record = try MemberReleases.decode(try Data(contentsOf: URL(fileURLWithPath: file)), path: file)
        #expect(record == MemberReleases(at: at, members: [.init(name: "warbler-1", address: "10.0.0.1", version: "0.10.0"),
                                                            .init(name: "warbler-2", address: "10.0.0.2", version: "0.9.0"),
                                                            .init(name: "warbler-3", address: "10.0.0.3", version: nil)]))
        #expect(record.releases == ["0.10.0", "0.9.0"])
        #expect(answers.asked.withLock { $0 } == [["warbler-2", "warbler-1", "warbler-3"]])
        // The exporter is another user: the file must be readable by it, and by nobody for writing.
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int)
        #expect(mode == 0o644)
        #expect(ClusterAgent.describe(record) == "members' releases: 0.10.0 on warbler-1; 0.9.0 on warbler-2; no answer on warbler-3")
    }

    @Test func aFailedPassLeavesTheLastRecordToAgeOut() async throws {
        let (dir, file) = try tempFile()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let answers = Answers()
        answers.next.withLock { $0 = ["warbler-1": "0.9.0", "warbler-2": "0.9.0", "warbler-3": "0.9.0"] }
        let first = Date(timeIntervalSince1970: 1_796_479_200)
        try await agent(answers, file: file).recordReleases(members: Self.members, at: first)
        answers.failing.withLock { $0 = true }
        await #expect(throws: ClusterOpsError.self) { try await agent(answers, file: file).recordReleases(members: Self.members, at: first + 30) }
        let record = try MemberReleases.decode(try Data(contentsOf: URL(fileURLWithPath: file)), path: file)
        #expect(record.at == first, "the old record stays, with its time, so the exporter sees its age grow")
        #expect(record.releases == ["0.9.0"])
    }

    @Test func theRecordRoundTripsInTheAgentsFormat() throws {
        let r = MemberReleases(at: Date(timeIntervalSince1970: 1_796_479_200), members: [.init(name: "a", address: "10.0.0.1", version: nil)])
        let text = String(decoding: try r.encoded(), as: UTF8.self)
        #expect(text == "{\"at\":\"2026-12-05T14:00:00Z\",\"members\":[{\"address\":\"10.0.0.1\",\"name\":\"a\"}]}\n")
        #expect(try MemberReleases.decode(Data(text.utf8), path: "x") == r)
    }
}

import Foundation
@testable import Operations
import Testing

/// `warbler cluster status` on a cluster whose members run different releases: said, in the text and in `--json`,
/// but not a fault by itself (a rolling upgrade runs two releases at once by design).
@Suite struct ClusterStatusVersionsTests {
    func node(_ name: String, _ address: String, _ roles: [String], _ version: String?, haproxy: String = "UP", conns: Int,
              pg: (String, String)? = nil) -> ClusterStatusReport.Node {
        .init(name: name, address: address, roles: roles, version: version, imReady: true, imDetail: nil, haproxy: haproxy,
              connections: conns, postgresRole: pg?.0, postgresState: pg?.1, lagBytes: pg == nil ? nil : 0, etcd: "voter", etcdHealthy: true)
    }

    func report(_ v1: String?, _ v2: String?, _ v3: String?) -> ClusterStatusReport {
        ClusterStatusReport(nodes: [node("warbler-1", "10.0.0.1", ["database", "etcd"], v1, conns: 12, pg: ("leader", "running")),
                                    node("warbler-2", "10.0.0.2", ["database", "etcd"], v2, conns: 9, pg: ("sync_standby", "streaming")),
                                    node("warbler-3", "10.0.0.3", ["etcd"], v3, haproxy: "DRAIN", conns: 0)],
                            primary: "warbler-1", etcdVoters: 3, etcdHealthyVoters: 3, quorum: true, imUp: 3, problems: [])
    }

    let table = """
        NODE          ADDRESS        ROLES           VERSION  IM     HAPROXY CONNS POSTGRESQL              ETCD

        """

    @Test func aMixedVersionClusterSaysWhichMemberRunsWhichReleaseAndStaysHealthy() {
        var r = report("0.1.0", "0.2.0", "0.2.0")
        r.upgrade = "upgrade 0.1.0 → 0.2.0: running, step 20 of 26 (drain warbler-1)"
        r.upgradeLock = ClusterUpgradeLock.describe("warbler-2 390da245bad10e05 2026-12-05T01:00:00Z")
        #expect(r.healthy)
        #expect(r.render() == table + """
            warbler-1     10.0.0.1       im,database,etcd 0.1.0    ready  UP      12    leader running          voter
            warbler-2     10.0.0.2       im,database,etcd 0.2.0    ready  UP      9     sync_standby streaming  voter
            warbler-3     10.0.0.3       im,etcd         0.2.0    ready  DRAIN   0     -                       voter
            PostgreSQL primary: warbler-1   etcd: 3/3 voters healthy, quorum yes   IM servers up: 3/3
            upgrade: upgrade 0.1.0 → 0.2.0: running, step 20 of 26 (drain warbler-1)
            upgrade lock: held by warbler-2 since 2026-12-05T01:00:00Z
            versions: 0.1.0 on warbler-1, 0.2.0 on warbler-2, warbler-3 (upgrade in progress or unfinished)
            healthy

            """)
    }

    @Test func releasesAreListedInMemberOrderAndAMemberThatDidNotSayItsVersionIsLeftOut() {
        let r = report("0.2.0", nil, "0.1.0")
        #expect(r.render().hasSuffix("""
            IM servers up: 3/3
            versions: 0.2.0 on warbler-1, 0.1.0 on warbler-3 (upgrade in progress or unfinished)
            healthy

            """))
    }

    @Test func oneReleaseEverywhereAddsNoLine() {
        let r = report("0.2.0", "0.2.0", nil)
        #expect(r.render().hasSuffix("""
            IM servers up: 3/3
            healthy

            """))
        #expect(!r.render().contains("versions:"))
    }

    @Test func theJSONListsEachReleaseWithItsMembersAndSaysWhetherTheyAreMixed() throws {
        func json(_ r: ClusterStatusReport) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(r)) as? [String: Any])
        }
        let mixed = try json(report("0.1.0", "0.2.0", "0.2.0"))
        #expect(mixed["mixedVersions"] as? Bool == true)
        #expect(mixed["healthy"] as? Bool == true)
        let versions = try #require(mixed["versions"] as? [[String: Any]])
        #expect(versions.map { $0["version"] as? String } == ["0.1.0", "0.2.0"])
        #expect(versions.map { $0["nodes"] as? [String] } == [["warbler-1"], ["warbler-2", "warbler-3"]])

        let one = try json(report("0.2.0", "0.2.0", "0.2.0"))
        #expect(one["mixedVersions"] as? Bool == false)
        #expect((one["versions"] as? [[String: Any]])?.map { $0["nodes"] as? [String] } == [["warbler-1", "warbler-2", "warbler-3"]])
    }
}

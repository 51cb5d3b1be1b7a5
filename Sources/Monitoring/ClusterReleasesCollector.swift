import Foundation
import Installer
import Operations

/// Which release each cluster member runs, from the record this member's cluster agent keeps
/// (`ClusterPaths.memberReleases`): the exporter, the service user, holds no cluster certificate and so cannot ask
/// the members itself. A record older than `MemberReleases.maxAge` is not trusted: only `warbler_cluster_releases_fresh
/// 0` (and its age) is exported, so ClusterMixedVersions cannot fire, nor stay firing, on what may no longer be true.
/// A record that is not the agent's JSON fails this collector with an error naming the file.
public struct ClusterReleasesCollector: Collector {
    public let name = "cluster_releases"
    public var files: HostFiles
    public var now: @Sendable () -> Date

    public init(files: HostFiles = HostFiles(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.files = files; self.now = now
    }

    public func collect() async throws -> MetricSet {
        var set = MetricSet()
        let path = ClusterPaths.memberReleases
        guard files.exists(path) else {
            set.add(Catalog.clusterReleasesFresh, 0)
            return set
        }
        let record = try MemberReleases.decode(Data(try files.read(path).utf8), path: files.path(path))
        let age = max(0, now().timeIntervalSince(record.at))
        set.add(Catalog.clusterReleasesAge, age)
        guard age <= MemberReleases.maxAge else {
            set.add(Catalog.clusterReleasesFresh, 0)
            return set
        }
        set.add(Catalog.clusterReleasesFresh, 1)
        for m in record.members {
            guard let version = m.version else { continue }
            set.add(Catalog.clusterMemberRelease, ["member": m.name, "version": version], 1)
        }
        set.add(Catalog.clusterReleases, Double(record.releases.count))
        return set
    }
}

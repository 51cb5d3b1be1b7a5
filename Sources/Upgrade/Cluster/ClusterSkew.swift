import IMStorage

/// One member as a cluster upgrade sees it.
public struct ClusterUpgradeNode: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable, Comparable {
        /// PostgreSQL under Patroni (the primary or a standby).
        case database
        /// An etcd voter without PostgreSQL.
        case witness
        /// Serves clients (every member does).
        case im
        public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }
    }
    public var name: String
    public var roles: [Role]
    /// The release it runs now.
    public var version: String
    /// It is the PostgreSQL primary now.
    public var isPrimary: Bool
    public var isDatabase: Bool { roles.contains(.database) }

    public init(name: String, roles: [Role], version: String, isPrimary: Bool = false) {
        self.name = name; self.roles = roles.sorted(); self.version = version; self.isPrimary = isPrimary
    }
}

/// The cluster as it is before (or when resuming) an upgrade.
public struct ClusterUpgradeFacts: Sendable, Equatable {
    public var nodes: [ClusterUpgradeNode]
    /// The shared database's schema version now.
    public var databaseSchema: Int
    /// The newest schema the oldest release running knows (its `version --json`): the expand migrations must leave
    /// a schema that release runs on.
    public var runningSchema: Int

    public init(nodes: [ClusterUpgradeNode], databaseSchema: Int, runningSchema: Int) {
        self.nodes = nodes; self.databaseSchema = databaseSchema; self.runningSchema = runningSchema
    }
}

/// Why a cluster upgrade (or its contract step, or a rollback) will not start. Nothing was changed.
public struct ClusterUpgradeRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The version-skew rules of a cluster upgrade. Pure.
///
/// A cluster runs at most two releases at once, and only two that share a schema: the expand migrations of the
/// newer one must leave a schema the older one runs on, which is the node-side rule (`Migrations.refusal`: at most
/// one version ahead, and that one additive). So a release is "adjacent" to the one the cluster runs when it brings
/// at most one expand migration beyond it; one that brings more skips a release whose migrations are required.
public enum ClusterSkew {
    public struct Verdict: Sendable, Equatable {
        /// The release the cluster runs (the older one when two run).
        public var from: String
        /// Every node already runs the target.
        public var upToDate: Bool
        /// The expand migrations to run before the first node switches, through this version; nil: none.
        public var expandThrough: Int?
        /// The contract migrations left for the separate step once every node runs the target; nil: none.
        public var contractThrough: Int?

        public init(from: String, upToDate: Bool, expandThrough: Int?, contractThrough: Int?) {
            self.from = from; self.upToDate = upToDate; self.expandThrough = expandThrough; self.contractThrough = contractThrough
        }
    }

    public static func check(_ facts: ClusterUpgradeFacts, target: ReleaseInfo) -> Result<Verdict, ClusterUpgradeRefusal> {
        func refuse(_ s: String) -> Result<Verdict, ClusterUpgradeRefusal> { .failure(ClusterUpgradeRefusal(s)) }
        guard !facts.nodes.isEmpty else { return refuse("the cluster lists no members") }
        guard let to = ReleaseVersion(target.version) else { return refuse("cannot read the file's version '\(target.version)'") }
        var byVersion: [String: [String]] = [:]
        for n in facts.nodes { byVersion[n.version, default: []].append(n.name) }
        var versions: [ReleaseVersion] = []
        for v in byVersion.keys {
            guard let parsed = ReleaseVersion(v) else { return refuse("cannot read the version '\(v)' that \(byVersion[v]!.sorted().joined(separator: ", ")) run(s)") }
            versions.append(parsed)
        }
        versions.sort()
        func who(_ v: ReleaseVersion) -> String { "\(v.text) on \(byVersion[v.text]!.sorted().joined(separator: ", "))" }
        if versions.count > 2 {
            return refuse("the cluster runs \(versions.count) releases (\(versions.map(who).joined(separator: "; "))); it may run at most two, one release apart, and only during an upgrade: bring the nodes to one release first")
        }
        let oldest = versions.first!, newest = versions.last!
        if versions.count == 2 && newest.text != target.version {
            return refuse("the cluster is part way through an upgrade to \(newest.text) (\(versions.map(who).joined(separator: "; "))): finish it (`warbler upgrade --resume` with \(newest.text)'s file) or return to \(oldest.text) (`warbler rollback`) before going to \(target.version)")
        }
        if to < oldest {
            return refuse("\(target.version) is older than \(oldest.text), which the cluster runs: a cluster upgrade does not go back; `warbler rollback` returns every node to the previous release while the schema allows it")
        }
        if target.schema < facts.databaseSchema {
            return refuse("the database is at schema \(facts.databaseSchema) but \(target.version) knows only up to \(target.schema): it cannot run on this data")
        }
        let upToDate = versions.count == 1 && oldest.text == target.version
        let pending = (facts.databaseSchema + 1)...max(facts.databaseSchema + 1, target.schema)
        var expand: [Int] = [], contract: [Int] = []
        if target.schema > facts.databaseSchema {
            guard let listed = target.migrations else {
                return refuse("\(target.version)'s file does not say which of its migrations (schema \(facts.databaseSchema) → \(target.schema)) are expand and which contract (it was made before cluster upgrades), so the cluster cannot be upgraded to it node by node")
            }
            for v in pending {
                guard let m = listed.first(where: { $0.version == v }) else {
                    return refuse("\(target.version)'s file does not list its migration \(v)")
                }
                // Expand migrations come first; from the first contract one on, everything waits for the contract step.
                if m.phase == .expand && contract.isEmpty { expand.append(v) } else { contract.append(v) }
            }
        }
        // What the older release will find once the expand migrations ran, held to the node-side rule.
        let afterExpand = expand.last ?? facts.databaseSchema
        if afterExpand > facts.runningSchema {
            let phase = target.migrations?.first(where: { $0.version == afterExpand })?.phase
            if let why = Migrations.refusal(newest: facts.runningSchema, databaseVersion: afterExpand, additive: phase == .expand,
                                            name: "\(target.version)'s migration \(afterExpand)") {
                return refuse("\(oldest.text) could not run beside \(target.version): after \(target.version)'s expand migrations \(why). \(target.version) skips a release whose migrations are required: upgrade the cluster to the release that brings schema \(facts.runningSchema + 1) first, then to \(target.version)")
            }
        }
        return .success(Verdict(from: oldest.text, upToDate: upToDate, expandThrough: expand.last, contractThrough: contract.last))
    }
}

import IMStorage
import Testing
import Upgrade

/// The version-skew rules: at most two releases, one schema step apart, never backwards, never skipping a release
/// whose migrations are required.
@Suite struct ClusterSkewTests {
    static func nodes(_ versions: [String]) -> [ClusterUpgradeNode] {
        versions.enumerated().map { i, v in ClusterUpgradeNode(name: "n\(i + 1)", roles: i < 2 ? [.database, .im] : [.witness, .im], version: v, isPrimary: i == 0) }
    }

    static func target(_ version: String = "1.1.0", schema: Int = 13, phases: [Int: Migration.Phase] = [13: .expand], listed: Bool = true) -> ReleaseInfo {
        ReleaseInfo(version: version, build: "b", schema: schema,
                    migrations: listed ? (1...schema).map { MigrationPhaseInfo(version: $0, phase: phases[$0] ?? .expand) } : nil)
    }

    static func check(_ versions: [String], db: Int = 12, running: Int = 12, _ target: ReleaseInfo = target()) -> Result<ClusterSkew.Verdict, ClusterUpgradeRefusal> {
        ClusterSkew.check(ClusterUpgradeFacts(nodes: nodes(versions), databaseSchema: db, runningSchema: running), target: target)
    }

    static func refusal(_ r: Result<ClusterSkew.Verdict, ClusterUpgradeRefusal>) -> String {
        if case .failure(let f) = r { return f.description }
        return "accepted: \(r)"
    }

    @Test func oneExpandMigrationAheadIsAccepted() throws {
        let v = try Self.check(["1.0.0", "1.0.0", "1.0.0"]).get()
        #expect(v == ClusterSkew.Verdict(from: "1.0.0", upToDate: false, expandThrough: 13, contractThrough: nil))
    }

    @Test func aDowngradeIsRefused() {
        let why = Self.refusal(Self.check(["1.2.0", "1.2.0", "1.2.0"], db: 13, running: 13, Self.target("1.1.0")))
        #expect(why.contains("1.1.0 is older than 1.2.0") && why.contains("warbler rollback"), "\(why)")
    }

    @Test func threeReleasesAtOnceAreRefused() {
        let why = Self.refusal(Self.check(["1.0.0", "1.1.0", "1.2.0"], Self.target("1.2.0")))
        #expect(why.contains("runs 3 releases") && why.contains("1.0.0 on n1"), "\(why)")
    }

    @Test func aClusterPartWayThroughAnUpgradeOnlyGoesOnToItsTarget() throws {
        let why = Self.refusal(Self.check(["1.0.0", "1.1.0", "1.1.0"], db: 13, Self.target("1.2.0", schema: 13)))
        #expect(why.contains("part way through an upgrade to 1.1.0") && why.contains("--resume") && why.contains("warbler rollback"), "\(why)")
        // Going on to 1.1.0 is fine: the schema is already expanded, nothing left to run.
        let v = try Self.check(["1.0.0", "1.1.0", "1.1.0"], db: 13).get()
        #expect(v.from == "1.0.0" && v.expandThrough == nil && !v.upToDate)
    }

    @Test func skippingAReleaseWhoseMigrationsAreRequiredIsRefused() {
        // 1.2.0 brings schema 13 and 14: 1.0.0 (schema 12) cannot run on 14, so the cluster could not run both.
        let why = Self.refusal(Self.check(["1.0.0", "1.0.0", "1.0.0"], Self.target("1.2.0", schema: 14)))
        #expect(why.contains("skips a release whose migrations are required") && why.contains("schema 13 first"), "\(why)")
        #expect(why.contains("2 versions newer"), "the node-side rule's own words: \(why)")
    }

    @Test func skippingReleasesWithoutMigrationsIsFine() throws {
        let v = try Self.check(["1.0.0", "1.0.0", "1.0.0"], Self.target("1.4.0")).get()
        #expect(v.expandThrough == 13)
    }

    @Test func aContractMigrationWaitsForTheContractStep() throws {
        let v = try Self.check(["1.0.0", "1.0.0", "1.0.0"], Self.target(schema: 14, phases: [13: .expand, 14: .contract])).get()
        #expect(v.expandThrough == 13 && v.contractThrough == 14)
        // A contract migration first: nothing to expand, and everything after it waits too.
        let w = try Self.check(["1.0.0", "1.0.0", "1.0.0"], Self.target(schema: 14, phases: [13: .contract, 14: .expand])).get()
        #expect(w.expandThrough == nil && w.contractThrough == 14)
    }

    @Test func aReleaseThatDoesNotListItsMigrationsIsRefusedWhenItChangesTheSchema() throws {
        let why = Self.refusal(Self.check(["1.0.0", "1.0.0", "1.0.0"], Self.target(listed: false)))
        #expect(why.contains("does not say which of its migrations"), "\(why)")
        _ = try Self.check(["1.0.0", "1.0.0", "1.0.0"], Self.target(schema: 12, listed: false)).get()
    }

    @Test func aDatabaseNewerThanTheTargetIsRefused() {
        let why = Self.refusal(Self.check(["1.0.0", "1.0.0", "1.0.0"], db: 14, running: 14, Self.target("1.1.0", schema: 13)))
        #expect(why.contains("the database is at schema 14 but 1.1.0 knows only up to 13"), "\(why)")
    }

    @Test func everyNodeOnTheTargetIsUpToDate() throws {
        let v = try Self.check(["1.1.0", "1.1.0", "1.1.0"], db: 13, running: 13).get()
        #expect(v.upToDate)
    }
}

import Foundation
import IMStorage
import Synchronization
import Testing
import Upgrade

/// The cluster upgrade engine against a recording fake of the cluster: the order of every step, every failure
/// path with the failed node's return and the stop report, resume, the contract step and the cluster rollback.
@Suite struct ClusterUpgradeTests {
    static let file = "/srv/warbler-1.1.0"
    /// 1.1.0: schema 13 (an expand migration) and, with `contract`, 14 (a contract migration).
    static func release(contract: Bool = false) -> ReleaseInfo {
        var migrations = (1...13).map { MigrationPhaseInfo(version: $0, phase: .expand) }
        if contract { migrations.append(MigrationPhaseInfo(version: 14, phase: .contract)) }
        return ReleaseInfo(version: "1.1.0", build: "bbb", schema: contract ? 14 : 13, migrations: migrations)
    }

    static func cluster(_ nodes: Int = 3, contract: Bool = false) -> FakeCluster {
        let c = nodes == 3 ? FakeCluster.threeNodes() : FakeCluster.fourNodes()
        c.add(file: file, release(contract: contract))
        return c
    }

    static func group(_ n: String, _ v: String = "1.1.0") -> [String] {
        ["drain \(n)", "reconnect \(n)", "sessions \(n)", "switch \(n) \(v)", "ready \(n) \(v)", "undrain \(n)"]
    }

    static let threeNodeOrder: [String] =
        ["lock", "verify \(file)", "distribute w1", "distribute db2", "distribute db1", "backup pre-upgrade-1.0.0-to-1.1.0", "migrate expand 13"]
        + group("w1") + group("db2") + ["switchover db1"] + group("db1") + ["unlock"]

    @Test func sessionsLeftOrUncountedAreReportedAndTheUpgradeGoesOn() async throws {
        let c = Self.cluster()
        c.state.withLock { $0.sessionsLeft["db2"] = 3; $0.uncounted = ["w1"] }
        let lines = Mutex<[String]>([])
        let progress = try await ClusterUpgrader(driver: c).upgrade(file: Self.file) { line in lines.withLock { $0.append(line) } }
        #expect(c.calls == Self.threeNodeOrder && progress.state == .finished)
        let logged = lines.withLock { $0 }
        #expect(logged.contains { $0.hasPrefix("db2 still holds 3 sessions after") })
        #expect(logged.contains("w1's release cannot move or count its sessions; its clients are told to reconnect when it stops for the switch"))
        #expect(!logged.contains { $0.hasPrefix("db1") && $0.contains("sessions") })
    }

    @Test func threeNodesUpgradeWitnessThenStandbyThenSwitchoverThenTheOldPrimary() async throws {
        let c = Self.cluster()
        let progress = try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        #expect(c.calls == Self.threeNodeOrder)
        #expect(c.versions == ["db1": "1.1.0", "db2": "1.1.0", "w1": "1.1.0"])
        #expect(c.primary == "db2")
        #expect(c.schema == 13)
        #expect(progress.state == .finished && progress.done == progress.steps.count)
        #expect(c.progress == progress, "the finished progress is what was recorded")
        #expect(progress.backup == "/var/lib/warbler/backups/pre-upgrade-1.0.0-to-1.1.0-1.tar.gz")
    }

    /// The plan alone, without an executor: events in, actions out.
    @Test func thePlanIsEventsInActionsOut() throws {
        let c = Self.cluster()
        let facts = c.state.withLock { ClusterUpgradeFacts(nodes: $0.nodes, databaseSchema: 12, runningSchema: 12) }
        var plan = ClusterUpgradePlan(file: Self.file, facts: facts)
        #expect(plan.next(.start) == .perform(.verifyFile))
        #expect(!plan.persists)
        #expect(plan.next(.verified(Self.release())) == .perform(.distribute(node: "w1")))
        #expect(plan.persists && plan.progress.from == "1.0.0" && plan.progress.to == "1.1.0")
        for expected: ClusterUpgradeStep in [.distribute(node: "db2"), .distribute(node: "db1"), .backup] {
            #expect(plan.next(.succeeded) == .perform(expected))
        }
        #expect(plan.next(.backedUp("/b.tar.gz")) == .perform(.expandMigrations(through: 13)))
        for expected: ClusterUpgradeStep in [.drain(node: "w1"), .reconnectClients(node: "w1"), .waitSessions(node: "w1"), .switchRelease(node: "w1")] {
            #expect(plan.next(.succeeded) == .perform(expected))
        }
        #expect(plan.next(.failed("disk full")) == .returnNode(node: "w1", release: "1.0.0", switchBack: true))
        guard case .stopped(let stop) = plan.next(.nodeReturned) else { Issue.record("not stopped"); return }
        #expect(stop.step == .switchRelease(node: "w1") && stop.detail == "disk full" && stop.nodeReturned == true)
        #expect(plan.progress.done == 7 && plan.progress.steps[7] == .drain(node: "w1") && plan.progress.backup == "/b.tar.gz")
        // An event out of turn is a bug said as such, not a step taken.
        var other = ClusterUpgradePlan(file: Self.file, facts: facts)
        guard case .stopped(let odd) = other.next(.succeeded) else { Issue.record("not stopped"); return }
        #expect(odd.detail.contains("this is a bug"))
    }

    @Test func fourNodesUpgradeTheClientOnlyHostsFirst() async throws {
        let c = Self.cluster(4)
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        #expect(c.calls == ["lock", "verify \(Self.file)", "distribute im1", "distribute w1", "distribute db2", "distribute db1",
                            "backup pre-upgrade-1.0.0-to-1.1.0", "migrate expand 13"]
                + Self.group("im1") + Self.group("w1") + Self.group("db2") + ["switchover db1"] + Self.group("db1") + ["unlock"])
        #expect(Set(c.versions.values) == ["1.1.0"])
    }

    @Test func aClusterOfOneMemberIsSwitchedWithoutADrainAndRollsBackTheSameWay() async throws {
        // Its agent never drains the last member (HAProxy needs a server): a drain step would wait for ever.
        let c = FakeCluster(nodes: [ClusterUpgradeNode(name: "solo", roles: [.database, .im], version: "1.0.0", isPrimary: true)])
        c.add(file: Self.file, Self.release())
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        #expect(c.calls == ["lock", "verify \(Self.file)", "distribute solo", "backup pre-upgrade-1.0.0-to-1.1.0", "migrate expand 13",
                            "switch solo 1.1.0", "ready solo 1.1.0", "unlock"])
        #expect(c.versions == ["solo": "1.1.0"])
        c.clearCalls()
        _ = try await ClusterUpgrader(driver: c).rollback()
        #expect(!c.calls.contains { $0.hasPrefix("drain") || $0.hasPrefix("undrain") }, "\(c.calls)")
        #expect(c.versions == ["solo": "1.0.0"])
    }

    @Test func aReleaseWithoutSchemaChangesRunsNoMigration() async throws {
        let c = FakeCluster.threeNodes()
        c.add(file: Self.file, ReleaseInfo(version: "1.1.0", build: "bbb", schema: 12, migrations: (1...12).map { .init(version: $0, phase: .expand) }))
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        #expect(!c.calls.contains { $0.hasPrefix("migrate") })
        #expect(c.calls.contains("switchover db1"))
    }

    /// A node step that fails, what the node's return does, and where a resume starts again.
    struct NodeFailure: Sendable, CustomTestStringConvertible {
        var call: String
        var step: ClusterUpgradeStep
        var stepNumber: Int
        var returned: [String]
        var switched: [String]
        var resumesAt: String
        var testDescription: String { call }
    }

    static let nodeFailures: [NodeFailure] = [
        // The first node (the witness): steps 8-13.
        NodeFailure(call: "drain w1", step: .drain(node: "w1"), stepNumber: 8, returned: ["undrain w1"], switched: [], resumesAt: "drain w1"),
        NodeFailure(call: "reconnect w1", step: .reconnectClients(node: "w1"), stepNumber: 9, returned: ["undrain w1"], switched: [], resumesAt: "drain w1"),
        NodeFailure(call: "sessions w1", step: .waitSessions(node: "w1"), stepNumber: 10, returned: ["undrain w1"], switched: [], resumesAt: "drain w1"),
        NodeFailure(call: "switch w1 1.1.0", step: .switchRelease(node: "w1"), stepNumber: 11,
                    returned: ["switch w1 1.0.0", "ready w1 1.0.0", "undrain w1"], switched: [], resumesAt: "drain w1"),
        NodeFailure(call: "ready w1 1.1.0", step: .waitReady(node: "w1"), stepNumber: 12,
                    returned: ["switch w1 1.0.0", "ready w1 1.0.0", "undrain w1"], switched: [], resumesAt: "drain w1"),
        NodeFailure(call: "undrain w1", step: .undrain(node: "w1"), stepNumber: 13,
                    returned: ["switch w1 1.0.0", "ready w1 1.0.0", "undrain w1"], switched: [], resumesAt: "drain w1"),
        // The database standby, after the witness finished.
        NodeFailure(call: "ready db2 1.1.0", step: .waitReady(node: "db2"), stepNumber: 18,
                    returned: ["switch db2 1.0.0", "ready db2 1.0.0", "undrain db2"], switched: ["w1"], resumesAt: "drain db2"),
        // The old primary, after the switchover.
        NodeFailure(call: "ready db1 1.1.0", step: .waitReady(node: "db1"), stepNumber: 25,
                    returned: ["switch db1 1.0.0", "ready db1 1.0.0", "undrain db1"], switched: ["w1", "db2"], resumesAt: "drain db1"),
    ]

    @Test(arguments: nodeFailures)
    func aFailedNodeGoesBackAndTheUpgradeStopsThenResumes(_ f: NodeFailure) async throws {
        let c = Self.cluster()
        c.fail(f.call)
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        // Everything up to the failure, the node's return, the lock let go: nothing after.
        let upTo = Array(Self.threeNodeOrder.prefix(through: Self.threeNodeOrder.firstIndex(of: f.call)!))
        #expect(c.calls == upTo + f.returned + ["unlock"])
        #expect(stop.step == f.step && stop.stepNumber == f.stepNumber && stop.steps == 26)
        #expect(stop.node == f.step.node && stop.nodeReturned == true && stop.detail == "\(f.call) failed (scripted)")
        #expect(stop.switched == f.switched)
        #expect(stop.resume == "warbler upgrade --resume \(Self.file)")
        #expect(c.versions[f.step.node!] == "1.0.0", "the failed node runs its previous release again")
        for n in f.switched { #expect(c.versions[n] == "1.1.0") }
        #expect(c.progress?.state == .stopped && c.progress?.stop == stop, "the stop is recorded")

        // Resumed: the checks again, then on from the failed node's drain; finished nodes and earlier steps are
        // not repeated.
        c.clearCalls()
        let done = try await ClusterUpgrader(driver: c).upgrade(file: Self.file, resume: true)
        let rest = Array(Self.threeNodeOrder[Self.threeNodeOrder.firstIndex(of: f.resumesAt)!...])
        #expect(c.calls == ["lock", "verify \(Self.file)"] + rest)
        for n in f.switched { #expect(!c.calls.contains("drain \(n)"), "\(n) finished before the stop and is not done again") }
        #expect(done.state == .finished && Set(c.versions.values) == ["1.1.0"])
    }

    /// Steps outside a node's group: the upgrade stops, no node is touched, and a resume starts at that step.
    @Test(arguments: ["distribute db2", "backup pre-upgrade-1.0.0-to-1.1.0", "migrate expand 13", "switchover db1"])
    func aFailedClusterStepStopsWithNoNodeToReturnThenResumes(_ call: String) async throws {
        let c = Self.cluster()
        c.fail(call)
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        let i = Self.threeNodeOrder.firstIndex(of: call)!
        #expect(c.calls == Array(Self.threeNodeOrder.prefix(through: i)) + ["unlock"])
        #expect(stop.nodeReturned == nil && !stop.changedNothing && stop.stepNumber == i + 1)   // calls start with "lock" and the skew check makes none
        #expect(stop.detail == "\(call) failed (scripted)")
        if call == "switchover db1" {
            #expect(stop.step == .switchover(from: "db1") && stop.switched == ["w1", "db2"] && c.primary == "db1")
        }
        c.clearCalls()
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file, resume: true)
        #expect(c.calls == ["lock", "verify \(Self.file)"] + Array(Self.threeNodeOrder[i...]))
        #expect(Set(c.versions.values) == ["1.1.0"])
    }

    @Test func theStopReportSaysWhereHowAndWhatToRun() async throws {
        let c = Self.cluster()
        c.fail("ready db2 1.1.0")
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        #expect(stop.description == """
            cluster upgrade 1.0.0 → 1.1.0 stopped at step 18 of 26 (wait for db2 to be ready) on db2: ready db2 1.1.0 failed (scripted)
            db2 went back to 1.0.0 and is serving again.
            w1 run 1.1.0; every other node runs 1.0.0 (two adjacent releases on one schema, which the cluster supports while the upgrade is stopped).
            Resume (after fixing the cause): warbler upgrade --resume /srv/warbler-1.1.0
            Or return every node to 1.0.0: warbler rollback
            """)
        #expect(c.progress?.summary == "upgrade 1.0.0 → 1.1.0: STOPPED at step 18 of 26 (wait for db2 to be ready) on db2; resume: warbler upgrade --resume /srv/warbler-1.1.0")
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file, resume: true)
        #expect(c.progress?.summary == "upgrade 1.0.0 → 1.1.0: finished")
    }

    @Test func aNodeThatCannotBeReturnedIsSaidSo() async throws {
        let c = Self.cluster()
        c.fail("ready w1 1.1.0")
        c.fail("ready w1 1.0.0")
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        #expect(stop.nodeReturned == false && stop.rollbackFailure == "ready w1 1.0.0 failed (scripted)")
        #expect(c.calls.suffix(3) == ["switch w1 1.0.0", "ready w1 1.0.0", "unlock"])
        #expect(stop.description.contains("w1 could NOT be returned to 1.0.0: ready w1 1.0.0 failed (scripted)"))
    }

    @Test func aFileThatFailsVerificationChangesNothingAndRecordsNothing() async throws {
        let c = Self.cluster()
        c.fail("verify \(Self.file)")
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        #expect(c.calls == ["lock", "verify \(Self.file)", "unlock"])
        #expect(stop.step == .verifyFile && stop.stepNumber == 1 && stop.changedNothing && stop.resume == nil)
        #expect(stop.description.hasSuffix("Nothing was changed."))
        #expect(c.progress == nil)
        let why = try await refused { try await ClusterUpgrader(driver: c).upgrade(file: Self.file, resume: true) }
        #expect(why.contains("nothing to resume"))
    }

    @Test func aSkewRefusalChangesNothing() async throws {
        let c = Self.cluster()
        c.setVersion("w1", "0.9.0")
        c.setVersion("db2", "1.0.1")
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        #expect(c.calls == ["lock", "verify \(Self.file)", "unlock"])
        #expect(stop.step == .checkSkew && stop.stepNumber == 2 && stop.changedNothing)
        #expect(stop.detail.contains("runs 3 releases"), "\(stop.detail)")
        #expect(c.progress == nil)
    }

    @Test func aResumeWithAnotherFileIsRefusedAndKeepsTheRecord() async throws {
        let c = Self.cluster()
        c.fail("ready db2 1.1.0")
        _ = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        let recorded = c.progress
        c.add(file: "/srv/other", ReleaseInfo(version: "1.1.0", build: "ccc", schema: 13, migrations: Self.release().migrations))
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: "/srv/other", resume: true) }
        #expect(stop.detail.contains("build ccc") && stop.detail.contains("build bbb"), "\(stop.detail)")
        #expect(c.calls.contains("verify /srv/other"), "the file given is the one verified")
        #expect(stop.resume == "warbler upgrade --resume \(Self.file)", "the resume command keeps the upgrade's own file")
        #expect(c.progress == recorded)
        // The same release under another path resumes, and is the file recorded from then on.
        c.add(file: "/srv/copy", Self.release())
        c.clearCalls()
        let done = try await ClusterUpgrader(driver: c).upgrade(file: "/srv/copy", resume: true)
        #expect(c.calls.prefix(3) == ["lock", "verify /srv/copy", "drain db2"] && done.file == "/srv/copy")
    }

    @Test func aNewUpgradeIsRefusedWhileOneIsStopped() async throws {
        let c = Self.cluster()
        c.fail("ready db2 1.1.0")
        _ = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        let why = try await refused { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        #expect(why.contains("--resume") && why.contains("warbler rollback"), "\(why)")
    }

    /// Seen on booted hosts: an upgrade that stopped on its first node, which went back, left the operator no way
    /// to a fixed release (a new upgrade was refused until the stopped one was resumed or rolled back, and the
    /// rollback had nothing to do). A new upgrade now replaces it; the rollback says why it has nothing to do.
    @Test func aStoppedUpgradeThatLeftEveryNodeOnItsReleaseIsReplacedByANewOne() async throws {
        let c = Self.cluster()
        c.fail("ready w1 1.1.0")
        let stop = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        #expect(stop.nodeReturned == true && Set(c.versions.values) == ["1.0.0"])
        let why = try await refused { try await ClusterUpgrader(driver: c).rollback() }
        #expect(why.contains("nothing to roll back") && why.contains("`warbler upgrade FILE` starts a new upgrade"), "\(why)")
        c.clearCalls()
        let lines = Mutex<[String]>([])
        let done = try await ClusterUpgrader(driver: c).upgrade(file: Self.file) { line in lines.withLock { $0.append(line) } }
        #expect(done.state == .finished && done.kind == .upgrade && Set(c.versions.values) == ["1.1.0"])
        #expect(c.calls.prefix(3) == ["lock", "verify \(Self.file)", "distribute w1"], "a new upgrade from the start: \(c.calls)")
        #expect(lines.withLock { $0 }.contains { $0.contains("left every node on 1.0.0: this upgrade replaces it") })
    }

    @Test func anUpToDateClusterHasNothingToDoAndKeepsItsRecord() async throws {
        let c = Self.cluster()
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        let recorded = c.progress
        c.clearCalls()
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        #expect(c.calls == ["lock", "verify \(Self.file)", "unlock"])
        #expect(c.progress == recorded)
    }

    @Test func theChecksAloneChangeNothingAndListTheSteps() async throws {
        let c = Self.cluster()
        let planned = try await ClusterUpgrader(driver: c).plan(file: Self.file)
        #expect(c.calls == ["verify \(Self.file)"] && c.progress == nil)
        #expect(planned.done == 2 && planned.steps.count == 26 && planned.steps[19] == .switchover(from: "db1"))
        c.setVersion("w1", "2.0.0")
        let stop = try await stopped { _ = try await ClusterUpgrader(driver: c).plan(file: Self.file) }
        #expect(stop.step == .checkSkew && stop.changedNothing)
    }

    @Test func aStepTheDriverCannotDoRefusesTheWholeRunBeforeAnyChange() async throws {
        let c = Self.cluster()
        c.state.withLock { $0.unavailable["switch the PostgreSQL primary over from db1"] = "cluster upgrade: step switchover is not available in this build" }
        let why = try await refused { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        #expect(why == "cluster upgrade: step switchover is not available in this build")
        #expect(c.calls == ["lock", "verify \(Self.file)", "unlock"] && c.progress == nil)
        let planned = try await ClusterUpgrader(driver: c).plan(file: Self.file)
        #expect(ClusterUpgrader(driver: c).unavailable(planned) == [why])
    }

    // MARK: Contract step

    @Test func contractMigrationsWaitForTheSeparateStep() async throws {
        let c = Self.cluster(contract: true)
        let progress = try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        #expect(c.calls.contains("migrate expand 13") && !c.calls.contains { $0.hasPrefix("migrate contract") })
        #expect(c.schema == 13 && progress.contractPending == 14)
        c.clearCalls()
        let after = try await ClusterUpgrader(driver: c).contract()
        #expect(c.calls == ["lock", "migrate contract 14", "unlock"])
        #expect(c.schema == 14 && after.contracted == 14 && c.progress?.contracted == 14)
        let again = try await refused { try await ClusterUpgrader(driver: c).contract() }
        #expect(again.contains("already ran"))
    }

    @Test func theContractStepIsRefusedWhileAnyNodeRunsTheOldRelease() async throws {
        let c = Self.cluster(contract: true)
        c.fail("ready db2 1.1.0")
        _ = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        let stoppedWhy = try await refused { try await ClusterUpgrader(driver: c).contract() }
        #expect(stoppedWhy.contains("is not finished") && stoppedWhy.contains("--resume"), "\(stoppedWhy)")

        try await ClusterUpgrader(driver: c).upgrade(file: Self.file, resume: true)
        c.setVersion("w1", "1.0.0")   // reinstalled by hand since
        c.clearCalls()
        let why = try await refused { try await ClusterUpgrader(driver: c).contract() }
        #expect(why.contains("once every node runs 1.1.0") && why.contains("w1 runs 1.0.0"), "\(why)")
        #expect(c.calls == ["lock", "unlock"] && c.schema == 13)
    }

    // MARK: Rollback

    @Test func aRollbackReturnsEveryNodeInTheSameOrder() async throws {
        let c = Self.cluster()
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        c.clearCalls()
        let back = try await ClusterUpgrader(driver: c).rollback()
        // db2 became the primary in the upgrade: db1 (now the standby) first, a switchover, then db2.
        #expect(c.calls == ["lock"] + Self.group("w1", "1.0.0") + Self.group("db1", "1.0.0") + ["switchover db2"]
                + Self.group("db2", "1.0.0") + ["unlock"])
        #expect(back.kind == .rollback && back.state == .finished && Set(c.versions.values) == ["1.0.0"])
        #expect(c.schema == 13, "the expand migration stays: 1.0.0 runs on it")
    }

    @Test func aRollbackOnAMemberWithoutTheRecordNamesTheMemberThatRanTheUpgrade() async throws {
        let ran = Self.cluster()
        try await ClusterUpgrader(driver: ran).upgrade(file: Self.file)
        var there = try #require(ran.progress)
        there.ranOn = "w1"
        let other = Self.cluster()   // the same cluster seen from a member whose root has no progress file
        let bare = try await refused { _ = try await ClusterUpgrader(driver: other).planRollback() }
        #expect(bare.contains("no cluster upgrade is recorded here"), "\(bare)")
        other.state.withLock { $0.elsewhere = there }
        let why = try await refused { _ = try await ClusterUpgrader(driver: other).planRollback() }
        #expect(why.contains("ran on w1") && why.contains("run `warbler rollback` on w1") && why.contains("upgrade 1.0.0 → 1.1.0: finished"), "\(why)")
        #expect(other.calls.isEmpty, "nothing was done: \(other.calls)")
    }

    @Test func aRollbackOfAStoppedUpgradeReturnsOnlyTheSwitchedNodes() async throws {
        let c = Self.cluster()
        c.fail("ready db1 1.1.0")
        _ = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        c.clearCalls()
        try await ClusterUpgrader(driver: c).rollback()
        // w1 and db2 (now the primary after the switchover) go back; db1 is on 1.0.0 already.
        #expect(c.calls == ["lock"] + Self.group("w1", "1.0.0") + ["switchover db2"] + Self.group("db2", "1.0.0") + ["unlock"])
        #expect(Set(c.versions.values) == ["1.0.0"])
    }

    @Test func aRollbackIsRefusedAfterAContractMigrationRan() async throws {
        let c = Self.cluster(contract: true)
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        try await ClusterUpgrader(driver: c).contract()
        c.clearCalls()
        let why = try await refused { try await ClusterUpgrader(driver: c).rollback() }
        #expect(why.contains("contract migrations of the upgrade to 1.1.0 ran (through schema 14)"), "\(why)")
        #expect(why.contains("cannot go back") && why.contains("warbler restore") && why.contains("pre-upgrade-1.0.0-to-1.1.0"), "\(why)")
        #expect(c.calls == ["lock", "unlock"] && Set(c.versions.values) == ["1.1.0"])
        let planned = try await refused { _ = try await ClusterUpgrader(driver: c).planRollback() }
        #expect(planned == why, "the check alone says the same")
    }

    @Test func aStoppedRollbackResumes() async throws {
        let c = Self.cluster()
        try await ClusterUpgrader(driver: c).upgrade(file: Self.file)
        c.fail("ready db1 1.0.0")
        let stop = try await stopped { try await ClusterUpgrader(driver: c).rollback() }
        #expect(stop.kind == .rollback && stop.node == "db1" && stop.nodeReturned == true && stop.switched == ["w1"])
        #expect(stop.resume == "warbler rollback --resume" && c.versions["db1"] == "1.1.0")
        c.clearCalls()
        try await ClusterUpgrader(driver: c).rollback(resume: true)
        #expect(c.calls == ["lock"] + Self.group("db1", "1.0.0") + ["switchover db2"] + Self.group("db2", "1.0.0") + ["unlock"])
        #expect(Set(c.versions.values) == ["1.0.0"])
    }

    // MARK: The recorded progress

    @Test func theProgressFileIsRootsAndReadsBackAsWritten() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-upgrade-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = ClusterUpgradeProgressFile(path: dir + "/cluster-upgrade.json")
        #expect(try file.load() == nil)
        let c = Self.cluster()
        c.fail("switchover db1")
        _ = try await stopped { try await ClusterUpgrader(driver: c).upgrade(file: Self.file) }
        let progress = try #require(c.progress)
        try file.save(progress)
        #expect(try file.load() == progress)
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect((attributes[.ownerAccountID] as? NSNumber)?.intValue == 0)
        // One anyone could have written is not acted on.
        chmod(file.path, 0o666)
        #expect(throws: (any Error).self) { try file.load() }
    }

    // MARK: Helpers

    func stopped(_ body: () async throws -> Void) async throws -> ClusterUpgradeStop {
        do {
            try await body()
        } catch let stop as ClusterUpgradeStop {
            return stop
        }
        Issue.record("the upgrade did not stop")
        throw FakeClusterError(call: "no stop")
    }

    func refused(_ body: () async throws -> Void) async throws -> String {
        do {
            try await body()
        } catch let refusal as ClusterUpgradeRefusal {
            return refusal.description
        }
        Issue.record("not refused")
        return ""
    }
}

import Foundation
import IMStorage

/// Everything a cluster upgrade does to the cluster, one method per effect, so the engine is tested against a
/// recording fake and run for real by a driver built from the cluster's primitives.
public protocol ClusterUpgradeDriver: Sendable {
    /// The members, their releases and roles, and the database's schema, as they are now.
    func survey() async throws -> ClusterUpgradeFacts
    /// The recorded progress (root's file), if any.
    func loadProgress() async throws -> ClusterUpgradeProgress?
    /// When this member has no progress of its own: the last cluster upgrade or rollback as recorded where every
    /// member reads it (etcd's copy), only to name the member to run the command on, never to act on.
    func recordedElsewhere() async -> ClusterUpgradeProgress?
    /// Records progress: root's file first (atomically), then a copy where `cluster status` reads it.
    func save(_ progress: ClusterUpgradeProgress) async throws
    /// The cluster-wide upgrade lock: one upgrade (or rollback) at a time, whichever member runs it.
    func lock() async throws
    func unlock() async
    /// Checksum, and signature when the cluster has a release key; what the file holds.
    func verify(file: String) async throws -> ReleaseInfo
    func distribute(file: String, to node: String) async throws
    /// A database backup (with the cluster's secrets and configs); its path.
    func backup(label: String) async throws -> String
    /// Runs the target release's migrations of `phase` through `schema`, once, under the migration lock.
    func migrate(through schema: Int, phase: Migration.Phase) async throws
    func drain(node: String) async throws
    func reconnectClients(node: String) async throws
    /// Waits until the node holds no sessions or `timeout` passes; returns how many are left (a timeout is no failure),
    /// or nil when the node cannot count them (a release from before the count: its clients are told to reconnect when
    /// it stops).
    func waitForSessions(node: String, timeout: Duration) async throws -> Int?
    func switchRelease(node: String, to version: String) async throws
    func waitReady(node: String, version: String) async throws
    func undrain(node: String) async throws
    /// A planned Patroni switchover away from `primary`; returns the new primary.
    func switchover(from primary: String) async throws -> String
    /// Why this driver cannot do `step` (a primitive this build lacks), or nil when it can. Nil for the lock's
    /// question (`step` nil) and every step by default.
    func unavailable(_ step: ClusterUpgradeStep?) -> String?
}

extension ClusterUpgradeDriver {
    public func unavailable(_ step: ClusterUpgradeStep?) -> String? { nil }
    public func recordedElsewhere() async -> ClusterUpgradeProgress? { nil }
}

/// Drives a `ClusterUpgradePlan` through a driver: `warbler upgrade FILE` on a cluster member, `--resume`,
/// `--contract`, and `warbler rollback`.
public struct ClusterUpgrader: Sendable {
    public let driver: any ClusterUpgradeDriver
    /// How long a drained node's clients get to reconnect elsewhere before its release is switched anyway.
    public var sessionTimeout: Duration

    public init(driver: any ClusterUpgradeDriver, sessionTimeout: Duration = .seconds(30)) {
        self.driver = driver; self.sessionTimeout = sessionTimeout
    }

    /// Upgrades the cluster to the release in `file`, or with `resume`, continues the recorded, stopped upgrade.
    /// Throws `ClusterUpgradeRefusal` when it does not start, `ClusterUpgradeStop` when it stopped part way.
    @discardableResult
    public func upgrade(file: String, resume: Bool = false, log: @Sendable (String) -> Void = { _ in }) async throws -> ClusterUpgradeProgress {
        try await locked {
            let recorded = try await driver.loadProgress()
            let facts = try await driver.survey()
            var plan: ClusterUpgradePlan
            if resume {
                guard let recorded, recorded.kind == .upgrade, recorded.state != .finished else {
                    throw ClusterUpgradeRefusal("no stopped cluster upgrade is recorded here: nothing to resume (`warbler upgrade FILE` starts one)")
                }
                plan = ClusterUpgradePlan(resuming: recorded, facts: facts, file: file)
                log("resuming the upgrade \(recorded.from) → \(recorded.to) at step \(recorded.done + 1) of \(recorded.steps.count) (\(recorded.steps[min(recorded.done, recorded.steps.count - 1)]))")
            } else {
                if let recorded, recorded.state != .finished, !ClusterUpgradePlan.isAbandoned(recorded, facts: facts) {
                    throw ClusterUpgradeRefusal("a cluster \(recorded.kind.rawValue) \(recorded.from) → \(recorded.to) is \(recorded.state.rawValue) at step \(recorded.done + 1) of \(recorded.steps.count): \(recorded.kind == .upgrade ? "resume it (`warbler upgrade --resume \(recorded.file)`)" : "resume it (`warbler rollback --resume`)") or roll it back (`warbler rollback`) first")
                }
                if let recorded, recorded.state != .finished {
                    log("the stopped upgrade \(recorded.from) → \(recorded.to) left every node on \(recorded.from): this upgrade replaces it")
                }
                plan = ClusterUpgradePlan(file: file, facts: facts)
            }
            return try await run(&plan, log: log)
        }
    }

    /// The checks alone, changing nothing and taking no lock: verifies the file, reads the cluster, checks version
    /// skew, and returns the steps an upgrade would take. Throws the refusal's `ClusterUpgradeStop` as `upgrade` would.
    public func plan(file: String) async throws -> ClusterUpgradeProgress {
        var plan = ClusterUpgradePlan(file: file, facts: try await driver.survey())
        var action = plan.next(.start)
        while case .perform(let step) = action, step == .verifyFile {
            action = plan.next(await perform(step, progress: plan.progress, file: plan.file, log: { _ in }))
        }
        if case .stopped(let stop) = action { throw stop }
        return plan.progress
    }

    /// The steps (and the lock) from `progress.done` on that this driver cannot do, each with why; empty when it
    /// can do them all.
    public func unavailable(_ progress: ClusterUpgradeProgress) -> [String] {
        var out: [String] = []
        if let why = driver.unavailable(nil) { out.append(why) }
        for step in progress.steps.dropFirst(progress.done) {
            if let why = driver.unavailable(step), !out.contains(why) { out.append(why) }
        }
        return out
    }

    /// What `rollback` would do, changing nothing and taking no lock; throws its refusal.
    public func planRollback() async throws -> ClusterUpgradeProgress {
        let progress = try await driver.loadProgress()
        if progress == nil, let there = await driver.recordedElsewhere(), let node = there.ranOn {
            throw ClusterUpgradeRefusal("this member has no record of a cluster upgrade; the last one (\(there.summary)) ran on \(node), whose root keeps its progress: run `warbler rollback` on \(node)")
        }
        return try ClusterUpgradePlan.rollback(of: progress, facts: try await driver.survey()).get()
    }

    /// The separate contract step: the target's destructive migrations, once every node runs it.
    @discardableResult
    public func contract(log: @Sendable (String) -> Void = { _ in }) async throws -> ClusterUpgradeProgress {
        try await locked {
            var progress = try await driver.loadProgress()
            let facts = try await driver.survey()
            let step = try ClusterUpgradePlan.contractStep(progress: progress, facts: facts).get()
            guard case .contractMigrations(let through) = step else { throw ClusterUpgradeRefusal("not a contract step: \(step)") }
            log(step.description)
            // Recorded before it starts: from here on a rollback is refused, even if the migrations stop part way.
            progress!.contractStarted = through
            progress!.updatedAt = Date()
            try await driver.save(progress!)
            try await driver.migrate(through: through, phase: .contract)
            progress!.contracted = through
            progress!.contractPending = nil
            progress!.updatedAt = Date()
            try await driver.save(progress!)
            return progress!
        }
    }

    /// Returns every node that runs the recorded upgrade's release to the one before (or with `resume`, continues a
    /// stopped rollback). Refused once a contract migration ran.
    @discardableResult
    public func rollback(resume: Bool = false, log: @Sendable (String) -> Void = { _ in }) async throws -> ClusterUpgradeProgress {
        try await locked {
            let recorded = try await driver.loadProgress()
            let facts = try await driver.survey()
            var plan: ClusterUpgradePlan
            if resume {
                guard let recorded, recorded.kind == .rollback, recorded.state != .finished else {
                    throw ClusterUpgradeRefusal("no stopped cluster rollback is recorded here: nothing to resume")
                }
                plan = ClusterUpgradePlan(resuming: recorded, facts: facts)
            } else {
                if let recorded, recorded.kind == .upgrade, recorded.state == .running {
                    throw ClusterUpgradeRefusal("the upgrade to \(recorded.to) is still running (or was cut off); wait for it, or resume it to let it stop cleanly")
                }
                plan = ClusterUpgradePlan(resuming: try ClusterUpgradePlan.rollback(of: recorded, facts: facts).get(), facts: facts)
            }
            return try await run(&plan, log: log)
        }
    }

    func locked<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await driver.lock()
        do {
            let r = try await body()
            await driver.unlock()
            return r
        } catch {
            await driver.unlock()
            throw error
        }
    }

    func run(_ plan: inout ClusterUpgradePlan, log: @Sendable (String) -> Void) async throws -> ClusterUpgradeProgress {
        var action = plan.next(.start)
        var availabilityChecked = false
        while true {
            switch action {
            case .perform(let step):
                if plan.persists && !availabilityChecked {
                    // Before the first change: a step this build cannot do refuses the whole run, not half of it.
                    availabilityChecked = true
                    let missing = unavailable(plan.progress)
                    if !missing.isEmpty { throw ClusterUpgradeRefusal(missing.joined(separator: "\n")) }
                }
                if plan.persists { try await save(&plan) }
                log(step.description)
                action = plan.next(await perform(step, progress: plan.progress, file: plan.file, log: log))
            case .returnNode(let node, let release, let switchBack):
                try await save(&plan)
                log("returning \(node) to \(release)")
                do {
                    if switchBack {
                        try await driver.switchRelease(node: node, to: release)
                        try await driver.waitReady(node: node, version: release)
                    }
                    try await driver.undrain(node: node)
                    action = plan.next(.nodeReturned)
                } catch {
                    action = plan.next(.nodeReturnFailed("\(error)"))
                }
            case .finished:
                if plan.persists { try await save(&plan) }
                return plan.progress
            case .stopped(let stop):
                // A refusal before anything changed leaves what was recorded as it was.
                if plan.progress.state == .stopped { try await save(&plan) }
                throw stop
            }
        }
    }

    func save(_ plan: inout ClusterUpgradePlan) async throws {
        // Whole seconds: what the record (ISO 8601) keeps, so the progress returned is the progress read back.
        plan.stamp(Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)))
        try await driver.save(plan.progress)
    }

    func perform(_ step: ClusterUpgradeStep, progress: ClusterUpgradeProgress, file: String, log: @Sendable (String) -> Void) async -> ClusterUpgradePlan.Event {
        do {
            switch step {
            case .verifyFile:
                return .verified(try await driver.verify(file: file))
            case .checkSkew:
                return .failed("the skew check is the plan's own")
            case .distribute(let node):
                try await driver.distribute(file: progress.file, to: node)
            case .backup:
                return .backedUp(try await driver.backup(label: "pre-upgrade-\(progress.from)-to-\(progress.to)"))
            case .expandMigrations(let through):
                try await driver.migrate(through: through, phase: .expand)
            case .drain(let node):
                try await driver.drain(node: node)
            case .reconnectClients(let node):
                try await driver.reconnectClients(node: node)
            case .waitSessions(let node):
                if let left = try await driver.waitForSessions(node: node, timeout: sessionTimeout) {
                    if left > 0 { log("\(node) still holds \(left) sessions after \(sessionTimeout); switching it anyway (its clients reconnect and resume)") }
                } else {
                    log("\(node)'s release cannot move or count its sessions; its clients are told to reconnect when it stops for the switch")
                }
            case .switchRelease(let node):
                try await driver.switchRelease(node: node, to: progress.to)
            case .waitReady(let node):
                try await driver.waitReady(node: node, version: progress.to)
            case .undrain(let node):
                try await driver.undrain(node: node)
            case .switchover(let primary):
                let now = try await driver.switchover(from: primary)
                log("the PostgreSQL primary is now \(now)")
            case .contractMigrations(let through):
                try await driver.migrate(through: through, phase: .contract)
            }
            return .succeeded
        } catch {
            return .failed("\(error)")
        }
    }
}

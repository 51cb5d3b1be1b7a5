import Foundation
import IMStorage

/// One step of a cluster upgrade. The per-node steps come in groups of six, drain to undrain.
public enum ClusterUpgradeStep: Codable, Sendable, Hashable, CustomStringConvertible {
    /// The installer file's checksum, and its signature when the cluster has a release key.
    case verifyFile
    /// The version-skew rules (`ClusterSkew`).
    case checkSkew
    /// The verified file copied to a node.
    case distribute(node: String)
    /// A backup of the database (with the cluster's secrets and configs) before anything changes.
    case backup
    /// The expand migrations, run once under the migration lock, through this schema version.
    case expandMigrations(through: Int)
    /// The node's IM server taken out of every HAProxy for new connections (existing ones stay).
    case drain(node: String)
    /// The node's clients told to reconnect (elsewhere), each after a jittered delay.
    case reconnectClients(node: String)
    /// Until the node's sessions are gone, or a timeout.
    case waitSessions(node: String)
    /// The node's release switched (its services restart on it).
    case switchRelease(node: String)
    /// Until the node is ready on the release it was switched to.
    case waitReady(node: String)
    /// The node put back into every HAProxy.
    case undrain(node: String)
    /// A planned Patroni switchover away from this primary (to a standby already switched).
    case switchover(from: String)
    /// The contract migrations, through this schema version: a separate, explicit step once every node runs the
    /// new release.
    case contractMigrations(through: Int)

    public var node: String? {
        switch self {
        case .distribute(let n), .drain(let n), .reconnectClients(let n), .waitSessions(let n), .switchRelease(let n),
             .waitReady(let n), .undrain(let n), .switchover(let n): n
        case .verifyFile, .checkSkew, .backup, .expandMigrations, .contractMigrations: nil
        }
    }

    /// A step of a node's drain-to-undrain group: a failure there returns that node to its previous release.
    public var isNodeStep: Bool {
        switch self {
        case .drain, .reconnectClients, .waitSessions, .switchRelease, .waitReady, .undrain: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .verifyFile: "verify the installer file"
        case .checkSkew: "check version skew"
        case .distribute(let n): "copy the file to \(n)"
        case .backup: "back up the database"
        case .expandMigrations(let v): "run the expand migrations through schema \(v)"
        case .drain(let n): "drain \(n) in every HAProxy"
        case .reconnectClients(let n): "tell \(n)'s clients to reconnect"
        case .waitSessions(let n): "wait for \(n)'s sessions to end"
        case .switchRelease(let n): "switch \(n)'s release"
        case .waitReady(let n): "wait for \(n) to be ready"
        case .undrain(let n): "put \(n) back into every HAProxy"
        case .switchover(let n): "switch the PostgreSQL primary over from \(n)"
        case .contractMigrations(let v): "run the contract migrations through schema \(v)"
        }
    }
}

/// Where a cluster upgrade (or a cluster rollback) stands: what the executor persists after every step (root's file,
/// and a copy in etcd for `cluster status`), and what `--resume` continues from.
public struct ClusterUpgradeProgress: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case upgrade, rollback }
    public enum State: String, Codable, Sendable { case running, stopped, finished }
    public var kind: Kind
    /// The installer file as the operator named it (for the resume command).
    public var file: String
    public var from: String
    public var to: String
    /// The target's build: a resume must be given the same file.
    public var toBuild: String
    /// The schema `from` knows.
    public var fromSchema: Int
    public var steps: [ClusterUpgradeStep]
    /// `steps[..<done]` are finished.
    public var done: Int
    public var state: State
    public var stop: ClusterUpgradeStop?
    public var backup: String?
    /// The contract migrations the target still has, through this schema (run by the separate contract step).
    public var contractPending: Int?
    /// The contract migrations were started, through this schema: from then on a rollback is refused.
    public var contractStarted: Int?
    /// The contract migrations ran, through this schema: the previous release can no longer run on the database.
    public var contracted: Int?
    public var updatedAt: Date
    /// The member that runs it (whose root keeps this progress); nil in records from before it was kept.
    public var ranOn: String?

    /// One line for `cluster status`.
    public var summary: String {
        let what = "\(kind.rawValue) \(from) → \(to)"
        switch state {
        case .finished:
            return "\(what): finished" + (contractPending.map { "; its contract migrations (through schema \($0)) wait for `warbler upgrade --contract`" } ?? "")
        case .running:
            return "\(what): running, step \(done + 1) of \(steps.count)" + (done < steps.count ? " (\(steps[done]))" : "")
        case .stopped:
            guard let stop else { return "\(what): stopped" }
            return "\(what): STOPPED at step \(stop.stepNumber) of \(stop.steps) (\(stop.step))\(stop.node.map { " on \($0)" } ?? ""); resume: \(stop.resume ?? "-")"
        }
    }

    /// Nodes whose drain-to-undrain group finished: they run `to`.
    public var switched: [String] {
        steps.prefix(done).compactMap { if case .undrain(let n) = $0 { n } else { nil } }
    }
}

/// Where an upgrade stopped and what to do: the report `warbler upgrade` prints, and keeps in the progress.
public struct ClusterUpgradeStop: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var kind: ClusterUpgradeProgress.Kind
    public var step: ClusterUpgradeStep
    /// 1-based, of `steps`.
    public var stepNumber: Int
    public var steps: Int
    public var node: String?
    public var detail: String
    public var from: String
    public var to: String
    /// For a failed node step: whether the node went back to `from` and serves again.
    public var nodeReturned: Bool?
    public var rollbackFailure: String?
    /// Nodes that run `to` now.
    public var switched: [String]
    /// Nothing was changed (the file or the skew check refused it): there is nothing to resume.
    public var changedNothing: Bool
    /// The command that continues from here; nil when there is nothing to resume.
    public var resume: String?

    public var description: String {
        let what = kind == .upgrade ? "cluster upgrade" : "cluster rollback"
        var s = "\(what) \(from) → \(to) stopped at step \(stepNumber) of \(steps) (\(step))\(node.map { " on \($0)" } ?? ""): \(detail)"
        if changedNothing { return s + "\nNothing was changed." }
        if let node, let nodeReturned {
            s += nodeReturned ? "\n\(node) went back to \(from) and is serving again."
                : "\n\(node) could NOT be returned to \(from): \(rollbackFailure ?? "?"); see `warbler cluster status` and fix it by hand before resuming."
        }
        s += switched.isEmpty ? "\nNo node runs \(to); the cluster runs \(from)."
            : "\n\(switched.joined(separator: ", ")) run \(to); every other node runs \(from) (two adjacent releases on one schema, which the cluster supports while the \(kind.rawValue) is stopped)."
        if let resume { s += "\nResume (after fixing the cause): \(resume)" }
        if kind == .upgrade && !changedNothing { s += "\nOr return every node to \(from): warbler rollback" }
        return s
    }
}

/// A cluster upgrade as a pure state machine: events in (a step finished or failed), actions out (the next step, a
/// node to return, or the end). No I/O; `ClusterUpgrader` performs the actions through a `ClusterUpgradeDriver`.
///
/// Order: verify the file, check skew, copy the file to every node, back up, run the expand migrations once, then
/// node by node (drain, reconnect clients, wait for sessions, switch, wait for readiness, undrain): nodes without
/// PostgreSQL first, then the standbys, then a Patroni switchover onto a switched standby, then the old primary.
/// Contract migrations are a separate step (`contractStep`).
public struct ClusterUpgradePlan: Sendable {
    public enum Event: Sendable, Equatable {
        case start
        /// The file verified; what it holds.
        case verified(ReleaseInfo)
        /// The backup is at this path.
        case backedUp(String)
        case succeeded
        case failed(String)
        case nodeReturned
        case nodeReturnFailed(String)
    }

    public enum Action: Sendable, Equatable {
        case perform(ClusterUpgradeStep)
        /// Return `node` to `release` (switching it back only when `switchBack`), wait for it, and undrain it.
        case returnNode(node: String, release: String, switchBack: Bool)
        case finished
        case stopped(ClusterUpgradeStop)
    }

    enum Cursor: Sendable, Equatable { case idle, verifying, at(Int), returning(Int), over }
    /// The failure being handled while a node is returned.
    var lastFailure: String?

    public private(set) var progress: ClusterUpgradeProgress
    let facts: ClusterUpgradeFacts
    let resuming: Bool
    var cursor: Cursor = .idle

    /// A new upgrade with `file` on the cluster as `facts` has it.
    public init(file: String, facts: ClusterUpgradeFacts, now: Date = Date()) {
        self.facts = facts
        resuming = false
        progress = ClusterUpgradeProgress(kind: .upgrade, file: file, from: "", to: "", toBuild: "", fromSchema: facts.runningSchema,
                                          steps: [.verifyFile, .checkSkew], done: 0, state: .running, updatedAt: now)
    }

    /// Continues a stopped upgrade (which verifies the file and checks skew again, then goes on at the first step
    /// not finished) or a stopped rollback (straight on).
    public init(resuming: ClusterUpgradeProgress, facts: ClusterUpgradeFacts, file: String? = nil) {
        self.facts = facts
        self.resuming = true
        progress = resuming
        resumeFile = file
        progress.state = .running
        progress.stop = nil
    }

    /// Whether the progress is worth persisting: only once the file and the skew check passed and there is work
    /// (a refusal before leaves whatever was recorded untouched; so does an upgrade with nothing to do).
    public var persists: Bool { checked && progress.steps.count > 2 }
    var checked = false
    /// The file a resume was given: recorded once it proved to be the upgrade's own.
    var resumeFile: String?
    /// The file to verify: the one given now.
    public var file: String { resumeFile ?? progress.file }

    /// Stamps the progress before the executor records it.
    public mutating func stamp(_ now: Date) { progress.updatedAt = now }

    public mutating func next(_ event: Event) -> Action {
        switch (cursor, event) {
        case (.idle, .start):
            if progress.kind == .rollback { checked = true; return go(progress.done) }
            cursor = .verifying
            return .perform(.verifyFile)

        case (.verifying, .verified(let info)):
            return verified(info)
        case (.verifying, .failed(let why)):
            return refuse(at: 0, "\(why)")

        case (.at(let i), .succeeded), (.at(let i), .backedUp):
            if case .backedUp(let path) = event { progress.backup = path }
            progress.done = i + 1
            return go(i + 1)

        case (.at(let i), .failed(let why)):
            let step = progress.steps[i]
            guard step.isNodeStep, let node = step.node else { return stop(at: i, why, nodeReturned: nil) }
            cursor = .returning(i)
            lastFailure = why
            // The node's group starts again at its drain when resumed.
            progress.done = groupStart(i)
            let switchIndex = progress.steps.indices.first { $0 >= progress.done && progress.steps[$0] == .switchRelease(node: node) } ?? i
            return .returnNode(node: node, release: progress.from, switchBack: i >= switchIndex)

        case (.returning(let i), .nodeReturned):
            return stop(at: i, lastFailure ?? "?", nodeReturned: true)
        case (.returning(let i), .nodeReturnFailed(let why)):
            return stop(at: i, lastFailure ?? "?", nodeReturned: false, rollbackFailure: why)

        default:
            let was = cursor
            return stop(at: min(progress.done, max(progress.steps.count - 1, 0)), "the upgrade engine got \(event) at \(was); this is a bug", nodeReturned: nil)
        }
    }

    mutating func verified(_ info: ReleaseInfo) -> Action {
        if resuming {
            guard info.version == progress.to, info.build == progress.toBuild else {
                return refuse(at: 0, "the file holds \(info.version) (build \(info.build)) but the stopped upgrade is to \(progress.to) (build \(progress.toBuild)): resume with that file, or return to \(progress.from) with `warbler rollback`")
            }
        }
        switch ClusterSkew.check(facts, target: info) {
        case .failure(let refusal):
            return refuse(at: 1, refusal.description, to: info.version)
        case .success(let verdict):
            checked = true
            if resuming {
                if let resumeFile { progress.file = resumeFile }
                return go(progress.done)
            }
            progress.from = verdict.from
            progress.to = info.version
            progress.toBuild = info.build
            progress.contractPending = verdict.contractThrough
            if verdict.upToDate {
                progress.done = 2
                progress.state = .finished
                cursor = .over
                return .finished
            }
            progress.steps += Self.steps(for: facts.nodes, to: info.version, expandThrough: verdict.expandThrough)
            progress.done = 2
            return go(2)
        }
    }

    /// The steps after the checks: copies, backup, expand, then the node groups in order.
    static func steps(for nodes: [ClusterUpgradeNode], to target: String, expandThrough: Int?) -> [ClusterUpgradeStep] {
        let pending = nodes.filter { $0.version != target }
        var out = order(pending).map { ClusterUpgradeStep.distribute(node: $0.name) }
        out.append(.backup)
        if let expandThrough { out.append(.expandMigrations(through: expandThrough)) }
        out += nodeSteps(nodes: nodes, pending: pending)
        return out
    }

    /// Nodes without PostgreSQL first (by name), then the standbys, then the primary.
    static func order(_ nodes: [ClusterUpgradeNode]) -> [ClusterUpgradeNode] {
        let byName = nodes.sorted { $0.name < $1.name }
        return byName.filter { !$0.isDatabase } + byName.filter { $0.isDatabase && !$0.isPrimary } + byName.filter { $0.isDatabase && $0.isPrimary }
    }

    /// Each pending node's group, with a switchover before the primary's when another database node can take over.
    /// A cluster of one member is switched without a drain: there is no other server for its clients, and its agent
    /// never drains the last one (HAProxy needs a server), so its clients reconnect when its server restarts, as on
    /// a single host.
    static func nodeSteps(nodes: [ClusterUpgradeNode], pending: [ClusterUpgradeNode]) -> [ClusterUpgradeStep] {
        var out: [ClusterUpgradeStep] = []
        if nodes.count == 1, let only = pending.first, only.name == nodes[0].name {
            return [.switchRelease(node: only.name), .waitReady(node: only.name)]
        }
        for n in order(pending) {
            if n.isPrimary && nodes.contains(where: { $0.isDatabase && $0.name != n.name }) { out.append(.switchover(from: n.name)) }
            out += [.drain(node: n.name), .reconnectClients(node: n.name), .waitSessions(node: n.name), .switchRelease(node: n.name),
                    .waitReady(node: n.name), .undrain(node: n.name)]
        }
        return out
    }

    func groupStart(_ i: Int) -> Int {
        var j = i
        while j > 0, progress.steps[j - 1].isNodeStep, progress.steps[j - 1].node == progress.steps[i].node { j -= 1 }
        return j
    }

    mutating func go(_ i: Int) -> Action {
        guard i < progress.steps.count else {
            progress.state = .finished
            cursor = .over
            return .finished
        }
        cursor = .at(i)
        return .perform(progress.steps[i])
    }

    /// Refused before anything changed (the file, the skew check): nothing to resume, and a resumed upgrade's
    /// recorded progress stays as it was.
    mutating func refuse(at i: Int, _ why: String, to: String? = nil) -> Action {
        cursor = .over
        let stop = ClusterUpgradeStop(kind: progress.kind, step: progress.steps[i], stepNumber: i + 1, steps: progress.steps.count, node: nil,
                                      detail: why, from: progress.from.isEmpty ? (facts.nodes.map(\.version).sorted().first ?? "?") : progress.from,
                                      to: progress.to.isEmpty ? (to ?? "?") : progress.to, nodeReturned: nil, rollbackFailure: nil,
                                      switched: progress.switched, changedNothing: !resuming, resume: resuming ? resumeCommand : nil)
        return .stopped(stop)
    }

    mutating func stop(at i: Int, _ why: String, nodeReturned: Bool?, rollbackFailure: String? = nil) -> Action {
        cursor = .over
        let step = progress.steps[i]
        let stop = ClusterUpgradeStop(kind: progress.kind, step: step, stepNumber: i + 1, steps: progress.steps.count, node: step.node,
                                      detail: why, from: progress.from, to: progress.to, nodeReturned: nodeReturned,
                                      rollbackFailure: rollbackFailure, switched: progress.switched, changedNothing: false, resume: resumeCommand)
        progress.state = .stopped
        progress.stop = stop
        return .stopped(stop)
    }

    var resumeCommand: String {
        progress.kind == .upgrade ? "warbler upgrade --resume \(progress.file)" : "warbler rollback --resume"
    }
}

extension ClusterUpgradePlan {
    /// The separate contract step: only once the recorded upgrade finished and every node runs its release.
    public static func contractStep(progress: ClusterUpgradeProgress?, facts: ClusterUpgradeFacts) -> Result<ClusterUpgradeStep, ClusterUpgradeRefusal> {
        func refuse(_ s: String) -> Result<ClusterUpgradeStep, ClusterUpgradeRefusal> { .failure(ClusterUpgradeRefusal(s)) }
        guard let p = progress, p.kind == .upgrade else {
            return refuse("no cluster upgrade is recorded here: contract migrations are the last, separate step of one")
        }
        guard p.state == .finished else {
            return refuse("the upgrade to \(p.to) is not finished\(p.stop.map { " (stopped at step \($0.stepNumber): \($0.step))" } ?? ""): resume it first (\("warbler upgrade --resume \(p.file)"))")
        }
        let behind = facts.nodes.filter { $0.version != p.to }
        if !behind.isEmpty {
            return refuse("contract migrations run only once every node runs \(p.to); \(behind.map { "\($0.name) runs \($0.version)" }.joined(separator: ", ")): finish the upgrade first")
        }
        if let done = p.contracted { return refuse("the contract migrations of \(p.to) already ran (through schema \(done))") }
        guard let through = p.contractPending, through > facts.databaseSchema else {
            return refuse("\(p.to) has no contract migrations left (the database is at schema \(facts.databaseSchema)): nothing to do")
        }
        return .success(.contractMigrations(through: through))
    }

    /// A stopped upgrade that left nothing behind: every node runs the release it came from (its first node failed
    /// and went back) and no contract migration started. A new `warbler upgrade FILE` may replace it: there is
    /// nothing to resume or roll back, and requiring either would leave the operator no way to a fixed release
    /// but `--resume` with the file that failed.
    public static func isAbandoned(_ recorded: ClusterUpgradeProgress, facts: ClusterUpgradeFacts) -> Bool {
        recorded.kind == .upgrade && recorded.state == .stopped && recorded.contracted == nil && recorded.contractStarted == nil
            && !facts.nodes.isEmpty && facts.nodes.allSatisfy { $0.version == recorded.from }
    }

    /// `warbler rollback` on a cluster: every node that runs the recorded upgrade's release goes back to the one
    /// before it, in the upgrade's order, while the schema allows it (no contract migration ran).
    public static func rollback(of progress: ClusterUpgradeProgress?, facts: ClusterUpgradeFacts, now: Date = Date()) -> Result<ClusterUpgradeProgress, ClusterUpgradeRefusal> {
        func refuse(_ s: String) -> Result<ClusterUpgradeProgress, ClusterUpgradeRefusal> { .failure(ClusterUpgradeRefusal(s)) }
        guard let p = progress else { return refuse("no cluster upgrade is recorded here: there is no previous release to return the cluster to") }
        if p.kind == .rollback {
            return refuse(p.state == .finished ? "the last cluster upgrade was already rolled back (to \(p.to))"
                                               : "a cluster rollback to \(p.to) is stopped: resume it (`warbler rollback --resume`)")
        }
        if let contracted = p.contracted ?? p.contractStarted {
            return refuse("the contract migrations of the upgrade to \(p.to) \(p.contracted == nil ? "were started" : "ran") (through schema \(contracted)): \(p.from) may no longer work on this schema, so the cluster cannot go back to it node by node. Restore the pre-upgrade backup\(p.backup.map { " (\($0))" } ?? "") onto a freshly initialised cluster with `warbler restore` instead; what was sent since is lost")
        }
        if let why = Migrations.refusal(newest: p.fromSchema, databaseVersion: facts.databaseSchema, additive: true, name: "expand") {
            return refuse("\(p.from) cannot run on the database any more: \(why); restore the pre-upgrade backup with `warbler restore` instead")
        }
        let strangers = facts.nodes.filter { $0.version != p.from && $0.version != p.to }
        if !strangers.isEmpty {
            return refuse("\(strangers.map { "\($0.name) runs \($0.version)" }.joined(separator: ", ")), neither \(p.from) nor \(p.to): bring it to one of them first")
        }
        let pending = facts.nodes.filter { $0.version == p.to }
        guard !pending.isEmpty else {
            return refuse("no node runs \(p.to): every node already runs \(p.from), so there is nothing to roll back" + (p.state == .stopped
                ? " (`warbler upgrade FILE` starts a new upgrade, which replaces the stopped one; `warbler upgrade --resume \(p.file)` continues it)" : ""))
        }
        return .success(ClusterUpgradeProgress(kind: .rollback, file: p.file, from: p.to, to: p.from, toBuild: "", fromSchema: p.fromSchema,
                                               steps: nodeSteps(nodes: facts.nodes, pending: pending), done: 0, state: .running,
                                               backup: p.backup, updatedAt: now))
    }
}

import Foundation
import IMStorage
import Synchronization
import Upgrade

/// A cluster whose members, releases and failures a test scripts. Every effect is recorded, in order, as one line
/// (`drain w1`, `switch w1 1.1.0`, …); a line listed in `failing` fails the first time it is attempted.
final class FakeCluster: ClusterUpgradeDriver, @unchecked Sendable {
    struct State {
        var nodes: [ClusterUpgradeNode]
        var databaseSchema: Int
        var runningSchema: Int
        var files: [String: ReleaseInfo] = [:]
        var calls: [String] = []
        var failing: Set<String> = []
        var progress: ClusterUpgradeProgress?
        /// etcd's copy of another member's progress (`recordedElsewhere`).
        var elsewhere: ClusterUpgradeProgress?
        var saves = 0
        var locked = false
        var backups = 0
        /// Steps (by description) this cluster says it cannot do.
        var unavailable: [String: String] = [:]
        /// Sessions a node still holds when the wait for them ends (none unless set).
        var sessionsLeft: [String: Int] = [:]
        /// Nodes whose release cannot count its sessions.
        var uncounted: Set<String> = []
    }
    let state: Mutex<State>

    init(nodes: [ClusterUpgradeNode], databaseSchema: Int = 12, runningSchema: Int = 12) {
        state = Mutex(State(nodes: nodes, databaseSchema: databaseSchema, runningSchema: runningSchema))
    }

    /// Two PostgreSQL hosts (db1 the primary) and a witness, all on `version`.
    static func threeNodes(_ version: String = "1.0.0") -> FakeCluster {
        FakeCluster(nodes: [
            ClusterUpgradeNode(name: "db1", roles: [.database, .im], version: version, isPrimary: true),
            ClusterUpgradeNode(name: "db2", roles: [.database, .im], version: version),
            ClusterUpgradeNode(name: "w1", roles: [.witness, .im], version: version),
        ])
    }

    /// The three, and a fourth host that only serves clients.
    static func fourNodes(_ version: String = "1.0.0") -> FakeCluster {
        let c = threeNodes(version)
        c.state.withLock { $0.nodes.append(ClusterUpgradeNode(name: "im1", roles: [.im], version: version)) }
        return c
    }

    var calls: [String] { state.withLock { $0.calls } }
    var progress: ClusterUpgradeProgress? { state.withLock { $0.progress } }
    var versions: [String: String] { state.withLock { Dictionary(uniqueKeysWithValues: $0.nodes.map { ($0.name, $0.version) }) } }
    var primary: String? { state.withLock { $0.nodes.first(where: \.isPrimary)?.name } }
    var schema: Int { state.withLock { $0.databaseSchema } }
    func add(file: String, _ info: ReleaseInfo) { state.withLock { $0.files[file] = info } }
    func fail(_ call: String) { state.withLock { _ = $0.failing.insert(call) } }
    func clearCalls() { state.withLock { $0.calls = [] } }
    func setVersion(_ node: String, _ version: String) {
        state.withLock { s in if let i = s.nodes.firstIndex(where: { $0.name == node }) { s.nodes[i].version = version } }
    }

    /// Records `call`, failing it if it is listed (once).
    func record(_ call: String) throws {
        try state.withLock { s in
            s.calls.append(call)
            if s.failing.remove(call) != nil { throw FakeClusterError(call: call) }
        }
    }

    func survey() async throws -> ClusterUpgradeFacts {
        state.withLock { ClusterUpgradeFacts(nodes: $0.nodes, databaseSchema: $0.databaseSchema, runningSchema: $0.runningSchema) }
    }
    func loadProgress() async throws -> ClusterUpgradeProgress? { state.withLock { $0.progress } }
    func recordedElsewhere() async -> ClusterUpgradeProgress? { state.withLock { $0.elsewhere } }
    func save(_ progress: ClusterUpgradeProgress) async throws {
        // Through the real file format: what is saved is what a resume reads back.
        let back = try ClusterUpgradeProgressFile.decode(try ClusterUpgradeProgressFile.encode(progress))
        state.withLock { $0.progress = back; $0.saves += 1 }
    }
    func lock() async throws {
        try record("lock")
        try state.withLock { s in
            if s.locked { throw FakeClusterError(call: "lock (held)") }
            s.locked = true
        }
    }
    func unlock() async {
        state.withLock { $0.locked = false; $0.calls.append("unlock") }
    }
    func verify(file: String) async throws -> ReleaseInfo {
        try record("verify \(file)")
        guard let info = state.withLock({ $0.files[file] }) else { throw FakeClusterError(call: "verify \(file): no such file") }
        return info
    }
    func distribute(file: String, to node: String) async throws { try record("distribute \(node)") }
    func backup(label: String) async throws -> String {
        try record("backup \(label)")
        let n = state.withLock { s in s.backups += 1; return s.backups }
        return "/var/lib/warbler/backups/\(label)-\(n).tar.gz"
    }
    func migrate(through schema: Int, phase: Migration.Phase) async throws {
        try record("migrate \(phase.rawValue) \(schema)")
        state.withLock { $0.databaseSchema = schema }
    }
    func drain(node: String) async throws { try record("drain \(node)") }
    func reconnectClients(node: String) async throws { try record("reconnect \(node)") }
    func waitForSessions(node: String, timeout: Duration) async throws -> Int? {
        try record("sessions \(node)")
        return state.withLock { $0.uncounted.contains(node) ? nil : $0.sessionsLeft[node, default: 0] }
    }
    func switchRelease(node: String, to version: String) async throws {
        try record("switch \(node) \(version)")
        setVersion(node, version)
    }
    func waitReady(node: String, version: String) async throws { try record("ready \(node) \(version)") }
    func undrain(node: String) async throws { try record("undrain \(node)") }
    func unavailable(_ step: ClusterUpgradeStep?) -> String? {
        step.flatMap { step in state.withLock { $0.unavailable[step.description] } }
    }
    func switchover(from primary: String) async throws -> String {
        try record("switchover \(primary)")
        return try state.withLock { s in
            guard let to = s.nodes.first(where: { $0.isDatabase && $0.name != primary })?.name else { throw FakeClusterError(call: "no standby") }
            for i in s.nodes.indices { s.nodes[i].isPrimary = s.nodes[i].name == to }
            return to
        }
    }
}

struct FakeClusterError: Error, CustomStringConvertible {
    var call: String
    var description: String { "\(call) failed (scripted)" }
}

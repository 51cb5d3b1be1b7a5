import Foundation
import Installer

/// Draining a member in every member's HAProxy, through etcd: root puts a mark for the node, each member's agent
/// (`warbler cluster agent`, HAProxy's user) sets that node's `im` slot to `drain` (its open connections stay, new
/// ones go to the others) and says so under its own key, naming the mark's revision it applied; removing the mark
/// sets the slot back to `ready`. A mark makes an agent do nothing but set a slot's state.
///
/// - `/warbler/drain/mark/NODE`: `{"node", "by", "at", "reason"}`.
/// - `/warbler/drain/applied/MEMBER`: `{"member", "drained": {NODE: mark revision}, "at"}`: what that member's
///   HAProxy has drained by a mark, rewritten whenever it changes.
public enum DrainMarks {
    public static let prefix = "/warbler/drain/"
    public static let markPrefix = prefix + "mark/"
    public static let appliedPrefix = prefix + "applied/"

    public struct Mark: Codable, Sendable, Equatable {
        public var node: String
        public var by: String
        public var at: Date
        public var reason: String
        public init(node: String, by: String, at: Date, reason: String) { self.node = node; self.by = by; self.at = at; self.reason = reason }
    }

    public struct Applied: Codable, Sendable, Equatable {
        public var member: String
        /// Node → the revision of the mark this member's HAProxy applied.
        public var drained: [String: Int64]
        public var at: Date
        public init(member: String, drained: [String: Int64], at: Date) { self.member = member; self.drained = drained; self.at = at }
    }

    /// What etcd holds under `prefix`, each record checked (any cluster component can write there).
    public struct Snapshot: Sendable {
        /// Node → the mark and its revision.
        public var marks: [String: (mark: Mark, revision: Int64)]
        public var applied: [String: Applied]
        public var rejected: [String]
    }

    static var decoder: JSONDecoder { let d = JSONDecoder(); d.dateDecodingStrategy = .iso8601; return d }
    static var encoder: JSONEncoder { let e = JSONEncoder(); e.dateEncodingStrategy = .iso8601; e.outputFormatting = [.sortedKeys]; return e }

    public static func parse(_ entries: [Etcdctl.Entry]) -> Snapshot {
        var s = Snapshot(marks: [:], applied: [:], rejected: [])
        for e in entries {
            if e.key.hasPrefix(markPrefix) {
                let node = String(e.key.dropFirst(markPrefix.count))
                guard let m = try? decoder.decode(Mark.self, from: e.value), m.node == node, !node.isEmpty else {
                    s.rejected.append("\(e.key): not a drain mark for \(node.isEmpty ? "a node" : node)")
                    continue
                }
                s.marks[node] = (m, e.modRevision)
            } else if e.key.hasPrefix(appliedPrefix) {
                let member = String(e.key.dropFirst(appliedPrefix.count))
                guard let a = try? decoder.decode(Applied.self, from: e.value), a.member == member else {
                    s.rejected.append("\(e.key): not \(member)'s drain acknowledgement")
                    continue
                }
                s.applied[member] = a
            }
        }
        return s
    }

    public static func load(_ etcd: Etcdctl) throws -> Snapshot { parse(try etcd.entries(prefix: prefix)) }

    /// What one agent applies: the marked members (unless every member is marked: then none, so HAProxy always has
    /// a server to send new clients to), and the members it drained by a mark that is gone now (back to ready).
    /// Pure.
    public static func plan(members: [String], snapshot: Snapshot, me: String) -> (drain: [String: Int64], undrain: Set<String>, note: String?) {
        let names = Set(members)
        var drain = snapshot.marks.filter { names.contains($0.key) }.mapValues { $0.revision }
        var note: String?
        if !drain.isEmpty && drain.count == names.count {
            note = "every member has a drain mark (\(drain.keys.sorted().joined(separator: ", "))): none is applied, HAProxy needs a server for new clients"
            drain = [:]
        }
        let before = Set(snapshot.applied[me]?.drained.keys.map { $0 } ?? [])
        return (drain, before.subtracting(drain.keys).intersection(names), note)
    }

    /// The members whose agents have not yet applied the wanted state of `node`: drained by the mark at
    /// `revision`, or (`revision` nil) not drained. Pure.
    public static func pending(node: String, revision: Int64?, members: [String], snapshot: Snapshot) -> [String] {
        members.filter { m in
            let applied = snapshot.applied[m]?.drained[node]
            if let revision { return applied != revision }
            return applied != nil
        }.sorted()
    }
}

/// Root's side: puts or removes a node's mark and waits until every member's agent has applied it.
public struct DrainControl: Sendable {
    public var etcd: Etcdctl
    /// Who asks (this member's name), recorded in the mark.
    public var by: String
    public var poll: Duration
    public init(etcd: Etcdctl, by: String, poll: Duration = .milliseconds(500)) { self.etcd = etcd; self.by = by; self.poll = poll }

    /// Drains `node` in every member's HAProxy; throws naming the members whose agents did not within `timeout`.
    public func drain(node: String, reason: String, timeout: Duration, now: Date = Date()) async throws {
        let members = try MemberRegistry.load(etcd).members.map(\.name)
        guard members.contains(node) else { throw ClusterOpsError("\(node) is not a member registered in etcd (\(members.joined(separator: ", ")))") }
        let before = try DrainMarks.load(etcd)
        if let other = before.marks.first(where: { $0.key != node && members.contains($0.key) }) {
            throw ClusterOpsError("\(other.key) is drained already (by \(other.value.mark.by) at \(other.value.mark.at), \(other.value.mark.reason)): only one member is drained at a time; undrain it first (docs/operations.md, \"Draining a member\")")
        }
        let mark = DrainMarks.Mark(node: node, by: by, at: now, reason: reason)
        try etcd.put(DrainMarks.markPrefix + node, String(decoding: try DrainMarks.encoder.encode(mark), as: UTF8.self))
        guard let revision = try DrainMarks.load(etcd).marks[node]?.revision else {
            throw ClusterOpsError("the drain mark for \(node) is not in etcd after writing it")
        }
        try await wait(node: node, revision: revision, members: members, timeout: timeout, what: "drained \(node)")
    }

    /// Removes `node`'s mark and waits until every member's HAProxy has it ready again.
    public func undrain(node: String, timeout: Duration) async throws {
        try etcd.delete(DrainMarks.markPrefix + node)
        let members = try MemberRegistry.load(etcd).members.map(\.name)
        try await wait(node: node, revision: nil, members: members, timeout: timeout, what: "put \(node) back (ready)")
    }

    func wait(node: String, revision: Int64?, members: [String], timeout: Duration, what: String) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let pending = DrainMarks.pending(node: node, revision: revision, members: members, snapshot: try DrainMarks.load(etcd))
            if pending.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                throw ClusterOpsError("the cluster agent of \(pending.joined(separator: ", ")) has not \(what) in its HAProxy within \(timeout): "
                    + "check `systemctl status warbler-cluster-agent` and `journalctl -u warbler-cluster-agent` there (under the built-in supervisor: \(Paths.logs)/cluster-agent.log)"
                    + (revision != nil ? "; to undo the drain by hand see docs/operations.md, \"Draining a member\"" : ""))
            }
            try await Task.sleep(for: poll)
        }
    }
}

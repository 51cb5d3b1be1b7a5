import Foundation
import Installer

/// The embedded etcdctl, run with this member's client certificate against the cluster's etcd (v3 API).
public struct Etcdctl: Sendable {
    public var binary: String
    public var endpoints: [String]
    public var caFile: String
    public var certFile: String
    public var keyFile: String
    public var system: any System

    public init(binary: String = ClusterPaths.etcdBin + "/etcdctl", endpoints: [String], caFile: String = Paths.caCert,
                certFile: String = ClusterPaths.rootCert, keyFile: String = ClusterPaths.rootKey, system: any System = LocalSystem()) {
        self.binary = binary; self.endpoints = endpoints; self.caFile = caFile; self.certFile = certFile; self.keyFile = keyFile
        self.system = system
    }

    public struct Member: Sendable, Equatable {
        public var id: UInt64
        public var name: String
        public var peerURLs: [String]
        public var clientURLs: [String]
        public var isLearner: Bool
        public var idHex: String { String(id, radix: 16) }
    }

    func argv(_ args: [String], timeout: String) -> [String] {
        [binary, "--endpoints", endpoints.map { "https://\($0):\(ClusterSettings.Port.etcdClient)" }.joined(separator: ","),
         "--cacert", caFile, "--cert", certFile, "--key", keyFile, "--command-timeout", timeout] + args
    }

    func run(_ args: [String], timeout: String = "5s") throws -> String {
        let r = try system.run(argv(args, timeout: timeout), as: nil)
        guard r.status == 0 else {
            // etcdctl logs every retry before its verdict: the last line says why.
            let why = r.output.split(separator: "\n").last { !$0.hasPrefix("{") }.map(String.init) ?? r.output.suffix(300).description
            throw ClusterOpsError("etcdctl \(args.prefix(2).joined(separator: " ")) failed: \(why.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return r.output
    }

    static func json(_ text: String) throws -> [String: Any] {
        // etcdctl may print a warning line before its JSON.
        guard let start = text.firstIndex(of: "{"), let obj = try JSONSerialization.jsonObject(with: Data(text[start...].utf8)) as? [String: Any] else {
            throw ClusterOpsError("etcdctl printed no JSON: \(text.prefix(200))")
        }
        return obj
    }

    /// `member list -w simple`: `ID, status, name, peer URLs, client URLs, is learner` with IDs in hex (the JSON
    /// form prints IDs as 64-bit numbers, which JSON readers round).
    static func parseMembers(_ text: String) -> [Member] {
        text.split(separator: "\n").compactMap { line in
            let f = line.components(separatedBy: ", ")
            guard f.count >= 6, let id = UInt64(f[0], radix: 16) else { return nil }
            return Member(id: id, name: f[2], peerURLs: f[3].split(separator: ",").map(String.init),
                          clientURLs: f[4].split(separator: ",").map(String.init), isLearner: f[5].trimmingCharacters(in: .whitespaces) == "true")
        }
    }

    public func memberList() throws -> [Member] { Self.parseMembers(try run(["member", "list", "-w", "simple"])) }

    /// Adds a non-voting member (a learner): the cluster keeps its quorum whatever happens to the new host before
    /// its etcd has caught up; `promote` makes it a voter then.
    public func addLearner(name: String, address: String) throws -> [Member] {
        let peer = "https://\(address):\(ClusterSettings.Port.etcdPeer)"
        if let existing = try memberList().first(where: { $0.peerURLs.contains(peer) }) {
            // A retried join: the member is there already (as a learner, or promoted).
            guard existing.name == name || existing.name.isEmpty else {
                throw ClusterOpsError("\(address) is already the etcd member '\(existing.name)'; remove it first (`warbler cluster remove \(existing.name)`)")
            }
            return try memberList()
        }
        _ = try run(["member", "add", name, "--learner", "--peer-urls", peer])
        return try memberList()
    }

    public func promote(id: UInt64) throws { _ = try run(["member", "promote", String(id, radix: 16)]) }
    public func remove(id: UInt64) throws { _ = try run(["member", "remove", String(id, radix: 16)]) }

    public func put(_ key: String, _ value: String) throws { _ = try run(["put", key, value]) }
    public func delete(_ key: String) throws { _ = try run(["del", key]) }

    /// Keys and values under `prefix`.
    public func get(prefix: String) throws -> [(key: String, value: Data)] {
        try entries(prefix: prefix).map { ($0.key, $0.value) }
    }

    /// One key as `get -w json` shows it, with the revision of its last change (etcd's revisions are cluster-wide
    /// and only grow: a later write has a higher one).
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: Data
        public var modRevision: Int64
    }

    /// Keys under `prefix` with their revisions.
    public func entries(prefix: String) throws -> [Entry] {
        Self.parseEntries(try Self.json(try run(["get", prefix, "--prefix", "-w", "json"])))
    }

    static func parseEntries(_ obj: [String: Any]) -> [Entry] {
        ((obj["kvs"] as? [[String: Any]]) ?? []).compactMap { kv in
            guard let k = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }),
                  let v = (kv["value"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return nil }
            return Entry(key: String(decoding: k, as: UTF8.self), value: v, modRevision: (kv["mod_revision"] as? NSNumber)?.int64Value ?? 0)
        }
    }

    /// This endpoint's member id and the leader's (`endpoint status -w fields`: the ids are 64-bit, which JSON
    /// numbers would round).
    public func status() throws -> (member: UInt64, leader: UInt64) {
        try Self.parseStatus(try run(["endpoint", "status", "-w", "fields"]))
    }

    static func parseStatus(_ text: String) throws -> (member: UInt64, leader: UInt64) {
        func field(_ name: String) -> UInt64? {
            text.split(separator: "\n").first { $0.hasPrefix("\"\(name)\" : ") }.flatMap { UInt64($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) }
        }
        guard let member = field("MemberID"), let leader = field("Leader") else { throw ClusterOpsError("etcd's status has no member or leader id: \(text.prefix(200))") }
        return (member, leader)
    }

    /// The etcd cluster's id (`endpoint status -w fields`, `"ClusterID" : N`): new for every `install --cluster-init`.
    public func clusterID() throws -> UInt64 { try Self.parseClusterID(try run(["endpoint", "status", "-w", "fields"])) }

    static func parseClusterID(_ text: String) throws -> UInt64 {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("\"ClusterID\" : ") }),
              let id = UInt64(line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) else {
            throw ClusterOpsError("etcd's status has no cluster id: \(text.prefix(200))")
        }
        return id
    }

    // MARK: Leases and transactions

    /// `lease grant TTL`: a lease etcd ends by itself after `ttl` seconds (with every key attached to it) unless it
    /// is revoked first.
    public func grantLease(ttl: Int) throws -> UInt64 { try Self.parseLeaseGrant(try run(["lease", "grant", String(ttl)])) }

    /// `lease 390da245bad10e05 granted with TTL(600s)` (the id in hex).
    static func parseLeaseGrant(_ text: String) throws -> UInt64 {
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count >= 3, f[0] == "lease", f[2] == "granted", let id = UInt64(f[1], radix: 16) { return id }
        }
        throw ClusterOpsError("etcdctl lease grant printed no lease id: \(text.prefix(200))")
    }

    /// Ends a lease and deletes every key attached to it.
    public func revokeLease(_ id: UInt64) throws { _ = try run(["lease", "revoke", String(id, radix: 16)]) }

    /// `lease keep-alive --once ID`: renews the lease for its TTL. True when etcd renewed it (`lease ID keepalived
    /// with TTL(N)`), false when the lease is gone (etcdctl exits non-zero with "requested lease not found"); throws
    /// when etcd cannot be asked.
    public func keepAliveOnce(_ id: UInt64) throws -> Bool {
        let r = try system.run(argv(["lease", "keep-alive", "--once", String(id, radix: 16)], timeout: "5s"), as: nil)
        return try Self.parseKeepAlive(r.output, status: r.status)
    }

    static func parseKeepAlive(_ output: String, status: Int32) throws -> Bool {
        if output.contains("lease not found") || output.contains("expired or revoked") { return false }
        guard status == 0, let line = output.split(separator: "\n").first(where: { $0.contains(" keepalived with TTL(") }) else {
            let why = output.split(separator: "\n").last { !$0.hasPrefix("{") }.map(String.init) ?? String(output.suffix(300))
            throw ClusterOpsError("etcdctl lease keep-alive failed: \(why.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        // TTL(0) or less: etcd answered, but the lease has ended.
        let ttl = line.split(separator: "(").last.flatMap { Int($0.prefix { $0 != ")" }) } ?? 0
        return ttl > 0
    }

    /// What a transaction did: whether its comparisons held, and the keys its branch read (key → value).
    public struct TxnResult: Sendable, Equatable {
        public var succeeded: Bool
        public var values: [String: String]
    }

    /// Puts `key` = `value` (attached to `lease` when given) only if none of `absent` exists, in one etcd
    /// transaction (each key's create revision compared with 0, which holds for a missing key); otherwise changes
    /// nothing and reads those keys, so the caller learns who has them.
    public func putIfAbsent(_ key: String, _ value: String, lease: UInt64?, absent: [String]) throws -> TxnResult {
        for part in [key, value] + absent where part.contains(where: { $0 == "\"" || $0 == "\\" || $0.isNewline }) || part.isEmpty {
            throw ClusterOpsError("etcd transaction operand \(part.debugDescription) is empty or holds a quote, backslash or line break")
        }
        let text = Self.txnInput(key, value, lease: lease, absent: absent)
        let r = try system.run(argv(["txn", "-w", "json"], timeout: "5s"), as: nil, input: Data(text.utf8))
        guard r.status == 0 else {
            let why = r.output.split(separator: "\n").last { !$0.hasPrefix("{") }.map(String.init) ?? r.output.suffix(300).description
            throw ClusterOpsError("etcdctl txn failed: \(why.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return try Self.parseTxn(r.output)
    }

    /// etcdctl txn's input: comparisons, a blank line, the operations on success, a blank line, those on failure.
    static func txnInput(_ key: String, _ value: String, lease: UInt64?, absent: [String]) -> String {
        let compares = absent.map { "create(\"\($0)\") = \"0\"" }
        let put = "put " + (lease.map { "--lease=\(String($0, radix: 16)) " } ?? "") + "\(key) \"\(value)\""
        return (compares + ["", put, ""] + absent.map { "get \($0)" } + ["", ""]).joined(separator: "\n")
    }

    /// `txn -w json`: `succeeded` is true on success and left out on failure; range responses carry base64 keys
    /// and values.
    static func parseTxn(_ text: String) throws -> TxnResult {
        let obj = try json(text)
        guard obj["header"] != nil else { throw ClusterOpsError("etcdctl txn printed no transaction result: \(text.prefix(200))") }
        var values: [String: String] = [:]
        for response in (obj["responses"] as? [[String: Any]]) ?? [] {
            let range = ((response["Response"] as? [String: Any])?["ResponseRange"] as? [String: Any]) ?? [:]
            for kv in (range["kvs"] as? [[String: Any]]) ?? [] {
                guard let k = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else { continue }
                let v = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
                values[String(decoding: k, as: UTF8.self)] = String(decoding: v, as: UTF8.self)
            }
        }
        return TxnResult(succeeded: obj["succeeded"] as? Bool ?? false, values: values)
    }

    /// Hands etcd's leadership to `id` (asked of the current leader).
    public func moveLeader(to id: UInt64) throws { _ = try run(["move-leader", String(id, radix: 16)]) }

    /// Each endpoint's health (etcdctl endpoint health --cluster).
    public func health() throws -> [(endpoint: String, healthy: Bool, error: String?)] {
        // Not `run`: an unhealthy endpoint makes etcdctl exit 1, and its JSON still says which.
        let r = try system.run(argv(["endpoint", "health", "--cluster", "-w", "json"], timeout: "3s"), as: nil)
        return try Self.parseHealth(r.output)
    }

    static func parseHealth(_ output: String) throws -> [(endpoint: String, healthy: Bool, error: String?)] {
        // The JSON is one line; etcdctl's retry warnings come before it and "Error: unhealthy cluster" after it.
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("[") }),
              let list = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [[String: Any]] else {
            throw ClusterOpsError("etcd health unknown: \(output.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300))")
        }
        return list.map { ($0["endpoint"] as? String ?? "?", $0["health"] as? Bool ?? false, $0["error"] as? String) }
    }
}

/// The members registered in etcd, each record checked (any cluster component can write there).
public enum MemberRegistry {
    public static let prefix = "/warbler/members/"

    public static func load(_ etcd: Etcdctl) throws -> (members: [ClusterMember], rejected: [String]) {
        var members: [ClusterMember] = [], rejected: [String] = []
        for (key, value) in try etcd.get(prefix: prefix) {
            do {
                let m = try ClusterMember.decode(value)
                guard key == prefix + m.name else { throw ClusterOpsError("its key is not \(prefix)\(m.name)") }
                members.append(m)
            } catch {
                rejected.append("\(key): \(error)")
            }
        }
        return (members.sorted { $0.name < $1.name }, rejected)
    }

    public static func register(_ member: ClusterMember, in etcd: Etcdctl) throws {
        try etcd.put(prefix + member.name, String(decoding: member.encoded(), as: UTF8.self))
    }
}

public struct ClusterOpsError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

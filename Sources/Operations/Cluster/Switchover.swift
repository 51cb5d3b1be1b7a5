import AsyncHTTPClient
import DurableFiles
import Foundation
import Installer
import NIOCore

/// Moving the PostgreSQL primary on purpose, through Patroni's REST API (the same path Patroni's own failover
/// takes, so etcd's leader key, the synchronous standby and HAProxy's `/primary` checks stay in step).
///
/// - switchover: planned; the primary hands over to a synchronous standby only once it has every commit, so
///   nothing acknowledged is lost. Refused when there is no healthy candidate.
/// - failover: forced; for when the primary is gone or stuck. Patroni promotes the candidate even if it lags, so
///   whatever the primary acknowledged beyond the candidate's last received WAL is lost; the command says how much
///   before it asks.
public struct PatroniControl: Sendable {
    public struct Member: Sendable, Equatable {
        public var name: String
        public var host: String
        public var role: String
        public var state: String
        public var lagBytes: Int64?
        public var isLeader: Bool { role == "leader" || role == "master" }
        public var isSyncStandby: Bool { role == "sync_standby" }
    }

    public var addresses: [String]
    public var password: String
    public var timeout: Double

    public init(addresses: [String], password: String, timeout: Double = 60) {
        self.addresses = addresses; self.password = password; self.timeout = timeout
    }

    /// From this member's files: the database members in etcd, the Patroni API password (root's).
    public static func fromMember(_ m: MemberFile, etcd: Etcdctl) throws -> PatroniControl {
        guard m.database == nil else {
            throw ClusterOpsError("this cluster runs on the site's PostgreSQL (\(m.database!)): its primary is the site's to move, not Patroni's")
        }
        let members = try MemberRegistry.load(etcd).members.filter { $0.roles.contains(.database) }
        guard !members.isEmpty else { throw ClusterOpsError("etcd lists no database member") }
        return PatroniControl(addresses: members.map(\.address), password: try RootFile.readText(ClusterPaths.patroniAPIPassword))
    }

    static func parse(_ body: Data) -> [Member]? {
        guard let obj = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let list = obj["members"] as? [[String: Any]] else { return nil }
        return list.compactMap { p in
            guard let name = p["name"] as? String else { return nil }
            let lag: Int64? = (p["lag"] as? NSNumber)?.int64Value
            return Member(name: name, host: p["host"] as? String ?? "", role: p["role"] as? String ?? "?", state: p["state"] as? String ?? "?", lagBytes: lag)
        }
    }

    /// What a switchover to `to` (or the synchronous standby) would do, or why it cannot. Pure.
    public static func plan(_ members: [Member], to: String?, forced: Bool) throws -> (leader: Member?, candidate: Member) {
        let leader = members.first(where: \.isLeader)
        if !forced && leader == nil {
            throw ClusterOpsError("PostgreSQL has no primary to hand over from: use `warbler cluster failover` (forced)")
        }
        let standbys = members.filter { !$0.isLeader && ["streaming", "running"].contains($0.state) }
        let candidate: Member
        if let to {
            guard let c = members.first(where: { $0.name == to }) else {
                throw ClusterOpsError("\(to) is not a database member (they are: \(members.map(\.name).joined(separator: ", ")))")
            }
            guard !c.isLeader else { throw ClusterOpsError("\(to) is already the primary") }
            guard standbys.contains(c) else { throw ClusterOpsError("\(to)'s PostgreSQL is \(c.state), not a running standby") }
            if !forced && !c.isSyncStandby && members.contains(where: \.isSyncStandby) {
                throw ClusterOpsError("\(to) is not the synchronous standby: a planned switchover goes to \(members.first(where: \.isSyncStandby)!.name), which has every acknowledged commit")
            }
            candidate = c
        } else {
            guard let c = standbys.first(where: \.isSyncStandby) ?? (forced ? standbys.min { ($0.lagBytes ?? .max) < ($1.lagBytes ?? .max) } : nil) else {
                throw ClusterOpsError("no running \(forced ? "" : "synchronous ")standby to \(forced ? "fail" : "switch") over to")
            }
            candidate = c
        }
        return (leader, candidate)
    }

    /// What a forced failover to `candidate` can lose, in words for the confirmation.
    public static func risk(_ candidate: Member, leader: Member?) -> String {
        if candidate.isSyncStandby && leader != nil {
            return "\(candidate.name) is the synchronous standby: it has every commit the primary acknowledged, so nothing acknowledged should be lost; clients see errors for the seconds the move takes"
        }
        let lag = candidate.lagBytes.map { "\($0) bytes of WAL" } ?? "an unknown amount of WAL"
        return "\(candidate.name) is \(candidate.isSyncStandby ? "the synchronous standby" : "an asynchronous standby") \(lag) behind\(leader.map { " \($0.name)" } ?? " the lost primary"): messages the primary acknowledged in that WAL are lost, and \(leader?.name ?? "the old primary") is rewound (pg_rewind) when it rejoins"
    }

    func withClient<T: Sendable>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        var c = HTTPClient.Configuration()
        c.timeout = .init(connect: .seconds(2), read: .seconds(30))
        c.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
        do {
            let r = try await body(client)
            try? await client.shutdown()
            return r
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// The database members as the first Patroni that answers sees them.
    public func members() async throws -> [Member] {
        try await withClient { client in try await members(client) }
    }

    func members(_ client: HTTPClient) async throws -> [Member] {
        var last = "no database member listed"
        for a in addresses {
            do {
                let r = try await client.execute(HTTPClientRequest(url: "http://\(a):\(ClusterSettings.Port.patroni)/cluster"), timeout: .seconds(4))
                let body = Data(buffer: try await r.body.collect(upTo: 1 << 20))
                if r.status.code == 200, let m = Self.parse(body) { return m }
                last = "\(a) answered \(r.status.code)"
            } catch {
                last = "\(a): \(error)"
            }
        }
        throw ClusterOpsError("no Patroni answers (\(last)); is warbler-patroni.service running on the database members?")
    }

    /// Asks Patroni (`/switchover` or `/failover`) and waits until `candidate` is the running primary.
    public func move(to candidate: Member, from leader: Member?, forced: Bool, log: @Sendable (String) -> Void) async throws -> Double {
        try await withClient { client in
            var body: [String: String] = ["candidate": candidate.name]
            if let leader, !forced { body["leader"] = leader.name }
            // A switchover is asked of the primary's Patroni; a failover of the candidate's (the primary may be gone).
            let target = [forced ? nil : leader?.host, candidate.host, addresses.first].compactMap { $0 }.first { !$0.isEmpty } ?? ""
            var req = HTTPClientRequest(url: "http://\(target):\(ClusterSettings.Port.patroni)/\(forced ? "failover" : "switchover")")
            req.method = .POST
            req.headers.add(name: "Content-Type", value: "application/json")
            req.headers.add(name: "Authorization", value: "Basic " + Data("patroni:\(password)".utf8).base64EncodedString())
            req.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)))
            let started = Date()
            let r = try await client.execute(req, timeout: .seconds(40))
            let text = String(buffer: try await r.body.collect(upTo: 1 << 16)).trimmingCharacters(in: .whitespacesAndNewlines)
            guard r.status.code == 200 else {
                throw ClusterOpsError("Patroni refused the \(forced ? "failover" : "switchover") (\(r.status.code)): \(text)")
            }
            log("Patroni: \(text)")
            let deadline = started.addingTimeInterval(timeout)
            while Date() < deadline {
                if let now = try? await members(client), let l = now.first(where: \.isLeader), l.name == candidate.name, l.state == "running" {
                    return Date().timeIntervalSince(started)
                }
                try await Task.sleep(for: .milliseconds(250))
            }
            throw ClusterOpsError("\(candidate.name) is not the running primary \(Int(timeout)) s after Patroni accepted; see `warbler cluster status` and journalctl -u warbler-patroni")
        }
    }
}

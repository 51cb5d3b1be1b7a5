import Foundation
import Installer

/// Everything `warbler join` does before the install engine converges the host: the verified bundle, the roles,
/// and (for an etcd member) its place in etcd as a learner.
public struct ClusterJoin: Sendable {
    public var token: JoinToken
    public var client: JoinClient
    public var advertise: String
    public var nodeName: String
    public var roles: [ClusterRole]?
    /// The embedded etcdctl (from the installer file's payload, before the install lays it out).
    public var etcdctl: String
    /// A private (0700) directory for the first client certificate.
    public var workDirectory: String

    public init(token: JoinToken, client: JoinClient, advertise: String, nodeName: String, roles: [ClusterRole]?, etcdctl: String, workDirectory: String) {
        self.token = token; self.client = client; self.advertise = advertise; self.nodeName = nodeName; self.roles = roles
        self.etcdctl = etcdctl; self.workDirectory = workDirectory
    }

    public struct Prepared: Sendable {
        public var bundle: ClusterBundle
        public var answers: ClusterAnswers
        public var roles: [ClusterRole]
    }

    /// Default roles: the first two database hosts carry PostgreSQL (primary and synchronous standby); after
    /// that a host is an etcd member (the witness) while etcd has fewer than three voters, else only an IM node.
    /// On the site's PostgreSQL (`externalDatabase`) no host carries the database role.
    public static func defaultRoles(members: [ClusterMember], etcdMembers: Int, externalDatabase: Bool = false) -> [ClusterRole] {
        if !externalDatabase && members.filter({ $0.roles.contains(.database) }).count < 2 { return [.database, .etcd] }
        return etcdMembers < 3 ? [.etcd] : []
    }

    public func prepare() async throws -> Prepared {
        let caPEM = try await client.fetchCA(token: token)
        let bundle = try await client.join(token: token, caPEM: caPEM)
        guard JoinToken.caKeyHashOrNil(bundle.caCert) == token.caKeyHash else {
            throw JoinError("the bundle's CA is not the one the token names; nothing was changed")
        }
        // A client certificate of our own, from the cluster CA, for etcd (the install issues the lasting one).
        let pair = try PKI.issuePair(caCertPEM: bundle.caCert, caKeyPEM: bundle.caKey,
                                     names: CertificateNames(dns: [], ips: [IPAddress.parse(advertise)!]), now: Date())
        let ca = workDirectory + "/ca.crt", cert = workDirectory + "/client.crt", key = workDirectory + "/client.key"
        try Data(bundle.caCert.utf8).write(to: URL(fileURLWithPath: ca))
        try Data(pair.certPEM.utf8).write(to: URL(fileURLWithPath: cert))
        try Data(pair.keyPEM.utf8).write(to: URL(fileURLWithPath: key))
        chmod(key, 0o600)
        let seeds = bundle.members.filter { $0.roles.contains(.etcd) }.map(\.address)
        guard !seeds.isEmpty else { throw JoinError("the cluster named no etcd member to join through") }
        let etcd = Etcdctl(binary: etcdctl, endpoints: seeds, caFile: ca, certFile: cert, keyFile: key)
        let registered = try MemberRegistry.load(etcd).members
        if let clash = registered.first(where: { $0.address == advertise && $0.name != nodeName }) {
            throw JoinError("\(advertise) is already the member '\(clash.name)'; remove it first (`warbler cluster remove \(clash.name)` on a member) or use another address")
        }
        if let clash = registered.first(where: { $0.name == nodeName && $0.address != advertise }) {
            throw JoinError("the node name '\(nodeName)' is taken by \(clash.address); give --node-name")
        }
        var etcdMembers = try etcd.memberList()
        let roles = roles ?? Self.defaultRoles(members: registered.filter { $0.name != nodeName }, etcdMembers: etcdMembers.filter { !$0.isLearner }.count,
                                               externalDatabase: bundle.databaseURL != nil)
        if roles.contains(.etcd) {
            // etcd refuses a new member for a few seconds after the last change ("unhealthy cluster": every member
            // must have been connected a while) and takes one learner at a time: wait those out.
            let deadline = Date().addingTimeInterval(120)
            while true {
                do {
                    etcdMembers = try etcd.addLearner(name: nodeName, address: advertise)
                    break
                } catch let e as ClusterOpsError where Date() < deadline
                    && (e.description.contains("unhealthy cluster") || e.description.contains("too many learner")) {
                    try await Task.sleep(for: .seconds(2))
                }
            }
        }
        // etcd's initial-cluster: every member that has a name and a peer address (ours included).
        let seedMembers: [ClusterMember] = etcdMembers.compactMap { m in
            let name = m.name.isEmpty && m.peerURLs.contains("https://\(advertise):\(ClusterSettings.Port.etcdPeer)") ? nodeName : m.name
            guard !name.isEmpty, let url = m.peerURLs.first, let host = URL(string: url)?.host else { return nil }
            return ClusterMember(name: name, address: host, roles: [.etcd])
        }
        let answers = ClusterAnswers(founder: false, advertiseAddress: advertise, nodeName: nodeName, roles: roles,
                                     balance: bundle.balance, seedMembers: seedMembers, databaseURL: bundle.databaseURL,
                                     vip: bundle.vip)
        return Prepared(bundle: bundle, answers: answers, roles: roles)
    }
}

extension JoinToken {
    static func caKeyHashOrNil(_ pem: String) -> String? { try? caKeyHash(pem: pem) }
}

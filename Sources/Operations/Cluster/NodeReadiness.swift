import AsyncHTTPClient
import Foundation
import Installer

/// Waits until a member's IM server is ready on a given release: its `/readyz` answers 200 and its `/v1/version`
/// names the release. Asked over the cluster listener with root's cluster identity, as `cluster status` asks; needs
/// nothing on the member but its server, so it serves whatever switched the member's release.
public struct NodeReadiness: Sendable {
    /// One GET: the status and body, or nil when nothing answered.
    public typealias Probe = @Sendable (_ url: String) async -> (status: Int, body: Data)?
    public var probe: Probe
    /// Between two looks.
    public var interval: Duration

    public init(interval: Duration = .seconds(1), probe: @escaping Probe) {
        self.interval = interval; self.probe = probe
    }

    /// Why the IM server at `address` is not ready on `version` now, or nil when it is.
    public func problem(address: String, version: String) async -> String? {
        let base = "https://\(address):\(ClusterSettings.Port.im)"
        guard let ready = await probe(base + "/readyz") else { return "no answer on \(base)" }
        guard ready.status == 200 else {
            return "/readyz answers \(ready.status): \(String(decoding: ready.body.prefix(200), as: UTF8.self))"
        }
        guard let answer = await probe(base + "/v1/version"), answer.status == 200,
              let running = (try? JSONSerialization.jsonObject(with: answer.body) as? [String: Any])?["version"] as? String else {
            return "/v1/version does not say which release runs"
        }
        return running == version ? nil : "it runs \(running), not \(version)"
    }

    /// Looks until the server is ready on `version`; throws `ClusterOpsError` with the last reason after `timeout`.
    public func wait(node: String, address: String, version: String, timeout: Duration) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            guard let why = await problem(address: address, version: version) else { return }
            if clock.now >= deadline {
                throw ClusterOpsError("\(node) is not ready on \(version) after \(timeout): \(why)")
            }
            try await Task.sleep(for: interval)
        }
    }

    /// Runs `body` with a `NodeReadiness` that asks over HTTPS with this member's cluster identity (root's).
    public static func live<T: Sendable>(member: MemberFile, etcd: Etcdctl, _ body: (NodeReadiness) async throws -> T) async throws -> T {
        let collector = ClusterStatusCollector(member: member, etcd: etcd)
        let client = try collector.client(tls: true)
        do {
            let r = try await body(NodeReadiness { url in await collector.get(client, url).map { (status: $0.0, body: $0.1) } })
            try? await client.shutdown()
            return r
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

import Foundation

/// The cluster upgrade's `distribute` and `switchRelease`: orders to one member's upgrade receiver, the same for
/// every member (the one running the upgrade too).
public struct ReleaseOrders: Sendable {
    /// Stages and verifies the upgrade's file on this member (what is sent and signed is that copy).
    public let host: any UpgradeHost
    /// The recorded progress: what decides between `switch` (to the upgrade's target) and `return`.
    public let progress: @Sendable () throws -> ClusterUpgradeProgress?
    /// Each line a member's receiver streams while it switches (`NODE: line`).
    public let log: @Sendable (String) -> Void
    /// The receiver of a member, by name.
    public let client: @Sendable (String) throws -> UpgradeReceiverClient

    public init(host: any UpgradeHost, progress: @escaping @Sendable () throws -> ClusterUpgradeProgress?, log: @escaping @Sendable (String) -> Void,
                client: @escaping @Sendable (String) throws -> UpgradeReceiverClient) {
        self.host = host; self.progress = progress; self.log = log; self.client = client
    }

    /// Sends this member's own staged, verified copy of `file` to `node`'s receiver, which stages it and checks it
    /// again; returns once it says `received`.
    public func distribute(file: String, to node: String) async throws {
        let client = try self.client(node)
        try await withVerifiedCopy(of: file) { copy, facts, info in
            _ = try await client.receive(file: copy, facts: facts, info: info)
        }
    }

    /// To the recorded upgrade's target: `switch` to the file `distribute` sent (named by its digest). To any other
    /// release (returning a node, a cluster rollback): `return` to the member's previous release, which must be
    /// `version`.
    public func switchRelease(node: String, to version: String) async throws {
        let client = try self.client(node)
        let log = self.log
        if let p = try progress(), p.kind == .upgrade, version == p.to {
            try await withVerifiedCopy(of: p.file) { _, facts, info in
                try await client.switchTo(facts: facts, info: info) { log("\(node): \($0)") }
            }
        } else {
            try await client.returnTo(version: version) { log("\(node): \($0)") }
        }
    }

    /// Stages `file` where only root writes, verifies it as a local upgrade does, and checks it is the recorded
    /// target (when an upgrade is recorded); runs `body` with the copy, its digest and length, and its release.
    func withVerifiedCopy<T: Sendable>(of file: String, _ body: (String, UpgradeReceiverClient.FileFacts, ReleaseInfo) async throws -> T) async throws -> T {
        let staged = try host.stage(file: file)
        defer { host.removeStaged(staged) }
        try host.verify(file: staged)
        let info = try host.releaseInfo(binary: staged)
        if let p = try progress(), p.kind == .upgrade, p.state != .finished,
           info.version != p.to || (!p.toBuild.isEmpty && info.build != p.toBuild) {
            throw ClusterUpgradeRefusal("\(file) now holds \(info.version) (build \(info.build)), not \(p.to) (build \(p.toBuild)) that this upgrade verified; put that file back and resume")
        }
        return try await body(staged, try UpgradeReceiverClient.FileFacts.of(staged), info)
    }
}

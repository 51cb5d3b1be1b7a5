import Foundation
import Synchronization
import Testing
@testable import Upgrade

/// The cluster upgrade's `distribute` and `switchRelease` against two members' receivers in one process.
@Suite(.serialized) struct ReleaseOrdersTests {
    /// The member running the upgrade: a fake host that stages and verifies the file where it is.
    static func orders(_ members: [ReceiverUnderTest], file: ReleaseFile, kind: ClusterUpgradeProgress.Kind = .upgrade,
                       log: @escaping @Sendable (String) -> Void = { _ in }) -> ReleaseOrders {
        let initiator = FakeUpgradeHost()
        initiator.add(file: file.path, file.info)
        let progress = ClusterUpgradeProgress(kind: kind, file: file.path, from: "1.0.0", to: file.info.version, toBuild: file.info.build,
                                              fromSchema: 1, steps: [], done: 0, state: .running, updatedAt: Date())
        let byName = Dictionary(uniqueKeysWithValues: members.map { ($0.node, $0) })
        return ReleaseOrders(host: initiator, progress: { progress }, log: log) { node in
            guard let m = byName[node] else { throw ClusterUpgradeRefusal("no member \(node)") }
            return try m.client()
        }
    }

    @Test func distributeThenSwitchEachMemberThroughItsReceiverAndReturnOne() async throws {
        let a = try await ReceiverUnderTest(node: "warbler-1"), b = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await a.stop(); await b.stop() } }
        let file = try ReleaseFile()
        file.known(to: a); file.known(to: b)
        let lines = Lines()
        let orders = Self.orders([a, b], file: file) { l in lines.all.withLock { $0.append(l) } }

        try await orders.distribute(file: file.path, to: "warbler-1")
        try await orders.distribute(file: file.path, to: "warbler-2")
        #expect(a.incomingNames == [file.facts.sha256] && b.incomingNames == [file.facts.sha256])
        #expect(a.host.actions.isEmpty == false && !a.host.actions.contains { $0.hasPrefix("converge") })

        try await orders.switchRelease(node: "warbler-1", to: "1.1.0")
        #expect(a.host.state.withLock { ($0.current, $0.previous) } == ("1.1.0", "1.0.0"))
        #expect(b.host.state.withLock { $0.current } == "1.0.0")
        #expect(lines.all.withLock { $0 }.contains { $0.hasPrefix("warbler-1: ") && $0.contains("verified") })
        try await orders.switchRelease(node: "warbler-2", to: "1.1.0")
        #expect(b.host.state.withLock { $0.current } == "1.1.0")

        // Returning warbler-1 (a rollback's or a failed node's switch back): its previous release, no restore.
        try await orders.switchRelease(node: "warbler-1", to: "1.0.0")
        #expect(a.host.state.withLock { ($0.current, $0.previous) } == ("1.0.0", "1.1.0"))
        #expect(a.host.actions.suffix(4) == ["converge /opt/warbler/releases/1.0.0/bin/warbler", "start", "self-check 1.0.0", "previous 1.1.0"])
        #expect(!a.host.actions.contains { $0.hasPrefix("restore") || $0.hasPrefix("backup") })
        // Again: it is there already, nothing runs.
        let before = a.host.actions
        try await orders.switchRelease(node: "warbler-1", to: "1.0.0")
        #expect(a.host.actions == before)
    }

    @Test func aMemberWhoseSwitchFailsMakesSwitchReleaseThrowWithWhatItSaid() async throws {
        let a = try await ReceiverUnderTest(node: "warbler-1"), b = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await a.stop(); await b.stop() } }
        let file = try ReleaseFile()
        file.known(to: a); file.known(to: b)
        b.host.state.withLock { $0.failSelfCheckOn = ["1.1.0"] }
        let orders = Self.orders([a, b], file: file)
        try await orders.distribute(file: file.path, to: "warbler-2")
        await #expect { try await orders.switchRelease(node: "warbler-2", to: "1.1.0") } throws: { e in
            "\(e)".contains("warbler-2: returned: ") && "\(e)".contains("login failed")
        }
        #expect(b.host.state.withLock { $0.current } == "1.0.0")
        // A member that was never sent the file: refused before anything runs.
        await #expect { try await orders.switchRelease(node: "warbler-1", to: "1.1.0") } throws: { "\($0)".contains("receive` it first") }
        #expect(a.host.actions.isEmpty)
        // A return to a release that is not the member's previous one is refused.
        await #expect { try await orders.switchRelease(node: "warbler-1", to: "0.8.0") } throws: { "\($0)".contains("refused") }
        #expect(a.host.actions.isEmpty)
    }
}

/// Lines a test collects from concurrent code.
final class Lines: Sendable { let all = Mutex<[String]>([]) }

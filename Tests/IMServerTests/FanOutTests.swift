import Foundation
import IMCore
@testable import IMServer
import Logging
import Testing

/// The fan-out seam: what the hub publishes goes through the bus, in order, to the one consumer, which applies it
/// to the sessions here; the cluster's bus also hands what other nodes must hear to `ClusterNode`.
@Suite(.timeLimit(.minutes(1))) struct FanOutTests {
    func withHub(_ bus: any FanOutBus, events: AsyncStream<FanOutEvent>, _ body: (Hub) async throws -> Void) async throws {
        let dir = NSTemporaryDirectory() + "warbler-fanout-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = ServerConfig()
        config.storage.path = dir + "/warbler.db"
        let storage = try await StorageFactory.openStorage(config: config, logger: Logger(label: "test"))
        let hub = Hub(storage: storage, metrics: ServerMetrics(), logger: Logger(label: "test"), bus: bus)
        let consumer = Task { try await FanOutService(events: events, hub: hub).run() }
        do { try await body(hub) } catch { consumer.cancel(); try await storage.close(); throw error }
        consumer.cancel()
        try await storage.close()
    }

    /// The next `n` items a session's writer would get (frames by kind, closes as "close").
    func next(_ n: Int, of session: Session) async -> [String] {
        var out: [String] = []
        for await o in session.stream {
            switch o {
            case .frame(.receipt): out.append("receipt")
            case .frame(.typing): out.append("typing")
            case .frame(.error): out.append("error")
            case .frame(.presence): out.append("presence")
            case .frame: out.append("frame")
            case .message(let m, _, _): out.append("msg \(m.seq)")
            case .close: out.append("close")
            case .sync: out.append("sync")
            }
            if out.count == n { break }
        }
        return out
    }

    @Test func publishedEffectsReachTheSessionsInOrderThroughTheOneConsumer() async throws {
        let bus = LocalFanOutBus()
        try await withHub(bus, events: bus.events) { hub in
            let alice = Session(user: 1), bob = Session(user: 2)
            #expect(hub.register(alice) == .registered && hub.register(bob) == .registered)
            hub.publishReceipt(.init(conv: 7, user: 1, kind: .read, seq: 3), to: [1, 2])
            hub.publishTyping(.init(conv: 7, user: 1, active: true), to: [1, 2])
            hub.endSessions(of: 2, reason: "the password was changed")
            // Nothing is applied by the publisher itself: the consumer does it, in the order published.
            #expect(await next(1, of: alice) == ["receipt"], "the typist hears no typing")
            #expect(await next(4, of: bob) == ["receipt", "typing", "error", "close"])
        }
    }

    @Test func theClusterBusAlsoTellsTheOtherNodesButNotWhatTheySaid() async throws {
        let node = ClusterNode(id: "node-a")
        let local = LocalFanOutBus()
        let bus = ClusterFanOutBus(local: local, node: node)
        try await withHub(bus, events: local.events) { hub in
            let bob = Session(user: 2)
            #expect(hub.register(bob) == .registered)
            _ = node.takeOutbox()   // bob's presence (this hub has no cluster hooks, so it decides presence itself)
            let receipt = ServerFrame.Receipt(conv: 7, user: 1, kind: .read, seq: 3)
            hub.publishReceipt(receipt, to: [1, 2])
            hub.invalidate(7)
            hub.endSessions(of: 3, reason: "logged out")
            #expect(node.takeOutbox() == [.receipt(receipt), .membersChanged([7]), .sessionsEnded(user: 3, sid: nil, reason: "logged out")])
            // Another node's word goes on the local bus only: this node's sessions get it, nothing goes back out.
            local.publish(.typing(.init(conv: 7, user: 1, active: true), members: [1, 2]))
            #expect(await next(2, of: bob) == ["receipt", "typing"])
            #expect(node.takeOutbox().isEmpty)
        }
    }
}

import IMCore
import Logging
import ServiceLifecycle

/// Every effect that crosses sessions, whoever causes it (the gateway, REST, the commit loop, another node).
enum FanOutEvent: Sendable {
    /// Committed messages (in seq order per conversation), for every session of every member.
    case messages([Message])
    /// A read or delivered cursor advanced (already stored), for the members' sessions.
    case receipt(ServerFrame.Receipt, members: [UserID])
    /// Someone started or stopped typing, for the other members' sessions.
    case typing(ServerFrame.Typing, members: [UserID])
    /// A user's presence as decided (by this hub alone, or by the cluster), for the user's audience.
    case presence(ServerFrame.Presence)
    /// These conversations' members changed (the hub dropped its own cache entries already).
    case membersChanged([ConversationID])
    /// These users' block lists changed (the hub dropped its own cache entries already).
    case blocksChanged([UserID])
    /// The user's sockets (all, or those of one login session) must close with `CloseCode.sessionEnded`.
    case sessionsEnded(user: UserID, sid: String?, reason: String)
    /// The user saved or deleted (empty text) a draft, for all of the user's sessions.
    case draft(Draft, user: UserID)
}

/// Where the hub publishes cross-session effects, and the one ordered stream its consumer (`FanOutService`)
/// applies. The in-process bus is `LocalFanOutBus`; on a cluster, `ClusterFanOutBus` also tells the other nodes.
/// Neither the gateway nor IMService knows which one is there.
protocol FanOutBus: Sendable {
    /// Publishes an event of this node's: to the local consumer, and (on a cluster) to the other nodes.
    func publish(_ event: FanOutEvent)
    /// Every event for this node's sessions, in publication order.
    var events: AsyncStream<FanOutEvent> { get }
}

/// The in-process bus: an unbounded, ordered queue with one consumer. Publishing never blocks or waits.
final class LocalFanOutBus: FanOutBus {
    let events: AsyncStream<FanOutEvent>
    private let continuation: AsyncStream<FanOutEvent>.Continuation

    init() { (events, continuation) = AsyncStream.makeStream(of: FanOutEvent.self) }

    func publish(_ event: FanOutEvent) { continuation.yield(event) }

    func finish() { continuation.finish() }
}

/// A cluster node's bus: events go to this node's consumer, and what other nodes must hear goes to `ClusterNode`
/// (sent as notices after the fact; committed messages as a doorbell). What other nodes said is published on
/// `local` only, by `ClusterService`, so it is never sent back.
final class ClusterFanOutBus: FanOutBus {
    let local: LocalFanOutBus
    let node: ClusterNode

    init(local: LocalFanOutBus, node: ClusterNode) { self.local = local; self.node = node }

    var events: AsyncStream<FanOutEvent> { local.events }

    func publish(_ event: FanOutEvent) {
        local.publish(event)
        switch event {
        case .messages(let messages): node.committed(messages)
        case .receipt(let receipt, _): node.announce(.receipt(receipt))
        case .typing(let typing, _): node.announce(.typing(typing))
        case .presence(let presence): node.announce(.presence(presence))
        case .membersChanged(let convs): node.announce(.membersChanged(convs))
        case .blocksChanged(let users): node.announce(.blocksChanged(users))
        case .sessionsEnded(let user, let sid, let reason): node.announce(.sessionsEnded(user: user, sid: sid, reason: reason))
        case .draft(let draft, let user): node.announce(.draft(user: user, conv: draft.conversation))
        }
    }
}

/// The one consumer of the bus: applies each event to this node's sessions, in order. Work that reads storage
/// (a presence audience, the members of a conversation not in the cache) runs as child tasks, so that it never
/// holds up the deliveries behind it. Runs until storage is about to close (it is second in the service group).
struct FanOutService: Service {
    let events: AsyncStream<FanOutEvent>
    let hub: Hub

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for await event in events {
                    if let slow = hub.apply(event) { group.addTask { await slow() } }
                }
            }
        }
    }
}

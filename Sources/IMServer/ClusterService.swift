import Foundation
import IMCore
import IMStorage
import IMStoragePostgres
import Logging
import ServiceLifecycle

/// This node's end of the cluster bus (when `cluster.enabled`): what the hub and the commit loop hand it, queued
/// for `ClusterService`. Nothing here blocks or does I/O, so the commit loop and the hub never wait for it.
final class ClusterNode: Sendable {
    /// The NOTIFY channel every node of one database listens on.
    static let channel = "warbler_cluster"

    enum Input: Sendable {
        /// Messages committed on this node (already handed to the hub).
        case committed([ConversationID: ClosedRange<Int64>])
        /// Another node's notice.
        case notice(ClusterNotice)
        /// A session here finished a sync at these cursors.
        case synced([ConversationID: Int64], more: Set<ConversationID>)
        /// The listener is (again) listening: notices may have been missed meanwhile.
        case listening
        /// Time for a catch-up pass.
        case tick
        /// A user's first socket on this node opened (`online`), or the last one closed.
        case presence(UserID, online: Bool, lastSeen: Int64?)
        /// Time to say this node is alive, and to retire nodes that stopped saying it.
        case heartbeat
    }

    let id: String
    let inputs: AsyncStream<Input>
    private let input: AsyncStream<Input>.Continuation
    let outboxSignal: AsyncStream<Void>
    private let signal: AsyncStream<Void>.Continuation
    private let outbox = LockedBox<[ClusterNotice]>([])
    private let tickQueued = LockedBox(false)
    /// Test seam: with doorbells off, other nodes learn of this node's messages only by catching up.
    private let doorbells = LockedBox(true)

    /// Notices waiting for the database past this many (it is unreachable) are dropped: the other nodes' listeners
    /// lose their connection too, and then catch up by cursor and drop their caches.
    static let maxQueued = 100_000

    init(id: String) {
        self.id = id
        (inputs, input) = AsyncStream.makeStream(of: Input.self)
        (outboxSignal, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func setDoorbells(_ on: Bool) { doorbells.withLock { $0 = on } }

    /// After each committed batch (outside its transaction): one doorbell, and a note of what the hub has.
    func committed(_ messages: [Message]) {
        let ranges = ClusterNotice.ranges(of: messages)
        guard !ranges.isEmpty else { return }
        input.yield(.committed(ranges))
        if doorbells.withLock({ $0 }) { announce(.appended(ranges)) }
    }

    /// Queues a notice for the other nodes.
    func announce(_ notice: ClusterNotice) {
        outbox.withLock { q in
            if q.count >= Self.maxQueued { q.removeAll() }
            q.append(notice)
        }
        signal.yield()
    }

    func takeOutbox() -> [ClusterNotice] { outbox.withLock { q in defer { q = [] }; return q } }

    func synced(_ cursors: [ConversationID: Int64], more: Set<ConversationID>) {
        input.yield(.synced(cursors, more: more))
    }

    /// A payload from the channel; our own notices and anything malformed are ignored.
    func received(_ payload: String) -> Bool {
        guard let (node, notice) = ClusterNotice.decode(payload) else { return false }
        if node != id { input.yield(.notice(notice)) }
        return true
    }

    func listening() { input.yield(.listening) }

    func presence(_ user: UserID, online: Bool, lastSeen: Int64?) {
        input.yield(.presence(user, online: online, lastSeen: lastSeen))
    }

    func heartbeat() { input.yield(.heartbeat) }

    /// Queues a catch-up pass unless one is already waiting.
    func tick() {
        let first = tickQueued.withLock { queued in defer { queued = true }; return !queued }
        if first { input.yield(.tick) }
    }

    func tickTaken() { tickQueued.withLock { $0 = false } }

    func finish() {
        input.finish()
        signal.finish()
    }
}

/// Delivers other nodes' messages to this node's sessions and keeps the hub's caches true: publishes this node's
/// notices (`pg_notify`, after commits, never inside one), listens on a connection of its own with backoff, and
/// catches up by cursor every `catchUpInterval` and after each (re)connect, so nothing depends on a notice
/// arriving (docs/architecture.md, "Cross-node delivery").
struct ClusterService: Service {
    let node: ClusterNode
    let hub: Hub
    /// Where what other nodes said goes for this node's sessions (never back out to the cluster).
    let local: LocalFanOutBus
    let store: SQLStore
    let driver: PostgresDriver
    let catchUpInterval: Duration
    let metrics: ServerMetrics
    let logger: Logger

    /// Messages read per query when catching up.
    static let readLimit = 500
    /// How often a node records that it is alive (`cluster_nodes.seen_at`).
    static let heartbeatInterval: Duration = .seconds(5)
    /// A node not heard of for this long is gone: its users' sessions there no longer count as online.
    static let presenceTTLMillis: Int64 = 20_000

    func run() async throws {
        logger.info("cluster node on channel \(ClusterNode.channel)")
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await publish() }
                group.addTask { await listen() }
                group.addTask { await ticks() }
                group.addTask { await heartbeats() }
                await consume()
            }
        }
        await leave()
        // Whatever is still queued goes out before storage closes (a last doorbell, an ended session, who went offline).
        await flush()
        node.finish()
    }

    // MARK: Publishing

    private func publish() async {
        for await _ in node.outboxSignal {
            await flush()
            if Task.isCancelled { return }
        }
    }

    private func flush() async {
        for notice in ClusterNotice.coalesce(node.takeOutbox()) {
            for payload in notice.payloads(from: node.id) {
                do {
                    try await driver.notify(channel: ClusterNode.channel, payload: payload)
                    metrics.clusterNotices.increment()
                } catch {
                    // Once more; a doorbell lost for good only delays delivery until the next catch-up pass.
                    try? await Task.sleep(for: .milliseconds(200))
                    do {
                        try await driver.notify(channel: ClusterNode.channel, payload: payload)
                        metrics.clusterNotices.increment()
                    } catch {
                        logger.warning("cluster: could not send a notice: \(error)")
                    }
                }
            }
        }
    }

    // MARK: Listening

    private func listen() async {
        var failures = 0
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let node = self.node, logger = self.logger
            do {
                try await driver.listen(channel: ClusterNode.channel, listening: {
                    logger.info("cluster: listening")
                    node.listening()
                }, received: { payload in
                    if !node.received(payload) { logger.debug("cluster: ignored a notice: \(payload.prefix(80))") }
                })
            } catch {
                if Task.isCancelled { return }
                logger.warning("cluster: listener stopped (\(error)); reconnecting")
            }
            if Task.isCancelled { return }
            metrics.clusterReconnects.increment()
            failures = started.duration(to: .now) > .seconds(30) ? 1 : failures + 1
            try? await Task.sleep(for: Self.backoff(failures))
        }
    }

    /// 100 ms doubling up to 5 s, with ±20 % jitter so nodes do not reconnect in step.
    static func backoff(_ failures: Int) -> Duration {
        let base = min(5.0, 0.1 * pow(2.0, Double(max(0, failures - 1))))
        return .milliseconds(Int64(base * Double.random(in: 0.8...1.2) * 1000))
    }

    private func heartbeats() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.heartbeatInterval)
            node.heartbeat()
        }
    }

    private func ticks() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: catchUpInterval)
            node.tick()
        }
    }

    // MARK: Consuming

    /// The one consumer: notices, ticks and local commits are applied in the order they came, so a membership
    /// change is in the hub before the doorbell of the message that follows it.
    private func consume() async {
        var cursors = ClusterCursors()
        await join()
        for await input in node.inputs {
            if Task.isCancelled { return }
            switch input {
            case .committed(let ranges):
                cursors.delivered(ranges)
            case .synced(let at, let more):
                cursors.synced(at, more: more)
            case .notice(.appended(let ranges)):
                var here: [ConversationID: ClosedRange<Int64>] = [:]
                for (c, r) in ranges {
                    guard let members = try? await hub.members(of: c) else { continue }
                    if hub.hasSessions(anyOf: members.keys) { here[c] = r }
                }
                let fetches = cursors.doorbell(here)
                _ = await read(fetches, into: &cursors)
            case .notice(.membersChanged(let convs)):
                for c in convs { hub.invalidate(c, announce: false) }
            case .notice(.blocksChanged(let users)):
                hub.invalidateBlocks(users, announce: false)
            case .notice(.sessionsEnded(let user, let sid, let reason)):
                local.publish(.sessionsEnded(user: user, sid: sid, reason: reason))
            case .notice(.receipt(let receipt)):
                guard let members = try? await hub.members(of: receipt.conv) else { continue }
                local.publish(.receipt(receipt, members: Array(members.keys)))
            case .notice(.typing(let typing)):
                guard let members = try? await hub.members(of: typing.conv) else { continue }
                local.publish(.typing(typing, members: Array(members.keys)))
            case .notice(.draft(let user, let conv)):
                // Only when the user has a socket here; the draft as it is stored now (the newest, whatever order
                // notices arrive in), or deleted.
                guard !hub.sessions(of: user).isEmpty, let drafts = try? await store.drafts(user: user) else { continue }
                let draft = drafts.first { $0.conversation == conv } ?? Draft(conversation: conv, text: "", updatedAt: nowMillis())
                local.publish(.draft(draft, user: user))
            case .notice(.presence(let presence)):
                if presence.status == .offline && !hub.sessions(of: presence.user).isEmpty {
                    // That node saw the user gone everywhere, just before a socket opened here: say so again.
                    node.announce(.presence(.init(user: presence.user, status: .online, lastSeen: nil)))
                } else {
                    local.publish(.presence(presence))
                }
            case .presence(let user, let online, let lastSeen):
                await presenceChanged(user, online: online, lastSeen: lastSeen)
            case .heartbeat:
                await heartbeat()
            case .listening:
                // Notices sent while nobody listened are gone: forget what they would have corrected.
                hub.dropCaches()
                await catchUp(&cursors, waitForDoorbells: false)
                await resendReceipts()
            case .tick:
                node.tickTaken()
                await catchUp(&cursors)
            }
        }
    }

    // MARK: Presence

    /// On start: this node is alive, and whatever its previous run left in `presence` is gone.
    private func join() async {
        do {
            try await store.nodeAlive(node.id, now: nowMillis())
            await wentOffline(try await store.clearPresence(node: node.id), lastSeen: nowMillis())
        } catch {
            logger.warning("cluster: cannot record this node's presence (the next heartbeat retries): \(error)")
        }
    }

    /// On shutdown: this node's users are offline here; those on no other node are offline for everyone.
    private func leave() async {
        do {
            let users = try await store.clearPresence(node: node.id)
            try await store.forgetNode(node.id)
            await wentOffline(users, lastSeen: nowMillis(), evenWithSocketsHere: true)
        } catch {
            logger.warning("cluster: cannot clear this node's presence (other nodes expire it): \(error)")
        }
    }

    /// A user's first socket here opened, or the last one closed: recorded in `presence`, so that the user is
    /// online while any live node has a socket, and only the last node to lose one says "offline".
    private func presenceChanged(_ user: UserID, online: Bool, lastSeen: Int64?) async {
        do {
            try await store.setPresent(node: node.id, user: user, present: online)
        } catch {
            logger.warning("cluster: cannot record the presence of user \(user): \(error)")
        }
        if online {
            // Through the hub's bus: to the audience here and, as a notice, on the other nodes.
            hub.fanOutPresence(.init(user: user, status: .online, lastSeen: nil))
        } else {
            await wentOffline([user], lastSeen: lastSeen ?? nowMillis())
        }
    }

    /// Of `users`, those with no socket here nor on any live node are announced offline, here and to the others.
    private func wentOffline(_ users: [UserID], lastSeen: Int64, evenWithSocketsHere: Bool = false) async {
        let candidates = evenWithSocketsHere ? users : users.filter { hub.sessions(of: $0).isEmpty }
        guard !candidates.isEmpty else { return }
        let elsewhere = (try? await store.onlineElsewhere(candidates, except: node.id, heardSince: nowMillis() - Self.presenceTTLMillis)) ?? []
        for user in candidates where !elsewhere.contains(user) {
            hub.fanOutPresence(.init(user: user, status: .offline, lastSeen: lastSeen))
        }
    }

    /// Records that this node is alive, and retires nodes that stopped doing so (killed, cut off): their users
    /// go offline unless they have sockets elsewhere. One node wins each retirement (the rows are deleted once).
    private func heartbeat() async {
        do {
            let now = nowMillis()
            try await store.nodeAlive(node.id, now: now)
            let orphans = try await store.expireNodes(silentSince: now - Self.presenceTTLMillis)
            if !orphans.isEmpty { logger.notice("cluster: retired nodes silent for \(Self.presenceTTLMillis / 1000) s; \(orphans.count) users had sockets there") }
            await wentOffline(orphans, lastSeen: now)
        } catch {
            logger.warning("cluster: heartbeat failed: \(error)")
        }
    }

    /// After a lost link the receipt notices sent meanwhile are gone: the cursors are in the database, so the
    /// members connected here get them again (clients keep the highest; a repeat changes nothing).
    private func resendReceipts() async {
        do {
            for c in try await store.memberCursors(ofConversationsOf: hub.connectedUsers) {
                guard let members = try? await hub.members(of: c.conversation) else { continue }
                if c.delivered > 0 {
                    local.publish(.receipt(.init(conv: c.conversation, user: c.user, kind: .delivered, seq: c.delivered), members: Array(members.keys)))
                }
                if c.read > 0 {
                    local.publish(.receipt(.init(conv: c.conversation, user: c.user, kind: .read, seq: c.read), members: Array(members.keys)))
                }
            }
        } catch {
            logger.warning("cluster: reading receipts to catch up failed: \(error)")
        }
    }

    // MARK: Catching up

    private func catchUp(_ cursors: inout ClusterCursors, waitForDoorbells: Bool = true) async {
        do {
            let last = try await store.lastSeqs(ofConversationsOf: hub.connectedUsers)
            let fetches = cursors.caughtUp(last, waitForDoorbells: waitForDoorbells)
            let n = await read(fetches, into: &cursors)
            if n > 0 { metrics.clusterCatchUpMessages.increment(by: Int64(n)) }
        } catch {
            logger.warning("cluster: catch-up failed (retrying in \(catchUpInterval)): \(error)")
        }
    }

    /// Reads and hands over; returns how many messages were read.
    private func read(_ fetches: [ClusterCursors.Fetch], into cursors: inout ClusterCursors) async -> Int {
        var count = 0
        for f in fetches {
            var after = f.after
            do {
                while true {
                    // Seqs are dense per conversation: a read never needs more than `through - after` rows.
                    let limit = f.through.map { Int(min(Int64(Self.readLimit), $0 - after)) } ?? Self.readLimit
                    guard limit > 0 else { break }
                    let batch = try await store.messages(conversation: f.conversation, after: after, limit: limit)
                    let take = f.through.map { through in batch.filter { $0.seq <= through } } ?? batch
                    guard let last = take.last else { break }
                    local.publish(.messages(take))
                    count += take.count
                    cursors.fetched(f.conversation, upTo: last.seq)
                    after = last.seq
                    if batch.count < limit { break }
                }
            } catch {
                logger.warning("cluster: reading conversation \(f.conversation) failed (the next catch-up retries): \(error)")
            }
        }
        return count
    }
}

import Foundation
import IMCore
import IMStorage
import Logging

/// What a connection's writer task is asked to do, in order.
enum Outgoing: Sendable {
    case frame(ServerFrame)
    /// A committed message, with its `msg` frame already encoded (once, for every recipient).
    case message(Message, arrival: ContinuousClock.Instant?, frame: String)
    case sync(ClientFrame.Sync)
    case close(reason: String)
}

/// One authenticated WebSocket connection, as the hub sees it.
final class Session: Sendable, Hashable {
    let id: String
    let user: UserID
    let stream: AsyncStream<Outgoing>
    private let continuation: AsyncStream<Outgoing>.Continuation
    private let depth = LockedBox<Int>(0)
    /// A client that falls this far behind is disconnected; it resumes from its cursors when it returns.
    static let maxQueued = 20_000

    init(user: UserID) {
        self.id = TokenService.randomToken(bytes: 9)
        self.user = user
        (stream, continuation) = AsyncStream.makeStream(of: Outgoing.self)
    }

    func enqueue(_ o: Outgoing) {
        let over = depth.withLock { d -> Bool in d += 1; return d > Self.maxQueued }
        if over {
            continuation.yield(.close(reason: "too far behind; reconnect and resume"))
            continuation.finish()
        } else {
            continuation.yield(o)
        }
    }

    func dequeued() { depth.withLock { $0 -= 1 } }
    func finish() { continuation.finish() }

    static func == (a: Session, b: Session) -> Bool { a === b }
    func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}

/// Connected sessions by user, the membership cache, presence, and fan-out.
public final class Hub: Sendable {
    struct State {
        var sessions: [UserID: Set<Session>] = [:]
        var members: [ConversationID: [UserID: MemberRole]] = [:]
        var types: [ConversationID: ConversationType] = [:]
        /// Bumped by every invalidation of a conversation (and `cacheEpoch` when the whole map is cleared): a load
        /// that started before an invalidation must not put its stale answer into the cache.
        var generations: [ConversationID: UInt64] = [:]
        var cacheEpoch: UInt64 = 0
        var blocked: [UserID: Set<UserID>] = [:]
        var lastSeen: [UserID: Int64] = [:]
        var arrivals: [String: ContinuousClock.Instant] = [:]
        var draining = false
    }
    private let state = LockedBox(State())
    let storage: any Storage
    let metrics: ServerMetrics
    let logger: Logger

    /// Reads a conversation and its members for the cache (storage's, or a test's that can hold a load back).
    let loadConversation: @Sendable (ConversationID) async throws -> Conversation?

    init(storage: any Storage, metrics: ServerMetrics, logger: Logger,
         loadConversation: (@Sendable (ConversationID) async throws -> Conversation?)? = nil) {
        self.storage = storage; self.metrics = metrics; self.logger = logger
        self.loadConversation = loadConversation ?? { try await storage.conversation(id: $0) }
    }

    var connectionCount: Int { state.withLock { $0.sessions.values.reduce(0) { $0 + $1.count } } }
    var isDraining: Bool { state.withLock { $0.draining } }

    // MARK: Sessions and presence

    /// Registers a session; returns false when the server is draining.
    func register(_ s: Session) -> Bool {
        let first: Bool? = state.withLock { st in
            if st.draining { return nil }
            let wasEmpty = st.sessions[s.user]?.isEmpty ?? true
            st.sessions[s.user, default: []].insert(s)
            return wasEmpty
        }
        guard let first else { return false }
        metrics.connections.increment()
        if first { announcePresence(user: s.user, status: .online, lastSeen: nil) }
        return true
    }

    func unregister(_ s: Session) {
        let last: Bool = state.withLock { st in
            guard st.sessions[s.user]?.remove(s) != nil else { return false }
            if st.sessions[s.user]?.isEmpty == true {
                st.sessions[s.user] = nil
                st.lastSeen[s.user] = nowMillis()
                return true
            }
            return false
        }
        s.finish()
        metrics.connections.decrement()
        if last { announcePresence(user: s.user, status: .offline, lastSeen: nowMillis()) }
    }

    func presence(of user: UserID) -> ServerFrame.Presence {
        state.withLock { st in
            if st.sessions[user]?.isEmpty == false { return .init(user: user, status: .online, lastSeen: nil) }
            return .init(user: user, status: .offline, lastSeen: st.lastSeen[user])
        }
    }

    /// Users who may see `user`'s presence: accepted contacts and fellow conversation members.
    func presenceAudience(of user: UserID) async throws -> Set<UserID> {
        var audience = Set<UserID>()
        for c in try await storage.contacts(owner: user) where c.state == .accepted { audience.insert(c.user.id) }
        for conv in try await storage.conversationIDs(for: user) {
            audience.formUnion(try await members(of: conv).keys)
        }
        audience.remove(user)
        return audience
    }

    private func announcePresence(user: UserID, status: PresenceStatus, lastSeen: Int64?) {
        Task {
            guard let audience = try? await presenceAudience(of: user) else { return }
            let frame = ServerFrame.presence(.init(user: user, status: status, lastSeen: lastSeen))
            send(frame, to: audience)
        }
    }

    func sessions(of user: UserID) -> [Session] { state.withLock { Array($0.sessions[user] ?? []) } }

    func send(_ frame: ServerFrame, to users: some Sequence<UserID>, except: Session? = nil) {
        let targets: [Session] = state.withLock { st in users.flatMap { st.sessions[$0] ?? [] } }
        for s in targets where s !== except { s.enqueue(.frame(frame)) }
    }

    /// Tells every client to reconnect elsewhere or later, and refuses new sessions.
    func drain(reason: String) -> [Session] {
        let all: [Session] = state.withLock { st in
            st.draining = true
            return st.sessions.values.flatMap { $0 }
        }
        for s in all {
            s.enqueue(.frame(.reconnect(.init(reason: reason))))
            s.enqueue(.close(reason: reason))
        }
        return all
    }

    // MARK: Membership cache

    /// Members and roles of `conv` (empty if it doesn't exist), from the cache or storage.
    func members(of conv: ConversationID) async throws -> [UserID: MemberRole] {
        try await conversationInfo(conv).members
    }

    /// The conversation's type (nil if it doesn't exist) and members, from the cache or storage.
    func conversationInfo(_ conv: ConversationID) async throws -> (type: ConversationType?, members: [UserID: MemberRole]) {
        let (cached, stamp) = state.withLock { st -> ((type: ConversationType?, members: [UserID: MemberRole])?, (epoch: UInt64, generation: UInt64)) in
            (st.members[conv].map { (st.types[conv], $0) }, (st.cacheEpoch, st.generations[conv, default: 0]))
        }
        if let cached { return cached }
        let loaded = try await loadConversation(conv)
        let map = Dictionary(uniqueKeysWithValues: (loaded?.members ?? []).map { ($0.user, $0.role) })
        if let loaded { state.withLock { st in
            // Invalidated while we read: what we read may predate the change, so answer with it but do not keep it.
            guard st.cacheEpoch == stamp.epoch, st.generations[conv, default: 0] == stamp.generation else { return }
            if st.members.count > 200_000 {
                st.members.removeAll(keepingCapacity: true); st.types.removeAll(keepingCapacity: true)
                st.generations.removeAll(keepingCapacity: true); st.cacheEpoch &+= 1
            }
            st.members[conv] = map
            st.types[conv] = loaded.type
        } }
        return (loaded?.type, map)
    }

    func invalidate(_ conv: ConversationID) {
        state.withLock { st in
            st.members.removeValue(forKey: conv)
            st.types.removeValue(forKey: conv)
            if st.generations.count > 200_000 { st.generations.removeAll(keepingCapacity: true); st.cacheEpoch &+= 1 }
            st.generations[conv, default: 0] &+= 1
        }
    }

    /// The users `user` has blocked, from the cache or storage.
    func blocked(by user: UserID) async throws -> Set<UserID> {
        if let cached = state.withLock({ $0.blocked[user] }) { return cached }
        let set = Set(try await storage.contacts(owner: user).filter { $0.state == .blocked }.map(\.user.id))
        state.withLock { st in
            if st.blocked.count > 200_000 { st.blocked.removeAll(keepingCapacity: true) }
            st.blocked[user] = set
        }
        return set
    }

    func invalidateBlocks(_ users: UserID...) {
        state.withLock { st in for u in users { st.blocked.removeValue(forKey: u) } }
    }

    // MARK: Fan-out

    func noteArrival(sender: UserID, cid: String, at: ContinuousClock.Instant) {
        state.withLock { $0.arrivals["\(sender):\(cid)"] = at }
    }

    func takeArrival(sender: UserID, cid: String) -> ContinuousClock.Instant? {
        state.withLock { $0.arrivals.removeValue(forKey: "\(sender):\(cid)") }
    }

    /// Delivers newly committed messages (in seq order) to every session of every member.
    func deliver(_ messages: [Message]) {
        var missing: [Message] = []
        for m in messages {
            let targets: [Session]? = state.withLock { st in
                guard let members = st.members[m.conversation] else { return nil }
                return members.keys.flatMap { st.sessions[$0] ?? [] }
            }
            guard let targets else { missing.append(m); continue }
            let arrival = takeArrival(sender: m.sender, cid: m.cid)
            let frame = FrameCodec.encode(.msg(m))
            for s in targets { s.enqueue(.message(m, arrival: arrival, frame: frame)) }
        }
        if !missing.isEmpty {
            // Not cached (rare: evicted between check and commit). Sessions order and gap-fill by seq, so late is safe.
            Task {
                for m in missing {
                    guard let members = try? await self.members(of: m.conversation) else { continue }
                    for u in members.keys { for s in sessions(of: u) { s.enqueue(.message(m, arrival: nil, frame: FrameCodec.encode(.msg(m)))) } }
                }
            }
        }
    }
}

func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

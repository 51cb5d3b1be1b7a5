import Foundation
import HeapModule
import IMCore
import IMStorage
import Logging
import NIOCore
import NIOWebSocket

/// What a connection's writer task is asked to do, in order.
enum Outgoing: Sendable {
    case frame(ServerFrame)
    /// A committed message, with its `msg` frame already encoded (once, for every recipient).
    case message(Message, arrival: ContinuousClock.Instant?, frame: String)
    case sync(ClientFrame.Sync)
    /// Close the socket with `code` (see `CloseCode`).
    case close(reason: String, code: WebSocketErrorCode = .goingAway)

    /// Roughly what the item holds in memory until written: the encoded text for messages, an estimate for the
    /// small frames (receipts, typing, presence, acks and errors are all well under this).
    var estimatedBytes: Int {
        switch self {
        case .message(_, _, let frame): frame.utf8.count + 64
        case .frame(.msg(let m)): (m.text?.utf8.count ?? 0) + 256
        case .frame, .sync, .close: 256
        }
    }
}

/// WebSocket close codes the server uses besides the standard ones (documented in docs/protocol.md).
enum CloseCode {
    /// The login session ended (password changed or reset, logout, refresh-token reuse, account disabled):
    /// refreshing will not help; log in again.
    static let sessionEnded = WebSocketErrorCode(codeNumber: 4001)
    /// The access token the socket authenticated with expired and no new one was sent on it: refresh and reconnect.
    static let tokenExpired = WebSocketErrorCode(codeNumber: 4002)
    /// The user already has `limits.connections_per_user` sockets open.
    static let tooManyConnections = WebSocketErrorCode(codeNumber: 4008)
}

/// One authenticated WebSocket connection, as the hub sees it.
///
/// What goes out is queued here, in order. No task waits on the queue: the drain given to `startWriting` runs in a
/// task of its own when something is queued and none runs, takes items with `take()` until there are none, and
/// ends. An idle socket so has no writer task at all (a task costs an idle socket kilobytes: docs/benchmarks.md).
final class Session: Sendable, Hashable {
    let id: String
    let user: UserID
    /// Writes what is queued, in a task.
    typealias Drain = @Sendable (Session) async -> Void
    /// Writes what is queued on the calling thread as far as it can without waiting; returns a drain for the rest
    /// (run in a task), or nil once `take()` has returned nil (writing ended) or writing stopped.
    typealias Writer = @Sendable (Session) -> Drain?
    private struct Queue {
        var items = CircularBuffer<Outgoing>()
        var bytes = 0
        var syncInFlight = false
        var closed = false
        /// Nothing more is queued (the socket is ending, or fell too far behind).
        var finished = false
        /// The writer, once writing started, and whether it (or a drain it left) runs now.
        var writer: Writer?
        var writing = false
        /// The login session (token family) of the socket's newest access token, and when that token expires.
        var sid: String
        var exp: Int64
    }
    private let queue: LockedBox<Queue>
    let maxQueued: Int
    let maxQueuedBytes: Int
    /// A client that falls this far behind is disconnected; it resumes from its cursors when it returns.
    static let defaultMaxQueued = 20_000
    /// The same by bytes, so 20,000 large frames cannot pile up in memory.
    static let defaultMaxQueuedBytes = 16 << 20

    init(user: UserID, sid: String = "", exp: Int64 = .max, maxQueued: Int = Session.defaultMaxQueued,
         maxQueuedBytes: Int = Session.defaultMaxQueuedBytes) {
        self.id = TokenService.randomToken(bytes: 9)
        self.user = user
        self.maxQueued = maxQueued
        self.maxQueuedBytes = maxQueuedBytes
        queue = LockedBox(Queue(sid: sid, exp: exp))
    }

    /// The login session this socket belongs to.
    var sid: String { queue.withLock { $0.sid } }
    /// When the socket's access token expires (seconds since 1970).
    var expiry: Int64 { queue.withLock { $0.exp } }

    /// Records a fresh access token sent on the socket (`auth` again): its session and expiry.
    func reauthenticated(sid: String, exp: Int64) {
        queue.withLock { $0.sid = sid; $0.exp = exp }
    }

    /// A close is queued: nothing more goes out on the socket.
    var isClosing: Bool { queue.withLock { $0.closed } }

    /// Queues `o` for the writer. Past the frame count or the byte budget the socket is closed instead (1001);
    /// nothing is queued after a close.
    ///
    /// The writer runs on the calling thread, or (`inWriterTask`) in a task of its own, for a caller whose time is
    /// precious: the committer, which must get back to committing. (Run on the socket's event loop instead, the
    /// committer's acks cost one-in-flight senders 10 % of their rate: docs/benchmarks.md.)
    func enqueue(_ o: Outgoing, inWriterTask: Bool = false) {
        let size = o.estimatedBytes
        let start = queue.withLock { q -> Writer? in
            if q.closed || q.finished { return nil }
            if q.items.count + 1 > maxQueued || q.bytes + size > maxQueuedBytes {
                q.closed = true
                q.finished = true
                let close = Outgoing.close(reason: "too far behind; reconnect and resume", code: .goingAway)
                q.bytes += close.estimatedBytes
                q.items.append(close)
            } else {
                if case .close = o { q.closed = true }
                q.bytes += size
                q.items.append(o)
            }
            return Self.claimWriter(&q)
        }
        guard let start else { return }
        if inWriterTask {
            Task.detached { [self] in if let rest = start(self) { await rest(self) } }
        } else {
            Self.run(start, self)
        }
    }

    /// Starts writing: `writer` runs now if anything is queued, and from now on whenever something is and it does
    /// not run already.
    func startWriting(_ writer: @escaping Writer) {
        let start = queue.withLock { q -> Writer? in
            q.writer = writer
            return q.items.isEmpty && !q.finished ? nil : Self.claimWriter(&q)
        }
        if let start { Self.run(start, self) }
    }

    /// The writer (for the caller to run) unless it runs already.
    private static func claimWriter(_ q: inout Queue) -> Writer? {
        guard !q.writing, let writer = q.writer else { return nil }
        q.writing = true
        return writer
    }

    /// The writer on this thread; what it leaves, in a task (detached: it needs none of the caller's task-local
    /// values, and copying them costs a slab per task).
    private static func run(_ writer: @escaping Writer, _ session: Session) {
        if let rest = writer(session) { Task.detached { await rest(session) } }
    }

    /// The next item to write; nil when there is none, and writing ends (the writer runs again with the next item).
    func take() -> Outgoing? {
        queue.withLock { q in
            guard let o = q.items.popFirst() else {
                q.writing = false
                return nil
            }
            q.bytes -= o.estimatedBytes
            return o
        }
    }

    /// Nothing more will be queued, and nothing more is waiting.
    var isFinished: Bool { queue.withLock { $0.finished && $0.items.isEmpty } }

    /// A drain is running (what is queued is being written).
    var isWriting: Bool { queue.withLock { $0.writing } }

    /// The writer cannot write any more (the socket closed or failed) and ends: what is queued is dropped, nothing
    /// more is.
    func stopWriting() {
        queue.withLock { q in
            q.closed = true
            q.finished = true
            q.items.removeAll()
            q.bytes = 0
            q.writing = false
            q.writer = nil   // it holds the connection, which holds this session
        }
    }

    /// What is queued, as a stream that ends after `finish()` (tests read a session so; the gateway writes with
    /// `startWriting`).
    var stream: AsyncStream<Outgoing> {
        let (stream, continuation) = AsyncStream.makeStream(of: Outgoing.self)
        startWriting { session in
            while let o = session.take() { continuation.yield(o) }
            if session.isFinished { continuation.finish() }
            return nil
        }
        return stream
    }

    /// Queues a sync unless one is already queued or running; false if one is.
    func enqueueSync(_ s: ClientFrame.Sync) -> Bool {
        let free = queue.withLock { q -> Bool in
            if q.syncInFlight { return false }
            q.syncInFlight = true
            return true
        }
        if free { enqueue(.sync(s)) }
        return free
    }

    /// The writer finished a sync (written or failed).
    func syncDone() { queue.withLock { $0.syncInFlight = false } }

    /// Ends the socket with `code` after the frames already queued.
    func end(_ code: WebSocketErrorCode, reason: String, error: IMError? = nil) {
        if let error { enqueue(.frame(.error(.init(code: error.code, message: error.message)))) }
        enqueue(.close(reason: reason, code: code))
    }

    /// Nothing more is queued; what is queued still goes out.
    func finish() {
        let start = queue.withLock { q -> Writer? in
            if q.finished { return nil }
            q.finished = true
            return Self.claimWriter(&q)
        }
        if let start { Self.run(start, self) }
    }

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
        /// Mutes of the conversations in `members` that have any (Hub+Mutes.swift); cached and dropped with them.
        var restrictions: [ConversationID: SendRestrictions] = [:]
        var lastSeen: [UserID: Int64] = [:]
        var arrivals: [String: ContinuousClock.Instant] = [:]
        var draining = false
    }
    private let state = LockedBox(State())
    /// When each socket's access token expires, soonest first: the expiry sweep reads only what is due instead of
    /// every session (15,000 idle sockets made a sweep of all of them, 4 times a second, hold the hub's lock).
    private let expiries = LockedBox(Heap<Expiry>())
    struct Expiry: Comparable {
        let at: Int64
        weak var session: Session?
        static func < (a: Expiry, b: Expiry) -> Bool { a.at < b.at }
        static func == (a: Expiry, b: Expiry) -> Bool { a.at == b.at }
    }
    let storage: any Storage
    let metrics: ServerMetrics
    let logger: Logger

    /// Where sessions report a finished sync, and where presence is decided; set once when the cluster is on.
    /// (What other nodes must hear goes through `bus`.)
    struct ClusterHooks: Sendable {
        var synced: @Sendable (_ cursors: [ConversationID: Int64], _ more: Set<ConversationID>) -> Void
        /// The user's first socket here opened (`online`) or its last one closed: with sockets possibly on other
        /// nodes, the cluster decides what the user's audience hears.
        var presence: @Sendable (_ user: UserID, _ online: Bool, _ lastSeen: Int64?) -> Void
    }
    private let cluster = LockedBox<ClusterHooks?>(nil)

    func connectCluster(_ hooks: ClusterHooks) { cluster.withLock { $0 = hooks } }

    /// Reads a conversation and its members for the cache (storage's, or a test's that can hold a load back).
    let loadConversation: @Sendable (ConversationID) async throws -> Conversation?

    /// Where cross-session effects go; `FanOutService` applies them here (`apply`).
    let bus: any FanOutBus

    init(storage: any Storage, metrics: ServerMetrics, logger: Logger, bus: any FanOutBus = LocalFanOutBus(),
         loadConversation: (@Sendable (ConversationID) async throws -> Conversation?)? = nil) {
        self.storage = storage; self.metrics = metrics; self.logger = logger; self.bus = bus
        self.loadConversation = loadConversation ?? { try await storage.conversation(id: $0) }
    }

    var connectionCount: Int { state.withLock { $0.sessions.values.reduce(0) { $0 + $1.count } } }
    var isDraining: Bool { state.withLock { $0.draining } }

    // MARK: Sessions and presence

    enum Registration { case registered, draining, tooManyConnections }

    /// Registers a session unless the server is draining or the user already has `maxPerUser` sockets.
    func register(_ s: Session, maxPerUser: Int = .max) -> Registration {
        let outcome: (Registration, first: Bool) = state.withLock { st in
            if st.draining { return (.draining, false) }
            if (st.sessions[s.user]?.count ?? 0) >= maxPerUser { return (.tooManyConnections, false) }
            let wasEmpty = st.sessions[s.user]?.isEmpty ?? true
            st.sessions[s.user, default: []].insert(s)
            return (.registered, wasEmpty)
        }
        guard outcome.0 == .registered else { return outcome.0 }
        scheduleExpiry(of: s)
        metrics.connections.increment()
        if outcome.first { announcePresence(user: s.user, status: .online, lastSeen: nil) }
        return .registered
    }

    /// Closes the user's sockets (all of them, or those of one login session) with `CloseCode.sessionEnded`, here
    /// and (unless this is another node's word) on the other nodes.
    func endSessions(of user: UserID, sid: String? = nil, reason: String, announce: Bool = true) {
        if announce {
            bus.publish(.sessionsEnded(user: user, sid: sid, reason: reason))
            return
        }
        for s in sessions(of: user) where sid == nil || s.sid == sid {
            s.end(CloseCode.sessionEnded, reason: reason, error: IMError(.unauthorized, reason + "; log in again"))
        }
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
        if let hooks = cluster.withLock({ $0 }) {
            hooks.presence(user, status == .online, lastSeen)
            return
        }
        fanOutPresence(.init(user: user, status: status, lastSeen: lastSeen))
    }

    /// Tells the user's audience connected here that the user is online or offline (through the bus).
    func fanOutPresence(_ presence: ServerFrame.Presence) {
        bus.publish(.presence(presence))
    }

    /// When the user was last online on any node (another node's word, for `presence(of:)`).
    func noteLastSeen(_ user: UserID, at: Int64) {
        state.withLock { st in
            if st.lastSeen.count > 200_000 { st.lastSeen.removeAll(keepingCapacity: true) }
            st.lastSeen[user] = max(st.lastSeen[user] ?? at, at)
        }
    }

    /// A read or delivered cursor advanced: tells the members' sessions here, and the other nodes'.
    func publishReceipt(_ receipt: ServerFrame.Receipt, to members: some Sequence<UserID>) {
        bus.publish(.receipt(receipt, members: Array(members)))
    }

    /// The user saved or deleted a draft: tells all of the user's sessions, here and on the other nodes.
    func publishDraft(_ draft: Draft, user: UserID) {
        bus.publish(.draft(draft, user: user))
    }

    /// Someone started or stopped typing: tells the other members' sessions here, and the other nodes'.
    func publishTyping(_ typing: ServerFrame.Typing, to members: some Sequence<UserID>) {
        bus.publish(.typing(typing, members: Array(members)))
    }

    func sessions(of user: UserID) -> [Session] { state.withLock { Array($0.sessions[user] ?? []) } }

    /// Notes when the session's access token expires (at registration, and again after `auth` on the socket).
    func scheduleExpiry(of s: Session) {
        let exp = s.expiry
        guard exp < Int64.max / 1000 else { return }   // a token that does not expire (a bot's)
        expiries.withLock { $0.insert(Expiry(at: exp, session: s)) }
    }

    /// The sessions whose access token expired by `nowMillis`, were not given a fresh one, and are not closing
    /// already (`SessionExpiryService`).
    func expiredSessions(nowMillis: Int64) -> [Session] {
        let due: [Expiry] = expiries.withLock { heap in
            var due: [Expiry] = []
            while let next = heap.min, next.at * 1000 <= nowMillis { due.append(heap.removeMin()) }
            return due
        }
        return due.compactMap { e in
            guard let s = e.session, s.expiry == e.at, !s.isClosing else { return nil }
            return s
        }
    }

    /// Every socket on this node now.
    var allSessions: [Session] { state.withLock { st in st.sessions.values.flatMap { $0 } } }

    /// Users with at least one socket on this node.
    var connectedUsers: [UserID] { state.withLock { Array($0.sessions.keys) } }

    func hasSessions(anyOf users: some Sequence<UserID>) -> Bool {
        state.withLock { st in users.contains { st.sessions[$0]?.isEmpty == false } }
    }

    /// A session finished a sync and stands at these cursors (the cluster reads again whatever came after).
    func sessionSynced(_ synced: ServerFrame.Synced) {
        guard let hooks = cluster.withLock({ $0 }) else { return }
        var cursors: [ConversationID: Int64] = [:]
        for (k, v) in synced.cursors { if let c = ConversationID(k) { cursors[c] = v } }
        hooks.synced(cursors, Set(synced.more))
    }

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
                st.members.removeAll(keepingCapacity: true); st.types.removeAll(keepingCapacity: true); st.restrictions.removeAll()
                st.generations.removeAll(keepingCapacity: true); st.cacheEpoch &+= 1
            }
            st.members[conv] = map
            st.types[conv] = loaded.type
            let restrictions = SendRestrictions(loaded)
            st.restrictions[conv] = restrictions.isEmpty ? nil : restrictions
        } }
        return (loaded?.type, map)
    }

    /// Who may not send in `conv` now (mutes): cached with the conversation's members and dropped with them, here
    /// and on the other nodes, by `invalidate`, so checking a send costs a dictionary lookup.
    func sendRestrictions(_ conv: ConversationID) async throws -> SendRestrictions {
        if let cached = state.withLock({ st in st.members[conv] != nil ? (st.restrictions[conv] ?? SendRestrictions()) : nil }) {
            return cached
        }
        guard let loaded = try await loadConversation(conv) else { return SendRestrictions() }
        return SendRestrictions(loaded)
    }

    /// Forgets the cached members of `conv`, here and (unless this is another node's word) on the other nodes.
    /// The cache entry goes at once (authorisation reads right after the change depend on it); the bus carries the
    /// change to whoever else caches it.
    func invalidate(_ conv: ConversationID, announce: Bool = true) {

        state.withLock { st in
            st.members.removeValue(forKey: conv)
            st.types.removeValue(forKey: conv)
            st.restrictions.removeValue(forKey: conv)
            if st.generations.count > 200_000 { st.generations.removeAll(keepingCapacity: true); st.cacheEpoch &+= 1 }
            st.generations[conv, default: 0] &+= 1
        }
        if announce { bus.publish(.membersChanged([conv])) }
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

    func invalidateBlocks(_ users: UserID...) { invalidateBlocks(users) }

    func invalidateBlocks(_ users: [UserID], announce: Bool = true) {
        state.withLock { st in for u in users { st.blocked.removeValue(forKey: u) } }
        if announce { bus.publish(.blocksChanged(users)) }
    }

    /// Forgets every cached membership and block list (after the cluster's listener lost notices).
    func dropCaches() {
        state.withLock { st in
            st.members.removeAll(); st.types.removeAll(); st.generations.removeAll(); st.blocked.removeAll(); st.restrictions.removeAll()
            st.cacheEpoch &+= 1
        }
    }

    // MARK: Fan-out

    func noteArrival(sender: UserID, cid: String, at: ContinuousClock.Instant) {
        state.withLock { $0.arrivals["\(sender):\(cid)"] = at }
    }

    func takeArrival(sender: UserID, cid: String) -> ContinuousClock.Instant? {
        state.withLock { $0.arrivals.removeValue(forKey: "\(sender):\(cid)") }
    }

    /// Delivers newly committed messages (in seq order) to every session of every member (through the bus).
    func deliver(_ messages: [Message]) {
        bus.publish(.messages(messages))
    }

    /// Applies one event of the bus to the sessions here (`FanOutService`, the one consumer, calls it in order).
    /// Returns the part that must read storage first, for the caller to run beside the events that follow.
    func apply(_ event: FanOutEvent) -> (@Sendable () async -> Void)? {
        switch event {
        case .messages(let messages):
            return fanOut(messages)
        case .receipt(let receipt, let members):
            send(.receipt(receipt), to: members)
        case .typing(let typing, let members):
            send(.typing(typing), to: members.filter { $0 != typing.user })
        case .presence(let presence):
            if presence.status == .offline, let at = presence.lastSeen { noteLastSeen(presence.user, at: at) }
            return { [self] in
                guard let audience = try? await presenceAudience(of: presence.user) else { return }
                send(.presence(presence), to: audience)
            }
        case .membersChanged, .blocksChanged:
            break   // this hub dropped its entries when it published
        case .sessionsEnded(let user, let sid, let reason):
            endSessions(of: user, sid: sid, reason: reason, announce: false)
        case .draft(let draft, let user):
            send(.draft(draft), to: [user])
        }
        return nil
    }

    /// Hands each message to its members' sessions; returns the delivery of those whose members are not cached.
    private func fanOut(_ messages: [Message]) -> (@Sendable () async -> Void)? {
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
        guard !missing.isEmpty else { return nil }
        // Not cached (rare: evicted between check and commit). Sessions order and gap-fill by seq, so late is safe.
        return { [self, missing] in
            for m in missing {
                guard let members = try? await self.members(of: m.conversation) else { continue }
                for u in members.keys { for s in sessions(of: u) { s.enqueue(.message(m, arrival: nil, frame: FrameCodec.encode(.msg(m)))) } }
            }
        }
    }
}

func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

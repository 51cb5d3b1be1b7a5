import Foundation
import HummingbirdWebSocket
import IMCore
import IMStorage
import Logging
import NIOCore
import NIOWebSocket

/// Runs the WebSocket connections: each socket's authentication, frames and ordered writer in its `GatewayConnection`.
///
/// A class, not a struct: every async function and child task of a connection keeps its `self` in its frame for
/// the connection's lifetime, and as a struct that was a copy of the whole `ServerConfig` each; as a class it is
/// one pointer (68 → 63 KB per idle connection, docs/benchmarks.md).
final class Gateway: Sendable {
    let service: IMService
    let tokens: TokenService
    let metrics: ServerMetrics
    let config: ServerConfig

    init(service: IMService, tokens: TokenService, metrics: ServerMetrics, config: ServerConfig) {
        self.service = service; self.tokens = tokens; self.metrics = metrics; self.config = config
    }
    var hub: Hub { service.hub }
    var storage: any Storage { service.storage }

    /// Messages larger than the configured frame limit (up to this multiple of it) get an error frame and the
    /// connection lives on; beyond it the connection is closed with 1009.
    static let hardLimitFactor = 4

    var verifier: AccessVerifier { AccessVerifier(tokens: tokens, storage: storage) }

    var throttleLimits: FrameThrottle.Limits {
        FrameThrottle.Limits(typingPerSecond: config.limits.typingPerSecond, receiptsPerSecond: config.limits.receiptsPerSecond,
                             syncsPerSecond: config.limits.syncsPerSecond)
    }

    /// A new socket, upgraded: its messages go to the connection it returns (on the socket's event loop).
    func accept(_ out: SocketOut, logger: Logger) -> GatewayConnection {
        let connection = GatewayConnection(gateway: self, outbound: out, logger: logger)
        connection.started()
        return connection
    }

    /// A bot token does not expire, but may be revoked where this node does not hear of it (`warbler bots revoke`
    /// writes the database directly): its sockets re-check now and then.
    func botRevocationCheck(_ session: Session) async {
        let period = Duration.milliseconds(Int64(config.bots.revocationCheckSeconds * 1000))
        while !Task.isCancelled {
            try? await Task.sleep(for: period)
            if Task.isCancelled { return }
            let claims = AccessClaims(sub: session.user, adm: false, sid: session.sid, iat: 0, exp: 0, iss: TokenService.issuer)
            do { try await verifier.stillValid(claims) } catch let e as IMError {
                session.end(CloseCode.sessionEnded, reason: "session ended", error: e)
                return
            } catch {}
        }
    }

    func closeWith(_ outbound: SocketOut, _ e: IMError) async {
        metrics.errors.increment()
        try? await outbound.writeTextMessage(FrameCodec.encode(.error(.init(code: e.code, message: e.message))))
        outbound.close(.policyViolation, reason: e.code.rawValue)
    }

    enum Admission { case handle, answered, close }

    /// Applies the per-connection limits on typing, receipts and syncs (a sync is queued here, one at a time).
    /// A frame that is coalesced or over its limit is answered here and not handled; an abusive connection closes.
    func admit(_ frame: ClientFrame, session: Session, throttle: inout FrameThrottle) -> Admission {
        let now = ContinuousClock.now
        var verdict: FrameThrottle.Verdict
        let what: String
        switch frame {
        case .typing(let t): verdict = throttle.typing(t, now: now); what = "typing frames"
        case .receipt(let r): verdict = throttle.receipt(r, now: now); what = "receipts"
        case .sync: verdict = throttle.sync(now: now); what = "syncs"
        case .auth: verdict = throttle.reauthentication(now: now); what = "auth frames"
        default: return .handle
        }
        var message = "too many \(what) on this connection; slow down"
        if case .sync(let s) = frame, verdict == .allow {
            if session.enqueueSync(s) { return .answered }
            verdict = throttle.refused(now: now)
            message = "a sync is already running on this connection; wait for its synced"
        }
        switch verdict {
        case .allow: return .handle
        case .coalesce: return .answered
        case .limit(let wait):
            fail(session, IMError(.rateLimited, message), retryAfter: wait)
            return .answered
        case .abusive:
            metrics.errors.increment()
            session.end(.policyViolation, reason: "too many refused frames", error: IMError(.rateLimited, "too many refused frames; closing"))
            return .close
        }
    }

    func fail(_ session: Session, _ e: IMError, cid: String? = nil, retryAfter: Double? = nil) {
        metrics.errors.increment()
        session.enqueue(.frame(.error(.init(code: e.code, message: e.message, cid: cid, retryAfter: retryAfter))))
    }

    func handle(_ frame: ClientFrame, session: Session, bot: [BotScope]?, bucket: inout TokenBucket, lastSend: inout AppendTicket?, logger: Logger) async throws {
        let user = session.user
        switch frame {
        case .auth(let a):
            // A fresh access token on an open socket keeps it open past the old token's expiry.
            let claims = try await verifier.verify(a.token).claims
            guard claims.sub == user else { throw IMError.invalid("a connection stays with the user it authenticated as") }
            session.reauthenticated(sid: claims.sid, exp: claims.exp)
            hub.scheduleExpiry(of: session)
            session.enqueue(.frame(.ready(.init(user: user, session: session.id, serverTime: nowMillis(), exp: claims.exp))))
        case .ping(let p):
            session.enqueue(.frame(.pong(p)))
        case .sync(let s):
            _ = session.enqueueSync(s)   // `admit` queues syncs; this is not reached
        case .send, .recall, .edit, .react:
            if let bot {
                guard bot.contains(.send) else { throw IMError.forbidden("this bot token lacks the 'send' scope") }
                try service.checkBotSendRate(user)
            }
            if let wait = bucket.take() {
                metrics.errors.increment()
                let wait2 = (wait * 1000).rounded(.up) / 1000
                session.enqueue(.frame(.error(.init(code: .rateLimited, message: "more than \(Int(config.limits.sendsPerSecond)) sends per second; slow down",
                                                    cid: frame.cid, retryAfter: wait2))))
                return
            }
            let arrival = ContinuousClock.now
            let message: NewMessage
            switch frame {
            case .send(let f): message = try await service.prepare(f, from: user)
            case .recall(let f): message = try await service.prepareRecall(f, from: user)
            case .edit(let f): message = try await service.prepareEdit(f, from: user)
            case .react(let f): message = try await service.prepareReaction(f, from: user)
            default: return
            }
            hub.noteArrival(sender: user, cid: message.cid, at: arrival)
            // Submitting here, in frame order, keeps one connection's sends in order. The ack is queued by the
            // committer right after the commit (after the message's own fan-out), with no task per send.
            let ticket = await storage.submit(message)
            lastSend = ticket
            let metrics = self.metrics, hub = self.hub
            ticket.onCompletion { outcome in
                let frame: ServerFrame
                do {
                    switch try outcome.get() {
                    case .success(let r):
                        frame = .ack(.init(cid: message.cid, conv: r.message.conversation, seq: r.message.seq, ts: r.message.ts, duplicate: r.duplicate))
                        if r.duplicate {
                            metrics.sendDuplicates.increment()
                            _ = hub.takeArrival(sender: user, cid: message.cid)
                        } else {
                            metrics.recordSend()
                        }
                        metrics.sendToAck.record(arrival.duration(to: .now))
                    case .failure(let e):
                        _ = hub.takeArrival(sender: user, cid: message.cid)
                        metrics.errors.increment()
                        frame = .error(.init(code: e.code, message: e.message, cid: message.cid))
                    }
                } catch {
                    _ = hub.takeArrival(sender: user, cid: message.cid)
                    logger.error("storage failed: \(error)")
                    metrics.errors.increment()
                    // A database failover is under way (or the database is unreachable): the send was not stored; the
                    // client retries it with the same cid each second until it is (docs/protocol.md, "Errors").
                    frame = .error(.init(code: .unavailable, message: "storage is unavailable; retry the send with the same cid", cid: message.cid,
                                         retryAfter: 1))
                }
                session.enqueue(.frame(frame), inWriterTask: true)   // not on the committer's thread
            }
        case .receipt(let r):
            try await service.receipt(user, r)
        case .typing(let t):
            try await service.typing(user, t)
        }
    }

}

extension ClientFrame {
    /// The client message id a frame carries, if any, so errors can name the send they answer.
    var cid: String? {
        switch self {
        case .send(let f): f.cid
        case .recall(let f): f.cid
        case .edit(let f): f.cid
        case .react(let f): f.cid
        default: nil
        }
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var l = self
        l[metadataKey: key] = .string(value)
        return l
    }
}

/// One WebSocket's state between its `SocketHandler`, on the event loop, and the short tasks that handle its frames
/// and write to it.
///
/// Frames are handled in order, by one task at a time: the socket's handler queues a frame, and a task is started
/// when none runs; it handles frames until there are none and ends. The session's writer works the same way
/// (`Session.startWriting`). So an idle authenticated socket has no task at all; the deep work (verifying tokens,
/// preparing and submitting sends, reading storage for a sync) runs in tasks that end, so its async frames do not
/// stay allocated for the socket's lifetime (docs/benchmarks.md, "Memory per authenticated idle WebSocket").
///
/// `@unchecked Sendable`: the handling state (`session` to `lastSend`) is touched by the one handling task at a
/// time, and after it by `end()` once no handling task runs; `delivery` by the one writer task at a time. Both
/// hand-overs go through a lock (`pending`, the session's queue).
final class GatewayConnection: SocketDelegate, @unchecked Sendable {
    let gateway: Gateway
    let outbound: SocketOut
    let logger: Logger
    /// The socket stops reading while this many frames wait to be handled (its backpressure), and reads again
    /// once half of them are.
    static let maxPending = 64

    private struct Pending {
        var frames = CircularBuffer<WebSocketMessage>()
        /// A task handles frames now.
        var handling = false
        /// The socket is ending: frames are dropped.
        var stopped = false
        /// The socket stopped reading for want of room.
        var paused = false
        var authTimer: Scheduled<Void>?
    }
    private let pending = LockedBox(Pending())

    // The handling task's.
    private var session: Session?
    private var bot: [BotScope]?
    private var log: Logger
    private var bucket: TokenBucket
    private var throttle: FrameThrottle
    private var lastSend: AppendTicket?
    private var botCheck: Task<Void, Never>?
    // The writer task's.
    private var delivery = DeliveryStateMachine()

    init(gateway: Gateway, outbound: SocketOut, logger: Logger) {
        self.gateway = gateway
        self.outbound = outbound
        self.logger = logger
        log = logger
        bucket = TokenBucket(rate: gateway.config.limits.sendsPerSecond, burst: gateway.config.limits.sendBurst)
        throttle = FrameThrottle(limits: gateway.throttleLimits)
    }

    /// The socket is open; the first frame must be `auth`, within 10 seconds.
    func started() {
        let timer = outbound.after(.seconds(10)) { [weak self] in
            self?.outbound.close(.policyViolation, reason: "authenticate within 10 seconds")
            self?.stop()
        }
        pending.withLock { $0.authTimer = timer }
    }

    // MARK: Reading

    /// Queues a frame the socket read. False (stop reading) while `maxPending` frames wait.
    func received(_ message: WebSocketMessage) -> Bool {
        let (start, full) = pending.withLock { p -> (Bool, Bool) in
            if p.stopped { return (false, false) }
            p.frames.append(message)
            let start = !p.handling
            p.handling = true
            if p.frames.count >= Self.maxPending { p.paused = true }
            return (start, p.paused)
        }
        if start { Task.detached { await self.handleQueued() } }
        return !full
    }

    /// The socket closed or is closing: the frames it read are handled, what is queued is written (for at most
    /// 2 s), and the session ends.
    func readerEnded() {
        pending.withLock { $0.authTimer?.cancel() }
        Task.detached { await self.end() }
    }

    private func handleQueued() async {
        while let message = nextFrame() { await handle(message) }
    }

    private func nextFrame() -> WebSocketMessage? {
        let (message, resume) = pending.withLock { p -> (WebSocketMessage?, Bool) in
            guard !p.stopped, let m = p.frames.popFirst() else {
                p.handling = false
                defer { p.paused = false }
                return (nil, p.paused)
            }
            guard p.paused, p.frames.count < Self.maxPending / 2 else { return (m, false) }
            p.paused = false
            return (m, true)
        }
        if resume { outbound.resumeReading() }
        return message
    }

    /// The socket must end (refused, or abusive): frames not handled yet are dropped. A client that does not answer
    /// the close frame within 2 s has its connection closed.
    private func stop() {
        let resume = pending.withLock { p -> Bool in
            p.stopped = true
            p.frames.removeAll()
            defer { p.paused = false }
            return p.paused
        }
        if resume { outbound.resumeReading() }
        let out = outbound
        out.after(.seconds(2)) { out.abort() }
    }

    // MARK: Handling

    private func handle(_ message: WebSocketMessage) async {
        if let session { await handle(message, session: session) } else { await authenticate(message) }
    }

    private func authenticate(_ first: WebSocketMessage) async {
        let g = gateway
        guard case .text(let text) = first, case .success(.auth(let auth)) = FrameCodec.decodeClient(text) else {
            await g.closeWith(outbound, IMError(.notAuthenticated, "the first frame must be {\"type\":\"auth\",\"token\":ACCESS_TOKEN}"))
            return stop()
        }
        let claims: AccessClaims
        do {
            claims = try await g.verifier.verify(auth.token).claims
        } catch let e as IMError {
            await g.closeWith(outbound, e)
            return stop()
        } catch {
            outbound.close(.normalClosure, reason: nil)
            return stop()
        }
        pending.withLock { $0.authTimer?.cancel() }
        // A bot's socket is its event stream: the token must allow reading.
        if let scopes = claims.scopes, !scopes.contains(.read) {
            await g.closeWith(outbound, IMError.forbidden("this bot token lacks the 'read' scope the WebSocket needs; send with POST /v1/bot/messages"))
            return stop()
        }

        let session = Session(user: claims.sub, sid: claims.sid, exp: claims.exp)
        switch g.hub.register(session, maxPerUser: g.config.limits.connectionsPerUser) {
        case .registered:
            break
        case .draining:
            try? await outbound.writeTextMessage(FrameCodec.encode(.reconnect(.init(reason: "server is restarting"))))
            outbound.close(.goingAway, reason: "server is restarting")
            return stop()
        case .tooManyConnections:
            let e = IMError(.rateLimited, "this account already has \(g.config.limits.connectionsPerUser) connections open; close one first")
            g.metrics.errors.increment()
            try? await outbound.writeTextMessage(FrameCodec.encode(.error(.init(code: e.code, message: e.message))))
            outbound.close(CloseCode.tooManyConnections, reason: "too many connections")
            return stop()
        }
        self.session = session
        bot = claims.scopes
        log = logger.with("im.user", "\(claims.sub)").with("im.conn", session.id)
        log.debug("connected")
        session.enqueue(.frame(.ready(.init(user: claims.sub, session: session.id, serverTime: nowMillis(), exp: claims.exp))))
        // A revocation that raced the handshake (after the check above, before `register`) still ends the socket.
        do { try await g.verifier.stillValid(claims) } catch let e as IMError {
            session.end(CloseCode.sessionEnded, reason: "session ended", error: e)
        } catch {}
        if bot != nil { botCheck = Task.detached { await g.botRevocationCheck(session) } }
        session.startWriting { [self] session in writer(session) }
    }

    private func handle(_ next: WebSocketMessage, session: Session) async {
        let g = gateway
        guard case .text(let text) = next else {
            g.fail(session, IMError(.badFrame, "frames must be JSON text, not binary"))
            return
        }
        guard text.utf8.count <= g.config.limits.frameBytes else {
            let e = IMError(.tooLarge, "frame is \(text.utf8.count) bytes; the limit is \(g.config.limits.frameBytes)")
            g.fail(session, e, cid: FrameCodec.clientID(in: text))
            return
        }
        let frame: ClientFrame
        switch FrameCodec.decodeClientFrame(text) {
        case .success(let f): frame = f
        case .failure(let f): g.fail(session, f.error, cid: f.cid); return
        }
        switch g.admit(frame, session: session, throttle: &throttle) {
        case .handle: break
        case .answered: return
        case .close: return stop()
        }
        do {
            try await g.handle(frame, session: session, bot: bot, bucket: &bucket, lastSend: &lastSend, logger: log)
        } catch let e as IMError {
            g.fail(session, e, cid: frame.cid)
        } catch let e as RateLimited {
            g.fail(session, IMError(e.code, e.message), cid: frame.cid, retryAfter: e.retryAfter)
        } catch {
            log.error("frame failed: \(error)")
            g.fail(session, IMError(.internal, "internal error; retry"), cid: frame.cid)
        }
    }

    /// After the reader: the frames it read are handled, every ack of this socket is queued (commits complete in
    /// submission order, so the last send's is enough), and what is queued goes out, for at most 2 s.
    private func end() async {
        while pending.withLock({ $0.handling }) { try? await Task.sleep(for: .milliseconds(5)) }
        guard let session else { return outbound.abort() }   // never authenticated
        botCheck?.cancel()
        if let lastSend { _ = try? await lastSend.result() }
        session.finish()
        let deadline = ContinuousClock.now + .seconds(2)
        while session.isWriting && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
        session.stopWriting()
        gateway.hub.unregister(session)
        outbound.close(.normalClosure, reason: nil)
        log.debug("disconnected")
    }

    // MARK: Writing

    /// What the writer could not do without waiting: an item to write in a task (a sync's storage reads, a full
    /// socket), or a live message whose gap must be read from storage first.
    private enum Leftover {
        case item(Outgoing)
        case gap(Message, arrival: ContinuousClock.Instant?, frame: String?, DeliveryStateMachine.Fetch)
    }

    /// The session's writer: writes what is queued on the thread that queued it (the fan-out's messages, the handling
    /// task's answers; the committer's acks start it in a task, `Session.enqueue(_:inWriterTask:)`), in order, as long
    /// as nothing needs waiting; the rest continues in a task. So a delivered message wakes no task of ours on its
    /// way to the socket. What goes out of `msg` frames is decided by the connection's
    /// `DeliveryStateMachine` (strictly increasing seq per conversation, no duplicates, gaps filled from storage);
    /// this only does the reads and writes it asks for.
    private func writer(_ session: Session) -> Session.Drain? {
        guard let leftover = writeNow(session) else { return nil }
        return { [self] session in await write(session, from: leftover) }
    }

    /// Writes queued items while none needs waiting; nil once the queue is empty (writing ended) or the socket is.
    private func writeNow(_ session: Session) -> Leftover? {
        while let o = session.take() {
            switch o {
            case .frame(let f) where outbound.isWritable:
                guard outbound.send(FrameCodec.encode(f)) else { session.stopWriting(); return nil }
            case .message(let m, let arrival, let frame) where outbound.isWritable:
                switch delivery.liveMessage(m, arrival: arrival) {
                case .hold, .drop:
                    continue
                case .write:
                    guard outbound.send(frame) else { session.stopWriting(); return nil }
                    delivered(m, arrival: arrival, session: session)
                case .fetch(let fetch):
                    return .gap(m, arrival: arrival, frame: frame, fetch)
                }
            case .close(let reason, let code):
                outbound.close(code, reason: reason)
                session.stopWriting()
                return nil
            default:
                return .item(o)
            }
        }
        return nil
    }

    /// In a task: what `writeNow` left, then on as `writeNow` again.
    private func write(_ session: Session, from leftover: Leftover) async {
        var next: Leftover? = leftover
        do {
            while let l = next {
                switch l {
                case .item(let o):
                    guard try await write(o, session: session) else {
                        session.stopWriting()
                        return
                    }
                case .gap(let m, let arrival, let frame, let fetch):
                    try await fill(fetch, before: m, arrival: arrival, frame: frame, session: session)
                }
                next = writeNow(session)
            }
        } catch let gap as DeliveryStateMachine.UnfillableGap {
            // Never skip: the client reconnects and resyncs from its cursors, which stop before the hole.
            log.warning("cannot fill a delivery gap; asking the client to resync: \(gap)")
            session.stopWriting()
            try? await write(.reconnect(.init(reason: "messages are missing on this connection; reconnect and sync")))
            outbound.close(.goingAway, reason: "resync")
        } catch {
            log.debug("write ended: \(error)")
            session.stopWriting()
        }
    }

    /// Writes one item; false after a close.
    private func write(_ o: Outgoing, session: Session) async throws -> Bool {
        switch o {
        case .frame(let f):
            try await write(f)
        case .message(let m, let arrival, let frame):
            try await live(m, arrival: arrival, frame: frame, session: session)
        case .sync(let req):
            defer { session.syncDone() }
            let storage = gateway.storage
            let fetches = delivery.syncStarted(req, conversations: try await storage.conversationIDs(for: session.user))
            for fetch in fetches {
                let batch = try await storage.messages(conversation: fetch.conversation, after: fetch.after, limit: fetch.limit)
                for m in delivery.syncFetched(batch, for: fetch) { try await writeMessage(m, session: session) }
            }
            let (synced, released) = delivery.syncFinished()
            gateway.hub.sessionSynced(synced)
            try await write(.synced(synced))
            for h in released { try await live(h.message, arrival: h.arrival, frame: nil, session: session) }
        case .close(let reason, let code):
            outbound.close(code, reason: reason)
            return false
        }
        return true
    }

    private func write(_ f: ServerFrame) async throws {
        try await outbound.writeTextMessage(FrameCodec.encode(f))
    }

    private func writeMessage(_ m: Message, frame: String? = nil, arrival: ContinuousClock.Instant? = nil, session: Session) async throws {
        try await outbound.writeTextMessage(frame ?? FrameCodec.encode(.msg(m)))
        delivered(m, arrival: arrival, session: session)
    }

    private func delivered(_ m: Message, arrival: ContinuousClock.Instant?, session: Session) {
        gateway.metrics.deliveries.increment()
        if let arrival, m.sender != session.user { gateway.metrics.sendToDeliver.record(arrival.duration(to: .now)) }
    }

    private func live(_ m: Message, arrival: ContinuousClock.Instant?, frame: String?, session: Session) async throws {
        switch delivery.liveMessage(m, arrival: arrival) {
        case .hold, .drop:
            return
        case .write:
            try await writeMessage(m, frame: frame, arrival: arrival, session: session)
        case .fetch(let fetch):
            try await fill(fetch, before: m, arrival: arrival, frame: frame, session: session)
        }
    }

    /// Reads the messages missing before `m` from storage and writes them, then `m`.
    private func fill(_ first: DeliveryStateMachine.Fetch, before m: Message, arrival: ContinuousClock.Instant?, frame: String?,
                      session: Session) async throws {
        var fetch = first
        while true {
            let batch = try await gateway.storage.messages(conversation: fetch.conversation, after: fetch.after, limit: fetch.limit)
            let next: DeliveryStateMachine.Fetch?
            switch delivery.gapFetched(batch, before: m) {
            case .write(let messages, let then):
                for f in messages {
                    if f.seq == m.seq {
                        try await writeMessage(m, frame: frame, arrival: arrival, session: session)
                    } else {
                        try await writeMessage(f, session: session)
                    }
                }
                next = then
            case .resync(let messages, let gap):
                for f in messages { try await writeMessage(f, session: session) }
                throw gap
            }
            guard let next else { break }
            fetch = next
        }
    }
}

import Foundation
import HummingbirdWebSocket
import IMCore
import IMStorage
import Logging
import NIOWebSocket

/// Runs one WebSocket connection: authentication, the inbound frame loop, and the ordered outbound writer.
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

    func handle(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, logger: Logger) async {
        var messages = inbound.messages(maxSize: config.limits.frameBytes * Self.hardLimitFactor).makeAsyncIterator()
        let authTimer = Task {
            try await Task.sleep(for: .seconds(10))
            try? await outbound.close(.policyViolation, reason: "authenticate within 10 seconds")
        }
        defer { authTimer.cancel() }

        // 1. The first frame must be `auth`.
        let claims: AccessClaims
        do {
            guard let first = try await messages.next() else { return }
            guard case .text(let text) = first, case .success(.auth(let auth)) = FrameCodec.decodeClient(text) else {
                await closeWith(outbound, IMError(.notAuthenticated, "the first frame must be {\"type\":\"auth\",\"token\":ACCESS_TOKEN}"))
                return
            }
            do {
                claims = try await verifier.verify(auth.token).claims
            } catch let e as IMError {
                await closeWith(outbound, e)
                return
            }
        } catch {
            return
        }
        authTimer.cancel()
        // A bot's socket is its event stream: the token must allow reading.
        if let scopes = claims.scopes, !scopes.contains(.read) {
            await closeWith(outbound, IMError.forbidden("this bot token lacks the 'read' scope the WebSocket needs; send with POST /v1/bot/messages"))
            return
        }
        let bot = claims.scopes

        let session = Session(user: claims.sub, sid: claims.sid, exp: claims.exp)
        switch hub.register(session, maxPerUser: config.limits.connectionsPerUser) {
        case .registered:
            break
        case .draining:
            try? await outbound.writeTextMessage(FrameCodec.encode(.reconnect(.init(reason: "server is restarting"))))
            try? await outbound.close(.goingAway, reason: "server is restarting")
            return
        case .tooManyConnections:
            let e = IMError(.rateLimited, "this account already has \(config.limits.connectionsPerUser) connections open; close one first")
            metrics.errors.increment()
            try? await outbound.writeTextMessage(FrameCodec.encode(.error(.init(code: e.code, message: e.message))))
            try? await outbound.close(CloseCode.tooManyConnections, reason: "too many connections")
            return
        }
        let log = logger.with("im.user", "\(claims.sub)").with("im.conn", session.id)
        log.debug("connected")
        session.enqueue(.frame(.ready(.init(user: claims.sub, session: session.id, serverTime: nowMillis(), exp: claims.exp))))
        // A revocation that raced the handshake (after the check above, before `register`) still ends the socket.
        do { try await verifier.stillValid(claims) } catch let e as IMError {
            session.end(CloseCode.sessionEnded, reason: "session ended", error: e)
        } catch {}

        // 2. Writer and reader run side by side; when either ends, the connection ends.
        // (The writer closing the socket ends the reader's stream too.)
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await self.writer(session: session, outbound: outbound, logger: log); return true }
            if bot != nil { group.addTask { await self.botRevocationCheck(session); return false } }
            await self.reader(session: session, bot: bot, messages: &messages, logger: log)
            session.finish()
            // The writer gets a moment to send what is already queued (an error and its close code) first.
            group.addTask { try? await Task.sleep(for: .seconds(2)); return true }
            while let done = await group.next(), !done {}
            group.cancelAll()
        }
        hub.unregister(session)
        try? await outbound.close(.normalClosure, reason: nil)
        log.debug("disconnected")
    }

    /// A bot token does not expire, but may be revoked where this node does not hear of it (`warbler bots revoke`
    /// writes the database directly): its sockets re-check now and then.
    private func botRevocationCheck(_ session: Session) async {
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

    private func closeWith(_ outbound: WebSocketOutboundWriter, _ e: IMError) async {
        metrics.errors.increment()
        try? await outbound.writeTextMessage(FrameCodec.encode(.error(.init(code: e.code, message: e.message))))
        try? await outbound.close(.policyViolation, reason: e.code.rawValue)
    }

    // MARK: Reader

    private func reader(session: Session, bot: [BotScope]?, messages: inout WebSocketInboundMessageStream.AsyncIterator, logger: Logger) async {
        var bucket = TokenBucket(rate: config.limits.sendsPerSecond, burst: config.limits.sendBurst)
        var throttle = FrameThrottle(limits: throttleLimits)
        var lastSend: AppendTicket?
        reading: while true {
            let next: WebSocketMessage?
            do { next = try await messages.next() } catch { logger.debug("read ended: \(error)"); break reading }
            guard let next else { break reading }
            guard case .text(let text) = next else {
                fail(session, IMError(.badFrame, "frames must be JSON text, not binary"))
                continue
            }
            guard text.utf8.count <= config.limits.frameBytes else {
                let e = IMError(.tooLarge, "frame is \(text.utf8.count) bytes; the limit is \(config.limits.frameBytes)")
                fail(session, e, cid: FrameCodec.clientID(in: text))
                continue
            }
            let frame: ClientFrame
            switch FrameCodec.decodeClientFrame(text) {
            case .success(let f): frame = f
            case .failure(let f): fail(session, f.error, cid: f.cid); continue
            }
            switch admit(frame, session: session, throttle: &throttle) {
            case .handle: break
            case .answered: continue
            case .close: break reading
            }
            do {
                try await handle(frame, session: session, bot: bot, bucket: &bucket, lastSend: &lastSend, logger: logger)
            } catch let e as IMError {
                fail(session, e, cid: frame.cid)
            } catch let e as RateLimited {
                fail(session, IMError(e.code, e.message), cid: frame.cid, retryAfter: e.retryAfter)
            } catch {
                logger.error("frame failed: \(error)")
                fail(session, IMError(.internal, "internal error; retry"), cid: frame.cid)
            }
        }
        // Commits complete in submission order: once the last send's is done, every ack of this socket is queued.
        if let lastSend { _ = try? await lastSend.result() }
    }

    private enum Admission { case handle, answered, close }

    /// Applies the per-connection limits on typing, receipts and syncs (a sync is queued here, one at a time).
    /// A frame that is coalesced or over its limit is answered here and not handled; an abusive connection closes.
    private func admit(_ frame: ClientFrame, session: Session, throttle: inout FrameThrottle) -> Admission {
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

    private func fail(_ session: Session, _ e: IMError, cid: String? = nil, retryAfter: Double? = nil) {
        metrics.errors.increment()
        session.enqueue(.frame(.error(.init(code: e.code, message: e.message, cid: cid, retryAfter: retryAfter))))
    }

    private func handle(_ frame: ClientFrame, session: Session, bot: [BotScope]?, bucket: inout TokenBucket, lastSend: inout AppendTicket?, logger: Logger) async throws {
        let user = session.user
        switch frame {
        case .auth(let a):
            // A fresh access token on an open socket keeps it open past the old token's expiry.
            let claims = try await verifier.verify(a.token).claims
            guard claims.sub == user else { throw IMError.invalid("a connection stays with the user it authenticated as") }
            session.reauthenticated(sid: claims.sid, exp: claims.exp)
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
                session.enqueue(.frame(frame))
            }
        case .receipt(let r):
            try await service.receipt(user, r)
        case .typing(let t):
            try await service.typing(user, t)
        }
    }

    // MARK: Writer

    /// Writes frames in order. What goes out of `msg` frames is decided by the connection's
    /// `DeliveryStateMachine` (strictly increasing seq per conversation, no duplicates, gaps filled from storage);
    /// this loop only does the reads and writes it asks for.
    private func writer(session: Session, outbound: WebSocketOutboundWriter, logger: Logger) async {
        var delivery = DeliveryStateMachine()

        func write(_ f: ServerFrame) async throws {
            try await outbound.writeTextMessage(FrameCodec.encode(f))
        }

        func writeMessage(_ m: Message, frame: String? = nil, arrival: ContinuousClock.Instant? = nil) async throws {
            try await outbound.writeTextMessage(frame ?? FrameCodec.encode(.msg(m)))
            metrics.deliveries.increment()
            if let arrival, m.sender != session.user { metrics.sendToDeliver.record(arrival.duration(to: .now)) }
        }

        func live(_ m: Message, arrival: ContinuousClock.Instant?, frame: String?) async throws {
            switch delivery.liveMessage(m, arrival: arrival) {
            case .hold, .drop:
                return
            case .write:
                try await writeMessage(m, frame: frame, arrival: arrival)
            case .fetch(var fetch):
                while true {
                    let batch = try await storage.messages(conversation: fetch.conversation, after: fetch.after, limit: fetch.limit)
                    let next: DeliveryStateMachine.Fetch?
                    switch delivery.gapFetched(batch, before: m) {
                    case .write(let messages, let then):
                        for f in messages {
                            if f.seq == m.seq { try await writeMessage(m, frame: frame, arrival: arrival) } else { try await writeMessage(f) }
                        }
                        next = then
                    case .resync(let messages, let gap):
                        for f in messages { try await writeMessage(f) }
                        throw gap
                    }
                    guard let next else { break }
                    fetch = next
                }
            }
        }

        do {
            for await o in session.stream {
                session.dequeued(o)
                switch o {
                case .frame(let f):
                    try await write(f)
                case .message(let m, let arrival, let frame):
                    try await live(m, arrival: arrival, frame: frame)
                case .sync(let req):
                    defer { session.syncDone() }
                    let fetches = delivery.syncStarted(req, conversations: try await storage.conversationIDs(for: session.user))
                    for fetch in fetches {
                        let batch = try await storage.messages(conversation: fetch.conversation, after: fetch.after, limit: fetch.limit)
                        for m in delivery.syncFetched(batch, for: fetch) { try await writeMessage(m) }
                    }
                    let (synced, released) = delivery.syncFinished()
                    hub.sessionSynced(synced)
                    try await write(.synced(synced))
                    for h in released { try await live(h.message, arrival: h.arrival, frame: nil) }
                case .close(let reason, let code):
                    try? await outbound.close(code, reason: reason)
                    return
                }
            }
        } catch let gap as DeliveryStateMachine.UnfillableGap {
            // Never skip: the client reconnects and resyncs from its cursors, which stop before the hole.
            logger.warning("cannot fill a delivery gap; asking the client to resync: \(gap)")
            try? await write(.reconnect(.init(reason: "messages are missing on this connection; reconnect and sync")))
            try? await outbound.close(.goingAway, reason: "resync")
        } catch {
            logger.debug("write ended: \(error)")
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
